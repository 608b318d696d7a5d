"""Random programs over graphdl's whole public op set, and their graphdl form.

A `Program` is a list of `Step`s; step k produces slot k, and a step's `args` are earlier slots.
Inputs are steps too (`input`), so a program can grow a fresh operand of exactly the shape an op
needs (a matmul's right side, a convolution's weights). `take` indices and class labels are a
constant half the time and an int64 input (`index_input`, fed, never differentiated) otherwise,
so that optimization cannot fold away their run-time range check. The last step is a scalar
of the program's float dtype (float64 unless drawn otherwise): the sum of every unused slot
weighted by fixed random constants. `constant` steps (the size probes' folded constants) are
graph constants.

The generator evaluates each step in PyTorch as it goes (`torch_ref.run_step`) to learn shapes
and values: the values let it keep log/sqrt/1/x in their domain and plant ties on purpose.
Ties and kinks are frequent by design: a third of the inputs are drawn from {-1, -0.5, 0, 0.5, 1}
(equal maxima in reductions and pooling windows, relu and maximum at exactly 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

import graphdl as gd
from graphdl.ops import layers

from . import torch_ref

GRID = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
COMPARISONS = ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal")
# logical ops select a or b (a > 0 and b as truth values); bitwise ops and shifts of a and b as
# small integers (tanh·64 truncated; a count masked to 0..7), their result added to a
LOGICAL = ("logical_and", "logical_or", "logical_xor")
BITWISE = ("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift",
           "bitwise_right_shift")
BITS = "gd.cast(gd.tanh({}) * 64, 'int64')"
EXPONENTS = (0, 1, 2, 3, -1, -2, 0.5, 1.5, -0.5, math.pi, 2.0000000000000004)
# isnan, isinf and isfinite pick a or -a by their mask of a with `fill` at and below 0 (a
# constant selected: no NumPy warning, which threads turn into errors)
MASKS = ("isnan", "isinf", "isfinite")
LEAVES = ("input", "index_input")  # the steps fed by name: float values and integer indices
# ops of integer or bool results, cast to their operand's dtype (compared exactly); of sort,
# topk, cummax and cummin, which also return indices, the values are a step
CAST_BACK = ("argmax", "argmin", "argsort", "any", "all")
VALUES = ("sort", "topk", "cummax", "cummin")
NORMS = (1, 2, "fro", math.inf, -math.inf, 0, 3, 0.5, 1.5, -1)
# norms whose double backward in PyTorch is NaN at a zero element (p = 2: at a zero norm),
# where graphdl's is 0: their operands are kept away from 0
NAN_SECOND_AT_ZERO = (2, "fro", 0.5, 1.5, -1)
MAX_ELEMENTS = 1 << 22  # no value drawn beyond this (a broadcast of two large slots)


@dataclass(frozen=True)
class Step:
    op: str
    args: tuple = ()
    params: dict = field(default_factory=dict)


@dataclass
class Program:
    seed: int
    steps: list

    @property
    def inputs(self):
        """The differentiable inputs."""
        return [k for k, s in enumerate(self.steps) if s.op == "input"]

    @property
    def fed(self):
        """Every step fed by name: the inputs and the index inputs."""
        return [k for k, s in enumerate(self.steps) if s.op in LEAVES]

    @property
    def dtype(self):
        """The float dtype of every input, constant and value (float64 unless drawn otherwise)."""
        return next((self.steps[k].params["value"].dtype for k in self.inputs),
                    np.dtype(np.float64))

    def feeds(self):
        return {self.steps[k].params["name"]: self.steps[k].params["value"] for k in self.fed}

    def ops(self):
        return sorted({s.op for s in self.steps} - {*LEAVES, "wsum", "add"})

    def code(self):
        """The program as graphdl source: a reproducer to paste."""
        lines = ["import numpy as np", "import graphdl as gd", "from numpy import array, nan, inf",
                 ""]
        for k, step in enumerate(self.steps):
            lines.append(f"v{k} = {_code(step)}")
        feeds = ", ".join(f"{self.steps[k].params['name']!r}: v{k}_value" for k in self.fed)
        values = [f"v{k}_value = {_literal(self.steps[k].params['value'])}" for k in self.fed]
        return "\n".join(lines[:4] + values + lines[4:] + [f"feeds = {{{feeds}}}"])


# ---------------------------------------------------------------- graphdl side
def _where(a, b, cmp):
    return gd.where(getattr(gd, cmp)(a, b), a, b)


def _getitem(a, key):
    return a[key]


def _advanced_index(a, *fed, key):
    """a[key], the fed index input (if any) in place of the key's "i"."""
    return a[tuple(fed[0] if isinstance(k, str) else k for k in key)]


def _round_trip(a, via):
    return gd.cast(gd.cast(a, via), a.dtype)


def _bits(a):
    return gd.cast(gd.tanh(a) * 64, "int64")  # BITS's code


def _count(op, bits):
    """A shift's count in 0..7 (the shifts' edges are tests/test_logic_ops.py's)."""
    return bits & 7 if "shift" in op else bits


def _masked(x, labels, num_classes):
    """x masked by the one-hot rows of its class labels (a constant labels array is made a graph
    constant: `gd.one_hot` takes nodes)."""
    if isinstance(labels, np.ndarray):
        labels = gd.constant(labels)
    return gd.one_hot(labels, num_classes, dtype=x.dtype) * x


# gather/scatter along an axis: the steps' code names the operands in PyTorch's order
ALONG = ("gather", "take_along_axis", "scatter", "scatter_add", "scatter_reduce", "index_select",
         "index_add")

# ops whose slots after x are given by name (instance_norm: PyTorch's order puts running
# statistics first; group_norm and batch_norm: their weight and bias follow other arguments)
NAMED = {"instance_norm": ("weight", "bias"), "rms_norm": ("weight",),
         "group_norm": ("weight", "bias"), "batch_norm": ("weight", "bias")}

GD = {
    "input": lambda name, value: gd.input(name, value.shape, value.dtype.name),
    "index_input": lambda name, value: gd.input(name, value.shape, value.dtype.name),
    "constant": gd.constant,
    "neg": lambda a: -a,
    "posify": lambda a: a * a + 0.5,
    "affine": lambda a, scale, shift: a * scale + shift,
    "pow": lambda a, exponent: a ** exponent,
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "where": _where,
    "getitem": _getitem,
    "advanced_index": _advanced_index,
    "einsum": lambda *xs, equation: gd.einsum(equation, *xs),
    "cast": _round_trip,
    "one_hot": _masked,
    **{op: lambda a, op=op, **p: gd.cast(getattr(gd, op)(a, **p), a.dtype) for op in CAST_BACK},
    **{op: lambda a, op=op, **p: getattr(gd, op)(a, **p).values for op in VALUES},
    "lookup_dot": lambda table, partner, indices: gd.sum(
        gd.take(table, indices, axis=0) * gd.expand_dims(partner, 1), axis=2),
    "gather": lambda x, *i, dim, index=None: gd.gather(x, dim=dim, index=i[0] if i else index),
    "take_along_axis": lambda x, *i, axis, indices=None: gd.take_along_axis(
        x, i[0] if i else indices, axis),
    "scatter": lambda x, src, *i, dim, index=None: gd.scatter(x, dim, i[0] if i else index, src),
    "scatter_add": lambda x, src, *i, dim, index=None: gd.scatter_add(
        x, dim, i[0] if i else index, src),
    "scatter_reduce": lambda x, src, *i, dim, reduce, include_self, index=None: gd.scatter_reduce(
        x, dim, i[0] if i else index, src, reduce, include_self=include_self),
    "index_select": lambda x, *i, dim, index=None: gd.index_select(
        x, dim, i[0] if i else index),
    "index_add": lambda x, src, *i, dim, alpha, index=None: gd.index_add(
        x, dim, i[0] if i else index, src, alpha=alpha),
    "concatenate": lambda *xs, axis: gd.concatenate(list(xs), axis=axis),
    "stack": lambda *xs, axis: gd.stack(list(xs), axis=axis),
    "repeat": lambda a, sizes: gd.repeat(a, *sizes),
    "meshgrid": lambda *xs, indexing, pick: gd.meshgrid(*xs, indexing=indexing)[pick],
    "wsum": lambda a, weights: gd.sum(a * gd.constant(weights)),
    "l2": lambda *ps, lam: gd.l2(*ps, lam=lam),
    "embedding": lambda w, indices, padding_idx: gd.embedding(indices, w, padding_idx),
    **{op: lambda x, *slots, op=op, **p: getattr(gd, op)(x, **dict(zip(NAMED[op], slots)), **p)
       for op in NAMED},
    "random_uniform": lambda x, key: x * gd.random_uniform(key, x, x.dtype),
    "floor_divide": lambda a, b: a // b,
    "remainder": lambda a, b: a % b,
    "power": lambda a, b: a ** b,
    "isclose": lambda a, b, **tolerances: gd.where(gd.isclose(a, b, **tolerances), a, b),
    **{op: lambda a, b, op=op: gd.where(getattr(gd, op)(a > 0, b), a, b) for op in LOGICAL},
    "logical_not": lambda a: gd.where(gd.logical_not(a > 0), a, -a),
    **{op: lambda a, b, op=op: a + gd.cast(getattr(gd, op)(_bits(a), _count(op, _bits(b))),
                                           a.dtype) for op in BITWISE},
    "bitwise_not": lambda a: a + gd.cast(~_bits(a), a.dtype),
    **{mask: lambda a, fill, mask=mask: gd.where(getattr(gd, mask)(gd.where(a > 0, a, fill)),
                                                a, -a) for mask in MASKS},
}


def build(program, steps=None):
    """The graphdl nodes of every slot of `program` (or of `steps`, a shrunk version of it)."""
    nodes = []
    for step in steps or program.steps:
        fn = GD.get(step.op) or getattr(gd, step.op)
        nodes.append(fn(*(nodes[a] for a in step.args), **step.params))
    return nodes


