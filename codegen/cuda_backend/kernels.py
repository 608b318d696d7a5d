"""The CUDA backend's per-op kernels for structured (non-elementwise) ops, registered against
the OpDef objects: each kernel function turns one node into its `OpKernels`, CUDA C kernel
source (from the `.cu` templates in `templates/`) and the launches that compute it.

The contract every kernel function keeps (the renderer relies on it):
- every input of the node is a contiguous C-order device array of the input node's declared
  shape and dtype; the output is a contiguous C-order device array of the node's shape and
  dtype, uninitialized unless its `OpKernels` say `zero_output`;
- sizes, strides and attributes are baked into the source as constants where that helps;
  kernels are `extern "C" __global__`, with no host code; names are unique per node (they
  start with the `name` the renderer passes, which derives from the user's names);
- launches run in order, on one stream.
"""

from __future__ import annotations

import functools
import pathlib
import string
from dataclasses import dataclass, field

import numpy as np

from graphdl.opdef import implements

TEMPLATES = pathlib.Path(__file__).parent / "templates"
THREADS = 256  # threads per block of the grid-stride kernels
MAX_BLOCKS = 8192  # beyond this, grid-stride loops give each thread several elements

# No float16: NVRTC has no header for __half (the renderer refuses such statements).
C_TYPES = {"float32": "float", "float64": "double", "int8": "signed char",
           "int16": "short", "int32": "int", "int64": "long long", "uint8": "unsigned char",
           "uint16": "unsigned short", "uint32": "unsigned int", "uint64": "unsigned long long",
           "bool": "bool"}


def ctype(dtype):
    """The CUDA C type of a NumPy dtype."""
    return C_TYPES[np.dtype(dtype).name]


def special_float(value, dtype):
    """NaN or ±inf in `dtype` (float32 or float64) spelled by its bits: NVRTC compiles without
    math.h, so `NAN` and `INFINITY` are not defined there."""
    bits = np.asarray(value, dtype).view(f"u{np.dtype(dtype).itemsize}").item()
    if np.dtype(dtype).itemsize == 4:
        return f"__int_as_float({bits:#x})"
    return f"__longlong_as_double({bits:#x}LL)"


def integer(value):
    """A C literal of any 64-bit integer (-2**63 cannot be written as a negated literal)."""
    if value >= 2**63:
        return f"{value}ULL"
    return f"({value + 1}LL - 1)" if value < 0 else f"{value}LL"


@functools.cache
def template(file):
    """The `.cu` template `file` of `templates/`."""
    return string.Template((TEMPLATES / file).read_text())


def blocks(count):
    """The blocks of THREADS threads a grid-stride loop over `count` elements launches."""
    return max(1, min(MAX_BLOCKS, -(-count // THREADS)))


@dataclass(frozen=True)
class Launch:
    """One kernel launch. `args`, in the kernel's parameter order, each one of:
    ("in", k)        the node's k-th input (a device pointer),
    ("out",)         the node's output buffer,
    ("scratch", k)   the k-th scratch buffer the kernels asked for (`OpKernels.scratch`)."""

    kernel: str
    grid: tuple
    block: tuple
    args: tuple


@dataclass(frozen=True)
class Check:
    """An index-range check the launches make: scratch buffer `scratch` holds a flag, zero as
    each call allocates it, that the driver reads after the last launch; nonzero means an index
    failed, and the driver raises `runtime._check_index(output, high, negative, what)`'s
    error (the output, read back to the host, gives the message its first failing value)."""

    scratch: int
    high: int
    negative: bool
    what: str


@dataclass(frozen=True)
class OpKernels:
    """What computes one node: its kernels' source and their launches."""

    source: str  # the CUDA C source of the kernels the launches name
    launches: tuple
    zero_output: bool = False  # the output buffer is zeroed before the first launch
    scratch: tuple = field(default_factory=tuple)  # (count, dtype) of each device scratch buffer
    check: Check | None = None  # a flag to read after the launches, raising if set
    # A node no kernel computes (a collective): a Python expression the driver evaluates into
    # the output buffer; {0}, {1}... are the inputs' device arrays, `_xp` the array module
    # (CuPy, NumPy in the emulator); `calls`, the graphdl.runtime functions it calls.
    driver: str = ""
    calls: tuple = ()


def grid_stride(kernel, count, args):
    """The launches of one grid-stride kernel over `count` elements (none when there are
    none)."""
    return (Launch(kernel, (blocks(count),), (THREADS,), args),) if count else ()


def register(*ops):
    """Register a kernel function, (node, name) -> OpKernels, as the "cuda" facet of the given
    OpDefs (`op.impls["cuda"]`)."""
    return implements("cuda", *ops)
