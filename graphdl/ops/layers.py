"""Layers as PyTorch's functional API has them, declared as composites of primitives (their
gradients, both backends, ONNX export and narration come from their parts)."""

from __future__ import annotations

import math

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import Node, describe, format_shape
from graphdl.ops import conv, leaf, random
from graphdl.ops import elementwise as ew
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd
from graphdl.ops.composite import _floating, _named, clamp_min, composite, parameter
from graphdl.ops.matmul import MATMUL, matmul


@composite("layer_norm", "LayerNorm",
           "dL/dx = (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)) / σ with ĝ = g · weight, "
           "x̂ = (x − mean) / σ, σ = √(var + eps)",
           (ew.MUL, ew.ADD), arity=None)
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(x − mean) / √(var + eps) · weight + bias over the last len(normalized_shape) axes, the
    variance biased (÷ N), as torch.nn.functional.layer_norm."""
    x = _floating(x, "layer_norm")
    shape, axes = _last_axes(x, normalized_shape, "layer_norm")
    y = _standardized(x, axes, eps)
    weight, bias = (None if p is None else leaf.lift_all([p])[0] for p in (weight, bias))
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != shape:
            raise GraphError(f"layer_norm: {name} {describe(p)} has shape {format_shape(p.shape)}, "
                             f"not normalized_shape {shape}")
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return _named(y, "layer_norm")


def _last_axes(x, normalized_shape, what):
    """(normalized_shape as a tuple, the axes of x it names: its last ones), refused unless x
    ends with that shape."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or tuple(x.shape[x.ndim - len(shape):]) != shape or len(shape) > x.ndim:
        raise GraphError(f"{what}: {describe(x)} has shape {format_shape(x.shape)}, whose "
                         f"last axes are not normalized_shape {shape}")
    return shape, tuple(range(x.ndim - len(shape), x.ndim))


def _standardized(x, axes, eps):
    """(x − mean) / √(var + eps) over `axes`, the variance biased (÷ N), in two passes."""
    centered = x - rd.mean(x, axes, keepdims=True)
    variance = rd.mean(centered * centered, axes, keepdims=True)
    return centered * ew.RECIPROCAL(ew.SQRT(variance + eps))


def _broadcasts_to(shape, target):
    """Whether `shape` broadcasts to `target` (NumPy's rules) without changing it."""
    try:
        return np.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except ValueError:
        return False


def _lifted(*values):
    """Each value as a node (None stays None)."""
    return [None if v is None else leaf.lift_all([v])[0] for v in values]


def _affine(y, weight, bias, shape, what, axis=None):
    """y · weight + bias, each of `shape` (refused otherwise), along `axis` of y (None: last)."""
    weight, bias = _lifted(weight, bias)
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != shape:
            raise GraphError(f"{what}: {name} {describe(p)} has shape {format_shape(p.shape)}, "
                             f"not {format_shape(shape)}")
    trailing = () if axis is None else (1,) * (y.ndim - axis - 1)
    if weight is not None:
        y = y * (mv.reshape(weight, shape + trailing) if trailing else weight)
    if bias is not None:
        y = y + (mv.reshape(bias, shape + trailing) if trailing else bias)
    return y


@composite("linear", "Linear",
           "dL/dx = g · W, dL/dW = gᵀ · x (summed over the batch), dL/db = Σ g",
           (MATMUL, mv.SQUEEZE, ew.ADD), arity=None)
