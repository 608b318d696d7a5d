"""The declaration API's operators: Python arithmetic on nodes builds nodes.

Python numbers mix with nodes on either side and are weakly typed, as in NumPy 2
(`x * 2.0` stays float32). `==` keeps its identity meaning (nodes are dict keys); use
`gd.equal` / `gd.not_equal` for elementwise comparison. `& | ^ ~ << >>` are the bitwise
ops, as PyTorch's (on bools, `&` `|` `^` `~` are logical).
"""

from __future__ import annotations

from graphdl.ir import Node
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


_OPERATORS = {
    "__add__": lambda a, b: ew.ADD(a, b),
    "__radd__": lambda a, b: ew.ADD(b, a),
    "__sub__": lambda a, b: ew.SUB(a, b),
    "__rsub__": lambda a, b: ew.SUB(b, a),
    "__mul__": lambda a, b: ew.MUL(a, b),
    "__rmul__": lambda a, b: ew.MUL(b, a),
    "__truediv__": lambda a, b: ew.DIV(a, b),
    "__rtruediv__": _rtruediv,
    "__pow__": ew.pow,
    "__rpow__": lambda a, b: ew.POWER(b, a),
    "__floordiv__": ew.floor_divide,
    "__rfloordiv__": lambda a, b: ew.floor_divide(b, a),
    "__mod__": ew.remainder,
    "__rmod__": lambda a, b: ew.remainder(b, a),
    "__matmul__": mm.matmul,
    "__rmatmul__": lambda a, b: mm.matmul(b, a),
    "__neg__": lambda a: ew.NEG(a),
    "__pos__": lambda a: a,
    "__lt__": lambda a, b: ew.LESS(a, b),
    "__le__": lambda a, b: ew.LESS_EQUAL(a, b),
    "__gt__": lambda a, b: ew.GREATER(a, b),
    "__ge__": lambda a, b: ew.GREATER_EQUAL(a, b),
    "__and__": lambda a, b: lg.BITWISE_AND(a, b),
    "__rand__": lambda a, b: lg.BITWISE_AND(b, a),
    "__or__": lambda a, b: lg.BITWISE_OR(a, b),
    "__ror__": lambda a, b: lg.BITWISE_OR(b, a),
    "__xor__": lambda a, b: lg.BITWISE_XOR(a, b),
    "__rxor__": lambda a, b: lg.BITWISE_XOR(b, a),
    "__invert__": lambda a: lg.BITWISE_NOT(a),
    "__lshift__": lambda a, b: lg.BITWISE_LEFT_SHIFT(a, b),
    "__rlshift__": lambda a, b: lg.BITWISE_LEFT_SHIFT(b, a),
    "__rshift__": lambda a, b: lg.BITWISE_RIGHT_SHIFT(a, b),
    "__rrshift__": lambda a, b: lg.BITWISE_RIGHT_SHIFT(b, a),
    "__getitem__": getitem,
}

for _name, _fn in _OPERATORS.items():
    setattr(Node, _name, _fn)

Node.T = property(lambda self: mv.transpose(self))
Node.reshape = lambda self, *shape: mv.reshape(self, shape[0] if len(shape) == 1 else shape)
Node.sum = lambda self, axis=None, keepdims=False: rd.sum(self, axis, keepdims)
Node.mean = lambda self, axis=None, keepdims=False: rd.mean(self, axis, keepdims)
Node.astype = lambda self, dtype: ew.cast(self, dtype)