_CODE = {
    "input": "gd.input({name!r}, {shape}, {dtype!r})",
    "index_input": "gd.input({name!r}, {shape}, {dtype!r})",
    "constant": "gd.constant({value})",
    "neg": "-{0}", "posify": "{0} * {0} + 0.5", "affine": "{0} * {scale!r} + {shift!r}",
    "pow": "{0} ** {exponent!r}", "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}",
    "cast": "gd.cast(gd.cast({0}, {via!r}), {0}.dtype)",
    "div": "{0} / {1}", "where": "gd.where(gd.{cmp}({0}, {1}), {0}, {1})", "getitem": "{0}[{key}]",
    "einsum": "gd.einsum({equation!r}, {args})",
    "wsum": "gd.sum({0} * gd.constant({weights}))",
    "concatenate": "gd.concatenate([{args}], axis={axis})",
    "stack": "gd.stack([{args}], axis={axis})", "repeat": "gd.repeat({0}, *{sizes})",
    "meshgrid": "gd.meshgrid({args}, indexing={indexing!r})[{pick}]",
    "floor_divide": "{0} // {1}", "remainder": "{0} % {1}", "power": "{0} ** {1}",
    "random_uniform": "{0} * gd.random_uniform({key!r}, {0}, {0}.dtype)",
    "isclose": "gd.where(gd.isclose({0}, {1}, rtol={rtol!r}, atol={atol!r}, "
               "equal_nan={equal_nan!r}), {0}, {1})",
    **{mask: f"gd.where(gd.{mask}(gd.where({{0}} > 0, {{0}}, {{fill!r}})), {{0}}, -{{0}})"
       for mask in MASKS},
    **{op: f"gd.where(gd.{op}({{0}} > 0, {{1}}), {{0}}, {{1}})" for op in LOGICAL},
    "logical_not": "gd.where(gd.logical_not({0} > 0), {0}, -{0})",
    **{op: f"{{0}} + gd.cast(gd.{op}({BITS.format('{0}')}, {BITS.format('{1}')}"
           f"{' & 7' if 'shift' in op else ''}), {{0}}.dtype)" for op in BITWISE},
    "bitwise_not": f"{{0}} + gd.cast(~{BITS.format('{0}')}, {{0}}.dtype)",
}


def _code(step):
    args = [f"v{a}" for a in step.args]
    if step.op == "lookup_dot":
        indices = args[2] if len(args) > 2 else _literal(step.params["indices"])
        return (f"gd.sum(gd.take({args[0]}, {indices}, axis=0) * gd.expand_dims({args[1]}, 1), "
                "axis=2)")
    if step.op == "embedding":  # the table is the step's first argument, gd's second
        indices = args[1] if len(args) > 1 else _literal(step.params["indices"])
        return f"gd.embedding({indices}, {args[0]}, {step.params['padding_idx']!r})"
    if step.op in NAMED:
        named = [f"{k}={a}" for k, a in zip(NAMED[step.op], args[1:])]
        kwargs = [f"{k}={_literal(v)}" for k, v in step.params.items()]
        return f"gd.{step.op}({', '.join(args[:1] + named + kwargs)})"
    if step.op in ALONG:
        p = dict(step.params)
        key = "indices" if step.op == "take_along_axis" else "index"
        two = ("scatter", "scatter_add", "scatter_reduce", "index_add")
        floats = args[:2] if step.op in two else args[:1]
        index = args[len(floats)] if len(args) > len(floats) else _literal(p.pop(key))
        axis = p.pop("axis", p.pop("dim", None))
        extra = "".join(f", {k}={_literal(v)}" for k, v in p.items())
        if step.op == "take_along_axis":
            return f"gd.take_along_axis({floats[0]}, {index}, {axis})"
        rest = "".join(f", {f}" for f in floats[1:])
        return f"gd.{step.op}({floats[0]}, {axis}, {index}{rest}{extra})"
    if step.op == "advanced_index":
        fed = iter(args[1:])
        key = "".join(f"{next(fed) if isinstance(k, str) else _literal(k)}, "
                      for k in step.params["key"])
        return f"{args[0]}[{key}]"
    if step.op == "one_hot":
        labels = args[1] if len(args) > 1 else f"gd.constant({_literal(step.params['labels'])})"
        return (f"gd.one_hot({labels}, {step.params['num_classes']}, dtype={args[0]}.dtype) * "
                f"{args[0]}")
    if step.op in _CODE:
        p = dict(step.params)
        if step.op in LEAVES:
            value = p.pop("value")
            p["shape"], p["dtype"] = value.shape, value.dtype.name
        for key in ("weights", "value"):
            if key in p:
                p[key] = _literal(p[key])
        return _CODE[step.op].format(*args, args=", ".join(args), **p)
    kwargs = [f"{k}={_literal(v)}" for k, v in step.params.items()]
    code = f"gd.{step.op}({', '.join(args + kwargs)})"
    if step.op in CAST_BACK:
        return f"gd.cast({code}, {args[0]}.dtype)"
    return f"{code}.values" if step.op in VALUES else code


def _literal(value):
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return f"np.zeros({value.shape}, dtype='{value.dtype}')"
        return f"np.array({value.tolist()!r}, dtype='{value.dtype}')"
    return repr(value)


# ---------------------------------------------------------------- the generator
MISSES = 500  # proposals in a row that found no slot, before `grow` adds a fresh input


class NoSlot(Exception):
    """No value of the program fits the op drawn: draw another."""


class Generator:
    """Draws one program from `seed`: `Generator(seed).program(n_ops)`; `dtype` is the float
    dtype of its inputs and constants (float32 programs keep every value in float32's range)."""

    def __init__(self, seed, dtype="float64"):
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.steps, self.values = [], []

    def program(self, n_ops):
        for _ in range(int(self.rng.integers(1, 3))):
            self.fresh(self.shape())
        self.grow(n_ops)
        self.finish()
        return Program(self.seed, self.steps)

    def grow(self, n_ops):
        """Random ops until the program has `n_ops` steps. Where none fits (a program without
        values, and a PROPOSERS cut down to ops that need one: a focused run), after MISSES
        tries a fresh input is added."""
        misses = 0
        while len(self.steps) < n_ops:
            op = str(self.rng.choice(list(PROPOSERS)))
            mark = len(self.steps)
            try:
                self.add(op, *PROPOSERS[op](self))
                misses = 0
            except (NoSlot, RuntimeError, IndexError):  # or PyTorch refuses it (max of empty)
                del self.steps[mark:], self.values[mark:]
                misses += 1
                if misses == MISSES:
                    self.fresh(self.shape())
                    misses = 0

    # -- helpers the proposers use
    def add(self, op, args, params=None):
        step = Step(op, tuple(args), params or {})
        value = torch_ref.run_step(step, [self.values[a] for a in step.args])
        if value.numel() > MAX_ELEMENTS or not self._representable(value):
            raise NoSlot
        self.steps.append(step)
        self.values.append(value)
        return len(self.steps) - 1

    def _representable(self, value):
        """Whether the float64 reference `value` has no finite number beyond the program's
        dtype (float32 would overflow where the reference does not: no bug to find there)."""
        if not value.is_floating_point() or self.dtype == np.float64:
            return True
        big = value.detach().abs() > float(np.finfo(self.dtype).max)
        return not bool(torch.any(big & torch.isfinite(value)))

    def fresh(self, shape, positive=False):
        """A new float input of `shape`; a third of them hold tie-prone grid values."""
        if self.rng.random() < 0.35:
            value = self.rng.choice(GRID, size=shape)
        else:
            value = self.rng.uniform(-2, 2, size=shape)
        if positive:
            value = np.abs(value) + 0.25
        name = f"x{len(self.steps)}"
        return self.add("input", (), {"name": name, "value": np.asarray(value, dtype=self.dtype)})

    def shape(self, ndim=None):
        ndim = int(self.rng.choice(5, p=[0.1, 0.25, 0.3, 0.2, 0.15])) if ndim is None else ndim
        return tuple(int(d) for d in self.rng.integers(1, 5, ndim))

    def shape_of(self, slot):
        return tuple(self.values[slot].shape)

    def pick(self, ok=lambda shape: True):
        """A random float slot whose shape satisfies `ok`; NoSlot if there is none."""
        slots = [k for k, v in enumerate(self.values)
                 if self.steps[k].op != "index_input" and ok(tuple(v.shape))]
        if not slots:
            raise NoSlot
        return int(self.rng.choice(slots))

    def integers(self, value, param):
        """Integer operand `value` of the op being proposed, as (args, params): half the time the
        constant `param`, otherwise a fed int64 input whose range check runs at run time."""
        if self.rng.random() < 0.5:
            return [], {param: value}
        name = f"i{len(self.steps)}"
        return [self.add("index_input", (), {"name": name, "value": value})], {}

    def pick_or_none(self, ok):
        try:
            return self.pick(ok)
        except NoSlot:
            return None

    def positive(self, slot):
        """`slot` itself if its values are comfortably positive, else posify(slot)."""
        if np.all(self.values[slot].detach().numpy() > 0.1):
            return slot
        return self.add("posify", (slot,))

    def axis(self, ndim, allow_none=True):
        if ndim == 0 or (allow_none and self.rng.random() < 0.25):
            return None
        if self.rng.random() < 0.2 and ndim > 1:
            k = int(self.rng.integers(1, ndim + 1))
            return tuple(int(a) for a in self.rng.choice(ndim, k, replace=False))
        a = int(self.rng.integers(ndim))
        return a - ndim if self.rng.random() < 0.3 else a

    def finish(self):
        used = {a for s in self.steps for a in s.args}
        sinks = [k for k in range(len(self.steps)) if k not in used]
        total = None
        for k in sinks:
            weights = np.round(self.rng.standard_normal(self.shape_of(k)), 3)
            weights = np.asarray(weights, self.dtype)
            term = self.add("wsum", (k,), {"weights": weights})
            total = term if total is None else self.add("add", (total, term))


def _unary(op, positive=False, params=None):
    def propose(g):
        slot = g.pick()
        return ([g.positive(slot) if positive else slot], params(g) if params else {})
    return propose


def _pow(g):
    exponent = EXPONENTS[int(g.rng.integers(len(EXPONENTS)))]
    slot = g.pick()
    if not float(exponent).is_integer() or exponent < 0:
        slot = g.positive(slot)
    return [slot], {"exponent": exponent}


def _broadcast_partner(g, shape):
    """A shape broadcasting with `shape`: a suffix of it with some dims set to 1."""
    keep = len(shape) if g.rng.random() < 0.5 else int(g.rng.integers(0, len(shape) + 1))
    return tuple(1 if g.rng.random() < 0.3 else d for d in shape[len(shape) - keep:])


