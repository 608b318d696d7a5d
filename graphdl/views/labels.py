"""Gate labels: the symbol a node is drawn with, its op's `label` (`σ`, `Σ axis 1`), with the
constant-like operands it reads folded in (`x + 1` is the gate `+1`, `-x` the gate `*−1`): a
constant, a `size` or a `zeros_like` is drawn as no gate of its own."""

from __future__ import annotations

import math

import numpy as np

from graphdl.opdef import REGISTRY
from graphdl.ops import leaf
from graphdl.views.numbers import number, shape_text


def gate_label(node, consts):
    """The lecture's symbol for `node` (its op's `label`), constants folded in: +1, *−1, 1/x,
    x², Σ axis 1. A built-in's plain label is its whole symbol (`where(c, a, 0)` is the gate
    `where`); a user op's shows the constants folded into it: `mix(·, 2)`."""
    label = node.op.label
    folded = {k: const_text(v) for k, v in consts.items()}
    if callable(label):
        return label(node, folded)
    if not folded or REGISTRY.get(node.op.name) is node.op:
        return label
    shown = (folded.get(k, "·") for k in range(len(node.inputs)))
    return f"{label}({', '.join(shown)})"


def const_text(array):
    """A folded constant as its gate shows it: 2, −1, [0, 1, 2], C(3,4)."""
    if isinstance(array, str):  # a value known only at call time, by its symbol
        return array
    a = np.asarray(array)
    if a.ndim == 0 or (a.size == 1):
        return number(a.reshape(()))
    if a.size <= 4:
        return "[" + ", ".join(number(v) for v in a.ravel()) + "]"
    return f"C{shape_text(a.shape)}"


# The symbol of a folded operand whose value is known only at call time (a batch of None).
UNKNOWN = {leaf.SIZE: "N"}


def _size_value(node):
    dims = [node.inputs[0].shape[a] for a in node.attrs["axes"]]
    return None if None in dims else np.asarray(math.prod(dims))


# Operands folded into their consumer's label, and their value when no evaluation gave one.
CONST_LIKE = {
    leaf.CONST: lambda node: node.attrs["value"].array,
    leaf.SIZE: _size_value,
    leaf.ZEROS_LIKE: lambda node: np.asarray(0.0),
}


def const_value(node, values):
    """The value of a constant-like operand (a constant, a `size`, a `zeros_like`), or None."""
    if id(node) in values:
        return values[id(node)]
    return CONST_LIKE[node.op](node)


def is_const_like(node):
    """Whether `node` is folded into the gates that read it rather than drawn on its own."""
    return node.op in CONST_LIKE
