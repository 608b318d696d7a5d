"""PyTorch's functional losses (`torch.nn.functional`), with its arguments, defaults and
`reduction=` values, declared as circuits of primitives (gradients, both backends and ONNX
export come from their parts).

Class scores follow PyTorch's layout here: classes on axis 1 (axis 0 of a 1-D input), unlike
`softmax_cross_entropy` and `hinge_loss`, whose classes are the last axis. Labels are checked as
those losses check them (`_targets`, `_class_mask`), naming the user's node.
"""

from __future__ import annotations

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import Node, describe, format_shape
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd
from graphdl.ops.composite import (
    REDUCTIONS,
    _class_mask,
    _floating,
    _loss_operands,
    _named,
    _reduced,
    _same_shape,
    _targets,
    clip,
    log_softmax,
    parameter,
)


def _classes_last(x):
    """x with PyTorch's class axis (1, for 2 axes or more) moved to the end."""
    if x.ndim <= 2:
        return x
    return mv.transpose(x, (0, *range(2, x.ndim), 1))


def _check_reduction(what, reduction, extra=()):
    if reduction not in (*REDUCTIONS, *extra):
        allowed = ", ".join(map(repr, (*REDUCTIONS, *extra)))
        raise GraphError(f"{what}: reduction must be one of {allowed}, got {reduction!r}")


def _class_weight(what, weight, scores):
    """PyTorch's `weight=`: one floating-point weight per class, as a node (None stays None)."""
    if weight is None:
        return None
    if not isinstance(weight, Node):  # numbers: in the scores' dtype, as PyTorch requires
        weight = leaf.constant(np.asarray(weight, dtype=scores.dtype))
    weight = _floating(weight, f"{what}'s weight")
    classes = scores.shape[-1]
    if weight.ndim != 1 or (weight.shape[0] is not None and weight.shape[0] != classes):
        raise GraphError(f"{what}: weight {describe(weight)} of shape {format_shape(weight.shape)}"
                         f" must hold one weight per class: shape ({classes},)")
    return weight


def _not_ignored(labels, ignore_index):
    """Where labels is not ignore_index: everywhere when the labels' dtype cannot hold it (the
    default -100 next to unsigned labels matches none)."""
    info = np.iinfo(labels.dtype)
    if info.min <= ignore_index <= info.max:
        return ew.NOT_EQUAL(labels, ignore_index)
    return ew.EQUAL(leaf.zeros_like(labels), 0)


def _index_losses(what, scores, labels, weight, ignore_index, reduction, smoothing=0.0):
    """PyTorch's nll_loss of class indices `labels` against log-probabilities `scores` (classes
    last), with label smoothing as cross_entropy's: per row
    (1 − ε)·w_y·(−s_y) + ε/C·Σ_c w_c·(−s_c), 0 where the label is `ignore_index`; 'mean' divides
    each part by Σ w_y over the rows not ignored (NaN if all are: 0/0, as PyTorch)."""
    classes = scores.shape[-1]
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise GraphError(f"{what}: ignore_index must be an integer, got {ignore_index!r}")
    keep = _not_ignored(labels, ignore_index)
    safe = labels if 0 <= ignore_index < classes else ew.WHERE(keep, labels, 0)
    mask = _class_mask(scores, safe, f"{what} of {describe(labels)}")
    zero = leaf.constant(0.0, scores.dtype)
    if weight is None:
        row_weight = ew.cast(keep, scores.dtype)
        picked = rd.sum(ew.WHERE(mask, scores, zero), -1)
    else:
        row_weight = ew.WHERE(keep, rd.sum(ew.WHERE(mask, weight, zero), -1), zero)
        picked = rd.sum(ew.WHERE(mask, scores, zero), -1) * row_weight
    nll = ew.WHERE(keep, -picked, zero)

    def reduce(per_row):
        if reduction == "none":
            return per_row
        if reduction == "sum":
            return rd.sum(per_row)
        return rd.sum(per_row) / rd.sum(row_weight)

    if not smoothing:
        return reduce(nll)
    smooth = -rd.sum(scores if weight is None else scores * weight, -1)
    smooth = ew.WHERE(keep, smooth, zero)
    return (1 - smoothing) * reduce(nll) + reduce(smooth) * (smoothing / classes)