def _binary(positive_b=False, extra=None):
    def propose(g):
        a = g.pick()
        sa = g.shape_of(a)
        b = g.pick_or_none(lambda s: _broadcasts(s, sa))
        if b is None or g.rng.random() < 0.5:
            partner = _broadcast_partner(g, sa)
            b = g.fresh(partner if g.rng.random() < 0.7 else sa)
        if g.rng.random() < 0.5:
            a, b = b, a
        if positive_b:
            b = g.positive(b)
        return [a, b], extra(g) if extra else {}
    return propose


def _broadcasts(s, t):
    """Whether s and t broadcast, to at most MAX_ELEMENTS (two large slots would not)."""
    try:
        return math.prod(np.broadcast_shapes(s, t)) <= MAX_ELEMENTS
    except ValueError:
        return False


def _reduce(g):
    x = g.pick()
    return [x], {"axis": g.axis(len(g.shape_of(x))), "keepdims": bool(g.rng.integers(2))}


def _var(g):
    """var/std with a correction below the number of elements reduced, N (PyTorch warns of
    N - correction <= 0), over at least two elements: over one, the variance is exactly 0,
    where std's second derivative is PyTorch's NaN and graphdl's 0 (documented in
    tests/test_reductions.py); none over nothing."""
    args, params = _reduce(g)
    shape = g.shape_of(args[0])
    axis = params["axis"]
    axes = range(len(shape)) if axis is None else (axis,) if isinstance(axis, int) else axis
    n = math.prod(shape[a] for a in axes)
    if n < 2 or 0 in shape:  # an empty x: PyTorch's N is numel / output numel, 0 / 0
        raise NoSlot
    return args, {**params, "correction": int(g.rng.integers(min(n, 3)))}


def _arg_extremum(g):
    """argmax/argmin along one axis or of x flattened (None), keepdims either way."""
    args, params = _reduce(g)
    axis = params["axis"]
    return args, {**params, "axis": axis[0] if isinstance(axis, tuple) else axis}


def _norm(g):
    p = NORMS[int(g.rng.integers(len(NORMS)))]
    args, params = _reduce(g)
    if p in NAN_SECOND_AT_ZERO and np.any(np.abs(g.values[args[0]].detach().numpy()) < 0.1):
        args = [g.add("posify", args)]
    return args, {**params, "p": p}


def _along_axis(g):
    """An operand of one or more dimensions and an axis of it (maybe negative)."""
    x = g.pick(lambda s: len(s) >= 1)
    ndim = len(g.shape_of(x))
    axis = int(g.rng.integers(ndim))
    return x, axis, axis - ndim if g.rng.random() < 0.3 else axis


def _sort(g):
    x, _, axis = _along_axis(g)
    return [x], {"axis": axis, "descending": bool(g.rng.integers(2))}


def _topk(g):
    x, a, axis = _along_axis(g)
    k = int(g.rng.integers(g.shape_of(x)[a] + 1))
    return [x], {"k": k, "axis": axis, "largest": bool(g.rng.integers(2))}


def _logsumexp(g):
    """logsumexp over one axis or several."""
    x = g.pick(lambda s: len(s) >= 1)
    axis = g.axis(len(g.shape_of(x)), allow_none=False)
    return [x], {"axis": axis, "keepdims": bool(g.rng.integers(2))}


def _scan(g):
    """A scan along one axis, or of x flattened (None), either way."""
    x = g.pick()
    ndim = len(g.shape_of(x))
    axis = g.axis(ndim) if ndim else None
    axis = axis[0] if isinstance(axis, tuple) else axis  # one axis, or None: the flattened x
    return [x], {"axis": axis, "reverse": bool(g.rng.integers(2))}


def _allreduce(g):
    """The collective, run by one worker: the identity, its gradient too (weighted or not)."""
    how = str(g.rng.choice(["mean", "sum"]))
    weight = {"weight": 3.0} if how == "mean" and g.rng.integers(2) else {}
    return [g.pick()], {"op": how, **weight}


def _random_uniform(g):
    """x times a draw of x's shape and dtype: the backends' draws meet in the product."""
    return [g.pick()], {"key": int(g.rng.integers(-(1 << 40), 1 << 40))}


def _within(domain):
    """A unary op's proposer whose operand `domain(g, slot)` moves into the op's domain."""
    return lambda g: ([domain(g, g.pick())], {})


def _unit(g, slot, scale=0.9):
    """`slot` squashed into (-scale, scale): asin, acos, atanh, tan (no pole), log1p."""
    return g.add("affine", (g.add("tanh", (slot,)),), {"scale": scale, "shift": 0.0})


def _above_one(g, slot):
    """`slot` moved beyond 1.1: acosh."""
    return g.add("affine", (g.positive(slot),), {"scale": 1.0, "shift": 1.0})


def _nonzero(g, slot):
    """`slot` moved at least 0.1 away from 0, of either sign."""
    slot = g.positive(slot)
    return g.add("neg", (slot,)) if g.rng.random() < 0.5 else slot


def _divisor(g):
    """(a, b), b nonzero: floor_divide, remainder, fmod."""
    (a, b), _ = _binary()(g)
    return [a, _nonzero(g, b)], {}


def _copysign(g):
    """(a, b), a nonzero: at a = 0, PyTorch's copysign has a NaN second derivative (0/0)."""
    (a, b), _ = _binary()(g)
    return [_nonzero(g, a), b], {}


def _power(g):
    """A positive base (the exponent's gradient is a^b·log a) to an exponent in (-3, 3): no
    overflow, nor in the training steps."""
    (a, b), _ = _binary()(g)
    return [g.positive(a), _unit(g, b, 3.0)], {}


def _tolerances(g):
    return {"rtol": float(g.rng.choice([1e-5, 0.1, 0.5])),
            "atol": float(g.rng.choice([0.0, 1e-8, 0.1])), "equal_nan": bool(g.rng.integers(2))}


def _reshape(g):
    x = g.pick()
    size = math.prod(g.shape_of(x))
    dims = []
    rest = size
    for _ in range(int(g.rng.integers(0, 4))):
        divisors = [d for d in range(1, rest + 1) if rest % d == 0] or [1]  # rest 0: empty
        d = int(g.rng.choice(divisors))
        dims.append(d)
        rest //= d
    dims.append(rest)
    g.rng.shuffle(dims)
    if g.rng.random() < 0.3:
        dims[int(g.rng.integers(len(dims)))] = -1
    return [x], {"shape": tuple(int(d) for d in dims)}


def _transpose(g):
    x = g.pick(lambda s: len(s) >= 2)
    ndim = len(g.shape_of(x))
    axes = None if g.rng.random() < 0.3 else tuple(int(a) for a in g.rng.permutation(ndim))
    return [x], {"axes": axes}


def _broadcast_to(g):
    x = g.pick(lambda s: len(s) <= 3)
    shape = tuple(d if d != 1 else int(g.rng.integers(1, 4)) for d in g.shape_of(x))
    lead = tuple(int(d) for d in g.rng.integers(1, 4, int(g.rng.integers(0, 2))))
    return [x], {"shape": lead + shape}


def _expand_dims(g):
    x = g.pick(lambda s: len(s) <= 3)
    return [x], {"axis": int(g.rng.integers(-len(g.shape_of(x)) - 1, len(g.shape_of(x)) + 1))}


def _squeeze(g):
    x = g.pick(lambda s: 1 in s)
    ones = [i for i, d in enumerate(g.shape_of(x)) if d == 1]
    return [x], {"axis": None if g.rng.random() < 0.4 else int(g.rng.choice(ones))}


def _concatenate(g):
    x = g.pick(lambda s: len(s) >= 1)
    shape = g.shape_of(x)
    axis = int(g.rng.integers(len(shape)))
    parts = [x]
    for _ in range(int(g.rng.integers(1, 3))):
        other = list(shape)
        other[axis] = int(g.rng.integers(1, 4))
        same = g.pick_or_none(lambda s: len(s) == len(shape) and all(
            i == axis or a == b for i, (a, b) in enumerate(zip(s, shape))))
        parts.append(same if same is not None and g.rng.random() < 0.5 else g.fresh(tuple(other)))
    return parts, {"axis": axis - len(shape) if g.rng.random() < 0.3 else axis}


def _getitem(g):
    x = g.pick(lambda s: len(s) >= 1)
    key = []
    for d in g.shape_of(x)[: int(g.rng.integers(1, len(g.shape_of(x)) + 1))]:
        r = g.rng.random()
        if d == 0:
            key.append(slice(None))
        elif r < 0.25:
            key.append(int(g.rng.integers(-d, d)))
        elif r < 0.4:
            key.append(slice(None))
        else:
            start = int(g.rng.integers(-d, d))
            stop = int(g.rng.integers(-d - 1, d + 1))
            step = int(g.rng.choice([1, 1, 2, -1, -2]))
            key.append(slice(start, stop, step))
    return [x], {"key": tuple(key)}


def _advanced_index(g):
    """x[key] with NumPy's advanced indexing: a constant boolean mask over the leading axes, or
    index arrays (repeats, negatives; broadcast together; the first fed half the time) on one
    or two axes, adjacent or apart, at times an int among them, a slice or None beside them."""
    x = g.pick(lambda s: len(s) >= 1 and 0 not in s)
    shape = g.shape_of(x)
    if g.rng.random() < 0.2:
        return [x], {"key": (g.rng.random(shape[:int(g.rng.integers(1, len(shape) + 1))]) < 0.6,)}
    axes = sorted(g.rng.choice(len(shape), int(g.rng.integers(1, min(len(shape), 2) + 1)),
                               replace=False))
    slices = [slice(None), slice(1, None), slice(None, None, 2)]
    key = [slices[int(g.rng.integers(3))] for _ in shape]
    both = tuple(int(d) for d in g.rng.integers(1, 4, int(g.rng.integers(1, 3))))
    args = []
    for k, a in enumerate(axes):
        if k and g.rng.random() < 0.25:
            key[a] = int(g.rng.integers(-shape[a], shape[a]))
            continue
        own = tuple(1 if g.rng.random() < 0.3 else d for d in both)
        value = g.rng.integers(-shape[a], shape[a], own)
        fed, params = g.integers(np.asarray(value, dtype=np.int64), "index") if k == 0 else (
            [], {"index": value})
        args += fed
        key[a] = params["index"] if params else "i"
    key = key[:max(axes) + 1 + int(g.rng.integers(2))]
    if g.rng.random() < 0.2:
        key.insert(int(g.rng.integers(len(key) + 1)), None)
    return [x, *args], {"key": tuple(key)}


