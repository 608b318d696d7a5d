"""Shape arithmetic over sizes known only at run time, folded at import.

A model exported with a dynamic batch computes its Reshape targets from `Shape`: Shape, Gather,
Unsqueeze, Concat, Mul, Div... of the input's dimensions. Where a dimension is `None` (unknown
until call time), `Shape` gives an object array holding an `Unknown` there, and the builders of
`SHAPE_OPS` carry it through with NumPy: whatever is computed from an unknown size is unknown.
A value with no unknown left is an ordinary int64 array again. Reshape turns the one unknown
entry of its target into -1 (`reshape_target`); an operator that needs the number itself
(ConstantOfShape, Range, a Cast to float) refuses, naming the node (`Call.static`).
"""

from __future__ import annotations

import numpy as np
from onnx import helper


class Unknown:
    """A size known only at run time. Two are the same size where their `symbol`s are equal:
    the name ONNX's shape inference gives the dimension Shape read (`batch`); a computed size
    (batch * heads) has a symbol of its own."""

    def __init__(self, symbol=None):
        self.symbol = object() if symbol is None else symbol

    def __repr__(self):
        return "?"


def has_unknown(value):
    return isinstance(value, np.ndarray) and value.dtype == object and any(
        isinstance(v, Unknown) for v in value.flat)


def shape_of(node, names, start=0, end=None):
    """`node`'s shape[start:end] as a value: int64, or an object array where sizes are None
    (`names`: its dimensions' ONNX names, `Call.dims`)."""
    axes = range(node.ndim)[start:end]
    if all(node.shape[a] is not None for a in axes):
        return np.asarray([node.shape[a] for a in axes], np.int64)
    return np.asarray([Unknown(_name(names, a)) if node.shape[a] is None else node.shape[a]
                       for a in axes], object)


def _name(names, axis):
    return names[axis] if axis < len(names) else None


def reshape_target(x, names, shape):
    """The shape, given as numbers and Unknowns (None: x's own size, copied by a 0), that
    `gd.reshape` takes for x (its dimensions' ONNX names `names`): the size that stays unknown
    becomes its one -1. Where x's unknown sizes are all in the target (PyTorch's
    `x.view(x.size(0), -1)`), the rest of the target holds the rest of x, so its -1 is known.
    None where more than one size stays unknown."""
    own = [_name(names, k) for k, d in enumerate(x.shape) if d is None]
    matched = []
    for k, d in enumerate(shape):
        symbol = _name(names, k) if d is None else getattr(d, "symbol", False)
        if symbol in own and symbol is not None:
            own.remove(symbol)
            matched.append(k)
    rest = [d for k, d in enumerate(shape) if k not in matched]
    if matched and not own and not any(d is None or isinstance(d, Unknown) for d in rest):
        known = int(np.prod([d for d in x.shape if d is not None]))
        fixed = int(np.prod([d for d in rest if d != -1]))
        if fixed and known % fixed == 0:
            shape = [known // fixed if k not in matched and d == -1 else d
                     for k, d in enumerate(shape)]
    unknown = [k for k, d in enumerate(shape) if d is None or isinstance(d, Unknown)]
    if unknown and len(unknown) + sum(d == -1 for d in shape) > 1:
        return None
    return [-1 if k in unknown else int(d) for k, d in enumerate(shape)]


def _settle(array):
    array = np.asarray(array, object)
    return array if has_unknown(array) else array.astype(np.int64)


def _elementwise(fn):
    """fn over the inputs' numbers, unknown wherever one of its operands is."""
    each = np.frompyfunc(
        lambda *v: Unknown() if any(isinstance(u, Unknown) for u in v) else fn(*v), 2, 1)
    return lambda call: _settle(each(*(np.asarray(v, object) for v in call.inputs[:2])))


def _trunc_div(a, b):
    return abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)  # ONNX truncates toward zero


def _axes(call, position):
    axes = call.static(position, "axes") if call.has(position) else call.attr("axes")
    return [int(a) for a in np.asarray(axes).reshape(-1)]


def _cast(call):
    to = np.dtype(helper.tensor_dtype_to_np_dtype(call.attr("to")))
    if to.kind not in "iu":
        call.refuse(f"it casts the shape {call.inputs[0]!r}, whose unknown sizes are known only "
                    f"at run time, to {to}; fix them with gd.onnx.load(..., shapes=...)")
    return call.inputs[0]


def _unsqueeze(call):
    # expand_dims counts negative axes against the output's rank, as ONNX's Unsqueeze
    return np.expand_dims(call.inputs[0], tuple(_axes(call, 1)))


def slice_key(call, ndim):
    """ONNX Slice's starts, ends, axes and steps (attributes before opset 10, inputs since) as
    a NumPy index of `ndim` axes; ONNX clamps out-of-range bounds as Python does."""
    if call.opset < 10:
        starts, ends, axes, steps = (call.attr("starts"), call.attr("ends"), call.attr("axes"),
                                     None)
    else:
        starts, ends = call.static(1, "starts"), call.static(2, "ends")
        axes = call.static(3, "axes") if call.has(3) else None
        steps = call.static(4, "steps") if call.has(4) else None
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    key = [slice(None)] * ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        key[int(axis)] = slice(int(start), int(end), int(step))
    return tuple(key)


def _slice(call):
    value = call.inputs[0]
    return _settle(value[slice_key(call, value.ndim)])


SHAPE_OPS = {
    "Identity": lambda call: call.inputs[0],
    "Cast": _cast,
    "Gather": lambda call: _settle(np.take(call.inputs[0], call.static(1, "indices"),
                                           axis=call.attr("axis", 0))),
    "Unsqueeze": _unsqueeze,
    "Squeeze": lambda call: np.squeeze(call.inputs[0], tuple(_axes(call, 1)) or None),
    "Concat": lambda call: _settle(np.concatenate(
        [np.asarray(v, object) for v in call.inputs], call.attr("axis"))),
    "Slice": _slice,
    "Reshape": lambda call: np.reshape(call.inputs[0], [int(d) for d in call.static(1, "shape")]),
    "Add": _elementwise(lambda a, b: a + b),
    "Sub": _elementwise(lambda a, b: a - b),
    "Mul": _elementwise(lambda a, b: a * b),
    "Div": _elementwise(_trunc_div),
}
