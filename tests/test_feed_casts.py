"""What a fed array may be cast to: an input's declared dtype, rounded, but never a number changed
beyond rounding. A finite number that would overflow to ±inf and an integer outside an integer
input's range raise an error naming the input, on every path: `gd.evaluate`, the compiled NumPy
and CUDA (emulated on the CPU) functions, and the modules `fn.save` writes (which raise
ValueError: they need only NumPy, not graphdl's InputError). Rounding passes: float64 into
float32 or float16, underflow to 0 or a denormal, NaN, ±inf and -0.0 as they are."""

from __future__ import annotations

import importlib.util
import re
import shutil

import numpy as np
import pytest

import graphdl as gd
from graphdl import InputError
from graphdl.codegen.cuda_backend.render import _cpu

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None,
                               reason="g++ not found: the CUDA emulator compiles with it")
PATHS = ["evaluate", "numpy", pytest.param("cuda-cpu", marks=needs_gxx)]


def _run(path, out, feeds):
    if path == "evaluate":
        return gd.evaluate(out, feeds)
    if path == "numpy":
        return gd.compile(out)(feeds)
    return gd.compile(out, backend="cuda", device="cpu")(feeds)


def _identity(name, shape, dtype):
    x = gd.input(name, shape, dtype)
    return x * (1 if np.dtype(dtype).kind in "iu" else 1.0)


F32_MAX = float(np.finfo(np.float32).max)
REFUSED = [  # (declared dtype, fed value, the value the message quotes, the reason)
    ("float32", np.array([1.0, 1e39]), "1e+39", "overflows"),
    ("float32", -1e300, "-1e+300", "overflows"),
    ("int8", [1, 300], "300", r"does not fit its range \[-128, 127\]"),
    ("uint8", np.array([-1, 2]), "-1", r"does not fit its range \[0, 255\]"),
    ("int32", np.array([2**31, 0]), "2147483648", "does not fit its range"),
    ("uint32", np.array([2**63], np.uint64), "9223372036854775808", "does not fit"),
]
REFUSED_F16 = [  # no CUDA type here for float16: the NumPy paths only
    ("float16", 1e6, "1000000.0", "overflows"),
    ("float16", np.array([65520.0]), "65520.0", "overflows"),  # rounds up to inf
    ("float16", np.array([0, 70000]), "70000", "overflows"),  # an integer overflows too
    ("float16", np.float32(1e5), "100000.0", "overflows"),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("dtype", "fed", "value", "why"), REFUSED)
def test_a_cast_that_changes_a_number_is_refused_by_name(path, dtype, fed, value, why):
    shape = np.shape(fed)
    message = rf"input 'weights' is {dtype}: value {re.escape(value)} {why}"
    with pytest.raises(InputError, match=message):
        _run(path, _identity("weights", shape, dtype), {"weights": fed})


@pytest.mark.parametrize("path", ["evaluate", "numpy"])
@pytest.mark.parametrize(("dtype", "fed", "value", "why"), REFUSED_F16)
def test_float16_overflow_is_refused_by_name(path, dtype, fed, value, why):
    message = rf"input 'h' is float16: value {value} {why} .*65504.* would become inf"
    with pytest.raises(InputError, match=message):
        _run(path, _identity("h", np.shape(fed), dtype), {"h": fed})


def test_the_refusal_quotes_the_first_overflowing_value_not_an_infinite_one():
    """inf and NaN fed as they are stay as they are; only a finite number turned inf is wrong."""
    fed = np.array([np.inf, np.nan, -np.inf, 1e6, -1e7])
    with pytest.raises(InputError, match="value 1000000.0 overflows"):
        gd.evaluate(_identity("h", (5,), "float16"), h=fed)