def linear(x, weight, bias=None):
    """x @ weightᵀ + bias with torch's layout: weight (out_features, in_features), bias
    (out_features,), x (..., in_features), as torch.nn.functional.linear."""
    x = _floating(x, "linear")
    (weight,) = _lifted(weight)
    if x.ndim == 0 or weight.ndim not in (1, 2) or weight.shape[-1] != x.shape[-1]:
        raise GraphError(f"linear: weight {describe(weight)} of shape "
                         f"{format_shape(weight.shape)} does not take {describe(x)} of shape "
                         f"{format_shape(x.shape)} (weight is (out_features, in_features))")
    y = matmul(x, mv.transpose(weight) if weight.ndim == 2 else weight)
    if bias is not None:
        (bias,) = _lifted(bias)
        want = weight.shape[:1] if weight.ndim == 2 else ()
        if tuple(bias.shape) != tuple(want):
            raise GraphError(f"linear: bias {describe(bias)} has shape "
                             f"{format_shape(bias.shape)}, not {format_shape(want)}")
        y = y + bias
    return _named(y, "linear")


@composite("embedding", "Embedding",
           "dL/dweight = g scatter-added into the looked-up rows (none into padding_idx's)",
           (mv.TAKE, ew.WHERE), arity=None)
def embedding(indices, weight, padding_idx=None):
    """weight's rows at `indices` (integers), as torch.nn.functional.embedding: a take along
    axis 0, each index in [0, num_embeddings) (checked when run); the row padding_idx (negative
    counts from the end) gets no gradient."""
    indices, weight = _lifted(indices, weight)
    if weight.ndim != 2:
        raise GraphError(f"embedding: weight {describe(weight)} has shape "
                         f"{format_shape(weight.shape)}, not (num_embeddings, embedding_dim)")
    if indices.dtype.kind not in "iu":
        raise GraphError(f"embedding: indices {describe(indices)} must be integers, "
                         f"got {indices.dtype}")
    # indices in [0, num_embeddings), checked at run time: torch takes no negative index here
    indices = mv.check_index(indices, weight, 0, f"embedding: indices {describe(indices)} into "
                             f"{describe(weight)}", negative=False)
    rows = mv.TAKE(weight, indices, axis=0)
    if padding_idx is not None:
        n = weight.shape[0]
        if not isinstance(padding_idx, (int, np.integer)) or not -n <= padding_idx < n:
            raise GraphError(f"embedding: padding_idx {padding_idx!r} is not a row of "
                             f"{describe(weight)} ({n} rows)")
        pad = mv.expand_dims(ew.EQUAL(indices, int(padding_idx) % n), -1)
        rows = ew.WHERE(pad, ew.stop_gradient(rows), rows)
    return _named(rows, "embedding")


def dropout_mask(shape, p, seed):
    """A keep-mask for `dropout` drawn with NumPy: True with probability 1 − p, the same for the
    same (shape, p, seed)."""
    return np.random.default_rng(seed).random(shape) >= p


@composite("dropout", "Dropout",
           "dL/dx = g · mask / (1 − p)", ew.MUL, arity=None)
def dropout(x, p=0.5, mask=None, training=True, key=None):
    """x · mask / (1 − p), as torch.nn.functional.dropout scales it, with a keep-mask that is
    either the caller's (`mask=`: bool or float, broadcast to x; a fed input, or
    `dropout_mask(shape, p, seed)`) or drawn from `key=` (a Python int or a 0-d integer input:
    kept where `random_uniform(key, x.shape)` ≥ p, the same mask for the same key on every
    backend: two dropouts of one shape need two keys, e.g. key * 2 and key * 2 + 1); x itself
    where p = 0 or not training, zeros where p = 1."""
    x = _floating(x, "dropout")
    p = parameter("dropout", "p", p)
    if not 0 <= p <= 1:
        raise GraphError(f"dropout: p must lie in [0, 1], got {p!r}")
    if mask is not None and key is not None:
        raise GraphError(f"dropout: {describe(x)} takes a mask= or a key=, not both")
    if p == 0 or not training:
        return x
    if key is not None:
        mask = ew.GREATER_EQUAL(random.random_uniform(random.random_key(key, "dropout"), x), p)
    if mask is None:
        raise GraphError(f"dropout: {describe(x)} needs a key= (an integer, fed anew each step) "
                         f"or its keep-mask (mask=, e.g. gd.dropout_mask(shape, p, seed))")
    (mask,) = _lifted(mask)
    if not _broadcasts_to(mask.shape, x.shape):
        raise GraphError(f"dropout: mask {describe(mask)} of shape {format_shape(mask.shape)} "
                         f"does not broadcast to {describe(x)} of shape {format_shape(x.shape)}")
    keep = ew.cast(mask, x.dtype)
    scaled = keep * 0.0 if p == 1 else keep / (1 - p)
    return _named(x * scaled, "dropout")


