"""Leaves of the graph: placeholders, constants, and values that depend only on a shape."""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import ConstValue, Node, describe, make_node
from graphdl.lazy import sympy
from graphdl.opdef import OpDef, register

DTYPES = ("float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16",
          "uint32", "uint64", "bool")  # NumPy's real numeric dtypes


def check_dtype(dtype, what):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise GraphError(f"{what}: unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if dt not in _SUPPORTED:
        raise GraphError(
            f"{what}: unsupported dtype {dt.name!r}; expected one of {', '.join(DTYPES)}")
    return dt


_SUPPORTED = {np.dtype(d) for d in DTYPES}


# input: a placeholder fed at call time; None dimensions are bound then (e.g. the batch).
INPUT = register(OpDef(
    "input", kind="leaf",
    infer=lambda inputs, a: (a["shape"], a["dtype"]),
    impl=None,
))


def input(name, shape=(), dtype="float32"):
    """Declare a placeholder called `name`, fed by that name when the graph is run."""
    if not isinstance(name, str) or not name:
        raise GraphError(f"input name must be a non-empty string, got {name!r}")
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise GraphError(f"input {name!r}: shape must be a tuple of ints or None, got {shape!r}")
    for d in shape:
        if d is not None and (not isinstance(d, numbers.Integral) or isinstance(d, bool) or d < 0):
            raise GraphError(
                f"input {name!r}: shape must hold non-negative ints or None, got {shape!r}"
            )
    shape = tuple(None if d is None else int(d) for d in shape)
    dt = check_dtype(dtype, f"input {name!r}")
    node = make_node(INPUT, (), {"name": name, "shape": shape, "dtype": dt.name})
    node.name = name
    return node


# const: a literal array, keyed by dtype and bytes so that 0.0 and -0.0 stay distinct.
CONST = register(OpDef(
    "const", kind="leaf",
    infer=lambda inputs, a: (a["value"].array.shape, a["value"].array.dtype),
    impl=None,
))


def constant(value, dtype=None):
    """A constant node holding `value` (copied), optionally converted to `dtype`."""
    if type(value) in (int, float, bool) and dtype is not None:
        return _scalar_constant(type(value), value.hex() if type(value) is float else value,
                                np.dtype(dtype))
    array = np.asarray(value, dtype=None if dtype is None else np.dtype(dtype))
    check_dtype(array.dtype, "constant")
    return make_node(CONST, (), {"value": ConstValue(array)})


@functools.lru_cache(maxsize=4096)
def _scalar_constant(kind, key, dtype):
    """Weak scalars recur constantly (every `+ 1`); keyed by type and exact bits (0.0 vs -0.0)."""
    value = float.fromhex(key) if kind is float else key
    return constant(np.asarray(value, dtype=dtype))


def weak_dtype(value, other):
    """The dtype a Python number takes next to an array of dtype `other` (NumPy 2's rules)."""
    if isinstance(value, bool):
        return other
    if isinstance(value, numbers.Integral):
        return np.dtype("int64") if other == np.bool_ else other
    if other.kind == "f":
        return other
    return np.dtype("float64")


def lift_all(values):
    """Turn the operands of an op into nodes: Python numbers adopt a node operand's dtype."""
    nodes = [v for v in values if isinstance(v, Node)]
    like = next((v for v in nodes if v.dtype != np.bool_), nodes[0] if nodes else None)
    out = []
    for v in values:
        if isinstance(v, Node):
            out.append(v)
        elif (like is not None and isinstance(v, (bool, int, float))
              and not isinstance(v, np.generic)):
            out.append(_weak_constant(v, like))
        else:
            out.append(constant(v))
    return tuple(out)


def _weak_constant(value, like):
    """A Python number next to node `like`, in the dtype NumPy 2 gives it; an int that the dtype
    cannot hold is refused (NumPy raises OverflowError at run time, e.g. `uint8 - (-1)`)."""
    dtype = weak_dtype(value, like.dtype)
    if dtype.kind in "iu" and not isinstance(value, bool):
        info = np.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise GraphError(
                f"the Python integer {value} does not fit the dtype {dtype} of {describe(like)} "
                f"(range {info.min}..{info.max}); convert first, e.g. gd.cast(x, 'int64')"
            )
    return constant(value, dtype)


# zeros_like: zeros with x's shape and dtype (x's values are not read).
ZEROS_LIKE = register(OpDef(
    "zeros_like", shape_only=(0,),
    infer=lambda inputs, a: (inputs[0].shape, inputs[0].dtype),
    impl=lambda x: np.zeros_like(x),
    pullback=lambda node, g: [None],
    narration="no gradient flows through it", kinks="constant",
    closed_form=lambda node, args: sympy.Integer(0),
))


def zeros_like(x):
    return ZEROS_LIKE(x)


# size: the number of elements of x along `axes` (what mean divides by), counted exactly and
# rounded once to `dtype`, a float of 32 bits or more: a count in x's own dtype would overflow
# (256 in uint8, 65,505 in float16). Folds to a constant once x's shape is known.
SIZE = register(OpDef(
    "size", shape_only=(0,),
    infer=lambda inputs, a: ((), np.dtype(a["dtype"])),
    impl=lambda x, axes, dtype: np.asarray(math.prod(x.shape[i] for i in axes), dtype=dtype),
    pullback=lambda node, g: [None],
    narration="no gradient flows through it", kinks="constant",
    closed_form=lambda node, args: sympy.Integer(1),  # in a scalar graph: the size of a scalar
))


def size(x, axes, dtype):
    dt = np.dtype(dtype)
    if dt.kind != "f" or dt.itemsize < 4:
        raise GraphError(f"size of {describe(x)}: the count needs float32 or float64, got {dt}")
    return SIZE(x, axes=tuple(axes), dtype=dt.name)