ROUNDED = [  # (declared dtype, fed float64 or int values): each result is NumPy's rounding
    ("float32", [0.1, -1 / 3, 1e-320, -1e-320, 1e-45, 3e-39]),  # underflow to 0 / a denormal
    ("float32", [F32_MAX, F32_MAX * (1 + 2**-25), -F32_MAX]),  # rounds to the largest finite
    ("float32", [np.nan, np.inf, -np.inf, -0.0, 0.0]),
    ("float32", np.array([2**24 + 1, -(2**62)], np.int64)),
    ("float32", np.array([True, False])),
    ("float64", np.array([0.5, -2.0], np.float32)),
    ("int8", np.array([-128, 127, 0], np.int64)),
    ("uint8", np.array([0, 255], np.int32)),
    ("int64", np.array([True, False])),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("dtype", "fed"), ROUNDED)
def test_an_allowed_cast_gives_numpys_rounded_value(path, dtype, fed):
    fed = np.asarray(fed)
    got = _run(path, _identity("x", fed.shape, dtype), {"x": fed})
    want = fed.astype(dtype)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))  # -0.0 and -1e-320 -> -0.0


@pytest.mark.parametrize("path", ["evaluate", "numpy"])
def test_float16_rounds_up_to_its_largest_finite_and_keeps_special_values(path):
    fed = np.array([65504.0, 65519.0, -65519.0, 1e-8, -1e-8, np.nan, np.inf, -0.0])
    got = _run(path, _identity("h", fed.shape, "float16"), {"h": fed})
    np.testing.assert_array_equal(got, fed.astype(np.float16))
    np.testing.assert_array_equal(np.signbit(got), np.signbit(fed))


@pytest.mark.parametrize("path", ["evaluate", "numpy"])
def test_python_numbers_and_lists_follow_the_same_rule(path):
    h = gd.input("h", (), "float16")
    assert _run(path, h * 1.0, {"h": 2.5}) == np.float16(2.5)
    with pytest.raises(InputError, match="input 'h' is float16: value 100000.0 overflows"):
        _run(path, h * 1.0, {"h": 1e5})
    v = gd.input("v", (2,), "int8")
    with pytest.raises(InputError, match="input 'v' is int8: value -129 does not fit"):
        _run(path, v * 1, {"v": [-129, 0]})


def _saved(fn, tmp_path, device=None):
    """The module `fn.save` writes, imported (a CUDA driver given the emulator as its device)."""
    path = tmp_path / "model.py"
    fn.save(path)
    spec = importlib.util.spec_from_file_location("model", path)
    module = importlib.util.module_from_spec(spec)
    if device is not None:
        module._DEVICE = device
    spec.loader.exec_module(module)
    return module


def test_a_saved_numpy_module_casts_as_fn_does(tmp_path):
    x, n = gd.input("x", (3,), "float16"), gd.input("n", (2,), "int8")
    fn = gd.compile([x * 1.0, n * 1])
    fed = np.array([0.1, 65519.0, -0.0])
    run = _saved(fn, tmp_path).run
    got, want = run(fed, [1, -2]), fn(fed, [1, -2])
    assert all(g.dtype == w.dtype and np.array_equal(g, w) for g, w in zip(got, want))
    with pytest.raises(ValueError, match="input 'x' is float16: value 1000000.0 overflows"):
        run(np.array([1e6, 0.0, 0.0]), [1, 2])
    with pytest.raises(ValueError, match="input 'n' is int8: value 200 does not fit"):
        run(fed, [1, 200])


@needs_gxx
def test_a_saved_cuda_driver_casts_on_the_host_as_fn_does(tmp_path):
    """The driver handed its kernels whatever it was fed: float64 memory read as float32."""
    x = gd.input("x", (3,), "float32")
    fn = gd.compile(x * 2.0, backend="cuda", device="cpu")
    fed = np.array([0.1, -1e-320, 3.0])
    want = fn(fed)
    got = _saved(fn, tmp_path, _cpu()).run(fed)[0]
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    with pytest.raises(ValueError, match=r"input 'x' is float32: value 1e\+300 overflows"):
        _saved(fn, tmp_path, _cpu()).run(np.array([1e300, 0.0, 0.0]))
