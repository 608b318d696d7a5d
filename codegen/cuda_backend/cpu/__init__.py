"""CUDA kernels executed on the CPU: `load(source)` builds CUDA C source with g++ against
`cuda_cpu.h` and returns a module shaped like `cupy.RawModule`, with NumPy arrays as device
memory (see `loader`)."""

from graphdl.codegen.cuda_backend.cpu.loader import (
    BuildError,
    CpuRawModule,
    KernelError,
    empty,
    load,
)

__all__ = ["BuildError", "CpuRawModule", "KernelError", "empty", "load"]