def _einsum(g):
    """einsum of one or two operands by a random equation: a letter repeated over axes of one
    size (a diagonal), letters shared (batch or contracted) and a size-1 one broadcast, at times
    '...' for the leading axes; the output implicit, or explicit with a random choice of
    letters in a random order."""
    x = g.pick(lambda s: 1 <= len(s) <= 4)
    shape = g.shape_of(x)
    dots = int(g.rng.integers(1, len(shape) + 1)) if g.rng.random() < 0.25 else 0
    letters, sizes, term = iter("abcdefgh"), {}, []
    for d in shape[dots:]:
        same = [c for c in term if sizes[c] == d]
        if same and g.rng.random() < 0.3:
            term.append(str(g.rng.choice(same)))
        else:
            term.append(next(letters))
            sizes[term[-1]] = d
    terms, args = ["..." * bool(dots) + "".join(term)], [x]
    if g.rng.random() < 0.6:
        shared = [c for c in sizes if g.rng.random() < 0.6]
        new = [next(letters) for _ in range(int(g.rng.integers(0 if shared else 1, 3)))]
        sizes.update({c: int(g.rng.integers(1, 4)) for c in new})
        other = [str(c) for c in g.rng.permutation(shared + new)]
        args.append(g.fresh(tuple(1 if g.rng.random() < 0.1 else sizes[c] for c in other)))
        terms.append("".join(other))
    equation = ",".join(terms)
    if g.rng.random() < 0.6:
        out = [str(c) for c in g.rng.permutation(list(sizes)) if g.rng.random() < 0.6]
        equation += "->" + "..." * (dots and g.rng.random() < 0.7) + "".join(out)
    return args, {"equation": equation}


def _take(g):
    x = g.pick(lambda s: len(s) >= 1 and 0 not in s)
    shape = g.shape_of(x)
    axis = None if g.rng.random() < 0.25 else int(g.rng.integers(len(shape)))
    n = math.prod(shape) if axis is None else shape[axis]
    idx_shape = tuple(int(d) for d in g.rng.integers(1, 4, int(g.rng.integers(0, 3))))
    indices = g.rng.integers(-n, n, idx_shape)  # repeats on purpose; negatives as NumPy's
    args, params = g.integers(np.asarray(indices, dtype=np.int64), "indices")
    return [x, *args], {**params, "axis": axis}


def _index_of(g, value, name):
    """The integer operand `value` as (args, params) under the key `name` (see `integers`)."""
    args, params = g.integers(np.asarray(value, dtype=np.int64), "index")
    return args, {name: params["index"]} if params else {}


def _gather(g, numpy_form=False):
    """torch.gather (indices as large as x or smaller off the axis, repeats, no negatives), or
    numpy.take_along_axis (either side 1 off the axis broadcasting, negatives from the end)."""
    x = g.pick(lambda s: len(s) >= 1 and 0 not in s)
    shape = g.shape_of(x)
    axis = int(g.rng.integers(len(shape)))
    n = shape[axis]
    off = [int(g.rng.choice([d, 1])) if numpy_form else int(g.rng.integers(1, d + 1))
           for d in shape]
    off[axis] = int(g.rng.integers(1, 4))
    indices = g.rng.integers(-n if numpy_form else 0, n, tuple(off))
    if numpy_form:
        args, params = _index_of(g, indices, "indices")
        return [x, *args], {**params, "axis": axis}
    args, params = _index_of(g, indices, "index")
    return [x, *args], {**params, "dim": axis}


def _scatter(g, add=True):
    """torch.scatter_add (repeats add up) or torch.scatter (distinct indices along each line:
    PyTorch leaves repeats undefined), with indices of at most x's size, src as large."""
    x = g.pick(lambda s: len(s) >= 1 and 0 not in s)
    shape = g.shape_of(x)
    axis = int(g.rng.integers(len(shape)))
    n = shape[axis]
    off = [int(g.rng.integers(1, d + 1)) for d in shape]
    off[axis] = int(g.rng.integers(1, 4)) if add else int(g.rng.integers(1, n + 1))
    if add:
        indices = g.rng.integers(0, n, tuple(off))
    else:
        lines = np.moveaxis(np.zeros(off), axis, -1)
        picks = [g.rng.permutation(n)[:off[axis]] for _ in range(lines[..., 0].size)]
        indices = np.moveaxis(np.reshape(picks, lines.shape), -1, axis)
    src = g.pick_or_none(lambda s: s == tuple(off))
    src = g.fresh(tuple(off)) if src is None else src
    args, params = _index_of(g, indices, "index")
    return [x, src, *args], {**params, "dim": axis}


def _scatter_reduce(g):
    """torch.scatter_reduce, sum, mean or prod (amax and amin, whose gradients split ties as
    PyTorch's do not, are left to tests/test_gather_scatter.py), with or without x's own."""
    args, params = _scatter(g)
    params["reduce"] = str(g.rng.choice(["sum", "mean", "prod"]))
    params["include_self"] = bool(g.rng.random() < 0.5)
    if params["reduce"] == "prod" and int((g.values[args[1]] == 0).sum()) > 1:
        params["reduce"] = "sum"  # PyTorch has no double backward of a product of two zeros
    return args, params


def _index_select(g, add=False):
    """torch.index_select (1-D indices, repeats) or torch.index_add (repeats add up)."""
    x = g.pick(lambda s: len(s) >= 1 and 0 not in s)
    shape = g.shape_of(x)
    axis = int(g.rng.integers(len(shape)))
    indices = g.rng.integers(0, shape[axis], int(g.rng.integers(1, 5)))
    args, params = _index_of(g, indices, "index")
    if not add:
        return [x, *args], {**params, "dim": axis}
    src_shape = shape[:axis] + (len(indices),) + shape[axis + 1:]
    src = g.pick_or_none(lambda s: s == src_shape)
    src = g.fresh(src_shape) if src is None else src
    alpha = float(g.rng.choice([1.0, 1.0, -0.5, 2.0]))
    return [x, src, *args], {**params, "dim": axis, "alpha": alpha}


def _lookup_dot(g):
    """Scores of looked-up rows against a partner, word2vec's shape: rows of a fresh (V, D)
    table at indices (B, K) (repeats, negatives), times the partner (B, D) broadcast over K,
    summed over D. The table's sgd-step update is sparse, its gradient an outer product."""
    partner = g.pick(lambda s: len(s) == 2 and 0 not in s)
    b, d = g.shape_of(partner)
    v = int(g.rng.integers(2, 6))
    table = g.fresh((v, d))
    indices = g.rng.integers(-v, v, (b, int(g.rng.integers(1, 4))))
    args, params = g.integers(np.asarray(indices, dtype=np.int64), "indices")
    return [table, partner, *args], params


def _matmul(g):
    """a @ fresh or fresh @ a, with 1-D operands and broadcast batch dimensions."""
    a = g.pick(lambda s: 1 <= len(s) <= 4)
    sa = g.shape_of(a)
    batch = _broadcast_partner(g, sa[:-2]) if len(sa) > 2 else ()
    n = int(g.rng.integers(1, 4))
    if len(sa) >= 2 and g.rng.random() < 0.3:
        left = (sa[-2],) if g.rng.random() < 0.3 else batch + (n, sa[-2])
        return [g.fresh(left), a], {}
    right = (sa[-1],) if g.rng.random() < 0.2 else batch + (sa[-1], n)
    return [a, g.fresh(right)], {}


def _image(g, channels=None):
    x = g.pick_or_none(lambda s: len(s) == 4 and min(s[1:]) >= 1 and min(s[2:]) >= 2
               and s[1] % (channels or 1) == 0)
    if x is None or g.rng.random() < 0.3:
        c = int(g.rng.integers(1, 3)) * (channels or 1)
        x = g.fresh((int(g.rng.choice([0, 1, 1, 2, 2, 2])), c, int(g.rng.integers(3, 8)),
                     int(g.rng.integers(3, 8))))
    return x