def nll_loss(log_probs, target, weight=None, ignore_index=-100, reduction="mean"):
    """PyTorch's `F.nll_loss`: −weight[y]·log_probs[y] per row, classes on axis 1 (axis 0 of a
    1-D input), integer class indices `target` of log_probs' shape without that axis; rows whose
    label is `ignore_index` add nothing. 'mean' divides by the sum of the weights of the rows
    not ignored (NaN where every row is ignored, as PyTorch); 'sum'; 'none': one loss per row."""
    _check_reduction("nll_loss", reduction)
    scores = _classes_last(_floating(log_probs, "nll_loss"))
    (target,) = leaf.lift_all([target])
    if target.dtype.kind not in "iu":
        raise GraphError(f"nll_loss: target {describe(target)} must hold integer class indices, "
                         f"got dtype {target.dtype}; convert it with gd.cast(target, 'int64')")
    weight = _class_weight("nll_loss", weight, scores)
    out = _index_losses("nll_loss", scores, target, weight, ignore_index, reduction)
    return _named(out, "nll_loss")


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """PyTorch's `F.cross_entropy`: nll_loss of log_softmax(input) over the class axis (axis 1;
    axis 0 of a 1-D input). `target`: integer class indices (input's shape without the class
    axis; `weight`, `ignore_index` as nll_loss) or floating-point class probabilities (input's
    shape; per row −Σ_c weight_c·p_c·log_softmax_c, 'mean' over the rows). label_smoothing ε
    mixes the target with the uniform distribution: (1 − ε)·target + ε/C."""
    what = "cross_entropy"
    _check_reduction(what, reduction)
    smoothing = parameter(what, "label_smoothing", label_smoothing)
    if not 0 <= smoothing <= 1:
        raise GraphError(f"{what}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    scores = _classes_last(_floating(input, what))
    if scores.ndim < 1 or scores.shape[-1] is None:
        raise GraphError(f"{what}: {describe(scores)} needs a known class axis")
    logp = log_softmax(scores, -1)
    weight = _class_weight(what, weight, scores)
    (target,) = leaf.lift_all([target])
    if target.dtype.kind in "iu":
        out = _index_losses(what, logp, target, weight, ignore_index, reduction, smoothing)
        return _named(out, "cross_entropy_loss")
    # probabilities: held to the scores' shape (and refused, naming both forms, otherwise)
    probs = _targets(scores, _classes_last(target), what).weights
    if smoothing:
        probs = probs * (1 - smoothing) + smoothing / scores.shape[-1]
    terms = logp * probs if weight is None else logp * probs * weight
    per_row = -rd.sum(terms, -1)
    return _reduced(per_row, reduction, "cross_entropy_loss")


def kl_div(input, target, reduction="mean", log_target=False):
    """PyTorch's `F.kl_div`: per element target·(log target − input), input log-probabilities,
    and 0 where target is 0 (xlogy); with log_target, exp(target)·(target − input). 'mean' is
    over all elements (PyTorch's default, which it warns about); 'batchmean' divides the sum by
    the first dimension (the sum itself for a 0-d input); 'sum'; 'none'."""
    what = "kl_div"
    _check_reduction(what, reduction, ("batchmean",))
    x, t = _loss_operands(what, "sum" if reduction == "batchmean" else reduction,
                          input=input, target=target)
    if log_target:
        per_element = ew.EXP(t) * (t - x)
    else:
        zero = ew.EQUAL(t, 0)
        xlogy = ew.WHERE(zero, 0, t * ew.LOG(ew.WHERE(zero, 1, t)))
        per_element = xlogy - t * x
    if reduction != "batchmean":
        return _reduced(per_element, reduction, "kl_div")
    total = rd.sum(per_element)
    if x.ndim and x.shape[0] is not None:
        total = total / x.shape[0]
    elif x.ndim:
        raise GraphError(f"kl_div: 'batchmean' needs a known first dimension, {describe(x)} has "
                         f"shape {format_shape(x.shape)}")
    return _named(total, "kl_div")


def huber_loss(input, target, reduction="mean", delta=1.0):
    """PyTorch's `F.huber_loss`: per element 0.5·d² where |d| < delta, delta·(|d| − 0.5·delta)
    elsewhere, d = input − target; then reduced. Gradient d inside, ±delta outside."""
    x, t = _loss_operands("huber_loss", reduction, input=input, target=target)
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not delta > 0:
        raise GraphError(f"huber_loss: delta must be a positive number, got {delta!r}")
    d = x - t
    size = ew.ABS(d)
    far = ew.GREATER_EQUAL(size, delta)
    near = ew.WHERE(far, 0, d)  # read only where chosen: no 0 * inf gradient at d = ±inf
    per_element = ew.WHERE(far, delta * (size - 0.5 * delta), 0.5 * near * near)
    return _reduced(per_element, reduction, "huber_loss")


def l1_loss(input, target, reduction="mean"):
    """PyTorch's `F.l1_loss`: |input − target| per element, then reduced (gradient sign(d),
    0 at d = 0)."""
    x, t = _loss_operands("l1_loss", reduction, input=input, target=target)
    return _reduced(ew.ABS(x - t), reduction, "l1_loss")


def _clamped_norm(x, dim, eps):
    """‖x‖ over dim (kept), raised to eps where smaller, as PyTorch does in place without
    recording it: the value is eps there, the gradient still the norm's (0 at x = 0)."""
    n = rd.norm(x, 2, axis=dim, keepdims=True)
    return ew.WHERE(ew.LESS(n, eps), eps + (n - ew.stop_gradient(n)), n)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """PyTorch's `F.cosine_similarity`: Σ (x1/max(‖x1‖, eps))·(x2/max(‖x2‖, eps)) over `dim`,
    x1 and x2 broadcast against each other first. Each norm is clamped on its own, as PyTorch's
    (not the product of the two), and the clamp passes the norm's gradient."""
    x1 = _floating(x1, "cosine_similarity's x1")
    x2 = _floating(x2, "cosine_similarity's x2")
    eps = parameter("cosine_similarity", "eps", eps)
    shape = ew.broadcast_dims([x1.shape, x2.shape])
    if any(isinstance(d, list) for d in shape):  # (axis, sizes): no broadcast
        raise GraphError(f"cosine_similarity: x1 {describe(x1)} of shape "
                         f"{format_shape(x1.shape)} and x2 {describe(x2)} of shape "
                         f"{format_shape(x2.shape)} do not broadcast")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -len(shape) <= dim < len(shape):
        raise GraphError(f"cosine_similarity: dim {dim!r} is out of range for the broadcast "
                         f"shape {format_shape(shape)}")
    if tuple(x1.shape) != tuple(shape):
        x1 = mv.broadcast_to(x1, shape)
    if tuple(x2.shape) != tuple(shape):
        x2 = mv.broadcast_to(x2, shape)
    out = rd.sum((x1 / _clamped_norm(x1, dim, eps)) * (x2 / _clamped_norm(x2, dim, eps)), dim)
    return _named(out, "cosine_similarity")


def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean"):
    """PyTorch's `F.margin_ranking_loss`: max(0, −y·(x1 − x2) + margin) per element, y = ±1
    (x1 should rank higher where y = 1), then reduced. The clamp passes the gradient at exactly
    0, as PyTorch's clamp_min."""
    what = "margin_ranking_loss"
    x1, x2 = _loss_operands(what, reduction, input1=input1, input2=input2)
    y = _same_shape(what, ("input1", x1), ("target", _floating(target, f"{what}'s target")))
    margin = parameter(what, "margin", margin)
    per_element = clip(-y * (x1 - x2) + margin, lo=0.0)
    return _reduced(per_element, reduction, what)
