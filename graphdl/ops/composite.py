"""Composites: functions declared as decompositions into primitives, as the lecture draws them.

`sigmoid(x)` is the circuit `*-1 -> exp -> +1 -> 1/x`; the `stabilize` pass later rewrites such
patterns into stable primitives for code generation, so the graph users see stays the lecture's.
Each composite names its output node so that drawings and generated code can refer to it.

Every composite the views know is declared here once, with `@composite(...)`: the label of its
collapsed gate, its closed-form local gradient (in words and symbols), its SymPy scalar form
where it is elementwise, and the op of its output node. Drawing, narration and `gd.symbolic`
read `COMPOSITES`; they recognize a composite by calling it again on candidate arguments
(hash-consing makes `sigmoid(x) is node` exact).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.lazy import scalar, sympy
from graphdl.opdef import OpDef
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd


@dataclass(frozen=True)
class Composite:
    """What the views know of a composite function `fn`."""

    name: str  # also the name `fn` gives its output node
    fn: Callable
    arity: int | None  # the arguments a rebuild takes; None: recognized by its output's name only
    symbol: str  # the label of its collapsed gate
    rule: str  # the closed-form local gradient, in words and symbols
    root: OpDef | tuple  # the op(s) its output node may have (a cheap filter before a rebuild)
    sym: Callable | None = None  # SymPy scalar form of an elementwise composite
    # Of a composite recognized by name whose arguments play distinct parts: its output node ->
    # {part: argument node}, in the function's order, and each part's own local rule (the
    # narration says it on that argument's wire; an argument playing several parts, as x in
    # attention(x, x, x), gets the sum of theirs)
    parts: Callable | None = None
    part_rules: dict | None = None

    def ends_with(self, op):
        """Whether an output node of op `op` may be this composite's."""
        return op in self.root if isinstance(self.root, tuple) else op is self.root


COMPOSITES: dict[str, Composite] = {}  # name -> Composite
ALIASES: dict[str, str] = {}  # alias -> name


def composite(name, symbol, rule, root, arity=1, sym=None, aliases=(), parts=None,
              part_rules=None):
    """Declare the decorated function as the composite `name` (see `Composite`)."""
    def declare(fn):
        COMPOSITES[name] = Composite(name, fn, arity, symbol, rule, root, sym, parts, part_rules)
        ALIASES.update(dict.fromkeys(aliases, name))  # other names `collapse=` accepts
        return fn
    return declare


def find_composite(name):
    """The composite called `name` (or one of its aliases), or None."""
    return COMPOSITES.get(ALIASES.get(name, name))


def _named(node, name):
    if node.name is None:
        node.name = name
    return node


def _floating(x, what):
    """x as a node, refused here (naming the user's value) unless it is floating point."""
    (x,) = leaf.lift_all([x])
    if x.dtype.kind != "f":
        raise GraphError(
            f"{what} expects floating-point input, got {describe(x)} of dtype {x.dtype}; "
            f"convert it first with gd.cast(x, 'float32')"
        )
    return x


@composite("sigmoid", "σ", "dσ/dx = σ(1−σ)", ew.RECIPROCAL, sym=lambda x: scalar.Sigmoid(x),
           aliases=("σ",))
def sigmoid(x):
    """σ(x) = 1 / (1 + e^-x)."""
    x = _floating(x, "sigmoid")
    return _named(ew.RECIPROCAL(1 + ew.EXP(-x)), "sigmoid")


@composite("softplus", "softplus", "d softplus/dx = σ(x)", ew.LOG,
           sym=lambda x: scalar.Softplus(x))
def softplus(x, beta=1, threshold=None):
    """softplus(x) = log(1 + e^x), declared as those gates; compiled as the stable primitive
    (log(1 + e^x) overflows to inf from x ≈ 89 in float32; the primitive gives x there).

    beta: log(1 + e^(βx))/β. threshold: PyTorch's `F.softplus(x, beta, threshold)`, x itself
    where βx > threshold (`softplus_threshold`). PyTorch's default threshold, 20, is not the
    default here: without one the value is exact everywhere (PyTorch's is off by < e^-20/β)."""
    x = _floating(x, "softplus")
    if threshold is not None:
        return softplus_threshold(x, beta, threshold)
    if parameter("softplus", "beta", beta, nonzero=True) != 1:
        return softplus(x * beta) / beta
    return _named(ew.LOG(1 + ew.EXP(x)), "softplus")