def _conv2d(g):
    groups = int(g.rng.choice([1, 1, 2]))
    x = _image(g, groups)
    _, c, h, w = g.shape_of(x)
    o = groups * int(g.rng.integers(1, 3))
    kh, kw = int(g.rng.integers(1, min(h, 3) + 1)), int(g.rng.integers(1, min(w, 3) + 1))
    dilation = 1 if g.rng.random() < 0.6 else (int(g.rng.integers(1, 3)), 1)
    stride = 1 if g.rng.random() < 0.5 else (int(g.rng.integers(1, 3)), int(g.rng.integers(1, 3)))
    r = g.rng.random()
    if r < 0.3 and stride == 1:
        padding = "same"
    elif r < 0.5:
        padding = tuple(int(p) for p in g.rng.integers(0, 3, 4))
    else:
        padding = int(g.rng.integers(0, 2))
    dh = dilation if isinstance(dilation, int) else dilation[0]
    if padding != "same" and h + (padding if isinstance(padding, int) else sum(padding[:2])) \
            < dh * (kh - 1) + 1:
        dilation = 1
    weight = g.fresh((o, c // groups, kh, kw))
    args = [x, weight] + ([g.fresh((o,))] if g.rng.random() < 0.5 else [])
    return args, {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


def _volume(g, channels=1):
    """An (N, C, D, H, W) slot or a fresh one: depth 1 to 4, height and width 2 to 4."""
    x = g.pick_or_none(lambda s: len(s) == 5 and min(s[1:]) >= 1 and s[1] % channels == 0)
    if x is None or g.rng.random() < 0.3:
        c = int(g.rng.integers(1, 3)) * channels
        x = g.fresh((int(g.rng.choice([0, 1, 2, 2])), c, int(g.rng.integers(1, 5)),
                     int(g.rng.integers(2, 5)), int(g.rng.integers(2, 5))))
    return x


def _conv3d(g):
    """Volumes of depth 1 to 4 (depth 1: one tap; kernels deeper than the volume fit only
    padded), padding as an int, a triple or six sides, strides and dilations per axis."""
    groups = int(g.rng.choice([1, 1, 2]))
    x = _volume(g, groups)
    _, c, *sizes = g.shape_of(x)
    o = groups * int(g.rng.integers(1, 3))
    r = g.rng.random()
    padding = ((1, 0, 1) if r < 0.3 else tuple(int(p) for p in g.rng.integers(0, 2, 6))
               if r < 0.6 else int(g.rng.integers(0, 2)))
    sides = [padding] * 6 if isinstance(padding, int) else (
        [p for p in padding for _ in (0, 1)] if len(padding) == 3 else list(padding))
    stride = tuple(int(s) for s in g.rng.integers(1, 3, 3))
    dilation = tuple(int(d) for d in g.rng.integers(1, 3, 3))
    kernel = []
    for a, n in enumerate(sizes):
        room = n + sides[2 * a] + sides[2 * a + 1]
        k = int(g.rng.integers(1, 4))
        if dilation[a] * (k - 1) + 1 > room:
            k = 1 + (room - 1) // dilation[a]
        kernel.append(k)
    args = [x, g.fresh((o, c // groups, *kernel))] + (
        [g.fresh((o,))] if g.rng.random() < 0.5 else [])
    return args, {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


def _sequence(g, channels):
    x = g.pick_or_none(lambda s: len(s) == 3 and s[1] >= 1 and s[2] >= 2 and s[1] % channels == 0)
    if x is None or g.rng.random() < 0.3:
        c = int(g.rng.integers(1, 3)) * channels
        x = g.fresh((int(g.rng.choice([0, 1, 2, 2])), c, int(g.rng.integers(3, 9))))
    return x


def _conv1d(g):
    groups = int(g.rng.choice([1, 1, 2]))
    x = _sequence(g, groups)
    _, c, n = g.shape_of(x)
    o, k = groups * int(g.rng.integers(1, 3)), int(g.rng.integers(1, min(n, 4) + 1))
    stride, dilation = int(g.rng.integers(1, 3)), int(g.rng.integers(1, 3))
    r = g.rng.random()
    padding = ("same" if r < 0.3 and stride == 1 else "valid" if r < 0.4
               else int(g.rng.integers(0, 3)))
    if n + 2 * (padding if isinstance(padding, int) else 0) < dilation * (k - 1) + 1:
        dilation = 1
    args = [x, g.fresh((o, c // groups, k))] + ([g.fresh((o,))] if g.rng.random() < 0.5 else [])
    return args, {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


def _conv_transpose(dims):
    """conv_transpose1d/2d/3d: output_padding below the stride or the dilation, padding that
    leaves at least one output row (3-D: sometimes six sides)."""
    def propose(g):
        groups = int(g.rng.choice([1, 1, 2]))
        x = {1: _sequence, 2: _image, 3: _volume}[dims](g, groups)
        c, sizes = g.shape_of(x)[1], g.shape_of(x)[2:]
        kernel = tuple(int(g.rng.integers(1, 4)) for _ in sizes)
        stride = tuple(int(g.rng.integers(1, 4)) for _ in sizes)
        dilation = tuple(int(g.rng.integers(1, 3)) for _ in sizes)
        extra = tuple(int(g.rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        full = [(n - 1) * s + d * (k - 1) + 1 for n, k, s, d in zip(sizes, kernel, stride,
                                                                     dilation)]
        padding = tuple(int(g.rng.integers(0, min(2, (f - 1) // 2) + 1)) for f in full)
        if dims == 3 and g.rng.random() < 0.3:
            padding = tuple(int(g.rng.integers(0, min(1, (f - 1) // 2) + 1))
                            for f in full for _ in (0, 1))
        per_group = int(g.rng.integers(1, 3))
        args = [x, g.fresh((c, per_group) + kernel)]
        if g.rng.random() < 0.5:
            args.append(g.fresh((per_group * groups,)))
        one = (lambda t: t[0]) if dims == 1 else (lambda t: t)
        return args, {"stride": one(stride), "padding": one(padding),
                      "output_padding": one(extra), "groups": groups, "dilation": one(dilation)}
    return propose


def _pool_params(g, x, max_pool):
    """A window per spatial axis (1, 2 or 3 of them) that fits, padding up to half of it."""
    sizes = g.shape_of(x)[2:]
    k = tuple(int(g.rng.integers(1, min(n, 3) + 1)) for n in sizes)
    stride = (None if g.rng.random() < 0.3
              else tuple(int(g.rng.integers(1, 3)) for _ in sizes))
    padding = tuple(int(g.rng.integers(0, a // 2 + 1)) for a in k)
    params = {"kernel_size": k, "stride": stride, "padding": padding,
              "ceil_mode": bool(g.rng.integers(2))}
    if max_pool:
        d = int(g.rng.integers(1, 3))
        if all(n + 2 * p >= d * (a - 1) + 1 for n, p, a in zip(sizes, padding, k)):
            params["dilation"] = d
    else:
        params["count_include_pad"] = bool(g.rng.integers(2))
    return params


def _pool(max_pool, dims=2):
    def propose(g):
        x = {1: lambda: _sequence(g, 1), 2: lambda: _image(g), 3: lambda: _volume(g)}[dims]()
        return [x], _pool_params(g, x, max_pool)
    return propose


def _interpolate(g):
    """interpolate of an image or of an (N, C, L) signal, in every mode, by a size or a scale
    factor (one per axis or one for all), up to about twice the size."""
    if g.rng.random() < 0.3:
        x = g.pick_or_none(lambda s: len(s) == 3 and min(s[1:]) >= 1)
        x = g.fresh((int(g.rng.integers(1, 3)), 2, int(g.rng.integers(2, 8)))) if x is None else x
        mode = str(g.rng.choice(["nearest", "nearest-exact", "linear", "area"]))
    else:
        x = _image(g)
        mode = str(g.rng.choice(["nearest", "nearest-exact", "bilinear", "area"]))
    spatial = g.shape_of(x)[2:]
    params = {"mode": mode}
    if g.rng.random() < 0.5:
        sizes = tuple(int(g.rng.integers(1, 2 * d + 2)) for d in spatial)
        params["size"] = sizes if g.rng.random() < 0.7 else sizes[0]
    else:
        factors = tuple(float(g.rng.choice([0.5, 0.75, 1.0, 1.3, 1.5, 2.0, 2.5]))
                        for _ in spatial)
        if any(int(d * f) < 1 for d, f in zip(spatial, factors)):
            raise NoSlot
        params["scale_factor"] = factors if g.rng.random() < 0.7 else factors[0]
    if "linear" in mode and g.rng.random() < 0.7:
        params["align_corners"] = bool(g.rng.integers(2))
    return [x], params


def _adaptive_pool(g):
    """An output size up to one more than the input's (bins may overlap), a None keeping an
    axis, or one int for both."""
    x = _image(g)
    h, w = g.shape_of(x)[2:]
    size = [int(g.rng.integers(1, h + 2)), int(g.rng.integers(1, w + 2))]
    r = g.rng.random()
    if r < 0.2:
        size[int(g.rng.integers(2))] = None
    return [x], {"output_size": size[0] if r > 0.85 else tuple(size)}


def _adaptive_pool1d(g):
    """An (N, C, L) signal or an unbatched (C, L) one, an output size up to one more than L."""
    if g.rng.random() < 0.3:
        x = g.fresh((int(g.rng.integers(1, 3)), int(g.rng.integers(2, 9))))
    else:
        x = _sequence(g, 1)
    size = int(g.rng.integers(1, g.shape_of(x)[-1] + 2))
    return [x], {"output_size": size if g.rng.random() < 0.7 else (size,)}


def _unfold(g):
    x = g.pick(lambda s: len(s) >= 1 and min(s) >= 1)
    shape = g.shape_of(x)
    dimension = int(g.rng.integers(-len(shape), len(shape)))
    size = int(g.rng.integers(0 if g.rng.random() < 0.1 else 1, shape[dimension] + 1))
    return [x], {"dimension": dimension, "size": size, "step": int(g.rng.integers(1, 4))}


def _softmax_like(op):
    def propose(g):
        x = g.pick(lambda s: len(s) >= 1)
        ndim = len(g.shape_of(x))
        params = {"axis": int(g.rng.integers(-ndim, ndim))}
        return [x], params
    return propose


def _softmin(g):
    """softmin along one axis, named `axis` or `dim` (PyTorch's)."""
    args, params = _softmax_like("softmin")(g)
    return args, {_spelling(g, "axis", "dim"): params["axis"]}


def _prelu(g):
    """prelu with one slope (0-d or (1,)) or, for x of two or more axes, one per channel; x
    nonzero: at x = 0, PyTorch's double backward takes the side x ≥ 0, which is not the
    derivative of its own first derivative (tests/test_functional_forms.py)."""
    x = _nonzero(g, g.pick())
    shape = g.shape_of(x)
    r = g.rng.random()
    slopes = (shape[1],) if len(shape) >= 2 and r < 0.6 else (1,) if r < 0.8 else ()
    return [x, g.fresh(slopes)], {}


def _layer_norm(g):
    """Normalized over the last one or two axes, none of them empty."""
    x = g.pick(lambda s: len(s) >= 1 and 0 not in s[-2:])
    shape = g.shape_of(x)
    k = int(g.rng.integers(1, min(2, len(shape)) + 1))
    return [x], {"normalized_shape": tuple(shape[-k:])}


def _linear(g):
    """x @ wᵀ (+ b) with a fresh weight (out_features, in_features) and, half the time, bias."""
    x = g.pick(lambda s: 1 <= len(s) <= 3)
    n_in, n_out = g.shape_of(x)[-1], int(g.rng.integers(1, 4))
    args = [x, g.fresh((n_out, n_in))]
    if g.rng.random() < 0.5:
        args.append(g.fresh((n_out,)))
    return args, {}


def _embedding(g):
    """Rows of a 2-D slot at constant indices (repeats on purpose), half the time with a
    padding_idx that the indices hit."""
    w = g.pick(lambda s: len(s) == 2 and s[0] >= 1)
    n = g.shape_of(w)[0]
    idx_shape = tuple(int(d) for d in g.rng.integers(1, 4, int(g.rng.integers(0, 3))))
    indices = np.asarray(g.rng.integers(0, n, idx_shape), dtype=np.int64)
    padding_idx = int(g.rng.integers(-n, n)) if g.rng.random() < 0.5 else None
    return [w], {"indices": indices, "padding_idx": padding_idx}


def _dropout(g):
    """x · mask / (1 − p) with a keep-mask drawn from a key (the PyTorch form reads graphdl's
    reference draw) or a constant one (bool or float, as x or broadcast)."""
    x = g.pick()
    shape = g.shape_of(x)
    p = float(g.rng.choice([0.0, 0.25, 0.5, 0.8, 1.0]))
    if g.rng.random() < 0.5:
        return [x], {"p": p, "key": int(g.rng.integers(-(1 << 40), 1 << 40))}
    mask_shape = shape[1:] if shape and g.rng.random() < 0.3 else shape
    mask = layers.dropout_mask(mask_shape, p, int(g.rng.integers(1 << 16)))
    if g.rng.random() < 0.5:
        mask = mask.astype(g.dtype)
    return [x], {"p": p, "mask": mask}


def _attention(g):
    """q a slot (..., L, E); fresh k (..., S, E) and v (..., S, Ev); no mask, causal, a bool mask
    (rows with no key kept among them) or a float one (some -inf), a scale half the time."""
    q = g.pick(lambda s: 2 <= len(s) <= 4 and 0 not in s)
    shape = g.shape_of(q)
    batch, length, e = shape[:-2], shape[-2], shape[-1]
    s, ev = int(g.rng.integers(1, 5)), int(g.rng.integers(1, 4))
    args = [q, g.fresh((*batch, s, e)), g.fresh((*batch, s, ev))]
    params = {"attn_mask": None, "is_causal": False, "scale": None}
    r = g.rng.random()
    if r < 0.25:
        params["is_causal"] = True
    elif r < 0.5:
        params["attn_mask"] = g.rng.random((length, s)) < 0.7
    elif r < 0.75:
        m = g.rng.standard_normal((length, s))
        params["attn_mask"] = np.where(g.rng.random((length, s)) < 0.2, -np.inf, m).astype(g.dtype)
    if g.rng.random() < 0.5:
        params["scale"] = float(g.rng.choice([0.5, 1.0, 2.0]))
    return args, params


def _affine_params(g, c):
    """Half the time a fresh weight and bias per channel."""
    return [g.fresh((c,)), g.fresh((c,))] if g.rng.random() < 0.5 else []


def _group_norm(g):
    """x (N, C, ...) in num_groups groups dividing C, each of more than one value (as PyTorch
    requires), with weight and bias half the time."""
    x = g.pick(lambda s: 2 <= len(s) <= 4 and 0 not in s and math.prod(s[1:]) >= 2)
    shape = g.shape_of(x)
    c, size = shape[1], math.prod(shape[1:])
    groups = int(g.rng.choice([d for d in range(1, c + 1) if c % d == 0 and size // d >= 2]))
    return [x, *_affine_params(g, c)], {"num_groups": groups}


def _instance_norm(g):
    """x (N, C, ...) of more than one spatial value (as PyTorch requires), weight and bias half
    the time (given by name: PyTorch's order has the running statistics first)."""
    x = g.pick(lambda s: 3 <= len(s) <= 5 and 0 not in s and math.prod(s[2:]) >= 2)
    wb = _affine_params(g, g.shape_of(x)[1])
    return [x, *wb], {"eps": float(g.rng.choice([1e-5, 0.5]))}


def _local_response_norm(g):
    """x (N, C, ...) with a window of up to two more than the channels, and parameters that make
    the normalization matter."""
    x = g.pick(lambda s: 3 <= len(s) <= 5)
    size = int(g.rng.integers(1, g.shape_of(x)[1] + 3))
    return [x], {"size": size, "alpha": float(g.rng.choice([1e-4, 0.5, 2.0])),
                 "beta": float(g.rng.choice([0.75, 0.5, 1.5])),
                 "k": float(g.rng.choice([1.0, 2.0]))}


def _normalize(g):
    """normalize over one axis or several, by a p-norm; operands positive for the p whose
    second derivative PyTorch has as NaN at a zero element (`NAN_SECOND_AT_ZERO`); an eps of
    0.5 clamps often (and at exactly 0.5 with the grid's values)."""
    x = g.pick(lambda s: len(s) >= 1)
    p = NORMS[int(g.rng.integers(len(NORMS)))]
    if p in NAN_SECOND_AT_ZERO:
        x = g.positive(x)
    return [x], {"p": p, "dim": g.axis(len(g.shape_of(x)), allow_none=False),
                 "eps": float(g.rng.choice([1e-12, 0.5]))}


def _rms_norm(g):
    """Over the last one or two axes, none of them empty, with a weight half the time; eps
    None (the dtype's machine epsilon) or a number."""
    (x,), params = _layer_norm(g)
    weight = [g.fresh(params["normalized_shape"])] if g.rng.random() < 0.5 else []
    return [x, *weight], {**params, "eps": None if g.rng.random() < 0.5 else 1e-3}


def _batch_norm(g):
    """x (N, C, ...) by constant running statistics, or by the batch's (training; more than one
    value per channel, as PyTorch requires), with weight and bias half the time."""
    x = g.pick(lambda s: 2 <= len(s) <= 4 and 0 not in s)
    shape = g.shape_of(x)
    c = shape[1]
    params = {"running_mean": None, "running_var": None, "training": True}
    if math.prod(shape) // c < 2 or g.rng.random() < 0.5:
        params = {"running_mean": g.rng.uniform(-1, 1, c).astype(g.dtype),
                  "running_var": g.rng.uniform(0.25, 2, c).astype(g.dtype), "training": False}
    return [x, *_affine_params(g, c)], params


def _labels(g, shape, classes):
    return np.asarray(g.rng.integers(0, classes, shape), dtype=np.int64)


def _cross_entropy(g):
    x = g.pick(lambda s: 1 <= len(s) <= 3 and s[-1] >= 1)  # a class axis
    shape = g.shape_of(x)
    if g.rng.random() < 0.6:
        args, params = g.integers(_labels(g, shape[:-1], shape[-1]), "labels")
        return [x, *args], params
    target = g.fresh(shape, positive=True)  # probabilities: a differentiable soft target
    return [x, g.add("softmax", (target,), {"axis": -1})], {}


def _hinge(g):
    x = g.pick(lambda s: 1 <= len(s) <= 3 and s[-1] >= 1)  # a class axis
    shape = g.shape_of(x)
    args, params = g.integers(_labels(g, shape[:-1], shape[-1]), "labels")
    return [x, *args], params


def _one_hot(g):
    """x times the one-hot rows of class labels over its last axis (the labels a constant or a
    fed int64 input, whose range check runs at run time)."""
    x = g.pick(lambda s: 1 <= len(s) <= 3 and s[-1] >= 1)  # a class axis
    shape = g.shape_of(x)
    args, params = g.integers(_labels(g, shape[:-1], shape[-1]), "labels")
    return [x, *args], {**params, "num_classes": shape[-1]}


def _cast(g):
    """A round trip through the other float dtype (float32 rounds a float64 program's values);
    the gradient passes through both casts."""
    return [g.pick()], {"via": str(g.rng.choice(["float32", "float64"]))}


def _sum_to(g):
    """x summed down to the shape of `like`, a slot or fresh input broadcasting to x's shape
    (read for its shape only: its gradient is zero)."""
    x = g.pick()
    sx = g.shape_of(x)
    like = g.pick_or_none(lambda s: _broadcasts(s, sx) and np.broadcast_shapes(s, sx) == sx)
    if like is None or g.rng.random() < 0.5:
        like = g.fresh(_broadcast_partner(g, sx))
    return [x, like], {}


def _mse(g):
    a = g.pick()
    return [a, g.fresh(g.shape_of(a))], {}


def _clip(g):
    lo, hi = [(-0.5, 0.5), (0.0, None), (None, 1.0), (-1.0, 1.0), (0.5, 0.5)][
        int(g.rng.integers(5))]  # grid values: inputs sit exactly on the bounds
    return [g.pick()], {"lo": lo, "hi": hi}


def _reduction(g):
    return str(g.rng.choice(["mean", "sum", "none"]))


def _smooth_l1(g):
    a = g.pick()
    beta = float(g.rng.choice([1.0, 0.5, 2.0]))
    return [a, g.fresh(g.shape_of(a))], {"beta": beta, "reduction": _reduction(g)}


def _bce_with_logits(g):
    x = g.pick()
    shape = g.shape_of(x)
    targets = g.add("sigmoid", (g.fresh(shape),))  # in [0, 1], differentiable
    args, params = [x, targets], {"reduction": _reduction(g)}
    r = g.rng.random()
    if r < 0.3 and shape:  # one weight per class (the last axis), differentiated too
        args.append(g.fresh(shape[-1:], positive=True))
    elif r < 0.6:
        params["pos_weight"] = float(g.rng.choice([0.5, 2.0, 3.0]))
    return args, params


def _class_axis(shape):
    """PyTorch's class axis of scores of `shape`: 1, or 0 for a 1-D input."""
    return 1 if len(shape) >= 2 else 0


def _torch_loss_labels(g, shape, ignore_index):
    """Class indices for scores of `shape` (PyTorch's layout), some of them `ignore_index`,
    never all of them (a 'mean' over no rows is NaN everywhere)."""
    axis = _class_axis(shape)
    labels = _labels(g, shape[:axis] + shape[axis + 1:], shape[axis])
    if ignore_index is not None and labels.size > 1:
        drop = g.rng.random(labels.shape) < 0.3
        drop.flat[int(g.rng.integers(labels.size))] = False
        labels = np.where(drop, ignore_index, labels)
    return labels


def _nll_options(g, classes):
    """nll_loss's weight and ignore_index, drawn: params (ignore_index, if drawn, apart)."""
    params = {"reduction": _reduction(g)}
    if g.rng.random() < 0.4:
        params["weight"] = np.asarray(g.rng.choice([0.5, 1.0, 2.0, 3.0], classes), g.dtype)
    ignore = None
    if g.rng.random() < 0.4:
        ignore = int(g.rng.choice([-100, 0]))
        params["ignore_index"] = ignore
    return params, ignore


def _nll_loss(g):
    x = g.pick(lambda s: 1 <= len(s) <= 3 and s[_class_axis(s)] >= 1)
    shape = g.shape_of(x)
    params, ignore = _nll_options(g, shape[_class_axis(shape)])
    args, labels = g.integers(_torch_loss_labels(g, shape, ignore), "target")
    return [x, *args], {**labels, **params}


def _torch_cross_entropy(g):
    """Class indices (weight, ignore_index) or probabilities along PyTorch's class axis (a
    differentiable softmax), label smoothing some of the time."""
    x = g.pick(lambda s: 1 <= len(s) <= 3 and s[_class_axis(s)] >= 1)
    shape = g.shape_of(x)
    axis = _class_axis(shape)
    if g.rng.random() < 0.6:
        params, ignore = _nll_options(g, shape[axis])
        args, labels = g.integers(_torch_loss_labels(g, shape, ignore), "target")
        args, params = [x, *args], {**labels, **params}
    else:
        target = g.add("softmax", (g.fresh(shape),), {"axis": axis})
        args, params = [x, target], {"reduction": _reduction(g)}
        if g.rng.random() < 0.3:
            params["weight"] = np.asarray(g.rng.choice([0.5, 1.0, 2.0], shape[axis]), g.dtype)
    if g.rng.random() < 0.4:
        params["label_smoothing"] = float(g.rng.choice([0.1, 0.25]))
    return args, params


def _kl_div(g):
    """Log-probabilities against a positive target (or a log target): no target of 0, whose
    gradient PyTorch leaves NaN."""
    x = g.pick()
    shape = g.shape_of(x)
    log_target = bool(g.rng.random() < 0.3)
    target = g.fresh(shape, positive=not log_target)
    reduction = str(g.rng.choice(["mean", "sum", "none", "batchmean"]))
    return [x, target], {"reduction": reduction, "log_target": log_target}


def _huber(g):
    a = g.pick()
    delta = float(g.rng.choice([1.0, 0.5, 2.0]))
    return [a, g.fresh(g.shape_of(a))], {"reduction": _reduction(g), "delta": delta}


def _l1_loss(g):
    a = g.pick()
    return [a, g.fresh(g.shape_of(a))], {"reduction": _reduction(g)}


def _cosine_similarity(g):
    """x1 against a partner broadcasting with it, over one axis of the broadcast shape. Both
    positive: at a zero vector PyTorch's second derivative is NaN (its norm's), graphdl's 0."""
    x1 = g.positive(g.pick(lambda s: len(s) >= 1))
    shape = g.shape_of(x1)
    x2 = g.fresh(_broadcast_partner(g, shape) if g.rng.random() < 0.3 else shape, positive=True)
    dim = int(g.rng.integers(-len(shape), len(shape)))
    return [x1, x2], {"dim": dim}


def _margin_ranking(g):
    a = g.pick()
    shape = g.shape_of(a)
    margin = float(g.rng.choice([0.0, 0.5, 1.0]))
    return [a, g.fresh(shape), g.fresh(shape)], {"margin": margin, "reduction": _reduction(g)}


def _l2(g):
    params = [g.pick() for _ in range(int(g.rng.integers(1, 3)))]
    return params, {"lam": float(g.rng.choice([1.0, 0.5, 1e-3]))}


def _one_of(*options):
    """Params of a unary op: one of `options`, drawn (the grid's values sit on their kinks:
    hardtanh's bounds ±0.5, softplus's βx = threshold at x = 0.5)."""
    return lambda g: dict(options[int(g.rng.integers(len(options)))])


def _glu(g):
    """glu along an axis of even size, named `axis` or `dim` (PyTorch's), maybe negative."""
    x = g.pick(lambda s: any(d and d % 2 == 0 for d in s))
    shape = g.shape_of(x)
    axis = int(g.rng.choice([a for a, d in enumerate(shape) if d and d % 2 == 0]))
    axis -= len(shape) if g.rng.random() < 0.3 else 0
    return [x], {str(g.rng.choice(["axis", "dim"])): axis}


def _spelling(g, *names):
    """One of the names a parameter goes by (graphdl's `axis`, PyTorch's `dim`, ...), drawn."""
    return str(g.rng.choice(names))


def _flip(g):
    x = g.pick()
    return [x], {_spelling(g, "axis", "dims"): g.axis(len(g.shape_of(x)))}


def _roll(g):
    """Shifts beyond the axis and negative; an axis may repeat; no axis: x flattened."""
    x = g.pick()
    ndim = len(g.shape_of(x))
    if ndim == 0 or g.rng.random() < 0.25:
        return [x], {"shifts": int(g.rng.integers(-7, 8))}
    axes = [int(a) - (ndim if g.rng.random() < 0.3 else 0)
            for a in g.rng.integers(0, ndim, int(g.rng.integers(1, ndim + 1)))]
    shifts = tuple(int(s) for s in g.rng.integers(-7, 8, len(axes)))
    if len(axes) == 1 and g.rng.random() < 0.5:
        axes, shifts = axes[0], shifts[0]
    return [x], {"shifts": shifts, _spelling(g, "axis", "dims"): axes}


def _stack(g):
    x = g.pick()
    shape = g.shape_of(x)
    parts = [x]
    for _ in range(int(g.rng.integers(0, 3))):
        same = g.pick_or_none(lambda s: s == shape)
        parts.append(same if same is not None and g.rng.random() < 0.5 else g.fresh(shape))
    return parts, {"axis": int(g.rng.integers(-len(shape) - 1, len(shape) + 1))}


def _reps(g, count):
    return tuple(int(r) for r in g.rng.choice([0, 1, 1, 2, 2, 3], count))


def _tile(g):
    """torch.tile: fewer reps than axes, or more."""
    x = g.pick(lambda s: len(s) <= 3)
    count = int(g.rng.integers(0, len(g.shape_of(x)) + 2))
    return [x], {_spelling(g, "reps", "dims"): _reps(g, count)}


def _repeat(g):
    """torch.Tensor.repeat: a size for every axis, maybe one more (and at least one)."""
    x = g.pick(lambda s: len(s) <= 3)
    ndim = len(g.shape_of(x))
    return [x], {"sizes": _reps(g, int(g.rng.integers(max(ndim, 1), ndim + 2)))}


def _pixel_shuffle(g):
    """An image whose channels are a multiple of r² (r = 1, 2 or 3), maybe unbatched."""
    r = int(g.rng.choice([1, 2, 2, 3]))
    lead = () if g.rng.random() < 0.3 else (int(g.rng.choice([0, 1, 2])),)
    shape = (*lead, r * r * int(g.rng.integers(1, 3)), int(g.rng.integers(1, 4)),
             int(g.rng.integers(1, 4)))
    return [g.fresh(shape)], {"upscale_factor": r}


def _pixel_unshuffle(g):
    r = int(g.rng.choice([1, 2, 2, 3]))
    lead = () if g.rng.random() < 0.3 else (int(g.rng.choice([0, 1, 2])),)
    shape = (*lead, int(g.rng.integers(1, 3)), r * int(g.rng.integers(1, 3)),
             r * int(g.rng.integers(1, 3)))
    return [g.fresh(shape)], {"downscale_factor": r}


def _grid_sample(g):
    """An image (N, C, H, W) or volume read at a grid of points: an affine_grid's output of
    the right shape if the program has one, else fresh points (many beyond ±1: the paddings);
    every mode, padding and corner alignment."""
    grid = g.pick_or_none(lambda s: len(s) in (4, 5) and s[-1] == len(s) - 2)
    if grid is None:
        k = 2 if g.rng.random() < 0.7 else 3
        grid = g.fresh((int(g.rng.integers(1, 3)), *g.rng.integers(1, 4, k), k))
    n, k = g.shape_of(grid)[0], g.shape_of(grid)[-1]
    image = g.pick_or_none(lambda s: len(s) == k + 2 and s[0] == n)
    if image is None:
        image = g.fresh((n, int(g.rng.integers(1, 3)), *g.rng.integers(1, 5, k)))
    return [image, grid], {"mode": str(g.rng.choice(["bilinear", "nearest"])),
                           "padding_mode": str(g.rng.choice(["zeros", "border", "reflection"])),
                           "align_corners": bool(g.rng.random() < 0.5)}


def _affine_grid(g):
    """The grid of a fresh (N, 2, 3) or (N, 3, 4) theta over an output of 1 to 4 points a side
    (2 to 4 with align_corners: PyTorch warns that a side of 1 is no intended use there)."""
    k = 2 if g.rng.random() < 0.7 else 3
    n, corners = int(g.rng.integers(1, 3)), bool(g.rng.random() < 0.5)
    size = (n, int(g.rng.integers(1, 3)), *(int(d) for d in g.rng.integers(1 + corners, 5, k)))
    return [g.fresh((n, k, k + 1))], {"size": size, "align_corners": corners}


def _fold(g):
    """fold's blocks of a fresh (N, C·kH·kW, L) or (C·kH·kW, L): kernel, dilation, padding and
    stride drawn per axis (blocks overlap, tile or leave gaps), the output size from the blocks
    plus a remainder below the stride that no block reaches."""
    kernel, dilation, padding, stride, size, blocks = [], [], [], [], [], []
    for _ in range(2):
        k, d, s = (int(v) for v in g.rng.integers(1, 4, 3))
        p, b = int(g.rng.integers(0, 2)), int(g.rng.integers(1, 4))
        out = (b - 1) * s + d * (k - 1) + 1 - 2 * p + int(g.rng.integers(0, s))
        if out < 1:
            raise NoSlot
        for values, v in zip((kernel, dilation, padding, stride, size, blocks),
                             (k, d, p, s, out, b)):
            values.append(v)
    rows = int(g.rng.integers(1, 3)) * kernel[0] * kernel[1]
    lead = () if g.rng.random() < 0.3 else (int(g.rng.integers(1, 3)),)
    return [g.fresh((*lead, rows, blocks[0] * blocks[1]))], {
        "output_size": tuple(size), "kernel_size": tuple(kernel), "dilation": tuple(dilation),
        "padding": tuple(padding), "stride": tuple(stride)}


def _repeat_interleave(g):
    x = g.pick(lambda s: len(s) <= 3)
    ndim = len(g.shape_of(x))
    axis = None if ndim == 0 or g.rng.random() < 0.3 else int(g.rng.integers(-ndim, ndim))
    return [x], {"repeats": int(g.rng.choice([0, 1, 2, 3])), _spelling(g, "axis", "dim"): axis}


def _triangle(g):
    x = g.pick(lambda s: len(s) >= 2)
    return [x], {} if g.rng.random() < 0.3 else {"diagonal": int(g.rng.integers(-3, 4))}


# ndim -> the pad lengths F.pad's reflect, replicate and circular modes take for it
NONCONSTANT_PADS = {2: (2,), 3: (2, 4), 4: (4, 6), 5: (6,)}


def _pad(g):
    """F.pad: negative pads crop; NoSlot for pads that PyTorch or graphdl refuses."""
    mode = str(g.rng.choice(["constant", "constant", "reflect", "replicate", "circular"]))
    if mode == "constant":
        x = g.pick(lambda s: len(s) >= 1)
        count = int(g.rng.integers(1, len(g.shape_of(x)) + 1))
    else:
        x = g.pick(lambda s: len(s) in NONCONSTANT_PADS)
        count = int(g.rng.choice(NONCONSTANT_PADS[len(g.shape_of(x))])) // 2
    pad = []
    for n in g.shape_of(x)[::-1][:count]:  # the last axis first
        before, after = (int(p) for p in g.rng.integers(-n, n + (mode == "constant"), 2))
        kept = n - max(-before, 0) - max(-after, 0)
        if kept < 0 or mode != "constant" and (kept + max(before, 0) + max(after, 0) == 0 or (
                mode == "reflect" and max(before, after) >= n
                or mode == "circular" and max(before, after) > kept)):
            raise NoSlot
        pad += [before, after]
    params = {"pad": tuple(pad), "mode": mode}
    if mode == "constant" and g.rng.random() < 0.5:
        params["value"] = float(g.rng.choice([-1.5, 0.5, 2.0]))
    return [x], params


def _diagonal(g):
    x = g.pick(lambda s: len(s) >= 2)
    ndim = len(g.shape_of(x))
    first, second = (int(a) - (ndim if g.rng.random() < 0.3 else 0)
                     for a in g.rng.choice(ndim, 2, replace=False))
    names = ("axis1", "axis2") if g.rng.random() < 0.5 else ("dim1", "dim2")
    return [x], {"offset": int(g.rng.integers(-3, 4)), names[0]: first, names[1]: second}


def _meshgrid(g):
    """One of the grids of 1 to 3 vectors (a slot may come twice)."""
    xs = []
    for _ in range(int(g.rng.integers(1, 4))):
        x = g.pick_or_none(lambda s: len(s) == 1)
        xs.append(x if x is not None and g.rng.random() < 0.5
                  else g.fresh((int(g.rng.integers(1, 5)),)))
    return xs, {"indexing": str(g.rng.choice(["ij", "xy"])),
                "pick": int(g.rng.integers(len(xs)))}


# op name -> proposer(generator) -> (args, params) or None when it does not apply now.
PROPOSERS = {
    "neg": _unary("neg"),
    "affine": _unary("affine", params=lambda g: {"scale": float(g.rng.choice([2.0, -0.5, 3.0])),
                                                  "shift": float(g.rng.choice([0.0, 1.0, -0.5]))}),
    "exp": _unary("exp"),
    "erf": _unary("erf"),
    "erfc": _unary("erfc"),
    "gelu": _unary("gelu", params=_one_of({}, {"approximate": "tanh"})),
    "silu": _unary("silu"),
    "elu": _unary("elu", params=_one_of({}, {"alpha": 0.5}, {"alpha": 2.0})),
    "selu": _unary("selu"),
    "celu": _unary("celu", params=_one_of({}, {"alpha": 0.5}, {"alpha": 2.0})),
    "leaky_relu": _unary("leaky_relu", params=_one_of({}, {"negative_slope": 0.2},
                                                      {"negative_slope": -0.5})),
    "relu6": _unary("relu6"),
    "hardtanh": _unary("hardtanh", params=_one_of({}, {"min_val": -0.5, "max_val": 0.5},
                                                  {"min_val": 0.0, "max_val": 1.0})),
    "hardsigmoid": _unary("hardsigmoid"),
    "hardswish": _unary("hardswish"),
    "mish": _unary("mish"),
    "softsign": _unary("softsign"),
    "glu": _glu,
    "log": _unary("log", positive=True),
    "sqrt": _unary("sqrt", positive=True),
    "reciprocal": _unary("reciprocal", positive=True),
    "tanh": _unary("tanh"),
    "sigmoid": _unary("sigmoid"),
    "softplus": _unary("softplus", params=_one_of({}, {"beta": 2.0}, {"threshold": 0.5},
                                                  {"beta": 2.0, "threshold": 1.0},
                                                  {"beta": 0.5, "threshold": 0.25})),
    "log_sigmoid": _unary("log_sigmoid"),
    "relu": _unary("relu"),
    "abs": _unary("abs"),
    "clip": _clip,
    "stop_gradient": _unary("stop_gradient"),
    "zeros_like": _unary("zeros_like"),
    "cast": _cast,
    "pow": _pow,
    "add": _binary(),
    "sub": _binary(),
    "mul": _binary(),
    "div": _binary(positive_b=True),
    "maximum": _binary(),
    "minimum": _binary(),
    "where": _binary(extra=lambda g: {"cmp": str(g.rng.choice(COMPARISONS))}),
    "sum": _reduce,
    "cumsum": _scan,
    "cumprod": _scan,
    "logcumsumexp": _scan,
    "cummax": _scan,
    "cummin": _scan,
    "random_uniform": _random_uniform,
    "allreduce": _allreduce,
    "mean": _reduce,
    "max": _reduce,
    "min": _reduce,
    "amax": _reduce,
    "amin": _reduce,
    "prod": _reduce,
    "any": _reduce,
    "all": _reduce,
    "var": _var,
    "std": _var,
    "norm": _norm,
    "argmax": _arg_extremum,
    "argmin": _arg_extremum,
    "argsort": _sort,
    "sort": _sort,
    "topk": _topk,
    "reshape": _reshape,
    "transpose": _transpose,
    "broadcast_to": _broadcast_to,
    "expand_dims": _expand_dims,
    "squeeze": _squeeze,
    "concatenate": _concatenate,
    "flip": _flip,
    "roll": _roll,
    "stack": _stack,
    "tile": _tile,
    "repeat": _repeat,
    "repeat_interleave": _repeat_interleave,
    "pixel_shuffle": _pixel_shuffle,
    "pixel_unshuffle": _pixel_unshuffle,
    "grid_sample": _grid_sample,
    "fold": _fold,
    "affine_grid": _affine_grid,
    "tril": _triangle,
    "triu": _triangle,
    "pad": _pad,
    "diagonal": _diagonal,
    "meshgrid": _meshgrid,
    "getitem": _getitem,
    "advanced_index": _advanced_index,
    "take": _take,
    "unfold": _unfold,
    "gather": _gather,
    "take_along_axis": lambda g: _gather(g, numpy_form=True),
    "scatter": lambda g: _scatter(g, add=False),
    "scatter_add": _scatter,
    "scatter_reduce": _scatter_reduce,
    "index_select": _index_select,
    "index_add": lambda g: _index_select(g, add=True),
    "one_hot": _one_hot,
    "sum_to": _sum_to,
    "lookup_dot": _lookup_dot,
    "matmul": _matmul,
    "einsum": _einsum,
    "conv1d": _conv1d,
    "conv2d": _conv2d,
    "conv3d": _conv3d,
    "conv_transpose1d": _conv_transpose(1),
    "conv_transpose2d": _conv_transpose(2),
    "conv_transpose3d": _conv_transpose(3),
    "max_pool2d": _pool(True),
    "avg_pool2d": _pool(False),
    "max_pool1d": _pool(True, dims=1),
    "avg_pool1d": _pool(False, dims=1),
    "max_pool3d": _pool(True, dims=3),
    "avg_pool3d": _pool(False, dims=3),
    "adaptive_avg_pool1d": _adaptive_pool1d,
    "adaptive_max_pool1d": _adaptive_pool1d,
    "adaptive_avg_pool2d": _adaptive_pool,
    "adaptive_max_pool2d": _adaptive_pool,
    "interpolate": _interpolate,
    "softmax": _softmax_like("softmax"),
    "softmin": _softmin,
    "prelu": _prelu,
    "layer_norm": _layer_norm,
    "linear": _linear,
    "embedding": _embedding,
    "dropout": _dropout,
    "scaled_dot_product_attention": _attention,
    "group_norm": _group_norm,
    "batch_norm": _batch_norm,
    "instance_norm": _instance_norm,
    "local_response_norm": _local_response_norm,
    "normalize": _normalize,
    "rms_norm": _rms_norm,
    "log_softmax": _softmax_like("log_softmax"),
    "logsumexp": _logsumexp,
    "softmax_cross_entropy": _cross_entropy,
    "hinge_loss": _hinge,
    "mse": _mse,
    "smooth_l1": _smooth_l1,
    "binary_cross_entropy_with_logits": _bce_with_logits,
    "l2": _l2,
    "nll_loss": _nll_loss,
    "cross_entropy": _torch_cross_entropy,
    "kl_div": _kl_div,
    "huber_loss": _huber,
    "l1_loss": _l1_loss,
    "cosine_similarity": _cosine_similarity,
    "margin_ranking_loss": _margin_ranking,
    **{name: _unary(name) for name in (
        "sin", "cos", "atan", "sinh", "cosh", "asinh", "exp2", "expm1", "square", "floor",
        "ceil", "trunc", "round", "sign")},
    **{mask: _unary(mask, params=lambda g: {"fill": float(g.rng.choice([math.nan, math.inf,
                                                                      -math.inf]))})
       for mask in MASKS},
    **{name: _within(_unit) for name in ("tan", "asin", "acos", "atanh", "log1p")},
    "acosh": _within(_above_one),
    **{name: _unary(name, positive=True) for name in ("log2", "log10", "rsqrt")},
    "atan2": _binary(),
    "copysign": _copysign,
    "isclose": _binary(extra=_tolerances),
    **{op: _binary() for op in (*LOGICAL, *BITWISE)},
    **{op: _unary(op) for op in ("logical_not", "bitwise_not")},
    "floor_divide": _divisor,
    "remainder": _divisor,
    "fmod": _divisor,
    "power": _power,
}


def generate(seed, max_ops=10, dtype="float64"):
    """The program drawn from `seed`: 2 to `max_ops` steps before the final weighted sum."""
    rng = np.random.default_rng(seed)
    return Generator(seed, dtype).program(int(rng.integers(2, max_ops + 1)))
