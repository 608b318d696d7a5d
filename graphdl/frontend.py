"""The declaration API's operators: Python arithmetic on nodes builds nodes.

Python numbers mix with nodes on either side and are weakly typed, as in NumPy 2 (`x * 2.0`
stays float32); so do NumPy arrays (`bias + x` is a node, the array a constant). `==` keeps its
identity meaning (nodes are dict keys); use `gd.equal` / `gd.not_equal` for elementwise
comparison. `& | ^ ~ << >>` are the bitwise ops, as PyTorch's (on bools, `&` `|` `^` `~` are
logical).
"""

from __future__ import annotations

from graphdl.ir import Node, describe
from graphdl.ops import elementwise as ew
from graphdl.ops import logic as lg
from graphdl.ops import matmul as mm
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd
from graphdl.ops.getitem import getitem


def _rtruediv(x, other):
    """other / x: 1 / x is the lecture's reciprocal gate; anything else a division."""
    if not isinstance(other, Node) and isinstance(other, (int, float)) and other == 1:
        return ew.RECIPROCAL(x)
    return ew.DIV(other, x)


def _both(name, op):
    """`a <name> b` and its reflected form (Python's __r<name>__ gets the operands swapped)."""
    return {f"__{name}__": lambda a, b: op(a, b), f"__r{name}__": lambda a, b: op(b, a)}


_OPERATORS = {
    **_both("add", ew.ADD),
    **_both("sub", ew.SUB),
    **_both("mul", ew.MUL),
    "__truediv__": lambda a, b: ew.DIV(a, b),
    "__rtruediv__": _rtruediv,
    "__pow__": ew.pow,
    "__rpow__": lambda a, b: ew.POWER(b, a),
    **_both("floordiv", ew.floor_divide),
    **_both("mod", ew.remainder),
    **_both("matmul", mm.matmul),
    **_both("and", lg.BITWISE_AND),
    **_both("or", lg.BITWISE_OR),
    **_both("xor", lg.BITWISE_XOR),
    **_both("lshift", lg.BITWISE_LEFT_SHIFT),
    **_both("rshift", lg.BITWISE_RIGHT_SHIFT),
    "__neg__": lambda a: ew.NEG(a),
    "__pos__": lambda a: a,
    "__invert__": lambda a: lg.BITWISE_NOT(a),
    "__lt__": lambda a, b: ew.LESS(a, b),
    "__le__": lambda a, b: ew.LESS_EQUAL(a, b),
    "__gt__": lambda a, b: ew.GREATER(a, b),
    "__ge__": lambda a, b: ew.GREATER_EQUAL(a, b),
    "__getitem__": getitem,
}

for _name, _fn in _OPERATORS.items():
    setattr(Node, _name, _fn)


def _no_array(node, dtype=None, copy=None):
    raise TypeError(f"{describe(node)} is a symbolic graph node, not an array: its value comes "
                    f"from gd.evaluate or a compiled function")


# An array on the left (`array + node`, `array < node`) would otherwise apply the operator per
# element, silently making an object array of scalar nodes; with NumPy's ufuncs declined it
# calls the node's reflected operator. Anything else that asks a node for its array (np.asarray,
# np.where) is an error, not an object array.
Node.__array_ufunc__ = None
Node.__array__ = _no_array

Node.T = property(lambda self: mv.transpose(self))
Node.reshape = lambda self, *shape: mv.reshape(self, shape[0] if len(shape) == 1 else shape)
Node.sum = lambda self, axis=None, keepdims=False: rd.sum(self, axis, keepdims)
Node.mean = lambda self, axis=None, keepdims=False: rd.mean(self, axis, keepdims)
Node.astype = lambda self, dtype: ew.cast(self, dtype)
