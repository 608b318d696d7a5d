"""graphdl -> ONNX: the graph `gd.evaluate` runs (custom ops inlined, stabilized) written with
one ONNX emitter per graphdl op, registered as the op's "onnx" facet (`op.impls["onnx"]`), at
opset 17. An elementwise op without one (a new primitive, a user's `elementwise_op`) is written
from its SymPy form, one ONNX operator per SymPy construct (`SYMPY_OPERATORS`) or a short
composition where ONNX has none (`SYMPY_COMPOSITIONS`: log2, log1p, expm1, atan2, erfc...).

Ops with an ONNX operator of their own map to it (sigmoid -> Sigmoid, softplus -> Softplus,
conv2d -> Conv). Gradient ops are written in ONNX terms: conv2d_input_grad as ConvTranspose,
conv2d_weight_grad as a Conv of x by g (batch and channel axes swapped), max-pool's gradient
through MaxPool's Indices and ScatterElements, average-pool's as a ConvTranspose by ones, and
unslice/scatter_add as scatters. ONNX operators need equal input types where NumPy promotes,
so operands are cast to the node's dtype first. Shapes that attributes or scatter positions
depend on must be static there.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from graphdl.errors import GraphError
from graphdl.ir import Node, describe, topological_order
from graphdl.lazy import sympy
from graphdl.opdef import REGISTRY, implements
from graphdl.ops import collective, conv, leaf, matmul, random, scan, sorting
from graphdl.ops import elementwise as ew
from graphdl.ops import indexing as ix
from graphdl.ops import logic as lg
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd
from graphdl.passes.optimize import prepare
from graphdl.runtime import _avg_divisor, _sum_to_axes

OPSET = 17


def emits(*ops):
    """Register an emitter, (writer, node, input names) -> output name, for `ops`."""
    return implements("onnx", *ops)


class Writer:
    """The ONNX graph being written: nodes, initializers, and a unique value name per node."""

    def __init__(self, taken=()):
        self.nodes, self.initializers, self.taken = [], [], set(taken)
        self.counts = {}  # hint -> the last suffix tried for it

    def fresh(self, hint):
        """`hint`, or `hint_k` for the first k not taken. The search for a hint resumes where
        its last one ended, so the thousandth "shape" costs one probe, not a thousand: export
        is linear in the number of names. Only a clash with a name from another hint (a user's
        `shape_3`) costs one more probe, once."""
        name, k = hint, self.counts.get(hint, 0)
        while name in self.taken:
            k += 1
            name = f"{hint}_{k}"
        self.counts[hint] = k
        self.taken.add(name)
        return name

    def const(self, array, hint="c"):
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values, hint="shape"):
        return self.const(np.asarray(values, np.int64), hint)

    def emit(self, op_type, inputs, hint=None, outputs=1, **attrs):
        names = [self.fresh(f"{hint or op_type}" + (f"_{i}" if i else "")) for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=names[0], **attrs))
        return names[0] if outputs == 1 else names

    def cast(self, name, node, dtype):
        """The value `name` of `node` in `dtype` (a Cast only where the dtypes differ)."""
        if node.dtype == dtype:
            return name
        return self.emit("Cast", [name], to=helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def _static(node, what, start=0):
    """node.shape[start:], which must be known (an attribute or a scatter position needs it)."""
    if None in node.shape[start:]:
        part = "shape" if not start else f"sizes after axis {start - 1}"
        raise GraphError(f"ONNX export: {what} needs the static {part} of {describe(node)}, "
                         f"which has shape {node.shape}; declare its inputs with known sizes")
    return node.shape[start:]


def _dims(w, node, name, start=0, end=None):
    """node.shape[start:end] as an int64 vector: constant where known, else read from the value
    `name` of node at run time (a batch of unknown size)."""
    dims = node.shape[start:end]
    if None not in dims:
        return w.ints(dims)
    return w.emit("Shape", [name], "shape", start=start, **({} if end is None else {"end": end}))


def _count(w, node, name):
    """The number of node's elements, as a vector of one (a flat scatter's length)."""
    if None not in node.shape:
        return w.ints([int(np.prod(node.shape))])
    return w.emit("ReduceProd", [_dims(w, node, name)], "count", keepdims=1)


# ---------------------------------------------------------------- elementwise
def _same_type(w, node, names, dtype=None):
    dtype = node.dtype if dtype is None else dtype
    return [w.cast(n, i, dtype) for n, i in zip(names, node.inputs)]


def _direct(onnx_op, compare=False):
    """The ONNX operator of the same meaning, on operands cast to one type (the promoted
    input type for a comparison, the node's otherwise)."""
    def emit(w, node, names):
        dtype = ew.promote(node.inputs, {}) if compare else None
        return w.emit(onnx_op, _same_type(w, node, names, dtype), node.name)
    return emit


for _op, _onnx in {ew.ADD: "Add", ew.SUB: "Sub", ew.MUL: "Mul", ew.DIV: "Div",
                   ew.MAXIMUM: "Max", ew.MINIMUM: "Min", matmul.MATMUL: "MatMul",
                   ew.NEG: "Neg", ew.RECIPROCAL: "Reciprocal", ew.EXP: "Exp", ew.LOG: "Log",
                   ew.SQRT: "Sqrt", ew.TANH: "Tanh", ew.SIGMOID: "Sigmoid",
                   ew.SOFTPLUS: "Softplus", ew.RELU: "Relu", ew.ABS: "Abs"}.items():
    emits(_op)(_direct(_onnx))

for _op, _onnx in {ew.GREATER: "Greater", ew.GREATER_EQUAL: "GreaterOrEqual", ew.LESS: "Less",
                   ew.LESS_EQUAL: "LessOrEqual", ew.EQUAL: "Equal"}.items():
    emits(_op)(_direct(_onnx, compare=True))


@emits(ew.NOT_EQUAL)
def _not_equal(w, node, names):
    return w.emit("Not", [ew.EQUAL.impls["onnx"](w, node, names)], node.name)


# ONNX's logical operators take bools: the operands as truth values (Cast: nonzero is true)
LOGICAL = {lg.LOGICAL_AND: "And", lg.LOGICAL_OR: "Or", lg.LOGICAL_XOR: "Xor",
           lg.LOGICAL_NOT: "Not", lg.BITWISE_AND: "And", lg.BITWISE_OR: "Or",
           lg.BITWISE_XOR: "Xor", lg.BITWISE_NOT: "Not"}


@emits(*LOGICAL)
def _logical(w, node, names):
    """The bitwise ops of bools are the logical ones; of integers opset 17 has none (BitwiseAnd
    and the others are opset 18)."""
    if node.op.name.startswith("bitwise") and node.dtype != np.bool_:
        raise GraphError(f"ONNX export: {node.op.name} ({describe(node)}) of {node.dtype}: opset "
                         f"{OPSET} has bitwise operators of bools only (And, Or, Xor, Not)")
    return w.emit(LOGICAL[node.op], _same_type(w, node, names, np.dtype(bool)), node.name)


@emits(lg.BITWISE_LEFT_SHIFT, lg.BITWISE_RIGHT_SHIFT)
def _shift(w, node, names):
    """BitShift, of unsigned integers only in ONNX; there a count at least the width is
    undefined (graphdl's shifts give 0, as NumPy's)."""
    if node.dtype.kind != "u":
        raise GraphError(f"ONNX export: {node.op.name} ({describe(node)}) of {node.dtype}: "
                         f"ONNX's BitShift shifts unsigned integers only")
    direction = "LEFT" if node.op is lg.BITWISE_LEFT_SHIFT else "RIGHT"
    return w.emit("BitShift", _same_type(w, node, names), node.name, direction=direction)


@emits(ew.POW)
def _pow(w, node, names):
    (x,) = _same_type(w, node, names)
    return w.emit("Pow", [x, w.const(np.asarray(node.attrs["exponent"], node.dtype))], node.name)


@emits(ew.FMOD)
def _fmod(w, node, names):
    """ONNX's Mod with fmod=1 is C's fmod, of integers too."""
    return w.emit("Mod", _same_type(w, node, names), node.name, fmod=1)


@emits(ew.WHERE)
def _where(w, node, names):
    c, a, b = names
    return w.emit("Where", [c, w.cast(a, node.inputs[1], node.dtype),
                            w.cast(b, node.inputs[2], node.dtype)], node.name)


@emits(ew.CAST)
def _cast(w, node, names):
    return w.cast(names[0], node.inputs[0], node.dtype)


# The ONNX operator of each SymPy function an elementwise op's form may use (by SymPy's name).
SYMPY_OPERATORS = {"exp": "Exp", "log": "Log", "tanh": "Tanh", "erf": "Erf", "Abs": "Abs",
                   "sin": "Sin", "cos": "Cos", "floor": "Floor", "ceiling": "Ceil",
                   "sign": "Sign", "Sigmoid": "Sigmoid", "Softplus": "Softplus", "Relu": "Relu",
                   "Max": "Max", "Min": "Min", "Add": "Add", "Mul": "Mul",
                   "tan": "Tan", "asin": "Asin", "acos": "Acos", "atan": "Atan", "sinh": "Sinh",
                   "cosh": "Cosh", "asinh": "Asinh", "acosh": "Acosh", "atanh": "Atanh"}


def _const(w, node, value):
    return w.const(np.asarray(value, node.dtype), "c")


def _log_base(base):
    """log x / log base: within a few ulps of log2 and log10."""
    def emit(w, node, args, hint):
        return w.emit("Div", [w.emit("Log", args), _const(w, node, math.log(base))], hint)
    return emit


def _log1p(w, node, args, hint):
    """log u · x/(u − 1), u = 1 + x rounded (Goldberg's): within a few ulps where log(1 + x)
    loses x; x itself where u − 1 is 0 or +inf."""
    (x,) = args
    u = w.emit("Add", [_const(w, node, 1), x])
    d = w.emit("Sub", [u, _const(w, node, 1)])
    edge = w.emit("Or", [w.emit("Equal", [d, _const(w, node, 0)]),
                         w.emit("Equal", [d, _const(w, node, math.inf)])])
    return w.emit("Where", [edge, x, w.emit("Mul", [w.emit("Log", [u]), w.emit("Div", [x, d])])],
                  hint)


def _expm1(w, node, args, hint):
    """(u − 1) · x/log u, u = e^x rounded (Kahan's): within a few ulps where e^x − 1 loses x;
    x where u is 1, u − 1 where it is −1 or +inf."""
    (x,) = args
    u = w.emit("Exp", [x])
    d = w.emit("Sub", [u, _const(w, node, 1)])
    edge = w.emit("Or", [w.emit("Equal", [d, _const(w, node, -1)]),
                         w.emit("Equal", [d, _const(w, node, math.inf)])])
    ratio = w.emit("Mul", [d, w.emit("Div", [x, w.emit("Log", [u])])])
    return w.emit("Where", [w.emit("Equal", [u, _const(w, node, 1)]), x,
                            w.emit("Where", [edge, d, ratio])], hint)


def _negative(w, node, x):
    """x < 0, −0 included (1/−0 is −inf)."""
    zero = _const(w, node, 0)
    return w.emit("Or", [w.emit("Less", [x, zero]),
                         w.emit("Less", [w.emit("Reciprocal", [x]), zero])])


def _atan2(w, node, args, hint):
    """atan(a/b), ± π where b < 0 (of a's sign), C's at the edges: a/b is ±1 where both are
    infinite, a (±0) where both are zero; IEEE's a/b does the rest (a/±0 = ±inf)."""
    a, b = args
    both_inf = w.emit("And", [w.emit("IsInf", [a]), w.emit("IsInf", [b])])
    both_zero = w.emit("And", [w.emit("Equal", [a, _const(w, node, 0)]),
                               w.emit("Equal", [b, _const(w, node, 0)])])
    ratio = w.emit("Where", [both_inf, w.emit("Mul", [w.emit("Sign", [a]), w.emit("Sign", [b])]),
                             w.emit("Where", [both_zero, a, w.emit("Div", [a, b])])])
    half_turn = w.emit("Where", [_negative(w, node, a), _const(w, node, -math.pi),
                                 _const(w, node, math.pi)])
    angle = w.emit("Atan", [ratio])
    return w.emit("Where", [_negative(w, node, b), w.emit("Add", [angle, half_turn]), angle],
                  hint)


def _erfc(w, node, args, hint):
    """1 − erf: ONNX has no erfc. Within an ulp of 1 absolutely, but 0 from x ≈ 6 (float64; 4
    in float32), where graphdl's erfc keeps its relative precision (docs/ONNX.md)."""
    return w.emit("Sub", [_const(w, node, 1), w.emit("Erf", args)], hint)


# SymPy functions without an ONNX operator, written as compositions: (writer, node, ONNX names
# of the arguments, hint) -> name.
SYMPY_COMPOSITIONS = {"log2": _log_base(2), "log10": _log_base(10), "log1p": _log1p,
                      "expm1": _expm1, "atan2": _atan2, "erfc": _erfc}


def _from_sym(w, node, names):
    """An elementwise op written from its SymPy form over operands cast to its dtype: one ONNX
    operator per SymPy construct, constants in the node's dtype."""
    if node.dtype.kind != "f":
        raise GraphError(f"ONNX export: {node.op.name!r} ({describe(node)}) has no ONNX emitter, "
                         f"and only floating-point ops are written from their SymPy form")
    symbols = sympy.symbols(f"a0:{len(names)}")
    operands = dict(zip(symbols, _same_type(w, node, names)))
    return _sym_value(w, node, node.op.sym(*symbols, **node.attrs), operands, node.name)


def _sym_value(w, node, expr, operands, hint):
    if expr in operands:
        return operands[expr]
    if expr.is_Number:
        return w.const(np.asarray(float(expr), node.dtype), "c")
    if expr.is_Pow and expr.exp in (-1, sympy.Rational(1, 2)):
        base = _sym_value(w, node, expr.base, operands, None)
        return w.emit("Reciprocal" if expr.exp == -1 else "Sqrt", [base], hint)
    args = [_sym_value(w, node, a, operands, None) for a in expr.args]
    if expr.is_Pow:
        return w.emit("Pow", args, hint)
    if type(expr).__name__ in SYMPY_COMPOSITIONS:
        return SYMPY_COMPOSITIONS[type(expr).__name__](w, node, args, hint)
    operator = SYMPY_OPERATORS.get(type(expr).__name__)
    if operator is None:
        raise GraphError(f"ONNX export: {node.op.name!r} ({describe(node)}): its SymPy form uses "
                         f"{type(expr).__name__}, which has no ONNX operator here "
                         f"(SYMPY_OPERATORS)")
    value = args[0]
    for k, arg in enumerate(args[1:]):  # Add and Mul are binary in ONNX
        value = w.emit(operator, [value, arg], hint if k == len(args) - 2 else None)
    return value if len(args) > 1 else w.emit(operator, args, hint)


@emits(ew.STOP_GRADIENT, mv.CHECK_INDEX, mv.CHECK_SHAPE)
def _identity(w, node, names):
    """stop_gradient is the identity forward; check_index's range check has no ONNX form (an
    out-of-range index fails in Gather instead), nor has check_shape's."""
    return names[0]


# ---------------------------------------------------------------- leaves
@emits(leaf.ZEROS_LIKE)
def _zeros_like(w, node, names):
    zero = numpy_helper.from_array(np.zeros(1, node.dtype))
    return w.emit("ConstantOfShape", [w.emit("Shape", names[:1])], node.name, value=zero)


@emits(leaf.SIZE)
def _size(w, node, names):
    """The count of elements over `axes`: a constant where those sizes are known, else the
    product of the input's Shape there (a mean over a batch of unknown size)."""
    x, axes = node.inputs[0], list(node.attrs["axes"])
    if all(x.shape[a] is not None for a in axes):
        return w.const(np.asarray(np.prod([x.shape[a] for a in axes]), node.dtype), "size")
    sizes = w.emit("Gather", [w.emit("Shape", names[:1]), w.ints(axes, "axes")], axis=0)
    count = w.emit("ReduceProd", [sizes], keepdims=0)
    return w.emit("Cast", [count], node.name, to=helper.np_dtype_to_tensor_dtype(node.dtype))


# ---------------------------------------------------------------- reductions
@emits(rd.SUM)
def _sum(w, node, names):
    x = w.cast(names[0], node.inputs[0], node.dtype)  # NumPy sums small integers in int64
    if not node.attrs["axes"]:
        return x
    return w.emit("ReduceSum", [x, w.ints(node.attrs["axes"], "axes")], node.name,
                  keepdims=int(node.attrs["keepdims"]))


@emits(rd.MAX, rd.MIN, rd.PROD)
def _reduce_over_axes_attribute(w, node, names):
    x = w.cast(names[0], node.inputs[0], node.dtype)  # NumPy multiplies small integers in int64
    if not node.attrs["axes"]:
        return x
    op = {rd.MAX: "ReduceMax", rd.MIN: "ReduceMin", rd.PROD: "ReduceProd"}[node.op]
    return w.emit(op, [x], node.name, axes=list(node.attrs["axes"]),
                  keepdims=int(node.attrs["keepdims"]))


# onnxruntime's ArgMax and ArgMin take these types as one that orders their values alike
_ARG_TYPES = {np.dtype(np.bool_): np.int32, np.dtype(np.int16): np.int32,
              np.dtype(np.uint16): np.int32, np.dtype(np.uint32): np.int64}


@emits(rd.ARGMAX, rd.ARGMIN)
def _arg_extremum(w, node, names):
    x = node.inputs[0]
    values = w.cast(names[0], x, _ARG_TYPES.get(x.dtype, x.dtype))
    return w.emit("ArgMax" if node.op is rd.ARGMAX else "ArgMin", [values], node.name,
                  axis=node.attrs["axis"], keepdims=int(node.attrs["keepdims"]))


@emits(sorting.ARGSORT)
def _argsort(w, node, names):
    """The indices of a TopK of the whole axis, which puts equal elements in their order (the
    lower index first): a stable sort."""
    x, axis = node.inputs[0], node.attrs["axis"]
    values = w.cast(names[0], x, _ARG_TYPES.get(x.dtype, x.dtype))
    k = w.ints([_static(x, "argsort")[axis]], "k")
    _, indices = w.emit("TopK", [values, k], node.name, outputs=2, axis=axis,
                        largest=int(node.attrs["descending"]), sorted=1)
    return indices


# ---------------------------------------------------------------- movement
@emits(mv.RESHAPE)
def _reshape(w, node, names):
    if len(names) == 2:
        return w.emit("Reshape", [names[0], w.emit("Shape", [names[1]])], node.name)
    shape = node.attrs["shape"]
    allowzero = int(0 in shape)  # a 0 is a size, not ONNX's "copy the input's"
    return w.emit("Reshape", [names[0], w.ints(shape)], node.name, allowzero=allowzero)


@emits(mv.BROADCAST_TO)
def _broadcast_to(w, node, names):
    shape = w.emit("Shape", [names[1]]) if len(names) == 2 else w.ints(node.attrs["shape"])
    return w.emit("Expand", [names[0], shape], node.name)


@emits(mv.SUM_TO)
def _sum_to(w, node, names):
    x, like = node.inputs
    big, small = x.shape, like.shape
    if None in big or None in small:
        return _sum_to_unknown(w, node, names)
    axes = list(_sum_to_axes(big, small))
    if not axes:
        return names[0]
    total = w.emit("ReduceSum", [names[0], w.ints(axes, "axes")], keepdims=1)
    return w.emit("Reshape", [total, w.ints(small)], node.name)


def _sum_to_unknown(w, node, names):
    """sum_to where sizes are known at run time only: the axes to sum (the leading ones, and
    those where like has 1 and x not) computed from the two Shapes, then ReduceSum over them."""
    lead = node.inputs[0].ndim - node.inputs[1].ndim
    target = w.emit("Shape", names[1:])
    one = w.ints(1, "one")
    stretched = w.emit("And", [w.emit("Equal", [target, one]), w.emit(
        "Not", [w.emit("Equal", [w.emit("Shape", names[:1], start=lead), one])])])
    found = w.emit("Reshape", [w.emit("NonZero", [stretched]), w.ints([-1])])
    axes = w.emit("Concat", [w.ints(list(range(lead)), "axes"),
                             w.emit("Add", [found, w.ints(lead, "lead")])], axis=0)
    total = w.emit("ReduceSum", [names[0], axes], keepdims=1, noop_with_empty_axes=1)
    return w.emit("Reshape", [total, target], node.name)


@emits(mv.TRANSPOSE)
def _transpose(w, node, names):
    return w.emit("Transpose", names, node.name, perm=list(node.attrs["axes"]))


@emits(mv.EXPAND_DIMS)
def _expand_dims(w, node, names):
    return w.emit("Unsqueeze", [names[0], w.ints(node.attrs["axis"], "axes")], node.name)


@emits(mv.SQUEEZE)
def _squeeze(w, node, names):
    if not node.attrs["axis"]:
        return names[0]
    return w.emit("Squeeze", [names[0], w.ints(node.attrs["axis"], "axes")], node.name)


_FAR = 2**63 - 1  # ONNX clamps slice bounds as Python does; these are "to the end"


@emits(mv.SLICE)
def _slice(w, node, names):
    starts, ends, steps = [], [], []
    for start, stop, step in node.attrs["index"]:
        step = 1 if step is None else step
        starts.append((0 if step > 0 else _FAR) if start is None else start)
        ends.append((_FAR if step > 0 else -_FAR - 1) if stop is None else stop)
        steps.append(step)
    axes = list(range(len(starts)))
    return w.emit("Slice", [names[0], w.ints(starts, "starts"), w.ints(ends, "ends"),
                            w.ints(axes, "axes"), w.ints(steps, "steps")], node.name)


@emits(mv.UNSLICE)
def _unslice(w, node, names):
    """Zeros of like's shape with g written at the slice's positions (flat, then reshaped)."""
    shape = _static(node.inputs[1], "unslice")
    index = tuple(slice(*s) for s in node.attrs["index"])
    positions = np.arange(int(np.prod(shape))).reshape(shape)[index].reshape(-1)
    zero = numpy_helper.from_array(np.zeros(1, node.dtype))
    flat = w.emit("ConstantOfShape", [w.ints([int(np.prod(shape))])], value=zero)
    g = w.emit("Reshape", [names[0], w.ints([-1])])
    spread = w.emit("ScatterElements", [flat, w.ints(positions, "positions"), g], axis=0)
    return w.emit("Reshape", [spread, w.ints(shape)], node.name)


@emits(mv.CONCATENATE)
def _concatenate(w, node, names):
    return w.emit("Concat", _same_type(w, node, names), node.name, axis=node.attrs["axis"])


@emits(mv.TAKE)
def _take(w, node, names):
    return w.emit("Gather", names, node.name, axis=node.attrs["axis"])


# ONNX has no collective: an exported model runs as one worker, where allreduce is the identity.
@emits(collective.ALLREDUCE)
def _allreduce(w, node, names):
    return w.emit("Identity", names[:1], node.name)


@emits(scan.CUMSUM)
def _cumsum(w, node, names):
    (x,) = _same_type(w, node, names)  # ONNX sums in the input's type: NumPy's widened one
    return w.emit("CumSum", [x, w.ints(node.attrs["axis"], "axis")], node.name,
                  reverse=int(node.attrs["reverse"]))


# The other scans have no ONNX operator: each is ONNX's Scan along the axis (from the end with
# reverse) with the step of NumPy's loop as its body, so it computes what the reference does.
def _scan_loop(w, node, states, inputs, body):
    """The output of a Scan along node's axis: `states`, (initial value, dtype) pairs carried
    from step to step; `inputs`, (name, dtype) pairs scanned one slice per step; body(b, states,
    slices) -> (the next states, the step's output), written by b into the loop's body."""
    b = Writer(w.taken)
    state_names = [b.fresh("state") for _ in states]
    slice_names = [b.fresh("slice") for _ in inputs]
    after, out = body(b, state_names, slice_names)
    results = [b.emit("Identity", [v], "next") for v in after] + [b.emit("Identity", [out])]
    w.taken |= b.taken

    def typed(names, pairs):
        return [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(t)),
                                              None) for n, (_, t) in zip(names, pairs)]

    graph = helper.make_graph(b.nodes, w.fresh(f"{node.op.name}_step"),
                              typed(state_names + slice_names, states + inputs),
                              typed(results, states + [(None, node.dtype)]), b.initializers)
    axis, reverse = node.attrs["axis"], int(node.attrs["reverse"])
    outputs = w.emit("Scan", [v for v, _ in states] + [x for x, _ in inputs], node.name,
                     outputs=len(states) + 1, body=graph, num_scan_inputs=len(inputs),
                     scan_input_axes=[axis] * len(inputs),
                     scan_input_directions=[reverse] * len(inputs), scan_output_axes=[axis],
                     scan_output_directions=[reverse])
    return outputs[-1]


