"""ONNX's recurrent operators RNN, GRU and LSTM, unrolled over their (known) sequence length
into graphdl's matmuls and activations (registered into `ops.OPS`): each step is ordinary
graph, so the gradients through time are graphdl's own.

One direction runs the steps in processing order: forward, or each sequence reversed within
its length (`sequence_lens`: every sequence its own length, known only at run time possibly).
A step past a sequence's end keeps its state and outputs zeros, as ONNX's reference does."""

from __future__ import annotations

import numpy as np

import graphdl as gd
from graphdl.onnx.ops import OPS

# name -> (fn(x, alpha, beta), default alpha, default beta): ONNX's activations for its RNNs
ACTIVATIONS = {
    "Sigmoid": (lambda x, a, b: gd.sigmoid(x), None, None),
    "Tanh": (lambda x, a, b: gd.tanh(x), None, None),
    "Relu": (lambda x, a, b: gd.relu(x), None, None),
    "Softsign": (lambda x, a, b: gd.softsign(x), None, None),
    "Softplus": (lambda x, a, b: gd.softplus(x), None, None),
    "LeakyRelu": (lambda x, a, b: gd.leaky_relu(x, a), 0.01, None),
    "ThresholdedRelu": (lambda x, a, b: gd.where(x > a, x, gd.zeros_like(x)), 1.0, None),
    "Elu": (lambda x, a, b: gd.elu(x, a), 1.0, None),
    "HardSigmoid": (lambda x, a, b: gd.clip(x * a + b, 0, 1), 0.2, 0.5),
    "Affine": (lambda x, a, b: x * a + b, 1.0, 0.0),
    "ScaledTanh": (lambda x, a, b: gd.tanh(x * b) * a, 1.0, 1.0),
}

# operator -> (gates per hidden unit, default activations of one direction)
CELLS = {"RNN": (1, ("Tanh",)), "GRU": (3, ("Sigmoid", "Tanh")),
         "LSTM": (4, ("Sigmoid", "Tanh", "Tanh"))}


def _recurrent(call):
    op = call.proto.op_type
    gates, defaults = CELLS[op]
    hidden, direction = call.attr("hidden_size"), call.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        call.malformed(f"direction {direction!r} is not forward, reverse or bidirectional")
    directions = ["forward", "reverse"] if direction == "bidirectional" else [direction]
    batchwise = call.attr("layout", 0) == 1
    x = call.node(0)
    if batchwise:
        x = gd.transpose(x, (1, 0, 2))
    if x.ndim != 3 or x.shape[0] is None:
        call.refuse(f"its input must be 3-D with a known sequence length; got {x.shape}")
    w, r = call.node(1), call.node(2)
    if hidden is None:
        hidden = r.shape[-1]
    if w.shape[:2] != (len(directions), gates * hidden):
        call.malformed(f"W {w.shape} must be ({len(directions)}, {gates * hidden}, input size)")
    lengths = call.node(4) if call.has(4) else None
    activations = _activations(call, defaults * len(directions))
    state = [_initial(call, i, batchwise) for i in (5, 6)]
    outputs, finals = [], []
    for d, name in enumerate(directions):
        cell = Cell(call, d, hidden, activations[d * len(defaults):(d + 1) * len(defaults)])
        ordered = _ordered(x, lengths, name)
        ys, last = cell.run(ordered, lengths, [s[d] if s is not None else None for s in state])
        outputs.append(_ordered(gd.stack(ys, 0), lengths, name))
        finals.append(last)
    y = gd.stack(outputs, 1)  # (steps, directions, batch, hidden)
    finals = [gd.stack(list(f), 0) for f in zip(*finals)]  # (directions, batch, hidden) each
    if batchwise:
        y = gd.transpose(y, (2, 0, 1, 3))
        finals = [gd.transpose(f, (1, 0, 2)) for f in finals]
    return (y, *finals)


for _op in CELLS:
    OPS[_op] = _recurrent


def _activations(call, defaults):
    """The activation functions of every direction in order, with their alpha and beta: the
    given lists are consumed in order by the activations that take them."""
    names = call.attr("activations") or list(defaults)
    if len(names) != len(defaults):
        call.malformed(f"{len(names)} activations given, {len(defaults)} expected")
    alphas, betas = list(call.attr("activation_alpha", [])), list(call.attr("activation_beta", []))
    functions = []
    for name in names:
        if name not in ACTIVATIONS:
            call.refuse(f"activation {name!r} is not one of {sorted(ACTIVATIONS)}")
        fn, alpha, beta = ACTIVATIONS[name]
        alpha = alphas.pop(0) if alpha is not None and alphas else alpha
        beta = betas.pop(0) if beta is not None and betas else beta
        functions.append(lambda v, fn=fn, a=alpha, b=beta: fn(v, a, b))
    return functions