def _attention_parts(out):
    """{"q", "k", "v": node} of the attention block ending at `out` = P·v: the scores' product
    q·kᵀ is the product nearest above the weights P (breadth first: a projection feeding q or k,
    or a product computing a float mask, lies further up)."""
    frontier = [out.inputs[0]]
    while frontier[0].op is not MATMUL:
        frontier = frontier[1:] + list(frontier[0].inputs)
    q, k_t = frontier[0].inputs
    return {"q": q, "k": k_t.inputs[0], "v": out.inputs[1]}


@composite("scaled_dot_product_attention", "Attention",
           "scores = q·kᵀ·scale, masked, softmax over keys, weights·v; backward, with P the "
           "weights, S the scores and g the output's gradient: dP = g·vᵀ, then softmax's "
           "dS = P ⊙ (dP − Σ_keys P ⊙ dP) (0 at masked keys); the gradient splits at weights·v "
           "into v's (Pᵀ·g) and P's, and at q·kᵀ into q's (dS·k·scale) and k's (dSᵀ·q·scale)",
           MATMUL, arity=None, aliases=("attention",), parts=_attention_parts,
           part_rules={"q": "dS·k·scale", "k": "dSᵀ·q·scale", "v": "Pᵀ·g"})
def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None):
    """softmax(q @ kᵀ · scale + mask) @ v over the keys, as
    torch.nn.functional.scaled_dot_product_attention: q (..., L, E), k (..., S, E),
    v (..., S, Ev); scale 1/√E by default; a bool mask keeps where True, a float mask is added;
    is_causal keeps the lower triangle of (L, S). A query whose keys are all masked gets 0, as
    PyTorch's (its gradient too)."""
    q, k, v = (_floating(t, "scaled_dot_product_attention") for t in (q, k, v))
    name = "scaled_dot_product_attention"
    if min(q.ndim, k.ndim, v.ndim) < 2 or q.shape[-1] != k.shape[-1] \
            or k.shape[-2] != v.shape[-2]:
        raise GraphError(f"{name}: q {describe(q)} {format_shape(q.shape)}, k {describe(k)} "
                         f"{format_shape(k.shape)} and v {describe(v)} {format_shape(v.shape)} "
                         f"are not (..., L, E), (..., S, E), (..., S, Ev)")
    L, S = q.shape[-2], k.shape[-2]
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else parameter(name, "scale", scale)
    scores = matmul(q, mv.swap_last(k)) * scale
    keep = None
    if is_causal:
        if attn_mask is not None:
            raise GraphError(f"{name}: give attn_mask or is_causal, not both")
        keep = leaf.constant(np.tril(np.ones((L, S), dtype=bool)))
    elif attn_mask is not None:
        (attn_mask,) = _lifted(attn_mask)
        if not _broadcasts_to(attn_mask.shape, scores.shape):
            raise GraphError(f"{name}: attn_mask {describe(attn_mask)} of shape "
                             f"{format_shape(attn_mask.shape)} does not broadcast to the scores' "
                             f"{format_shape(scores.shape)}")
        if attn_mask.dtype.kind == "b":
            keep = attn_mask
        else:
            scores = scores + ew.cast(attn_mask, scores.dtype)
    if keep is not None:
        scores = ew.WHERE(keep, scores, -math.inf)
    if S == 0:
        weights = scores
    else:
        live = ew.GREATER(rd.max(ew.stop_gradient(scores), -1, keepdims=True), -math.inf)
        scores = ew.WHERE(live, scores, 0.0)  # a row with no key kept: 0s, not NaNs
        e = ew.EXP(scores - ew.stop_gradient(rd.max(scores, -1, keepdims=True)))
        weights = ew.WHERE(live, e / rd.sum(e, -1, keepdims=True), 0.0)  # softmax, unnamed
    return _named(matmul(weights, v), name)


