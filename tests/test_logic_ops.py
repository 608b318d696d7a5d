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


@pytest.mark.parametrize("runner", ["evaluate", "numpy", pytest.param("cuda-cpu",
                                                                     marks=needs_gxx)])
def test_integer_modulo_and_division_beyond_2_to_the_53_match_pytorch(runner):
    a0, b0 = (np.array(v[:9], np.int64) for v in MIXED["int64"])
    a, b = gd.input("a", (9,), "int64"), gd.input("b", (9,), "int64")
    got = run(runner, [gd.remainder(a, b), a % b, gd.fmod(a, b), gd.abs(a), a % -3, a // b,
                       a // -3], {"a": a0, "b": b0})
    ta, tb = torch.tensor(a0), torch.tensor(b0)
    want = [torch.remainder(ta, tb), ta % tb, torch.fmod(ta, tb), ta.abs(), ta % -3, ta // tb,
            ta // -3]
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


# ---------------------------------------------------------------- logical and bitwise ops
RUNNERS = ["evaluate", "numpy", pytest.param("cuda-cpu", marks=needs_gxx)]
LOGICAL = ("logical_and", "logical_or", "logical_xor")
BITWISE = ("bitwise_and", "bitwise_or", "bitwise_xor")
SHIFTS = ("bitwise_left_shift", "bitwise_right_shift")


def run(runner, outputs, feeds):
    if runner == "evaluate":
        return gd.evaluate(outputs, feeds)
    options = {"backend": "cuda", "device": "cpu"} if runner == "cuda-cpu" else {}
    return gd.compile(outputs, **options)(**feeds)


def grid(dtype, n):
    """n values of `dtype`: its zeros, ±1, extremes, NaN and inf for floats, repeated."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        values = [True, False, True]
    elif dtype.kind == "f":
        values = [0.0, -0.0, 1.0, -2.5, np.nan, np.inf, -np.inf, 1e-30]
    else:
        info = np.iinfo(dtype)
        values = [0, 1, 5, 100, info.max, info.min, info.max - 1] + ([-1, -7] if info.min else [])
    return np.resize(np.array(values, dtype), n)


def assert_matches(got, want):
    want = want.numpy()
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_array_equal(got, want)


def compare(runner, fns, dtypes, n=24):
    """Each fn of `fns` (a name of both gd and torch) on inputs of `dtypes`, every value of one
    grid against every value of the other."""
    arrays = [np.repeat(grid(dtypes[0], n), n)] + [np.tile(grid(d, n), n) for d in dtypes[1:]]
    nodes = [gd.input(f"x{k}", a.shape, a.dtype.name) for k, a in enumerate(arrays)]
    outputs = [getattr(gd, f)(*nodes) for f in fns]
    got = run(runner, outputs, {n.name: a for n, a in zip(nodes, arrays)})
    for name, value in zip(fns, got):
        assert_matches(value, getattr(torch, name)(*map(torch.tensor, arrays)))


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("dtypes", [("float64", "float64"), ("float32", "int32"),
                                    ("bool", "float64"), ("int64", "bool"), ("uint8", "int8"),
                                    ("bool", "bool")])
def test_logical_ops_match_pytorch(runner, dtypes):
    """Any dtypes in, bool out; nonzero is true, NaN and −0.0 included as PyTorch reads them."""
    compare(runner, LOGICAL, dtypes)
    compare(runner, ["logical_not"], dtypes[:1])


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("dtypes", [("int8", "int8"), ("uint8", "uint8"), ("int16", "int64"),
                                    ("int32", "int32"), ("int64", "int64"), ("uint8", "int8"),
                                    ("bool", "bool"), ("bool", "int32")])
def test_bitwise_ops_match_pytorch(runner, dtypes):
    """In NumPy's promoted dtype, which is PyTorch's here; on bools, logical."""
    compare(runner, BITWISE, dtypes)
    compare(runner, ["bitwise_not"], dtypes[:1])


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32", "int64"])
def test_shifts_match_pytorch_at_every_count(runner, dtype):
    """Counts from −1 past the width: 0 shifted out to the left, the sign to the right."""
    width = 8 * np.dtype(dtype).itemsize
    counts = [0, 1, 3, width - 1, width, width + 1, min(100, np.iinfo(dtype).max)]
    counts += [-1, -width] if np.iinfo(dtype).min else []
    values = grid(dtype, 12)
    a = np.repeat(values, len(counts))
    b = np.tile(np.array(counts, dtype), values.size)
    x, s = gd.input("a", a.shape, dtype), gd.input("b", b.shape, dtype)
    got = run(runner, [gd.bitwise_left_shift(x, s), gd.bitwise_right_shift(x, s), x << 2, x >> 1],
              {"a": a, "b": b})
    ta, tb = torch.tensor(a), torch.tensor(b)
    for value, want in zip(got, [torch.bitwise_left_shift(ta, tb),
                                 torch.bitwise_right_shift(ta, tb), ta << 2, ta >> 1]):
        assert_matches(value, want)


@pytest.mark.parametrize("runner", RUNNERS)
def test_operators_and_their_reflected_forms(runner):
    a0, b0 = np.array([12, -7, 0, 5], np.int64), np.array([10, 3, -1, 2], np.int64)
    c0 = np.array([True, False, True, False])
    a, b, c = (gd.input(n, (4,), t) for n, t in zip("abc", ("int64", "int64", "bool")))
    got = run(runner, [a & b, a | b, a ^ b, ~a, a << b % 4, a >> b % 4, 6 & a, 6 | a, 6 ^ a,
                       1 << b % 4, 64 >> b % 4, ~c, c & True, False | c, c ^ c],
              {"a": a0, "b": b0, "c": c0})
    ta, tb, tc = torch.tensor(a0), torch.tensor(b0), torch.tensor(c0)
    want = [ta & tb, ta | tb, ta ^ tb, ~ta, ta << tb % 4, ta >> tb % 4, 6 & ta, 6 | ta, 6 ^ ta,
            1 << tb % 4, 64 >> tb % 4, ~tc, tc & True, False | tc, tc ^ tc]
    for value, w in zip(got, want):
        assert_matches(value, w)


def test_bad_dtypes_are_refused_naming_the_operand():
    f, i = gd.input("weights", (3,), "float32"), gd.input("i", (3,), "int32")
    for fn in (gd.bitwise_and, gd.bitwise_or, gd.bitwise_xor, gd.bitwise_left_shift,
               gd.bitwise_right_shift):
        with pytest.raises(gd.GraphError, match=f"{fn.name} expects integer.* 'weights'"):
            fn(i, f)
    with pytest.raises(gd.GraphError, match="bitwise_not expects integer or bool input, got "
                                            "'weights' of dtype float32"):
        _ = ~f
    with pytest.raises(gd.GraphError, match="bitwise_left_shift expects integer input, got "
                                            "'flags' of dtype bool"):
        gd.input("flags", (3,), "bool") << 1
    with pytest.raises(gd.GraphError, match="bitwise_and: 'u' \\(uint64\\) and 'i' \\(int32\\) "
                                            "have no common integer dtype"):
        gd.input("u", (3,), "uint64") & i


def test_no_gradient_flows_through_them():
    """Their outputs are steps: the gradient reaches x only through the where's branch."""
    x0 = np.array([0.5, -1.0, 0.0, 2.0])
    x = gd.input("x", (4,), "float64")
    cond = gd.logical_xor(gd.logical_not(x), gd.logical_or(x > 1, gd.logical_and(x, x < 0)))
    y = gd.sum(gd.where(cond, x * x, 0.0))
    (dx,) = gd.evaluate(gd.grad(y, [x]), {"x": x0})
    xt = torch.tensor(x0, requires_grad=True)
    ct = torch.logical_xor(torch.logical_not(xt), torch.logical_or(xt > 1,
                                                                   torch.logical_and(xt, xt < 0)))
    torch.where(ct, xt * xt, 0.0).sum().backward()
    np.testing.assert_array_equal(dx, xt.grad.numpy())


# ---------------------------------------------------------------- ONNX
def _onnxruntime_run(outputs, feeds, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    gd.onnx.save(outputs, tmp_path / "m.onnx")
    return ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, feeds)


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    """Logical ops of any dtype (Cast to bool first), bitwise ops of bools, shifts of unsigned
    integers by counts below the width, and their import back."""
    pytest.importorskip("onnx")
    f0, i0, c0 = grid("float32", 24), np.tile(grid("int32", 8), 3), grid("bool", 24)
    u0, s0 = np.tile(grid("uint8", 8), 3), np.resize(np.arange(8, dtype=np.uint8), 24)
    f, i, c, u, s = (gd.input(n, a.shape, a.dtype.name)
                     for n, a in zip("ficus", (f0, i0, c0, u0, s0)))
    outputs = {"and": gd.logical_and(f, i), "or": gd.logical_or(i, c), "xor": gd.logical_xor(f, c),
               "not": gd.logical_not(f), "band": c & (f > 0), "bor": c | True, "bxor": c ^ c,
               "bnot": ~c, "shl": u << s, "shr": u >> s}
    feeds = {"f": f0, "i": i0, "c": c0, "u": u0, "s": s0}
    want = gd.evaluate(list(outputs.values()), feeds)
    got = _onnxruntime_run(outputs, feeds, tmp_path)
    loaded = gd.onnx.load(tmp_path / "m.onnx")
    back = gd.evaluate(loaded.outputs, loaded.feeds(**feeds))
    for name, g, b, w in zip(outputs, got, back, want):
        assert g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)
        np.testing.assert_array_equal(b, w, err_msg=name)


@pytest.mark.parametrize(("build", "match"), [
    (lambda i: i & 3, "bitwise_and .* of int32: opset 17 has bitwise operators of bools only"),
    (lambda i: ~i, "bitwise_not .* of int32: opset 17"),
    (lambda i: i << 1, "bitwise_left_shift .* of int32: ONNX's BitShift shifts unsigned"),
])
def test_onnx_export_refuses_what_opset_17_lacks(build, match, tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(gd.GraphError, match=match):
        gd.onnx.save({"y": build(gd.input("i", (3,), "int32"))}, tmp_path / "m.onnx")
