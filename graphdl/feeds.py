"""Checking the arrays a caller feeds to a graph against the inputs it declared."""

from __future__ import annotations

import numpy

from graphdl.errors import GraphError, InputError
from graphdl.ir import format_shape


def merge(feeds, kwargs):
    """`f({"a": 1})` and `f(a=1)` are the same call; naming an input both ways is an error."""
    if feeds is None:
        return dict(kwargs)
    if not isinstance(feeds, dict):
        raise InputError("inputs must be given by name (a dict or keywords), "
                         f"got {type(feeds).__name__}")
    _refuse_twice(feeds, kwargs, "in the dict")
    return {**feeds, **kwargs}


def from_call(names, args, kwargs):
    """`fn(*args, **kwargs)` as name -> value. A dict as the only positional argument holds the
    inputs by name (an input's value is never a dict); other positional arguments are values
    in the order of `names`, the order of the saved module's `run`."""
    if len(args) == 1 and isinstance(args[0], dict):
        return merge(args[0], kwargs)
    if any(isinstance(a, dict) for a in args):
        raise InputError("a dict of inputs by name must be the only positional argument")
    if len(args) > len(names):
        raise InputError(f"{len(args)} inputs given by position, but this graph has "
                         f"{len(names)}: {names}")
    positional = dict(zip(names, args))
    _refuse_twice(positional, kwargs, "by position")
    return {**positional, **kwargs}


def _refuse_twice(given, kwargs, how):
    twice = [name for name in given if name in kwargs]
    if twice:
        raise InputError(f"input {twice[0]!r} is given twice: {how} and by keyword")


def unique_inputs(inputs):
    """Map input name -> node, refusing two different inputs that share a name."""
    by_name = {}
    for node in inputs:
        other = by_name.setdefault(node.name, node)
        if other is not node:
            raise GraphError(
                f"two different inputs are named {node.name!r}: shapes {format_shape(other.shape)} "
                f"and {format_shape(node.shape)}, dtypes {other.dtype} and {node.dtype}"
            )
    return by_name


def bind(inputs, feeds, in_place=(), device_arrays=False):
    """Check `feeds` (name -> value) against `inputs`; return arrays in the order of `inputs`.

    Floats, ints and bools convert to a float input's dtype, rounded (float64 into float32 is
    cast), unless a finite number would overflow to ±inf; floats into an integer input are
    refused, and so are integers outside its range; a bool input takes bools only. Inputs
    named in `in_place` are updated by the call, so they must already be arrays of exactly the
    declared dtype. `device_arrays`: the function runs on a GPU, so arrays already in its
    memory (CuPy's, or any with `__cuda_array_interface__`) pass as they are, never copied.
    """
    names = [n.name for n in inputs]
    unknown = sorted(set(feeds) - set(names))
    if unknown:
        raise InputError(f"unknown input {unknown[0]!r}; this graph's inputs are {names}")
    missing = [n for n in names if n not in feeds]
    if missing:
        raise InputError(f"missing input {missing[0]!r}; this graph's inputs are {names}")
    return [_device(node, feeds[node.name], device_arrays)
            if hasattr(feeds[node.name], "__cuda_array_interface__")
            else _convert(node, feeds[node.name], node.name in in_place) for node in inputs]


def _device(node, value, accepted):
    """A GPU array fed as it is: exactly the declared dtype (a conversion would be a copy, and
    an updated input's copy would not receive the update) and shape."""
    name = node.name
    if not accepted:
        raise InputError(f"input {name!r} is a GPU array ({type(value).__name__}), but this "
                         f"function runs on the CPU: pass a NumPy array (CuPy: `{name}.get()`)")
    if value.dtype != node.dtype:
        raise InputError(f"input {name!r} is a GPU array of dtype {value.dtype}; GPU arrays "
                         f"are used as they are, so it must be {node.dtype} "
                         f"(convert it on the GPU: `{name}.astype('{node.dtype}')`)")
    return _check_shape(node, value)


def _convert(node, value, in_place):
    name, dtype = node.name, node.dtype
    if in_place:
        if (not isinstance(value, numpy.ndarray) or value.dtype != dtype
                or not value.flags.writeable):
            raise InputError(
                f"input {name!r} is updated in place, so it must be a writeable numpy array of "
                f"dtype {dtype}, got {type(value).__name__} {getattr(value, 'dtype', '')}"
            )
        array = value
    else:
        array = _as_array(node, value)
        if array.dtype.kind not in "biuf":
            raise InputError(f"input {name!r} expects numbers of dtype {dtype}, got {array.dtype}")
        if dtype.kind in "iub" and array.dtype.kind == "f":
            raise InputError(
                f"input {name!r} is {dtype}: refusing floating-point values ({array.dtype})")
        if dtype.kind == "b" and array.dtype.kind != "b":
            raise InputError(f"input {name!r} is bool, got {array.dtype}")
        array = _cast_input(array, dtype, name, InputError)
    return _check_shape(node, array)


def _as_array(node, value):
    """value as an array; NumPy refuses a ragged nested sequence with a message that names no
    input, so the refusal names it and the shape it expects."""
    try:
        return numpy.asarray(value)
    except ValueError as error:
        raise InputError(f"input {node.name!r} expects an array of shape "
                         f"{format_shape(node.shape)}, got a ragged nested sequence (its lists "
                         f"differ in length; NumPy: {error})") from None


def _check_shape(node, array):
    if array.ndim != len(node.shape) or any(
        d is not None and d != a for d, a in zip(node.shape, array.shape)
    ):
        raise InputError(
            f"input {node.name!r} expects shape {format_shape(node.shape)}, "
            f"got {format_shape(array.shape)}"
        )
    return array


def _cast_input(array, dtype, name, error=ValueError):
    """`array` as an input's declared `dtype`, rounded as NumPy rounds, but never a number
    changed beyond rounding: a finite number that would overflow to ±inf, or an integer outside
    an integer input's range (NumPy would wrap it around), raises `error` naming the input.
    Underflow to 0 (or a denormal) is rounding and passes; NaN, ±inf and -0.0 pass as they are.
    Kinds NumPy does not cast 'same_kind' (floats into an integer input) raise its TypeError
    (`bind` refuses them first, by name). Generated modules hold this very text (their NumPy is
    `numpy`), so a saved module converts its inputs as `fn` does."""
    if array.dtype == dtype:
        return array
    exact = numpy.can_cast(array.dtype, dtype)  # every value fits: nothing to check
    target = numpy.dtype(dtype)
    integers = target.kind in "iu" and array.dtype.kind in "iu"
    if integers and not exact:
        info = numpy.iinfo(target)  # checked before the cast, which would wrap silently
        outside = numpy.extract((array < info.min) | (array > info.max), array)
        if outside.size:
            raise error(f"input {name!r} is {target}: value {outside[0]} does not fit its "
                        f"range [{info.min}, {info.max}]")
    casting = "unsafe" if integers else "same_kind"  # int into uint: in range, checked above
    with numpy.errstate(over="ignore"):  # an overflow is refused below, naming the input
        result = array.astype(target, casting=casting)
    if not exact and target.kind == "f" and result.size and not (  # two passes, no temporary:
            numpy.isfinite(result.max()) and numpy.isfinite(result.min())):  # inf or NaN? look
        overflowed = numpy.extract(numpy.isinf(result) & numpy.isfinite(array), array)
        if overflowed.size:
            largest = numpy.finfo(target).max.item()
            raise error(f"input {name!r} is {target}: value {overflowed[0]} overflows it "
                        f"(its largest finite value is {largest:g}) and would become inf")
    return result