def _line(w, x, node, value, dtype):
    """A state of one value per line: `value` in dtype, in x's shape without node's axis."""
    axis = node.attrs["axis"]
    keep = [a for a in range(node.inputs[0].ndim) if a != axis]
    shape = w.emit("Gather", [w.emit("Shape", [x]), w.ints(keep, "keep")])
    fill = numpy_helper.from_array(np.asarray([value], dtype))
    return w.emit("ConstantOfShape", [shape], value=fill), dtype


@emits(scan.CUMPROD)
def _cumprod(w, node, names):
    (x,) = _same_type(w, node, names)  # NumPy multiplies small integers in int64
    def step(b, s, v):
        y = b.emit("Mul", [s[0], v[0]])
        return [y], y
    return _scan_loop(w, node, [_line(w, x, node, 1, node.dtype)], [(x, node.dtype)], step)


def _logaddexp(b, a, x, dtype):
    """log(e^a + e^x) as NumPy's logaddexp: the larger plus log(1 + e^-|a − x|); equal ones
    (infinities among them) plus log 2."""
    tail = b.emit("Log", [b.emit("Add", [b.const(np.asarray(1, dtype)), b.emit("Exp", [
        b.emit("Neg", [b.emit("Abs", [b.emit("Sub", [a, x])])])])])])
    spread = b.emit("Add", [b.emit("Max", [a, x]), tail])
    twice = b.emit("Add", [a, b.const(np.asarray(np.log(2), dtype))])
    return b.emit("Where", [b.emit("Equal", [a, x]), twice, spread])