@composite("softplus_threshold", "softplus\n(βx > 20: x)",
           "d softplus/dx = σ(βx), or 1 where βx > threshold", ew.WHERE,
           sym=lambda x: sympy.Piecewise((x, x > 20), (scalar.Softplus(x), True)))
def softplus_threshold(x, beta=1, threshold=20):
    """PyTorch's `F.softplus`: x where βx > threshold, else log(1 + e^(βx))/β (the stable
    primitive). At βx = threshold exactly its backward takes σ(βx) and its double backward no
    curvature (it masks βx < threshold), and so does this."""
    x = _floating(x, "softplus")
    beta = parameter("softplus", "beta", beta, nonzero=True)
    threshold = parameter("softplus", "threshold", threshold)
    z = x * beta
    at = ew.EQUAL(z, threshold)
    below = ew.SOFTPLUS(ew.WHERE(at, ew.stop_gradient(z), z)) / beta
    slope = 0.5 + 0.5 * math.tanh(threshold / 2)  # σ(threshold), without overflow
    out = ew.WHERE(ew.GREATER(z, threshold), x, below + kink_slope(x, at, slope))
    return _named(out, "softplus_threshold")


def kink_slope(x, at, slope):
    """0, with derivative `slope` where `at` holds and no second derivative. Added to a branch
    at the end point of its interval, it gives PyTorch's one-sided slope there (its backward
    takes that side's) without that side's curvature (its double backward takes none)."""
    return ew.WHERE(at, slope * (x - ew.stop_gradient(x)), 0)


def parameter(fn, name, value, nonzero=False):
    """The parameter `name` of the function `fn` as a float, refused unless it is a number (not
    NaN; not 0 where `nonzero`)."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not real or np.isnan(value) or (nonzero and value == 0):
        raise GraphError(f"{fn}: {name} must be a {'nonzero ' if nonzero else ''}number, "
                         f"got {value!r}")
    return float(value)


@composite("log_sigmoid", "log σ", "d log σ/dx = 1 − σ(x)", ew.LOG,
           sym=lambda x: sympy.log(scalar.Sigmoid(x)))
def log_sigmoid(x):
    """log σ(x), declared as log of the sigmoid circuit; compiled as −softplus(−x), finite
    where σ(x) rounds to 0 (word2vec's negative-sampling loss: log σ(−v·u))."""
    x = _floating(x, "log_sigmoid")
    return _named(ew.LOG(sigmoid(x)), "log_sigmoid")


@composite("tanh", "tanh", "d tanh/dx = 1 − tanh²", ew.SUB, sym=lambda x: sympy.tanh(x))
def tanh(x):
    """tanh(x) = 2 / (1 + e^-2x) - 1, the lecture's form (2·σ(2x) - 1)."""
    x = _floating(x, "tanh")
    return _named(2 * sigmoid(2 * x) - 1, "tanh")



@composite("gelu", "gelu", "d gelu/dx = Φ(x) + x·φ(x)", ew.MUL,
           sym=lambda x: x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2)
def gelu(x, approximate="none"):
    """gelu(x) = x·Φ(x) = x/2 · (1 + erf(x/√2)), Φ the standard normal CDF: PyTorch's exact
    form (`approximate='none'`); `approximate='tanh'`: its tanh form (`gelu_tanh`)."""
    x = _floating(x, "gelu")
    if approximate == "tanh":
        return gelu_tanh(x)
    if approximate != "none":
        raise GraphError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _named(0.5 * x * (1 + ew.ERF(x * _SQRT_HALF)), "gelu")


@composite("gelu_tanh", "gelu (tanh)",
           "d gelu/dx = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²), "
           "t = tanh(√(2/π)(x + 0.044715x³))", ew.MUL,
           sym=lambda x: x * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi)
                                             * (x + sympy.Float(_KAPPA) * x**3))) / 2)
def gelu_tanh(x):
    """PyTorch's gelu(approximate='tanh'): x/2 · (1 + tanh(√(2/π)(x + 0.044715x³))), in its
    kernel's order of operations."""
    x = _floating(x, "gelu")
    inner = _SQRT_TWO_OVER_PI * (x + _KAPPA * (x * x * x))
    return _named(0.5 * x * (1 + ew.TANH(inner)), "gelu_tanh")


