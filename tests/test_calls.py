"""Calling a compiled graph: inputs by position, by name or as one dict, and the saved module's
`run`, which binds its arguments as `fn` does."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import graphdl as gd
from graphdl.errors import InputError


def difference():
    """fn(a, b) = a - 2 b: swapping the inputs changes the result."""
    a, b = gd.input("a", (2,)), gd.input("b", (2,))
    fn = gd.compile(a - 2.0 * b)
    assert fn.input_names == ["a", "b"]
    return fn


def load_saved(fn, tmp_path):
    path = tmp_path / "model.py"
    fn.save(path)
    spec = importlib.util.spec_from_file_location("model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


A, B = np.array([5.0, 7.0], np.float32), np.array([1.0, 2.0], np.float32)
WANT = np.array([3.0, 3.0], np.float32)


def test_positional_arguments_follow_input_names():
    """`fn(arr, arr)` raised "takes from 1 to 2 positional arguments but 3 were given"."""
    fn = difference()
    assert np.array_equal(fn(A, B), WANT)
    assert np.array_equal(fn(B, A), B - 2 * A)
    assert np.array_equal(fn(A, b=B), WANT)


def test_an_input_given_by_position_and_by_keyword_is_refused():
    with pytest.raises(InputError, match="input 'a' is given twice: by position and by keyword"):
        difference()(A, a=B)


def test_too_many_positional_inputs_lists_the_input_names():
    with pytest.raises(InputError, match=r"3 inputs given by position, but this graph has 2: "
                                         r"\['a', 'b'\]"):
        difference()(A, B, A)


def test_a_single_dict_holds_the_inputs_by_name():
    fn = difference()
    assert np.array_equal(fn({"a": A, "b": B}), WANT)
    assert np.array_equal(fn({"a": A}, b=B), WANT)
    with pytest.raises(InputError, match="input 'b' is given twice: in the dict and by keyword"):
        fn({"a": A, "b": B}, b=A)
    with pytest.raises(InputError, match="a dict of inputs by name must be the only positional"):
        fn({"a": A}, B)


def test_evaluate_refuses_an_input_in_the_dict_and_by_keyword():
    """The dict's value was silently replaced by the keyword's."""
    x = gd.input("x", ())
    with pytest.raises(InputError, match="input 'x' is given twice"):
        gd.evaluate(x * 2.0, {"x": 1.0}, x=2.0)


def test_an_input_named_feeds_is_a_keyword_like_any_other():
    """`Compiled.__call__(self, feeds=None, **kwargs)` took `feeds=` for the dict of inputs."""
    feeds = gd.input("feeds", (2,))
    assert np.array_equal(gd.compile(feeds * 3.0)(feeds=A), 3 * A)


def test_saved_run_casts_python_numbers_to_the_input_dtype_as_fn_does(tmp_path):
    """The saved module's `run(2.0, 3.0)` computed in float64 where `fn` gives float32."""
    x, y = gd.input("x", ()), gd.input("y", ())
    fn = gd.compile(x / y)
    run = load_saved(fn, tmp_path).run
    got, want = run(2.0, 3.0)[0], fn(2.0, 3.0)
    assert got.dtype == want.dtype == np.float32 and got == want
    f64 = run(np.float64(2.0), np.array(3.0))[0]  # float64 arrays are cast, like fn's
    assert f64.dtype == np.float32 and f64 == want


def test_saved_run_refuses_floats_for_an_integer_input(tmp_path):
    """As `fn` does: 1.5 would be truncated to 1, a wrong number."""
    n = gd.input("n", (2,), "int32")
    fn = gd.compile(n + n)
    run = load_saved(fn, tmp_path).run
    got, want = run([1, 2])[0], fn([1, 2])
    assert got.dtype == want.dtype == np.int32 and np.array_equal(got, want)
    with pytest.raises(InputError, match="refusing floating-point"):
        fn([1.5, 2.0])
    with pytest.raises(TypeError, match="same_kind"):
        run([1.5, 2.0])


def test_saved_run_updates_the_given_array_in_place(tmp_path):
    """Updated inputs are not converted: a converted copy would take the update, not the
    caller's array."""
    w = gd.input("w", (2,))
    (dw,) = gd.grad(gd.sum(w * w), [w])
    fn = gd.compile(gd.sum(w * w), updates={w: w - 0.25 * dw})
    run = load_saved(fn, tmp_path).run
    weights = np.array([1.0, -2.0], np.float32)
    assert run(weights)[0] == 5.0
    assert np.array_equal(weights, [0.5, -1.0])