@emits(scan.LOGCUMSUMEXP)
def _logcumsumexp(w, node, names):
    def step(b, s, v):
        y = _logaddexp(b, s[0], v[0], node.dtype)
        return [y], y
    return _scan_loop(w, node, [_line(w, names[0], node, -np.inf, node.dtype)],
                      [(names[0], node.dtype)], step)


@emits(scan.LINEAR_SCAN)
def _linear_scan(w, node, names):
    """s = g at the first step (a flag carried as a state), g + a · s after it."""
    def step(b, s, v):
        a, g = v
        later = b.emit("Add", [g, b.emit("Mul", [a, s[1]])])
        y = b.emit("Where", [s[0], g, later])
        return [b.const(np.asarray(False), "started"), y], y
    start = (w.const(np.asarray(True), "first"), np.bool_)
    return _scan_loop(w, node, [start, _line(w, names[1], node, 0, node.dtype)],
                      [(n, node.dtype) for n in names], step)


@emits(scan.CUMARGMAX, scan.CUMARGMIN)
def _running_arg(w, node, names):
    """The running extremum, its index and the position carried from step to step: an element
    takes the extremum's place where it is NaN, or the extremum is not NaN and the element is
    at least as large (small): the one seen last among ties, as PyTorch's."""
    x, axis = node.inputs[0], node.attrs["axis"]
    largest = node.op is scan.CUMARGMAX
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.int64)
    values = w.cast(names[0], x, dtype)
    worst = (-np.inf if largest else np.inf) if dtype.kind == "f" else (
        np.iinfo(dtype).min if largest else np.iinfo(dtype).max)
    last = w.emit("Sub", [w.emit("Gather", [w.emit("Shape", [values]), w.const(np.int64(axis))]),
                          w.const(np.int64(1))])
    position = last if node.attrs["reverse"] else w.const(np.int64(0), "first")
    step = -1 if node.attrs["reverse"] else 1

    def body(b, s, v):
        best, index, at = s
        better = b.emit("GreaterOrEqual" if largest else "LessOrEqual", [v[0], best])
        if dtype.kind == "f":
            better = b.emit("Or", [b.emit("IsNaN", [v[0]]), b.emit("And", [
                b.emit("Not", [b.emit("IsNaN", [best])]), better])])
        index = b.emit("Where", [better, at, index])
        return ([b.emit("Where", [better, v[0], best]), index,
                 b.emit("Add", [at, b.const(np.int64(step), "step")])], index)

    states = [_line(w, values, node, worst, dtype), _line(w, values, node, 0, np.int64),
              (position, np.int64)]
    return _scan_loop(w, node, states, [(values, dtype)], body)