_SQRT_HALF = math.sqrt(0.5)
_SQRT_TWO_OVER_PI = math.sqrt(2) * (2 / math.sqrt(math.pi)) * 0.5  # PyTorch's kBeta
_KAPPA = 0.044715

def _shift(x, axis):
    """The gradient-stopped maximum over `axis` (kept): what exp's argument is shifted by so
    that it never overflows. An empty axis has no maximum, and nothing to shift."""
    if any(x.shape[a] == 0 for a in mv.normalize_axes(axis, x.ndim, describe(x), scalar_axis=True)):
        return leaf.constant(0.0, x.dtype)
    return ew.stop_gradient(rd.max(x, axis, keepdims=True))


def logsumexp(x, axis=-1, keepdims=False):
    """log Σ e^x, shifted by the (gradient-stopped) maximum so no exp overflows.

    The shift is clipped to the finite floats: a +inf entry or a row of -inf then gives ±inf
    (as PyTorch) instead of meeting inf - inf. A finite maximum is not changed by the clip."""
    x = _floating(x, "logsumexp")
    big = float(np.finfo(x.dtype).max)
    m = ew.MINIMUM(ew.MAXIMUM(_shift(x, axis), -big), big)
    out = ew.LOG(rd.sum(ew.EXP(x - m), axis, keepdims=True)) + m
    return out if keepdims else mv.squeeze(out, axis)


@composite("log_softmax", "log softmax", "dL/dx = g − softmax(x) · Σ_j g_j", ew.SUB)
def log_softmax(x, axis=-1):
    """x - logsumexp(x), computed from the shifted x so that it never overflows."""
    x = _floating(x, "log_softmax")
    shifted = x - _shift(x, axis)
    return _named(shifted - ew.LOG(rd.sum(ew.EXP(shifted), axis, keepdims=True)), "log_softmax")


@composite("softmax", "softmax",
           "∂s_i/∂x_j = s_i(δ_ij − s_j), so dL/dx = s ⊙ (g − Σ_j g_j s_j)", ew.DIV)
def softmax(x, axis=-1):
    """e^x / Σ e^x over `axis`, shifted by the maximum."""
    return _softmax(_floating(x, "softmax"), axis, "softmax")


def _softmax(z, axis, name):
    """softmax of z over `axis`, its output named `name`."""
    e = ew.EXP(z - _shift(z, axis))
    return _named(e / rd.sum(e, axis, keepdims=True), name)


@composite("softmin", "softmin",
           "∂s_i/∂x_j = −s_i(δ_ij − s_j), so dL/dx = −s ⊙ (g − Σ_j g_j s_j)", ew.DIV, arity=None)
def softmin(x, axis=None, dim=None):
    """softmax(−x) over `axis` (or `dim`, PyTorch's name; the last axis if neither is given):
    e^−x / Σ e^−x."""
    x = _floating(x, "softmin")
    return _softmax(-x, one_axis(x, axis, dim, "softmin"), "softmin")


def one_axis(x, axis, dim, what):
    """The one axis of x given as `axis` or `dim` (PyTorch's name), the last if neither is, as
    a non-negative int; refused unless it is an int in range."""
    if axis is not None and dim is not None:
        raise GraphError(f"{what} of {describe(x)}: give axis or dim, not both")
    axis = next((a for a in (axis, dim) if a is not None), -1)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise GraphError(f"{what} of {describe(x)}: axis must be an int, got {axis!r}")
    (a,) = mv.normalize_axes(axis, x.ndim, f"{what} of {describe(x)}")
    return a


def one_hot(labels, num_classes, dtype="float32"):
    """labels (integers: a node, an array or a list) -> one-hot rows along a new last axis."""
    (labels,) = leaf.lift_all([labels])
    return ew.cast(one_hot_mask(labels, num_classes), dtype)


def one_hot_mask(labels, num_classes):
    """labels (integers) -> a boolean mask along a new last axis, True at each row's class."""
    if labels.dtype.kind not in "iu":
        raise GraphError(f"one_hot: labels {describe(labels)} must be integers, got {labels.dtype}")
    classes = leaf.constant(np.arange(num_classes, dtype=labels.dtype))
    # a label outside [0, classes) would give a row of zeros (a silently finite loss): refused,
    # unless a loss's own check (`_class_mask`) has just held them to these classes
    if not _checked_labels(labels, num_classes):
        labels = mv.check_index(labels, classes, 0, f"class labels {describe(labels)}",
                                negative=False)
    return ew.EQUAL(mv.expand_dims(labels, -1), classes)


