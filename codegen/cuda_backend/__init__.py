"""The CUDA backend: renders a `lower.Program` as CUDA C kernels (`.cu`, every kernel
`extern "C"`, no host code) and a Python driver that launches them, on an NVIDIA GPU through
CuPy or, with `device="cpu"`, on the CPU through the emulator in `cpu/` (the same kernel source
compiled with g++). `printer` prints elementwise formulas in CUDA C, `kernels` holds the contract
and registry of the structured ops' kernels (`structured`, `conv`, their templates in
`templates/`), `render` spells the program out. `BACKEND` is what `gd.compile` calls
(`codegen.backend`)."""

from graphdl.codegen.accumulate import accumulate_scatters
from graphdl.codegen.backend import Backend
from graphdl.codegen.cuda_backend import conv, render, structured  # noqa: F401 - registers kernels
from graphdl.codegen.lower import Target
from graphdl.errors import GraphError
from graphdl.ops import movement as mv


def _fuses_into(consumer, position):
    """Elementwise regions fuse into elementwise consumers only: structured kernels read
    contiguous arrays. A broadcast fuses as indexing; other views get a copy kernel."""
    inp = consumer.inputs[position]
    return consumer.op.kind == "elementwise" and (not inp.op.view or inp.op is mv.BROADCAST_TO)


def _check_device(device):
    """For device="gpu": a clear error, never a silent fallback, where CuPy or a GPU is
    missing."""
    if device != "gpu":
        return
    try:
        import cupy
    except ImportError as e:
        reason = f"CuPy is not installed ({e})"
    else:
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except cupy.cuda.runtime.CUDARuntimeError as e:  # no driver, no device
            reason = f"CUDA reports {e}"
        else:
            if count:
                return
            reason = "CuPy sees no GPU"
    raise GraphError(
        f"compile: backend='cuda' runs on an NVIDIA GPU through CuPy (pip install "
        f"'graphdl[cuda]'), and here {reason}. device='cpu' runs the same kernels on the CPU.")


BACKEND = Backend(
    name="cuda", devices=("gpu", "cpu"), render=render.render,
    target=Target(
        fuses_into=_fuses_into, writes_into=lambda node: node.op.kind == "elementwise",
        max_fused=64,  # lines per kernel body: registers, not readability, bound it
        rewrites=(accumulate_scatters(),)),  # atomics into the addressed rows
    options=frozenset({"outputs_on_device"}), array_devices=frozenset({"gpu"}),
    check_device=_check_device,
)

__all__ = ["BACKEND"]