@emits(random.RANDOM_UNIFORM)
def _random_uniform(w, node, names):
    """runtime._random_uniform's steps in uint64 Add, Mul and BitShift (ONNX wraps them modulo
    2^64 as NumPy does), over the counter Range(0, count), so the same bits."""
    shape = _static(node, "random_uniform")
    u64 = helper.np_dtype_to_tensor_dtype(np.dtype("uint64"))

    def c(value):
        return w.const(np.asarray(value, np.uint64), "u64")

    def op(kind, a, b):
        if kind in ("LEFT", "RIGHT"):
            return w.emit("BitShift", [a, c(b)], direction=kind)
        return w.emit(kind, [a, b if isinstance(b, str) else c(b)])

    def mix(z):
        z = op("Mul", op("Add", z, op("RIGHT", z, 30)), 0xBF58476D1CE4E5B9)
        z = op("Mul", op("Add", z, op("RIGHT", z, 27)), 0x94D049BB133111EB)
        return op("Add", z, op("RIGHT", z, 31))

    def swap(z):
        return op("Add", op("RIGHT", z, 32), op("LEFT", z, 32))

    key = w.emit("Cast", [names[0]], to=u64)
    k = op("Add", op("Mul", mix(op("Add", key, 0x9E3779B97F4A7C15)), 2), 1)
    count = w.emit("Range", [w.ints(0, "start"), w.ints(int(np.prod(shape)), "limit"),
                             w.ints(1, "delta")])
    y = op("Mul", w.emit("Cast", [count], to=u64), k)
    z = op("Add", y, k)
    x = swap(op("Add", op("Mul", y, y), y))
    x = swap(op("Add", op("Mul", x, x), z))
    x = swap(op("Add", op("Mul", x, x), y))
    t = op("Add", op("Mul", x, x), z)
    x = swap(t)
    bits = op("Add", t, op("RIGHT", op("Add", op("Mul", x, x), y), 32))
    width = 24 if node.dtype == np.float32 else 53
    top = w.emit("Cast", [op("RIGHT", bits, 64 - width)],
                 to=helper.np_dtype_to_tensor_dtype(node.dtype))
    scaled = w.emit("Mul", [top, w.const(np.asarray(2.0 ** -width, node.dtype), "scale")])
    return w.emit("Reshape", [scaled, w.ints(shape)], node.name)