def _checked_labels(labels, num_classes):
    """Whether labels come out of a check that holds them to [0, num_classes)."""
    if labels.op is not mv.CHECK_INDEX or labels.attrs["negative"]:
        return False
    return labels.inputs[1].shape[labels.attrs["axis"]] == num_classes


def _class_mask(scores, labels, what):
    """one_hot_mask of the integer class labels of `scores`, held first to one label per row
    (the scores' shape without the class axis) by a check that names the loss and both: at
    declaration, and at call time for dimensions unknown until then. The mask stays
    one_hot_mask's own, which the narration recognizes."""
    axis = scores.ndim - 1
    rows = mv.check_index(labels, scores, axis, f"{what}: class labels {describe(labels)}",
                          negative=False, rows=True)
    return one_hot_mask(rows, scores.shape[axis])


@dataclass(frozen=True)
class _Target:
    """A loss's class targets: a boolean mask (from class indices) or weight rows (one-hot or
    probability rows, floating point)."""

    mask: object = None
    weights: object = None

    def total(self, values, keepdims=False, others=False):
        """Σ_j w_j · v_j over the class axis (`others`: with 1 - w_j), where a class of weight 0
        adds nothing even if its value is ±inf (a masked logit, log p = -inf): the product
        alone would give 0 · inf = NaN."""
        if self.mask is not None:
            terms = ew.WHERE(self.mask, 0, values) if others else ew.WHERE(self.mask, values, 0)
        else:
            w = 1 - self.weights if others else self.weights
            terms = ew.WHERE(ew.NOT_EQUAL(w, 0), w * values, 0)
        return rd.sum(terms, -1, keepdims)


def _targets(scores, labels, what):
    """The class targets of `scores`, as PyTorch's cross_entropy takes them: integer class
    indices (a mask) of the scores' shape without the class axis, or floating-point one-hot or
    probability rows (weights) of the scores' shape. Nothing is broadcast: a column of float
    labels against several classes is refused, naming both accepted forms, at declaration and,
    for dimensions unknown until then, at the call."""
    (labels,) = leaf.lift_all([labels])
    if scores.ndim < 1 or scores.shape[-1] is None:
        raise GraphError(f"{what}: {describe(scores)} needs a known class axis (the last)")
    if labels.dtype.kind in "iu":
        return _Target(mask=_class_mask(scores, labels, what))
    return _Target(weights=mv.check_shape(labels, scores, _labels_mismatch, what))


def _labels_mismatch(labels, scores, what):
    """What the loss `what` says of float labels without the shape of its scores."""
    indices, rows = format_shape(scores.shape[:-1]), format_shape(scores.shape)
    shapes = (f"labels {describe(labels)} have shape {format_shape(labels.shape)} and dtype "
              f"{labels.dtype}; scores {describe(scores)} have shape {rows}")
    if mv.shapes_match(labels.shape, scores.shape[:-1]):  # class indices, in a float dtype
        return (f"{what}: {shapes}. Class indices need an integer dtype: "
                f"{_integer_hint(labels)}; one-hot rows (floating point) would have shape {rows}")
    return (f"{what}: labels must be integer class indices of shape {indices} or one-hot rows "
            f"of shape {rows}; {shapes}")


def _integer_hint(labels):
    """How to give `labels` an integer dtype: at their declaration if they are an input."""
    cast = "convert them with gd.cast(labels, 'int64')"
    if labels.op is not leaf.INPUT:
        return cast
    return (f"declare them with gd.input({labels.name!r}, {tuple(labels.shape)!r}, 'int64') "
            f"or {cast}")


@composite("cross_entropy", "softmax\ncross-entropy",
           "dL/dlogits = (softmax(logits) − onehot(labels)) · g / N", ew.DIV, arity=2,
           aliases=("softmax_cross_entropy",))