def _channels(x, what, least=2):
    if x.ndim < least:
        axes = "(N, C, ...)" if least == 2 else "(N, C, L, ...)"
        raise GraphError(f"{what}: {describe(x)} has shape {format_shape(x.shape)}, not {axes}")
    return (x.shape[1],)


@composite("group_norm", "GroupNorm",
           "per group: dL/dx = (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)) / σ with ĝ = g · weight, "
           "x̂ = (x − mean) / σ, σ = √(var + eps)",
           (ew.MUL, ew.ADD, mv.RESHAPE), arity=None)
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """x (N, C, ...) normalized over each of num_groups groups of C/num_groups channels (and
    all the trailing axes), variance biased, then · weight + bias per channel (C,), as
    torch.nn.functional.group_norm."""
    x = _floating(x, "group_norm")
    (c,) = _channels(x, "group_norm")
    if not isinstance(num_groups, (int, np.integer)) or num_groups < 1 or c % num_groups:
        raise GraphError(f"group_norm: {describe(x)} has {c} channels, which num_groups "
                         f"{num_groups!r} does not divide")
    rest = x.shape[1:]
    if None in rest:  # the batch alone may be unknown: one reshape's -1
        raise GraphError(f"group_norm: {describe(x)} of shape {format_shape(x.shape)} needs "
                         f"every axis but the batch known")
    grouped = mv.reshape(x, (-1, int(num_groups), math.prod(rest) // int(num_groups)))
    y = mv.reshape(_standardized(grouped, 2, eps), (-1, *rest))
    return _named(_affine(y, weight, bias, (c,), "group_norm", axis=1), "group_norm")


@composite("batch_norm", "BatchNorm",
           "dL/dx = g · weight / √(running_var + eps) (inference); in training as layer_norm's "
           "rule over the batch and trailing axes",
           (ew.MUL, ew.ADD), arity=None)
def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, *, num_batches_tracked=None, return_updates=False):
    """x (N, C, ...) normalized per channel, as torch.nn.functional.batch_norm: by
    running_mean and running_var (C,) when not training, by the batch's mean and biased
    variance over every axis but 1 when training; then · weight + bias (C,).

    With return_updates=True it returns (y, updates): in training, {running_mean: its new
    value, running_var: its new value} for `gd.compile(..., updates=)` (inputs both), as
    torch.nn.BatchNorm updates its buffers: stat ← (1 − momentum)·stat + momentum·batch's,
    the batch's variance unbiased (÷ (n − 1)); momentum=None averages cumulatively,
    momentum = 1 / (num_batches_tracked + 1), which needs `num_batches_tracked` (a 0-d
    integer input, updated to itself + 1 whenever given); not training, {}."""
    x = _floating(x, "batch_norm")
    (c,) = _channels(x, "batch_norm")
    trailing = (1,) * (x.ndim - 2)
    updates = {}
    if training:
        axes = (0, *range(2, x.ndim))
        mean = rd.mean(x, axes, keepdims=True)
        centered = x - mean
        variance = rd.mean(centered * centered, axes, keepdims=True)
        if return_updates:
            updates = _running_updates(x, axes, mean, variance, running_mean, running_var,
                                       momentum, num_batches_tracked)
    else:
        running_mean, running_var = _running_stats(x, running_mean, running_var)
        centered = x - mv.reshape(running_mean, (c, *trailing))
        variance = mv.reshape(running_var, (c, *trailing))
    y = centered * ew.RECIPROCAL(ew.SQRT(variance + eps))
    y = _named(_affine(y, weight, bias, (c,), "batch_norm", axis=1), "batch_norm")
    return (y, updates) if return_updates else y


def _running_stats(x, running_mean, running_var, required=True):
    """running_mean and running_var as nodes of shape (C,), x's channels (None passes unless
    `required`)."""
    c = x.shape[1]
    stats = _lifted(running_mean, running_var)
    for label, s in zip(("running_mean", "running_var"), stats):
        if (s is None and required) or (s is not None and tuple(s.shape) != (c,)):
            raise GraphError(f"batch_norm: {label} {describe(s) if s is not None else None} "
                             f"is not of shape ({c},), the channels of {describe(x)}")
    return stats


def _running_updates(x, axes, mean, variance, running_mean, running_var, momentum, count):
    """{running stat: its value after this batch, num_batches_tracked: + 1} (see
    `batch_norm`), for each of them given."""
    stats = dict(zip(("running_mean", "running_var"), _running_stats(x, running_mean,
                                                                     running_var, False)))
    if count is not None:
        (count,) = _lifted(count)
        if count.op is not leaf.INPUT or count.shape != () or count.dtype.kind not in "iu":
            raise GraphError(f"batch_norm: num_batches_tracked {describe(count)} must be a 0-d "
                             f"integer input (updated in place each step)")
    if momentum is None:
        if count is None:
            raise GraphError(f"batch_norm: momentum=None (a cumulative average) needs "
                             f"num_batches_tracked, a 0-d integer input, for {describe(x)}")
        momentum = ew.RECIPROCAL(ew.cast(count + 1, x.dtype))
    else:
        momentum = parameter("batch_norm", "momentum", momentum)
    known = None not in x.shape
    n = math.prod(x.shape[a] for a in axes) if known else leaf.size(x, axes, x.dtype)
    if known and n < 2:
        raise GraphError(f"batch_norm: {describe(x)} has only {n} value(s) per channel; the "
                         f"unbiased variance running_var follows needs 2 or more")
    batch = {"running_mean": mean, "running_var": variance * (n / (n - 1))}
    updates = {}
    for label, stat in stats.items():
        if stat is None:
            continue
        if stat.op is not leaf.INPUT:
            raise GraphError(f"batch_norm: {label} {describe(stat)} must be an input to be "
                             f"updated (gd.input, fed each step)")
        new = ew.cast(mv.reshape(batch[label], (x.shape[1],)), stat.dtype)
        rate = ew.cast(momentum, stat.dtype) if isinstance(momentum, Node) else momentum
        updates[stat] = (1 - rate) * stat + rate * new
    if count is not None:
        updates[count] = count + 1
    return updates


@composite("normalize", "normalize",
           "dL/dx = (g − Σ(g·y) · ∂n/∂x) / n, with n = ‖x‖_p raised to eps (∂n/∂x = 0 "
           "below it) and y = x / n", ew.DIV, arity=None)
def normalize(x, p=2.0, dim=1, eps=1e-12):
    """x / max(‖x‖_p, eps) over `dim` (an int or a tuple), as torch.nn.functional.normalize:
    the p-norm as gd.norm's; below eps the divisor is eps, with no gradient through it
    (PyTorch's clamp_min), so a zero vector gives 0 with gradient g / eps."""
    x = _floating(x, "normalize")
    eps = parameter("normalize", "eps", eps)
    axes = mv.normalize_axes(dim, x.ndim, f"normalize of {describe(x)}", scalar_axis=True)
    n = rd.norm(x, p, axis=axes, keepdims=True)
    return _named(x / clamp_min(n, eps), "normalize")


@composite("instance_norm", "InstanceNorm",
           "per sample and channel: dL/dx = (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)) / σ with "
           "ĝ = g · weight, x̂ = (x − mean) / σ, σ = √(var + eps), over the spatial axes",
           (ew.MUL, ew.ADD), arity=None)
def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """x (N, C, ...) normalized over the spatial axes of each sample's channel, the variance
    biased, then · weight + bias per channel (C,), as torch.nn.functional.instance_norm (its
    arguments, in its order) with use_input_stats=True. Running statistics are not kept:
    running_mean, running_var and use_input_stats=False are refused (normalizing by running
    statistics is gd.batch_norm's inference form); momentum would only move them."""
    x = _floating(x, "instance_norm")
    what = f"instance_norm of {describe(x)}"
    if running_mean is not None or running_var is not None or not use_input_stats:
        raise GraphError(f"{what}: running statistics (running_mean, running_var, "
                         f"use_input_stats=False) are not supported; give weight= and bias= by "
                         f"name (PyTorch's order has the running statistics first); by running "
                         f"statistics it is gd.batch_norm(x, running_mean, running_var, "
                         f"weight, bias)")
    (c,) = _channels(x, "instance_norm", least=3)
    values = math.prod(x.shape[2:]) if None not in x.shape[2:] else None
    if values is not None and values < 2:
        raise GraphError(f"{what}: shape {format_shape(x.shape)} has {values} value per channel; "
                         f"instance statistics need more than 1 (as PyTorch)")
    y = _standardized(x, tuple(range(2, x.ndim)), parameter("instance_norm", "eps", eps))
    return _named(_affine(y, weight, bias, (c,), "instance_norm", axis=1), "instance_norm")


@composite("local_response_norm", "LRN",
           "dL/dx = g / d − (2αβ/size) · x · Σ_window (g · y / s), with s = k + α/size · "
           "Σ_window x², d = s^β and y = x / d", ew.DIV, arity=None)
def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """x / (k + alpha/size · Σ x²)^beta, the sum over the `size` channels c − size//2 …
    c + (size−1)//2 around each channel c (axis 1), zeros past the edges, as
    torch.nn.functional.local_response_norm: x² as (N, 1, C, the spatial axes flattened),
    average-pooled over (size, 1) windows, so its gradient, kernels and export are the pool's."""
    x = _floating(x, "local_response_norm")
    what = f"local_response_norm of {describe(x)}"
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise GraphError(f"{what}: size must be an int of at least 1, got {size!r}")
    alpha, beta, k = (parameter("local_response_norm", name, v)
                      for name, v in (("alpha", alpha), ("beta", beta), ("k", k)))
    _channels(x, "local_response_norm", least=3)
    n, c, *spatial = x.shape
    if c is None or None in spatial:
        raise GraphError(f"{what}: the channels and spatial sizes must be known at declaration, "
                         f"got shape {format_shape(x.shape)}")
    if 0 in x.shape:
        return x  # nothing to normalize (PyTorch gives the input back)
    batch = -1 if n is None else n
    planes = mv.reshape(x * x, (batch, 1, c, math.prod(spatial)))
    window = conv.avg_pool2d(planes, (int(size), 1), 1, (size // 2, (size - 1) // 2, 0, 0))
    divisor = (mv.reshape(window, (batch, c, *spatial)) * alpha + k) ** beta
    return _named(x / divisor, "local_response_norm")


@composite("rms_norm", "RMSNorm",
           "dL/dx = (ĝ − x̂ · mean(ĝ · x̂)) / r with ĝ = g · weight, x̂ = x / r, "
           "r = √(mean(x²) + eps)", ew.MUL, arity=None)
def rms_norm(x, normalized_shape, weight=None, eps=None):
    """x / √(mean(x²) + eps) · weight over the last len(normalized_shape) axes, as
    torch.nn.functional.rms_norm: weight of normalized_shape; eps None is the machine epsilon
    of x's dtype (torch.finfo(x.dtype).eps)."""
    x = _floating(x, "rms_norm")
    shape, axes = _last_axes(x, normalized_shape, "rms_norm")
    eps = float(np.finfo(x.dtype).eps) if eps is None else parameter("rms_norm", "eps", eps)
    y = x * ew.RECIPROCAL(ew.SQRT(rd.mean(x * x, axes, keepdims=True) + eps))
    return _named(_affine(y, weight, None, shape, "rms_norm"), "rms_norm")