@emits(mv.SCATTER_ADD)
def _scatter_add(w, node, names):
    """g's slices added into zeros like `like` at idx along `axis`: ScatterND over that axis
    moved to the front, the indices flattened into one list."""
    g, idx, like = node.inputs
    axis, k = node.attrs["axis"], idx.ndim
    rows = _dims(w, like, names[2], axis, axis + 1)
    rest = w.emit("Concat", [_dims(w, like, names[2], 0, axis),
                             _dims(w, like, names[2], axis + 1)], axis=0)
    perm = list(range(axis, axis + k)) + list(range(axis)) + list(range(axis + k, g.ndim))
    updates = w.emit("Reshape", [w.emit("Transpose", [names[0]], perm=perm),
                                 w.emit("Concat", [w.ints([-1]), rest], axis=0)])
    at = w.emit("Mod", [w.emit("Cast", [w.emit("Reshape", [names[1], w.ints([-1, 1])])],
                               to=onnx.TensorProto.INT64), rows])  # -1: the last
    zero = numpy_helper.from_array(np.zeros(1, node.dtype))
    zeros = w.emit("ConstantOfShape", [w.emit("Concat", [rows, rest], axis=0)], value=zero)
    summed = w.emit("ScatterND", [zeros, at, updates], reduction="add")
    back = list(range(1, axis + 1)) + [0] + list(range(axis + 1, like.ndim))
    return w.emit("Transpose", [summed], node.name, perm=back)


