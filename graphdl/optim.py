"""Optimizers as graph updates, so that a whole training step compiles to one function:

    opt = gd.optim.adam(loss, [W, b], lr=1e-3)
    step = gd.compile(loss, updates=opt.updates)
    state = opt.init()                       # {"W.m": zeros, ..., "adam.step": 0.0}
    for x, y in batches:
        step(x=x, y=y, W=W, b=b, **state)    # W, b and the state arrays updated in place

`updates` maps every parameter and every state input the optimizer declares (`gd.input`s named
after the parameter: "W.m", "W.v", "W.momentum"; the step count "adam.step") to its new value;
`init()` gives the state's initial arrays, fed by name with the parameters on every call. The
rules are torch.optim's, written as graph nodes; state starts at zero, and where PyTorch's first
step differs from its rule applied to zero state (SGD's momentum buffer with dampening), the step
count selects it.

Data-parallel (`graphdl.distributed`): `allreduce="mean", rows=x` averages the gradients over
the workers, weighted by each worker's rows of the batch `x`, before the update; every replica
then makes the step one worker would make with the whole batch.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from graphdl import autodiff, ir
from graphdl.errors import GraphError
from graphdl.ir import Node, describe
from graphdl.ops import collective, leaf
from graphdl.ops import elementwise as ew
from graphdl.ops import movement as mv

STEP_DTYPE = "float64"  # the step count: exact to 2^53 steps; bias corrections in double


@dataclass(frozen=True)
class Optimizer:
    """What `sgd` and `adam` return: the step's `updates` ({input: new value}, parameters and
    state) for `gd.compile(..., updates=)`, and the state inputs (name -> node)."""

    updates: dict
    state: dict

    def init(self):
        """{state input name: its initial array (zeros of its shape and dtype)}."""
        return {name: np.zeros(node.shape, node.dtype) for name, node in self.state.items()}


def sgd(loss, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
        name="sgd", allreduce=None, rows=None):
    """torch.optim.SGD: g = ∇p + weight_decay·p; with momentum, buf = momentum·buf +
    (1 − dampening)·g (buf = g on the first step), g = buf (nesterov: g + momentum·buf);
    p = p − lr·g. State: "<param>.momentum" per parameter with momentum, and "<name>.step" where
    dampening makes the first step differ from the rule on a zero buffer. `allreduce`, `rows`:
    data-parallel training, see `_reduced`."""
    params, grads = _gradients(loss, params, "sgd", allreduce, rows)
    _rate("sgd", lr)
    _number("sgd", momentum=momentum, dampening=dampening, weight_decay=weight_decay)
    if nesterov and (momentum == 0 or dampening != 0):
        raise GraphError(f"sgd: nesterov needs momentum > 0 and dampening 0, got momentum="
                         f"{momentum!r}, dampening={dampening!r} (as torch.optim.SGD)")
    updates, state = {}, {}
    first = None
    if momentum != 0 and dampening != 0:
        step = _state(state, f"{name}.step", (), STEP_DTYPE)
        updates[step] = step + 1
        first = ew.EQUAL(step, 0)
    for p, g in zip(params, grads, strict=True):
        if weight_decay != 0:
            g = g + weight_decay * p
        if momentum != 0:
            buf = _state(state, f"{p.name}.momentum", p.shape, p.dtype.name)
            new_buf = momentum * buf + (1 - dampening) * g  # with buf = 0 and no dampening: g
            if first is not None:
                new_buf = ew.WHERE(first, g, new_buf)
            updates[buf] = new_buf
            g = g + momentum * new_buf if nesterov else new_buf
        updates[p] = p - _as(lr, p) * g
    return Optimizer(updates, state)


def adam(loss, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, name="adam",
         allreduce=None, rows=None):
    """torch.optim.Adam (not AMSGrad): t = t + 1; g = ∇p + weight_decay·p;
    m = m + (1 − β1)(g − m); v = β2·v + (1 − β2)·g²;
    p = p − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + eps). State: "<param>.m", "<param>.v" and
    the step count "<name>.step" (float64; the bias corrections are computed in float64 and
    rounded to each parameter's dtype, as PyTorch computes them in Python floats). `allreduce`,
    `rows`: data-parallel training, see `_reduced`."""
    params, grads = _gradients(loss, params, "adam", allreduce, rows)
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise GraphError(f"adam: betas must be a pair (beta1, beta2), got {betas!r}")
    beta1, beta2 = betas
    _rate("adam", lr)
    _number("adam", beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
    for label, beta in (("beta1", beta1), ("beta2", beta2)):
        if not beta < 1:
            raise GraphError(f"adam: {label} must be in [0, 1), got {beta!r}")
    updates, state = {}, {}
    step = _state(state, f"{name}.step", (), STEP_DTYPE)
    t = step + 1
    updates[step] = t
    # as PyTorch: step_size = lr / (1 − β1^t), and √(1 − β2^t), both in double
    rate = ew.cast(lr, STEP_DTYPE) if isinstance(lr, Node) else lr
    step_size = rate / (1 - ew.EXP(t * float(np.log(beta1)))) if beta1 > 0 else rate
    correction2 = ew.SQRT(1 - ew.EXP(t * float(np.log(beta2)))) if beta2 > 0 else 1.0
    for p, g in zip(params, grads, strict=True):
        if weight_decay != 0:
            g = g + weight_decay * p
        m = _state(state, f"{p.name}.m", p.shape, p.dtype.name)
        v = _state(state, f"{p.name}.v", p.shape, p.dtype.name)
        new_m = m + (1 - beta1) * (g - m)  # PyTorch's lerp
        new_v = beta2 * v + (1 - beta2) * (g * g)
        denom = ew.SQRT(new_v) / _as(correction2, p) + eps
        updates[m], updates[v] = new_m, new_v
        updates[p] = p - _as(step_size, p) * (new_m / denom)
    return Optimizer(updates, state)


def _gradients(loss, params, what, allreduce=None, rows=None):
    """The parameters (distinct named inputs, floating point, of known shape, each one the loss
    depends on) and the loss's gradients with respect to them, reduced over the workers with
    `allreduce` (`_reduced`)."""
    if not isinstance(loss, Node) or loss.shape != () or loss.dtype.kind != "f":
        shown = describe(loss) if isinstance(loss, Node) else repr(loss)
        raise GraphError(f"{what}: the loss must be a floating-point scalar node, got {shown}"
                         + (f" of shape {ir.format_shape(loss.shape)} and dtype {loss.dtype}"
                            if isinstance(loss, Node) else ""))
    params = [params] if isinstance(params, Node) else list(params)
    if not params:
        raise GraphError(f"{what}: no parameters given")
    reached = {id(n) for n in ir.topological_order([loss])}  # what the loss depends on
    for p in params:
        if not isinstance(p, Node) or p.op is not leaf.INPUT:
            raise GraphError(f"{what}: parameters must be gd.input nodes (updated in place), "
                             f"got {describe(p) if isinstance(p, Node) else repr(p)}")
        if p.dtype.kind != "f" or None in p.shape:
            raise GraphError(f"{what}: parameter {p.name!r} must be floating point with a known "
                             f"shape, got {ir.format_shape(p.shape)} {p.dtype}")
        if id(p) not in reached:
            raise GraphError(f"{what}: the loss {describe(loss)} does not depend on parameter "
                             f"{p.name!r}")
    if len({id(p) for p in params}) != len(params):
        raise GraphError(f"{what}: a parameter is given twice: "
                         f"{[p.name for p in params]}")
    grads = autodiff.grad(loss, params)
    return params, grads if allreduce is None else _reduced(grads, allreduce, rows, what)


def _reduced(grads, how, rows, what):
    """Data-parallel training: each worker's gradients (of its loss on its rows) reduced over
    the workers before the update, `how` "mean" or "sum" (`gd.allreduce`). `rows`: this
    worker's rows, a node whose first axis they are (the batch input) or a scalar node: the mean
    is then weighted by rows, the gradient of the mean loss over the whole batch however it was
    split. All gradients of one dtype travel in one flat buffer: one collective call per step
    (per dtype). With one worker the gradients come back unchanged, bit for bit."""
    if how not in collective.OPS:
        raise GraphError(f"{what}: allreduce must be one of {collective.OPS} or None, got "
                         f"{how!r}")
    weight = None
    if rows is not None:
        if not isinstance(rows, Node) or (rows.ndim == 0 and rows.dtype.kind != "f"):
            raise GraphError(f"{what}: rows must be the batch node (rows along its first axis) "
                             f"or a floating-point scalar node, got "
                             f"{describe(rows) if isinstance(rows, Node) else repr(rows)}")
        weight = rows if rows.ndim == 0 else leaf.size(rows, (0,), STEP_DTYPE)
    reduced = list(grads)
    for dtype in dict.fromkeys(g.dtype for g in grads):
        positions = [i for i, g in enumerate(grads) if g.dtype == dtype]
        flat = mv.concatenate([mv.reshape(grads[i], (-1,)) for i in positions])
        flat = collective.allreduce(flat, how, weight=weight)
        start = 0
        for i in positions:
            size = math.prod(grads[i].shape)
            reduced[i] = mv.reshape(flat[start:start + size], grads[i].shape)
            start += size
    return reduced


def _rate(what, lr):
    """A learning rate: a finite number >= 0, or a floating-point 0-d node (a schedule fed on
    every call: `lr = gd.input("lr", ())`)."""
    if isinstance(lr, Node):
        if lr.shape != () or lr.dtype.kind != "f":
            raise GraphError(f"{what}: a learning rate given as a node must be a floating-point "
                             f"scalar, got {describe(lr)} of shape {ir.format_shape(lr.shape)} "
                             f"and dtype {lr.dtype}")
        return
    _number(what, lr=lr)


def _number(what, **values):
    """Refuse a hyperparameter that is not a finite number >= 0, naming it."""
    for label, v in values.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < float("inf"):
            raise GraphError(f"{what}: {label} must be a finite number >= 0, got {v!r}")


def _state(state, name, shape, dtype):
    """A state input called `name`; refused if this optimizer already declared it."""
    if name in state:
        raise GraphError(f"optimizer state {name!r} declared twice: two parameters named alike?")
    state[name] = leaf.input(name, shape, dtype)
    return state[name]


def _as(value, like):
    """A scalar node (or a Python number) in `like`'s dtype."""
    return ew.cast(value, like.dtype.name) if isinstance(value, Node) else value