def _initial(call, i, batchwise):
    """initial_h (input 5) or initial_c (6) as (directions, batch, hidden), or None."""
    if not call.has(i):
        return None
    s = call.node(i)
    return gd.transpose(s, (1, 0, 2)) if batchwise else s


def _ordered(seq, lengths, direction):
    """`seq` (steps, batch, ...) in a direction's processing order, and back (its own inverse):
    reversed within each sequence's length, the steps past it left in place."""
    if direction == "forward":
        return seq
    if lengths is None:
        return seq[::-1]
    steps = np.arange(seq.shape[0]).reshape(-1, 1)
    lengths = gd.cast(lengths, "int64")
    index = gd.where(gd.greater(lengths, steps), lengths - 1 - steps, steps)
    index = gd.reshape(index, (*index.shape, *(1,) * (seq.ndim - 2)))
    return gd.take_along_axis(seq, index, 0)


class Cell:
    """One direction's weights and its step, ONNX's equations (W, R, B rows in ONNX's gate
    order: LSTM i, o, f, c; GRU z, r, h)."""

    def __init__(self, call, d, hidden, activations):
        self.op, self.hidden, self.fns = call.proto.op_type, hidden, activations
        self.w, self.r = call.node(1)[d], call.node(2)[d]
        gates = CELLS[self.op][0] * hidden
        self.wb = self.rb = None
        if call.has(3):
            self.wb, self.rb = call.node(3)[d, :gates], call.node(3)[d, gates:]
        self.clip = call.attr("clip")
        self.peep = call.node(7)[d] if self.op == "LSTM" and call.has(7) else None
        self.coupled = self.op == "LSTM" and call.attr("input_forget", 0)
        self.before_reset = self.op == "GRU" and call.attr("linear_before_reset", 0)

    def run(self, x, lengths, initial):
        """The outputs of every step (in processing order) and the final states."""
        xw = gd.matmul(x, gd.transpose(self.w, (1, 0)))  # every step's input part at once
        if self.wb is not None:
            xw = xw + self.wb
        zero = gd.zeros_like(xw[0, :, :self.hidden])
        state = [zero if s is None else s for s in initial[:2 if self.op == "LSTM" else 1]]
        ys = []
        for t in range(x.shape[0]):
            new = self.step(xw[t], *state)
            if lengths is None:
                state, y = new, new[0]
            else:  # past its end a sequence keeps its state and outputs zeros
                going = gd.expand_dims(gd.less(t, lengths), 1)
                state = [gd.where(going, n, s) for n, s in zip(new, state)]
                y = gd.where(going, new[0], zero)
            ys.append(y)
        return ys, state

    def step(self, xw, h, c=None):
        n, f = self.hidden, self.fns[0]
        # GRU's candidate reads R's last rows apart, after the reset gate (by default)
        rows = 2 * n if self.op == "GRU" and not self.before_reset else None
        hr = gd.matmul(h, gd.transpose(self.r[:rows], (1, 0)))
        if self.rb is not None:
            hr = hr + self.rb[:rows]

        def clipped(v):
            return v if self.clip is None else gd.clip(v, -self.clip, self.clip)

        def gate(k, extra=None):
            """Gate k's input (clipped), before its activation: x·Wᵀ + h·Rᵀ (+ biases) + extra."""
            v = xw[:, k * n:(k + 1) * n] + hr[:, k * n:(k + 1) * n]
            return clipped(v if extra is None else v + extra)

        if self.op == "RNN":
            return [f(gate(0))]
        if self.op == "GRU":
            z, r = f(gate(0)), f(gate(1))
            if self.before_reset:
                recurrent = r * hr[:, 2 * n:]
            else:
                recurrent = gd.matmul(r * h, gd.transpose(self.r[2 * n:], (1, 0)))
                recurrent = recurrent if self.rb is None else recurrent + self.rb[2 * n:]
            return [(1 - z) * self.fns[1](clipped(xw[:, 2 * n:] + recurrent)) + z * h]
        p = [None] * 3 if self.peep is None else [self.peep[k * n:(k + 1) * n] * c
                                                  for k in range(3)]  # i, o, f: on C(t−1)
        i = f(gate(0, p[0]))
        forget = 1 - i if self.coupled else f(gate(2, p[2]))
        c = forget * c + i * self.fns[1](gate(3))
        o = f(gate(1, None if self.peep is None else self.peep[n:2 * n] * c))  # on C(t)
        return [o * self.fns[2](c), c]