@emits(ix.GATHER_ALONG)
def _gather_along(w, node, names):
    return w.emit("GatherElements", names, node.name, axis=node.attrs["axis"])


@emits(ix.SCATTER_ADD_ALONG)
def _scatter_add_along(w, node, names):
    """g added into zeros like `like` at idx along `axis`: ScatterElements, reduction add."""
    target = _static(node.inputs[2], "scatter_add_along")
    zero = numpy_helper.from_array(np.zeros(1, node.dtype))
    zeros = w.emit("ConstantOfShape", [w.ints(target)], value=zero)
    return w.emit("ScatterElements", [zeros, names[1], names[0]], node.name,
                  axis=node.attrs["axis"], reduction="add")


# ---------------------------------------------------------------- convolution and pooling
def _window_attrs(attrs):
    (pt, pb, pl, pr) = attrs["padding"]
    out = {"strides": list(attrs["stride"]), "pads": [pt, pl, pb, pr]}
    if "dilation" in attrs:
        out["dilations"] = list(attrs["dilation"])
    return out


@emits(conv.CONV2D)
def _conv2d(w, node, names):
    return w.emit("Conv", names, node.name, group=node.attrs["groups"],
                  **_window_attrs(node.attrs))


def _transposed(size, out, kernel, stride, dilation, padding):
    """ConvTranspose's pads and output_padding that give back exactly `size` (H, W)."""
    begin, end, extra = [], [], []
    for n, o, k, s, d, p0 in zip(size, out, kernel, stride, dilation, padding[::2]):
        full = s * (o - 1) + d * (k - 1) + 1 - p0
        begin.append(p0)
        end.append(max(full - n, 0))
        extra.append(max(n - full, 0))
    return {"pads": begin + end, "output_padding": extra, "strides": list(stride),
            "dilations": list(dilation)}


