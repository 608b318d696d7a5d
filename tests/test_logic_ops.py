"""Logical and bitwise ops against PyTorch, and the CUDA printer's modulo: SymPy's Mod is
Python's (of the divisor's sign), which C's fmod and % are not, and integers stay integers (C's
fabs and fmod would compute them in double, inexact beyond 2^53)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import sympy

import graphdl as gd
from graphdl.codegen.cuda_backend.printer import DEVICE_FUNCTIONS, CudaPrinter

torch = pytest.importorskip("torch")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")


# ---------------------------------------------------------------- modulo in CUDA C
def _printed_kernel(dtype):
    """A kernel computing SymPy's Mod(a, b) and Abs(a) as the CUDA printer prints them."""
    a, b = sympy.symbols("a b")
    printer = CudaPrinter(np.dtype(dtype), {a: "a[i]", b: "b[i]"})
    t = printer._convert_ctype(sympy.Symbol(np.dtype(dtype).name))
    return f"""{DEVICE_FUNCTIONS}
extern "C" __global__ void mod_abs(const {t}* a, const {t}* b, {t}* y, int n) {{
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {{ y[i] = {printer.doprint(sympy.Mod(a, b))};
               y[n + i] = {printer.doprint(sympy.Abs(a))}; }}
}}"""


MIXED = {"float64": ([5.5, -5.5, 5.5, -5.5, 6.0, -6.0, 0.5, -0.5, 1e300, 7.0],
                     [2.0, 2.0, -2.0, -2.0, -3.0, 3.0, np.inf, np.inf, -3.0, -np.inf]),
         "int64": ([7, -7, 7, -7, 6, -6, 2**62 + 1, -(2**62 + 1), 2**53 + 1, -2**63],
                   [3, 3, -3, -3, -3, 3, 3, 3, -2, -1]),
         "int32": ([7, -7, 7, -7, 6, -2**31, 0, 9, -9, 2**31 - 1],
                   [3, 3, -3, -3, -3, -1, 5, 4, 4, -7])}
MIXED["float32"] = MIXED["float64"][0][:8] + [1e30, 7.0], MIXED["float64"][1]


@needs_gxx
@pytest.mark.parametrize("dtype", MIXED)
def test_cuda_printer_prints_pythons_modulo_and_an_exact_abs(dtype, tmp_path, monkeypatch):
    from graphdl.codegen.cuda_backend.cpu import loader

    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path))
    a, b = (np.array(v, dtype) for v in MIXED[dtype])
    y = loader.empty(2 * a.size, dtype)
    loader.load(_printed_kernel(dtype)).get_function("mod_abs")((1,), (32,),
                                                              (a, b, y, np.int32(a.size)))
    want = torch.remainder(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_array_equal(y[:a.size], want)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(y[a.size:], np.abs(a))


@pytest.mark.parametrize("runner", ["numpy", pytest.param("cuda-cpu", marks=needs_gxx)])
def test_integer_modulo_beyond_2_to_the_53_matches_pytorch(runner):
    options = {"backend": "cuda", "device": "cpu"} if runner == "cuda-cpu" else {}
    a0, b0 = (np.array(v[:9], np.int64) for v in MIXED["int64"])
    a, b = gd.input("a", (9,), "int64"), gd.input("b", (9,), "int64")
    got = gd.compile([gd.remainder(a, b), a % b, gd.fmod(a, b), gd.abs(a), a % -3],
                     **options)(a=a0, b=b0)
    ta, tb = torch.tensor(a0), torch.tensor(b0)
    want = [torch.remainder(ta, tb), ta % tb, torch.fmod(ta, tb), ta.abs(), ta % -3]
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == np.int64
        np.testing.assert_array_equal(g, w.numpy(), err_msg=str(k))


@needs_gxx
def test_cuda_integers_by_zero_give_numpys_zero():
    """PyTorch raises; NumPy gives 0 (with a warning), as the CUDA kernels (without one)."""
    a, b = gd.input("a", (3,), "int32"), gd.input("b", (3,), "int32")
    got = gd.compile([a // b, a % b, gd.fmod(a, b)], backend="cuda", device="cpu")(
        a=np.array([7, -7, 0], np.int32), b=np.zeros(3, np.int32))
    for value in got:
        np.testing.assert_array_equal(value, [0, 0, 0])