def softmax_cross_entropy(logits, labels):
    """mean over the batch of L_i = -log(e^{s_y} / Σ_j e^{s_j}) (labels: ints or one-hot rows)."""
    logits = _floating(logits, "softmax_cross_entropy")
    target = _targets(logits, labels, "softmax_cross_entropy")
    if target.mask is None:  # weight rows: -Σ_j w_j log_softmax_j
        per_example = -target.total(log_softmax(logits))
    else:  # one class per row: log Σ e^s - s_y, whose gradient is softmax - one_hot
        shifted = logits - _shift(logits, -1)
        per_example = ew.LOG(rd.sum(ew.EXP(shifted), -1)) - target.total(shifted)
    return _named(rd.mean(per_example), "cross_entropy")


@composite("hinge_loss", "hinge loss",
           "dL/ds_j = g/N · 1[s_j − s_y + 1 > 0] (j ≠ y), dL/ds_y = −g/N · #(j: margin > 0)",
           ew.DIV, arity=2)
def hinge_loss(scores, labels):
    """The lecture's multiclass SVM loss: mean over the batch of Σ_{j≠y} max(0, s_j - s_y + 1)."""
    target = _targets(scores, labels, "hinge_loss")
    correct = target.total(scores, keepdims=True)
    # relu: no gradient at a margin of exactly 0 (PyTorch's multi_margin_loss); summed as
    # (1 - s_y) + s_j, PyTorch's order, so the kink falls where PyTorch's does in float32
    margins = ew.RELU(1 - correct + scores)
    return _named(rd.mean(target.total(margins, others=True)), "hinge_loss")


@composite("mse", "MSE", "dL/dp = 2(p − t) · g / N, dL/dt = −2(p − t) · g / N", ew.DIV,
           arity=2)
def mse(prediction, target):
    """Mean squared error, the mean over all elements (PyTorch's default reduction). A target
    of another shape is refused (PyTorch warns that broadcasting it "will likely lead to
    incorrect results"), but for one number for every element (0-d), which has no axis to
    misalign."""
    prediction, target = leaf.lift_all([prediction, target])
    if target.ndim:
        target = _same_shape("mse", ("prediction", prediction), ("target", target))
    diff = prediction - target
    return _named(rd.mean(diff * diff), "mse")


@composite("l2", "L2 penalty", "dR/dW = 2λ · W · g", ew.MUL, arity=None)
def l2(*params, lam=1.0):
    """R(W) = lam · Σ W² over all given parameters, for L = mean(L_i) + R(W)."""
    if not params:
        raise GraphError("l2 needs at least one parameter")
    total = rd.sum(params[0] * params[0])
    for p in params[1:]:
        total = total + rd.sum(p * p)
    return _named(total * lam, "l2")


REDUCTIONS = {"mean": rd.mean, "sum": rd.sum, "none": None}


def _reduced(per_element, reduction, name):
    """The per-element loss reduced as PyTorch's `reduction=` ('mean', 'sum' or 'none')."""
    reduce = REDUCTIONS[reduction]
    return _named(per_element if reduce is None else reduce(per_element), name)


def _loss_operands(what, reduction, **operands):
    """The two operands of an elementwise loss as nodes: floating point, of one shape (PyTorch
    broadcasts a mismatch with a warning; a box of 4 against a batch of boxes is a bug)."""
    if reduction not in REDUCTIONS:
        raise GraphError(f"{what}: reduction must be one of {', '.join(map(repr, REDUCTIONS))}, "
                         f"got {reduction!r}")
    (a_name, a), (b_name, b) = operands.items()
    a, b = leaf.lift_all([a, b])
    for label, node in ((a_name, a), (b_name, b)):
        _floating(node, f"{what}'s {label}")
    return a, _same_shape(what, (a_name, a), (b_name, b))


def _same_shape(what, named_a, named_b):
    """b, held to a's shape (an unknown dimension matches any until the call), refused
    otherwise naming both."""
    (a_name, a), (b_name, b) = named_a, named_b
    return mv.check_shape(b, a, _operands_mismatch, (what, a_name, b_name))


def _operands_mismatch(b, a, names):
    """What the loss names[0] says of operands a and b (names[1:]) of different shapes."""
    what, a_name, b_name = names
    return (f"{what}: {a_name} {describe(a)} has shape {format_shape(a.shape)} but {b_name} "
            f"{describe(b)} has shape {format_shape(b.shape)}; they must be equal")


