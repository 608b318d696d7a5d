"""Logical and bitwise ops, PyTorch's names and NumPy's semantics (they agree).

The logical ops read any dtype as truth values (nonzero, NaN included, is true) and give bool;
the bitwise ops take integers and bools in NumPy's promoted dtype; the shifts take integers
only, and give 0 (left) or the sign (right) where the count is negative or at least the width,
as NumPy and PyTorch. None passes a gradient: their outputs are steps of their inputs, as the
comparisons'. The SymPy forms are graphdl's functions (`graphdl.ops.scalar`), spelled per
target.
"""

from __future__ import annotations

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import describe
from graphdl.lazy import scalar
from graphdl.ops.elementwise import boolean, elementwise, promote


def _integral(opname, bools):
    """promote, refusing floats (and bools, where `bools` is False) naming the operand."""
    kinds = "biu" if bools else "iu"
    expected = "integer or bool" if bools else "integer"

    def rule(inputs, attrs):
        for x in inputs:
            if x.dtype.kind not in kinds:
                raise GraphError(f"{opname} expects {expected} input, got {describe(x)} of dtype "
                                 f"{x.dtype}; convert it first with gd.cast(x, 'int64')")
        dtype = promote(inputs, attrs)
        if dtype.kind not in kinds:  # uint64 with a signed integer: NumPy gives float64
            operands = " and ".join(f"{describe(x)} ({x.dtype})" for x in inputs)
            raise GraphError(f"{opname}: {operands} have no common integer dtype (NumPy's "
                             f"promotion gives {dtype}); cast one of them first")
        return dtype
    return rule


def _operator(name, function, numpy_name, dtype_rule, arity=2):
    """An operator whose SymPy form is `function` (a name in `graphdl.ops.scalar`) of its
    operands, printed `numpy.<numpy_name>(...)`, with no gradient."""
    impl = getattr(np, numpy_name)
    if arity == 1:
        return elementwise(name, lambda a: getattr(scalar, function)(a),
                           lambda a: f"numpy.{numpy_name}({a})", impl, lambda n, g: [None],
                           dtype_rule)
    return elementwise(name, lambda a, b: getattr(scalar, function)(a, b),
                       lambda a, b: f"numpy.{numpy_name}({a}, {b})", impl,
                       lambda n, g: [None, None], dtype_rule)


LOGICAL_AND = _operator("logical_and", "LogicalAnd", "logical_and", boolean)
LOGICAL_OR = _operator("logical_or", "LogicalOr", "logical_or", boolean)
LOGICAL_XOR = _operator("logical_xor", "LogicalXor", "logical_xor", boolean)
LOGICAL_NOT = _operator("logical_not", "LogicalNot", "logical_not", boolean, arity=1)

BITWISE_AND = _operator("bitwise_and", "BitwiseAnd", "bitwise_and",
                        _integral("bitwise_and", bools=True))
BITWISE_OR = _operator("bitwise_or", "BitwiseOr", "bitwise_or",
                       _integral("bitwise_or", bools=True))
BITWISE_XOR = _operator("bitwise_xor", "BitwiseXor", "bitwise_xor",
                        _integral("bitwise_xor", bools=True))
BITWISE_NOT = _operator("bitwise_not", "BitwiseNot", "invert",
                        _integral("bitwise_not", bools=True), arity=1)
BITWISE_LEFT_SHIFT = _operator("bitwise_left_shift", "LeftShift", "left_shift",
                               _integral("bitwise_left_shift", bools=False))
BITWISE_RIGHT_SHIFT = _operator("bitwise_right_shift", "RightShift", "right_shift",
                                _integral("bitwise_right_shift", bools=False))

logical_and, logical_or, logical_xor, logical_not = (LOGICAL_AND, LOGICAL_OR, LOGICAL_XOR,
                                                     LOGICAL_NOT)
bitwise_and, bitwise_or, bitwise_xor, bitwise_not = (BITWISE_AND, BITWISE_OR, BITWISE_XOR,
                                                     BITWISE_NOT)
bitwise_left_shift, bitwise_right_shift = BITWISE_LEFT_SHIFT, BITWISE_RIGHT_SHIFT
