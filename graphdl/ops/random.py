"""Random numbers from an explicit key: `random_uniform(key, shape)` draws the same numbers for
the same key on every backend (a counter-based generator, `runtime._random_uniform`), so a
compiled training step that drops out with a fed key is deterministic and reproducible; the
caller feeds a new key per step. A draw has no gradient."""

from __future__ import annotations

import numbers

import numpy as np

from graphdl import runtime
from graphdl.errors import GraphError
from graphdl.ir import Node, describe
from graphdl.opdef import OpDef, register
from graphdl.ops import leaf

DTYPES = ("float32", "float64")


def _infer(inputs, attrs):
    shape = inputs[1].shape if len(inputs) > 1 else attrs["shape"]
    return shape, np.dtype(attrs["dtype"])


def _impl(key, like=None, shape=None, dtype="float32"):
    return runtime._random_uniform(key, like.shape if like is not None else shape, np.dtype(dtype))


# random_uniform: element i (C order) of the output is the generator's number for (key, i);
# its shape is an attribute or that of a second input read only for its shape.
RANDOM_UNIFORM = register(OpDef(
    "random_uniform", infer=_infer, impl=_impl, shape_only=(1,),
    pullback=lambda n, g: [None] * len(n.inputs),
    closed_form="a draw of a generator, no function of its inputs' values that SymPy can write",
    kinks="constant", narration="no gradient flows through it: the key is an integer",
))


def random_key(key, what):
    """The key as a 0-d integer node: a Python int (a constant int64, or uint64 beyond int64's
    range) or a fed integer scalar."""
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        if not -2**63 <= key < 2**64:
            raise GraphError(f"{what}: key {key} does not fit in 64 bits")
        return leaf.constant(np.asarray(key, "int64" if key < 2**63 else "uint64"))
    if not isinstance(key, Node) or key.dtype.kind not in "iu" or key.shape != ():
        shown = describe(key) if isinstance(key, Node) else repr(key)
        raise GraphError(f"{what}: key {shown} must be an integer scalar (a Python int or a 0-d "
                         f"integer input)")
    return key


def random_uniform(key, shape, dtype="float32"):
    """Numbers uniform in [0, 1) of `shape` (a tuple, or a node whose shape to take) and
    `dtype` (float32: 24 random bits each; float64: 53), the same for the same key on every
    backend and different for different keys; element i (C order) depends on (key, i) only.
    `key`: a Python int or a 0-d integer input, fed anew for each draw wanted."""
    key = random_key(key, "random_uniform")
    dt = leaf.check_dtype(dtype, "random_uniform")
    if dt.name not in DTYPES:
        raise GraphError(f"random_uniform: dtype must be one of {', '.join(DTYPES)}, got {dt}")
    if isinstance(shape, Node):
        return RANDOM_UNIFORM(key, shape, dtype=dt.name)
    shape = (shape,) if isinstance(shape, numbers.Integral) else shape
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise GraphError(f"random_uniform: shape must be a tuple of non-negative ints or a node, "
                         f"got {shape!r}")
    return RANDOM_UNIFORM(key, shape=tuple(int(d) for d in shape), dtype=dt.name)