def smooth_l1(pred, target, beta=1.0, reduction="mean"):
    """PyTorch's `smooth_l1_loss` (Huber with its quadratic part divided by beta): per element
    0.5 d²/beta where |d| < beta, |d| − 0.5·beta elsewhere, d = pred − target; then reduced
    ('mean', 'sum' or 'none'). Gradient d/beta inside, sign(d) outside; NaN stays NaN."""
    pred, target = _loss_operands("smooth_l1", reduction, pred=pred, target=target)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        raise GraphError(f"smooth_l1: beta must be a positive number, got {beta!r} (PyTorch's "
                         f"beta=0 is the L1 loss: gd.mean(gd.abs(pred - target)))")
    d = pred - target
    size = ew.ABS(d)
    far = ew.GREATER_EQUAL(size, beta)
    # the quadratic part reads d only where it is chosen, so that at d = ±inf its unchosen
    # gradient is 0 * 0, not 0 * inf; NaN (not far) takes it and stays NaN, as in PyTorch
    near = ew.WHERE(far, 0, d)
    per_element = ew.WHERE(far, size - 0.5 * beta, 0.5 * near * near / beta)
    return _reduced(per_element, reduction, "smooth_l1")


def binary_cross_entropy_with_logits(logits, targets, pos_weight=None, reduction="mean"):
    """PyTorch's `binary_cross_entropy_with_logits`: per element
    −[p·t·log σ(x) + (1 − t)·log(1 − σ(x))] = (1 − t)·x − (1 + (p − 1)·t)·log σ(x), with p the
    positive class weight `pos_weight` (a number or an array broadcasting against the logits,
    1 if not given), then reduced ('mean', 'sum' or 'none'). log σ is compiled as −softplus(−x):
    finite for any finite logit (no log of a σ that rounds to 0 or 1)."""
    x, t = _loss_operands("binary_cross_entropy_with_logits", reduction, logits=logits,
                          targets=targets)
    weight = 1
    if pos_weight is not None:
        p = _floating(leaf.lift_all([pos_weight, x])[0],  # a number takes the logits' dtype
                      "binary_cross_entropy_with_logits's pos_weight")
        if ew.broadcast_dims([x.shape, p.shape]) != tuple(x.shape):
            raise GraphError(f"binary_cross_entropy_with_logits: pos_weight {describe(p)} of "
                             f"shape {format_shape(p.shape)} must broadcast to the logits' shape "
                             f"{format_shape(x.shape)} (one weight per class: the last axis)")
        weight = (p - 1) * t + 1
    per_element = (1 - t) * x - weight * log_sigmoid(x)
    return _reduced(per_element, reduction, "binary_cross_entropy")


def clip(x, lo=None, hi=None):
    """x clamped to [lo, hi] (either bound may be None), with PyTorch's `clamp` gradient: all of
    it inside the closed interval, the bounds included (maximum/minimum would split it there),
    none outside and none at NaN, which stays NaN. With lo > hi every number becomes hi, with
    no gradient (NumPy's minimum(maximum(x, lo), hi), PyTorch's clamp)."""
    x = _floating(x, "clip")
    bounds = {"lo": lo, "hi": hi}
    for name, b in bounds.items():
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float, np.number))
                              or np.isnan(b)):
            raise GraphError(f"clip of {describe(x)}: {name} must be a number or None, got {b!r}")
    if lo is None and hi is None:
        raise GraphError(f"clip of {describe(x)}: give lo, hi or both")
    out = x
    if lo is not None:
        out = clamp_min(out, lo)
    if hi is not None:
        out = clamp_max(out, hi)
    return _named(out, "clip")


def clamp_min(x, lo):
    """x raised to lo where below it, unnamed (a part of other composites): clip's lower side,
    PyTorch's clamp_min (the gradient at lo and above, none below; NaN stays NaN)."""
    return _clamp_side(x, float(lo), ew.GREATER_EQUAL, ew.LESS)


def clamp_max(x, hi):
    """x lowered to hi where above it, unnamed: clip's upper side, PyTorch's clamp_max."""
    return _clamp_side(x, float(hi), ew.LESS_EQUAL, ew.GREATER)


def _clamp_side(x, bound, keeps, passes):
    """x where keeps(x, bound), the bound where x passes it; a NaN (neither) stays itself with
    no gradient."""
    return ew.WHERE(keeps(x, bound), x, ew.WHERE(passes(x, bound), bound, ew.stop_gradient(x)))
