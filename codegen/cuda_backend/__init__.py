"""The CUDA backend: renders a `Lowered` program (`codegen.lower`) as CUDA C kernels (`.cu`,
every kernel `extern "C"`, no host code) and a Python driver that launches them, on an NVIDIA
GPU through CuPy or, with `device="cpu"`, on the CPU through the emulator in `cpu/` (the same
kernel source compiled with g++). `printer` prints elementwise formulas in CUDA C, `kernels`
holds the contract and registry of the structured ops' kernels (`structured`, `conv`, their
templates in `templates/`), `render` spells the program out."""

from graphdl.codegen.cuda_backend import conv, structured  # noqa: F401 - they register kernels
from graphdl.codegen.cuda_backend.render import generate

__all__ = ["generate"]
