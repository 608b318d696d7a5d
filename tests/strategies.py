"""Hypothesis strategies for random graphdl graphs.

`random_graph()` draws a small graph over 1-3 inputs with random broadcastable shapes, built
from a pool of primitives and composites, ending in a scalar. One graph in four starts from an
image batch (N, C, H, W): on 4-D nodes it also draws conv2d (a new weight input, random stride,
padding, dilation and groups) and max/avg pooling (ceil_mode, count_include_pad). Every test
that needs "some graph" can share it:

    from tests.strategies import random_graph

    @given(random_graph())
    def test_something(case):
        value = gd.evaluate(case.output, case.feeds)

>>> HOOK FOR CODEGEN: to check compiled code against the interpreter on the same graphs, use
>>> `compiled_vs_interpreter_outputs(case)` (below) and compare
>>> `gd.compile(outs)(**case.feeds)` with `gd.evaluate(outs, case.feeds)`; `dtype="float32"`
>>> draws float32 graphs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

import graphdl as gd

from .helpers import only

R = gd.REGISTRY


@dataclass
class GraphCase:
    """A drawn graph: its inputs (conv2d weights and biases included), values to feed them, the
    scalar output and every node built."""

    inputs: list
    feeds: dict
    output: object  # scalar node
    nodes: list = field(default_factory=list)  # every op applied, in order (sinks included)
    steps: list = field(default_factory=list)  # human-readable description of each op

    @property
    def names(self):
        return [i.name for i in self.inputs]

    def __repr__(self):  # what hypothesis prints for a failing example
        shapes = {i.name: i.shape for i in self.inputs}
        return f"GraphCase(inputs={shapes}, steps={self.steps})"


def _positive(x):
    return x * x + 1.0


# Unary ops: name -> (applies to a node?, build). Arguments stay in each op's smooth domain.
UNARY = {
    "neg": (lambda x: True, lambda x, r: -x),
    "exp": (lambda x: True, lambda x, r: gd.exp(x)),
    "log": (lambda x: True, lambda x, r: gd.log(_positive(x))),
    "sqrt": (lambda x: True, lambda x, r: gd.sqrt(_positive(x))),
    "reciprocal": (lambda x: True, lambda x, r: 1 / _positive(x)),
    "tanh": (lambda x: True, lambda x, r: R["tanh"](x)),
    "sigmoid": (lambda x: True, lambda x, r: R["sigmoid"](x)),
    "softplus": (lambda x: True, lambda x, r: R["softplus"](x)),
    "gd.sigmoid": (lambda x: True, lambda x, r: gd.sigmoid(x)),
    "gd.tanh": (lambda x: True, lambda x, r: gd.tanh(x)),
    "relu": (lambda x: True, lambda x, r: gd.relu(x)),
    "square": (lambda x: True, lambda x, r: x**2),
    "cube": (lambda x: True, lambda x, r: x**3),
    "pow1.5": (lambda x: True, lambda x, r: _positive(x) ** 1.5),
    "scale": (lambda x: True, lambda x, r: x * 0.5 + 1.0),
    "sum": (lambda x: x.ndim > 0,
            lambda x, r: gd.sum(x, int(r.integers(x.ndim)), keepdims=bool(r.integers(2)))),
    "mean": (lambda x: x.ndim > 0,
             lambda x, r: gd.mean(x, int(r.integers(x.ndim)), keepdims=bool(r.integers(2)))),
    "max": (lambda x: x.ndim > 0,
            lambda x, r: gd.max(x, int(r.integers(x.ndim)), keepdims=bool(r.integers(2)))),
    "min_all": (lambda x: True, lambda x, r: gd.min(x)),
    "transpose": (lambda x: x.ndim >= 2, lambda x, r: gd.transpose(x)),
    "flatten": (lambda x: True, lambda x, r: gd.reshape(x, (-1,))),
    "expand_dims": (lambda x: x.ndim < 4, lambda x, r: gd.expand_dims(x, 0)),
    "squeeze": (lambda x: 1 in x.shape, lambda x, r: gd.squeeze(x)),
    "slice": (lambda x: x.ndim > 0 and x.shape[-1] >= 2,
              lambda x, r: x[(slice(None),) * (x.ndim - 1) + (slice(1, None),)]),
    "take": (lambda x: x.ndim > 0,
             lambda x, r: gd.take(x, gd.constant(np.array([x.shape[0] - 1, 0, x.shape[0] - 1])),
                                  axis=0)),
    "softmax": (lambda x: x.ndim > 0, lambda x, r: gd.softmax(x)),
    "log_softmax": (lambda x: x.ndim > 0, lambda x, r: gd.log_softmax(x)),
}


def _broadcastable(a, b):
    try:
        np.broadcast_shapes(a.shape, b.shape)
        return True
    except ValueError:
        return False


def _concatenable(a, b):
    return a.ndim == b.ndim >= 1 and a.shape[1:] == b.shape[1:]


def _matmulable(a, b):
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        return False
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        return True
    except ValueError:
        return False


# Binary ops: name -> (applies to the pair?, build).
BINARY = {
    "add": (_broadcastable, lambda a, b: a + b),
    "sub": (_broadcastable, lambda a, b: a - b),
    "mul": (_broadcastable, lambda a, b: a * b),
    "div": (_broadcastable, lambda a, b: a / _positive(b)),
    "maximum": (_broadcastable, gd.maximum),
    "minimum": (_broadcastable, gd.minimum),
    "where": (_broadcastable, lambda a, b: gd.where(a > b, a * 2.0, b)),
    "concatenate": (_concatenable, lambda a, b: gd.concatenate([a, b], axis=0)),
    "matmul": (_matmulable, lambda a, b: a @ b),
}


def _shapes(rng, max_ndim=3, max_dim=3):
    """1-3 input shapes that broadcast together (suffixes of one shape, some dims set to 1); one
    time in four that shape is a small image batch (N, C, H, W)."""
    if rng.random() < 0.25:
        full = (*(int(d) for d in rng.integers(1, 3, 2)), *(int(d) for d in rng.integers(2, 5, 2)))
    else:
        full = tuple(int(d) for d in rng.integers(
            1, max_dim + 1, rng.choice(max_ndim + 1, p=[0.1, 0.3, 0.3, 0.3])))
    out = []
    for _ in range(int(rng.integers(1, 4))):
        keep = len(full) if rng.random() < 0.6 else int(rng.integers(0, len(full) + 1))
        out.append(tuple(1 if rng.random() < 0.25 else d for d in full[len(full) - keep:]))
    return out


def _window(rng, size, dilation):
    """A kernel size (1-3) and a padding for one axis of `size` cells: the padding at most half
    the kernel (PyTorch's limit for pooling), the dilated kernel no longer than the padded
    axis."""
    k = int(rng.integers(1, 4))
    p = int(rng.integers(0, k // 2 + 1))
    while dilation * (k - 1) + 1 > size + 2 * p:
        k -= 1
        p = min(p, k // 2)
    return k, p


def _windows(x, rng, dilation):
    """(kernel, padding, stride) for both spatial axes of the 4-D node `x`; stride 1-2."""
    kernel, padding = zip(*(_window(rng, size, d) for size, d in zip(x.shape[2:], dilation)))
    return kernel, padding, tuple(int(s) for s in rng.integers(1, 3, 2))


def _conv2d(x, rng, new_input):
    """conv2d of `x` by a new weight input (and half of the time a new bias input) with random
    groups, stride, dilation and padding (one time in four 'same', which needs stride 1)."""
    c = x.shape[1]
    groups = int(rng.choice([g for g in range(1, c + 1) if c % g == 0]))
    dilation = tuple(int(d) for d in rng.integers(1, 3, 2))
    kernel, padding, stride = _windows(x, rng, dilation)
    if rng.random() < 0.25:
        padding, stride = "same", (1, 1)
    w = new_input((groups * int(rng.integers(1, 3)), c // groups, *kernel))
    b = new_input(w.shape[:1]) if rng.random() < 0.5 else None
    y = gd.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    weights = w.name + (f", {b.name}" if b is not None else "")
    return y, (f"conv2d({{}}, {weights}, stride={stride}, padding={padding!r}, "
               f"dilation={dilation}, groups={groups})")


def _max_pool2d(x, rng, feeds):
    """max_pool2d of `x` where every window has one clear maximum at `feeds`, else None."""
    dilation = tuple(int(d) for d in rng.integers(1, 3, 2))
    kernel, padding, stride = _windows(x, rng, dilation)
    ceil_mode = bool(rng.integers(2))
    y = gd.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    if not _clear_window_maxima(y, gd.evaluate(x, only(feeds, [x]))):
        return None
    return y, (f"max_pool2d({{}}, {kernel}, stride={stride}, padding={padding}, "
               f"dilation={dilation}, ceil_mode={ceil_mode})")


def _avg_pool2d(x, rng):
    kernel, padding, stride = _windows(x, rng, (1, 1))
    ceil_mode, count_include_pad = (bool(b) for b in rng.integers(2, size=2))
    y = gd.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)
    return y, (f"avg_pool2d({{}}, {kernel}, stride={stride}, padding={padding}, "
               f"ceil_mode={ceil_mode}, count_include_pad={count_include_pad})")



def _clear_window_maxima(node, x, margin=1e-4):
    """Whether each window of the max-pool `node` over the array `x` holds a cell of `x` and
    has its maximum ahead of the runner-up by `margin`. At a tie finite differences see a
    one-sided slope (as at relu's kink) that no gradient rule should be asked to match; relu's
    zeros tie often."""
    a = node.attrs
    cells = [np.arange(n)[:, None] * s + np.arange(k) * d - p for n, s, k, d, p in
             zip(node.shape[2:], a["stride"], a["kernel"], a["dilation"], a["padding"][::2])]
    rows, cols = cells[0][:, None, :, None], cells[1][None, :, None, :]  # (oh, ow, kh, kw)
    h, w = x.shape[2:]
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    if not inside.any(axis=(2, 3)).all():  # a dilated window skipping every cell: -inf
        return False
    windows = np.where(inside, x[:, :, rows.clip(0, h - 1), cols.clip(0, w - 1)], -np.inf)
    top_two = np.sort(windows.reshape(*windows.shape[:4], -1), axis=-1)[..., -2:]
    return bool(np.all(np.diff(top_two, axis=-1) > margin))


def _windowed(x, rng, feeds, new_input):
    """conv2d, max_pool2d or avg_pool2d of the 4-D node `x` (avg_pool2d where a max would
    tie), and the step's description with a slot for `x`'s label."""
    op = int(rng.integers(3))
    if op == 0:
        return _conv2d(x, rng, new_input)
    pooled = _max_pool2d(x, rng, feeds) if op == 1 else None
    return pooled or _avg_pool2d(x, rng)


@st.composite
def random_graph(draw, dtype="float64", max_ops=8):
    """A `GraphCase`: 1-3 inputs of `dtype` (and conv2d's weights), 1 to `max_ops` ops, a
    scalar float output.

    Hypothesis draws a seed, which picks shapes, ops and values: the derandomized examples are
    then varied rather than biased towards the simplest graph. A failing example prints the
    graph's steps (`GraphCase.__repr__`)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_ops = int(rng.integers(1, max_ops + 1))
    inputs = [gd.input(f"x{k}", shape, dtype) for k, shape in enumerate(_shapes(rng))]
    feeds = {i.name: rng.uniform(-1.5, 1.5, i.shape).astype(dtype) for i in inputs}
    pool, nodes, steps = list(inputs), [], []

    def new_input(shape):  # a conv2d weight or bias, scaled to keep outputs near 1
        node = gd.input(f"x{len(inputs)}", shape, dtype)
        scale = 1.5 / np.sqrt(np.prod(shape[1:], dtype=int))
        feeds[node.name] = rng.uniform(-scale, scale, shape).astype(dtype)
        inputs.append(node)
        return node

    for _ in range(n_ops):
        pairs = [(name, a, b) for name, (ok, _) in BINARY.items()
                 for a in pool for b in pool if ok(a, b)]
        images = [n for n in pool if n.ndim == 4]
        if images and rng.random() < 0.5:
            x = images[rng.integers(len(images))]
            node, step = _windowed(x, rng, feeds, new_input)
            steps.append(step.format(_label(x, pool)))
        elif pairs and rng.random() < 0.5:
            name, a, b = pairs[rng.integers(len(pairs))]
            node = BINARY[name][1](a, b)
            steps.append(f"{name}({_label(a, pool)}, {_label(b, pool)})")
        else:
            x = pool[rng.integers(len(pool))]
            choices = [name for name, (ok, _) in UNARY.items() if ok(x)]
            name = choices[rng.integers(len(choices))]
            node = UNARY[name][1](x, rng)
            steps.append(f"{name}({_label(x, pool)})")
        pool.append(node)
        nodes.append(node)
    # Every node no other node uses (inputs included) feeds the output, with random weights.
    used = {id(i) for n in pool for i in gd.topological_order([n]) if i is not n}
    sinks = [n for n in pool if id(n) not in used]
    terms = [gd.sum(n * gd.constant(rng.standard_normal(n.shape).astype(dtype))) for n in sinks]
    output = terms[0]
    for t in terms[1:]:
        output = output + t
    return GraphCase(inputs, feeds, output, nodes, steps)


def _label(node, pool):
    return f"n{pool.index(node)}"


def compiled_vs_interpreter_outputs(case):
    """The nodes a "compiled vs interpreter" check should compare for `case`: the output, its
    gradients with respect to every input, and every intermediate node drawn."""
    return [case.output, *gd.grad(case.output, case.inputs), *case.nodes]