@emits(conv.CONV2D_INPUT_GRAD)
def _conv2d_input_grad(w, node, names):
    g, weight, like = node.inputs
    what = "conv2d_input_grad"
    geometry = _transposed(_static(like, what, 2), _static(g, what, 2),
                           weight.shape[2:], node.attrs["stride"], node.attrs["dilation"],
                           node.attrs["padding"])
    return w.emit("ConvTranspose", names[:2], node.name, group=node.attrs["groups"], **geometry)


@emits(conv.CONV2D_WEIGHT_GRAD)
def _conv2d_weight_grad(w, node, names):
    """dW[o, c] = Σ_n x[n, c] ⋆ g[n, o]: a Conv with batch and channels swapped (the batch is
    the reduced axis), stride and dilation exchanged, cropped to the kernel; per group."""
    like = node.inputs[2]
    groups, (o, cg, kh, kw) = node.attrs["groups"], _static(like, "conv2d_weight_grad")
    xt = w.emit("Transpose", [names[0]], perm=[1, 0, 2, 3])
    gt = w.emit("Transpose", [names[1]], perm=[1, 0, 2, 3])
    (pt, pb, pl, pr) = node.attrs["padding"]
    parts = []
    for k in range(groups):
        xs = _channels(w, xt, k * cg, (k + 1) * cg) if groups > 1 else xt
        gs = _channels(w, gt, k * (o // groups), (k + 1) * (o // groups)) if groups > 1 else gt
        full = w.emit("Conv", [xs, gs], strides=list(node.attrs["dilation"]),
                      dilations=list(node.attrs["stride"]), pads=[pt, pl, pb, pr])
        crop = w.emit("Slice", [full, w.ints([0, 0]), w.ints([kh, kw]), w.ints([2, 3])])
        parts.append(w.emit("Transpose", [crop], perm=[1, 0, 2, 3]))
    return parts[0] if groups == 1 else w.emit("Concat", parts, node.name, axis=0)


def _channels(w, name, start, stop):
    return w.emit("Slice", [name, w.ints([start]), w.ints([stop]), w.ints([0])])


def _pool_attrs(node, size, out):
    """MaxPool/AveragePool attributes for `node`'s windows over `size` (H, W), giving `out`
    (OH, OW). In ceil mode PyTorch and graphdl drop a last window that would start in the end
    padding; opset 17's output-size rule keeps it, so onnx's shape inference would give one
    more row than onnxruntime's kernel computes, and a node shaped by the inference (a gradient's
    Mul, Div) fails at run time. Where the rules disagree, the same windows are written in floor
    mode, the end padding cut to where the last window ends (`_covering_ends`)."""
    a = node.attrs
    attrs = {"kernel_shape": list(a["kernel"]), "ceil_mode": int(a["ceil_mode"]),
             **_window_attrs(a)}
    if a["ceil_mode"] and _onnx_ceil_out(size, a, attrs["pads"]) != tuple(out):
        attrs["ceil_mode"] = 0
        attrs["pads"][2:] = _covering_ends(size, a, out)
    return attrs


def _onnx_ceil_out(size, a, pads):
    dilation = a.get("dilation", (1, 1))
    return tuple(-(-(n + pads[i] + pads[i + 2] - d * (k - 1) - 1) // s) + 1
                 for i, (n, k, s, d) in enumerate(zip(size, a["kernel"], a["stride"], dilation)))


def _covering_ends(size, a, out):
    """The end padding (bottom, right) at which floor mode gives exactly `out` windows: the
    last one's end, never below 0 (floor mode leaves fewer than a stride's cells unread)."""
    dilation, begin = a.get("dilation", (1, 1)), a["padding"][::2]
    return [max(0, (o - 1) * s + d * (k - 1) + 1 - n - p0)
            for n, o, k, s, d, p0 in zip(size, out, a["kernel"], a["stride"], dilation, begin)]


@emits(conv.MAX_POOL2D)
def _max_pool2d(w, node, names):
    return w.emit("MaxPool", names, node.name,
                  **_pool_attrs(node, node.inputs[0].shape[2:], node.shape[2:]))


def _arg_max(w, node, x_name, out):
    """MaxPool's Indices of x: flat positions in x (N, C, H, W) of each window's maximum."""
    attrs = _pool_attrs(node, node.inputs[1].shape[2:], out)
    _, indices = w.emit("MaxPool", [x_name], outputs=2, **attrs)
    return w.emit("Reshape", [indices, w.ints([-1])])


@emits(conv.MAX_POOL2D_GRAD)
def _max_pool2d_grad(w, node, names):
    x = node.inputs[1]
    _static(x, "max_pool2d_grad", 2)
    zero = numpy_helper.from_array(np.zeros(1, node.dtype))
    flat = w.emit("ConstantOfShape", [_count(w, x, names[1])], value=zero)
    g = w.emit("Reshape", [names[0], w.ints([-1])])
    arg = _arg_max(w, node, names[1], node.inputs[0].shape[2:])
    routed = w.emit("ScatterElements", [flat, arg, g], axis=0, reduction="add")
    return w.emit("Reshape", [routed, _dims(w, x, names[1])], node.name)


@emits(conv.MAX_POOL2D_SELECT)
def _max_pool2d_select(w, node, names):
    u = w.emit("Reshape", [names[0], w.ints([-1])])
    picked = w.emit("GatherElements", [u, _arg_max(w, node, names[1], node.shape[2:])], axis=0)
    shape = w.emit("Concat", [_dims(w, node.inputs[1], names[1], 0, 2),
                              w.ints(_static(node, "max_pool2d_select", 2))], axis=0)
    return w.emit("Reshape", [picked, shape], node.name)


@emits(conv.AVG_POOL2D)
def _avg_pool2d(w, node, names):
    """AveragePool; where its end padding had to change (`_pool_attrs`) and padding counts in
    the divisor, the input's own padding is made explicit zeros (a Pad) and only those cells
    count, so a window is still clipped where the padded input ends, as in PyTorch."""
    attrs = _pool_attrs(node, node.inputs[0].shape[2:], node.shape[2:])
    (pt, pb, pl, pr), x = node.attrs["padding"], names[0]
    counted = node.attrs["count_include_pad"]
    if counted and attrs["pads"] != [pt, pl, pb, pr]:
        ends = [min(p, e) for p, e in zip((pb, pr), attrs["pads"][2:])]
        x = w.emit("Pad", [x, w.ints([0, 0, pt, pl, 0, 0, *ends], "pads")])
        attrs["pads"] = [0, 0] + [e - p for p, e in zip(ends, attrs["pads"][2:])]
        counted = False
    return w.emit("AveragePool", [x], node.name, count_include_pad=int(counted), **attrs)


@emits(conv.AVG_POOL2D_GRAD)
def _avg_pool2d_grad(w, node, names):
    """Each window's g / divisor spread over it: a ConvTranspose by ones, one channel per group."""
    g, like = node.inputs
    shape, out = (None, *_static(like, "avg_pool2d_grad", 1)), _static(g, "avg_pool2d_grad", 2)
    kernel, stride, padding = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
    divisor = _avg_divisor(shape[2:], kernel, stride, padding, out,
                           node.attrs["count_include_pad"]).astype(node.dtype)
    share = w.emit("Div", [names[0], w.const(divisor, "divisor")])
    ones = w.const(np.ones((shape[1], 1) + tuple(kernel), node.dtype), "window")
    geometry = _transposed(shape[2:], out, kernel, stride, (1, 1), padding)
    return w.emit("ConvTranspose", [share, ones], node.name, group=shape[1], **geometry)


# ---------------------------------------------------------------- the model
def save(outputs, path=None, params=None, opset=None):
    if opset not in (None, OPSET):
        raise GraphError(f"ONNX export writes opset {OPSET}, got opset={opset!r}")
    nodes = list(outputs.values()) if isinstance(outputs, dict) else (
        [outputs] if isinstance(outputs, Node) else list(outputs))
    inputs = [n for n in topological_order(nodes) if n.op is leaf.INPUT]
    named = _named_outputs(outputs, {n.name: n for n in inputs})
    params = {k: np.asarray(v) for k, v in (params or {}).items()}
    shapes = {n.name: n.shape for n in inputs}
    stable, _ = prepare(list(named.values()), shapes, optimize=False)
    _check_params(params, inputs)
    w = Writer(taken=[*named, *shapes])
    values = {}
    for node in topological_order(stable):
        values[node] = _value(w, node, values, params)
    graph_outputs = []
    for (name, _), node in zip(named.items(), stable):
        w.nodes.append(helper.make_node("Identity", [values[node]], [name], name=name))
        graph_outputs.append(_info(name, node))
    graph = helper.make_graph(  # params are initializers only: weights, not inputs to feed
        w.nodes, "graphdl", [_info(n.name, n) for n in inputs if n.name not in params],
        graph_outputs,
        initializer=[numpy_helper.from_array(params[n.name].astype(n.dtype), n.name)
                     for n in inputs if n.name in params] + w.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="graphdl", ir_version=8)
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, path)
    return model


def _named_outputs(outputs, inputs):
    """{output name: node}: a dict as given; a node or list named by the nodes' names, or
    output_i where a node has none or one an earlier output or an input has (an ONNX value has
    one name). A dict naming an output as one of `inputs` ({name: node}) is refused."""
    if isinstance(outputs, dict):
        for name, node in outputs.items():
            if name in inputs:
                raise GraphError(f"ONNX export: the output {name!r} ({describe(node)}) has the "
                                 f"name of the input {describe(inputs[name])}, and an ONNX "
                                 f"value has one name: name the output otherwise")
        return dict(outputs)
    outputs = [outputs] if isinstance(outputs, Node) else list(outputs)
    named = {}
    for i, node in enumerate(outputs):
        taken = node.name in named or node.name in inputs
        named[node.name if node.name and not taken else f"output_{i}"] = node
    return named


def _check_params(params, inputs):
    by_name = {n.name: n for n in inputs}
    for name, value in params.items():
        if name not in by_name:
            raise GraphError(f"ONNX export: params names {name!r}, which is no input of the "
                             f"graph; its inputs are {sorted(by_name)}")
        if value.shape != by_name[name].shape:
            raise GraphError(f"ONNX export: params[{name!r}] has shape {value.shape}, input "
                             f"{name!r} is declared {by_name[name].shape}")


def _value(w, node, values, params):
    if node.op is leaf.INPUT:
        return node.name
    if node.op is leaf.CONST:
        return w.const(node.attrs["value"].array, "const")
    emit = node.op.impls.get("onnx")
    if emit is None and node.op.kind == "elementwise" and node.op.sym is not None:
        emit = _from_sym
    if emit is None:
        exportable = sorted(op.name for op in REGISTRY.values() if "onnx" in op.impls)
        raise GraphError(f"ONNX export: graphdl op {node.op.name!r} ({describe(node)}) has no "
                         f"ONNX form; exportable ops: elementwise ops with a SymPy form and "
                         f"{exportable}")
    return emit(w, node, [values[i] for i in node.inputs])


def _info(name, node):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(node.dtype),
                                         list(node.shape))
