"""ONNX's activations, normalizations and losses, built from graphdl's ops of the same meaning
(registered into `ops.OPS`; the rest of the builders, and how they read a node: `ops`).

ONNX's attribute defaults are not always PyTorch's (HardSigmoid's slope 0.2, not 1/6): where
they differ, the builder spells the formula out instead of calling graphdl's op."""

from __future__ import annotations

import numpy as np

import graphdl as gd
from graphdl.onnx.ops import OPS, op
from graphdl.ops.activations import SELU_ALPHA, SELU_SCALE

for _name, _fn in {"HardSwish": gd.hardswish, "Softsign": gd.softsign, "Mish": gd.mish}.items():
    OPS[_name] = lambda call, fn=_fn: fn(call.node(0))

OPS["Elu"] = lambda call: gd.elu(call.node(0), call.attr("alpha", 1.0))
OPS["Celu"] = lambda call: gd.celu(call.node(0), call.attr("alpha", 1.0))
OPS["Gelu"] = lambda call: gd.gelu(call.node(0), call.attr("approximate", "none"))


def _float32(a, b):
    """Whether an attribute (a float32 in the model) is the number b."""
    return np.float32(a) == np.float32(b)


@op("Selu")
def _selu(call):
    x, alpha, gamma = call.node(0), call.attr("alpha"), call.attr("gamma")
    if (alpha is None or _float32(alpha, SELU_ALPHA)) and (
            gamma is None or _float32(gamma, SELU_SCALE)):
        return gd.selu(x)
    return gd.elu(x, SELU_ALPHA if alpha is None else alpha) * (
        SELU_SCALE if gamma is None else gamma)


@op("HardSigmoid")
def _hard_sigmoid(call):
    """max(0, min(1, αx + β)), α = 0.2 and β = 0.5 by default (PyTorch's: α = 1/6)."""
    x, alpha, beta = call.node(0), call.attr("alpha", 0.2), call.attr("beta", 0.5)
    if _float32(alpha, 1 / 6) and beta == 0.5:
        return gd.hardsigmoid(x)
    return gd.clip(x * alpha + beta, 0, 1)


@op("Swish")
def _swish(call):
    x, alpha = call.node(0), call.attr("alpha", 1.0)
    return gd.silu(x) if alpha == 1.0 else x * gd.sigmoid(x * alpha)


@op("ThresholdedRelu")
def _thresholded_relu(call):
    x = call.node(0)
    return gd.where(x > call.attr("alpha", 1.0), x, gd.zeros_like(x))


@op("Shrink")
def _shrink(call):
    """x + bias below −λ, x − bias above λ, 0 between."""
    x, bias, lambd = call.node(0), call.attr("bias", 0.0), call.attr("lambd", 0.5)
    zero = gd.zeros_like(x)
    y = gd.where(x < -lambd, x + bias, gd.where(x > lambd, x - bias, zero))
    return y if y.dtype == x.dtype else gd.cast(y, x.dtype)


@op("PRelu")
def _prelu(call):
    """The slope broadcasts to x as NumPy's (ONNX's unidirectional broadcasting), not only per
    channel as gd.prelu's."""
    x, slope = call.node(0), call.node(1)
    return gd.where(x < 0, x * slope, x)


# ---------------------------------------------------------------- normalizations
def _channels(call, x):
    if x.ndim < 2 or x.shape[1] is None:
        call.refuse(f"the channel axis (1) of {call.proto.input[0]!r} must be known ({x.shape})")
    return x.shape[1]


@op("InstanceNormalization")
def _instance_norm(call):
    return gd.instance_norm(call.node(0), weight=call.node(1), bias=call.node(2),
                            eps=call.attr("epsilon", 1e-5))


@op("GroupNormalization")
def _group_norm(call):
    """Opset 18's scale and bias are per group (a deprecated form), 21's per channel."""
    x, groups = call.node(0), call.attr("num_groups")
    scale, bias = call.node(1), call.node(2)
    if call.opset < 21:
        per_group = _channels(call, x) // groups
        scale, bias = (gd.repeat_interleave(v, per_group) for v in (scale, bias))
    return gd.group_norm(x, groups, scale, bias, call.attr("epsilon", 1e-5))


@op("MeanVarianceNormalization")
def _mean_variance_norm(call):
    """(x − mean) / (std + 1e-9) over `axes` (N, H, W by default), the std biased, as ONNX's
    function body."""
    x, axes = call.node(0), tuple(call.attr("axes", (0, 2, 3)))
    centered = x - gd.mean(x, axis=axes, keepdims=True)
    std = gd.sqrt(gd.mean(centered * centered, axis=axes, keepdims=True))
    return centered / (std + 1e-9)


@op("LpNormalization")
def _lp_norm(call):
    """x / ‖x‖_p along the axis; 0 where the norm is 0 (ONNX's reference)."""
    x, p = call.node(0), call.attr("p", 2)
    if p not in (1, 2):
        call.malformed(f"p must be 1 or 2, got {p}")
    norm = gd.norm(x, p, axis=call.attr("axis", -1), keepdims=True)
    zero = gd.equal(norm, 0)
    return gd.where(zero, gd.zeros_like(x), x / gd.where(zero, gd.zeros_like(norm) + 1, norm))


@op("RMSNormalization")
def _rms_norm(call):
    """x / √(mean of x² over the axes from `axis` on + ε) · scale."""
    x, axis = call.node(0), call.attr("axis", -1) % call.node(0).ndim
    axes = tuple(range(axis, x.ndim))
    mean_square = gd.mean(x * x, axis=axes, keepdims=True)
    return x * gd.rsqrt(mean_square + call.attr("epsilon", 1e-5)) * call.node(1)


@op("LRN")
def _lrn(call):
    """x / (bias + α/size · Σ x²)^β, the sum over the channels c − ⌊(size−1)/2⌋ … c +
    ⌈(size−1)/2⌉ that exist (ONNX's window: for an even size one more after than before)."""
    x, size = call.node(0), call.attr("size")
    channels = _channels(call, x)
    before, after = (size - 1) // 2, size // 2
    pairs = [0, 0] * (x.ndim - 2) + [before, after]  # gd.pad's: the last axis first
    padded = gd.pad(x * x, pairs)
    window = sum((padded[:, i:i + channels] for i in range(1, size)), padded[:, :channels])
    scale = window * (call.attr("alpha", 1e-4) / size) + call.attr("bias", 1.0)
    return x * scale ** -call.attr("beta", 0.75)


# ---------------------------------------------------------------- losses
def _nll(call, log_probs):
    target = call.node(1)
    weight = call.node(2) if call.has(2) else None
    return gd.nll_loss(log_probs, target, weight, call.attr("ignore_index", -100),
                       call.attr("reduction", "mean"))


OPS["NegativeLogLikelihoodLoss"] = lambda call: _nll(call, call.node(0))


@op("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(call):
    """nll_loss of log_softmax over the class axis (1); the log-probabilities are the optional
    second output."""
    log_probs = gd.log_softmax(call.node(0), 1)
    return _nll(call, log_probs), log_probs


# ---------------------------------------------------------------- attention
@op("Attention")
def _attention(call):
    """softmax(q·kᵀ·scale (soft-capped) + bias)·v, ONNX's Attention (opset 23): 3-D inputs
    split into heads, the past keys and values before the new ones (present_key/value), key
    heads repeated for grouped queries; the bias is the mask's (a bool mask keeps where True),
    plus the causal, sliding-window and key-padding (`nonpad_kv_seqlen`) masks. A query whose
    keys are all masked gets 0. Without soft-capping or the scores' output it is one
    scaled_dot_product_attention."""
    q, k, v = (call.node(i) for i in range(3))
    split = q.ndim == 3
    if split:
        q, k, v = _heads(call, q, "q_num_heads"), _heads(call, k), _heads(call, v)
    if call.has(4) != call.has(5):
        call.malformed("past_key and past_value must be given together")
    past = 0
    if call.has(4):
        past = call.node(4).shape[2]
        k, v = (gd.concatenate([call.node(i), t], 2) for i, t in ((4, k), (5, v)))
    present = (k, v)
    if q.shape[1] != k.shape[1]:  # grouped queries: each key head serves q heads / k heads
        k, v = (gd.repeat_interleave(t, q.shape[1] // k.shape[1], axis=1) for t in (k, v))
    bias = _attention_bias(call, q, k.shape[2], past)
    # ONNX scales q and k by √scale each (in their own precision), not their product
    scale = call.attr("scale", 1 / np.sqrt(q.shape[-1]))
    q, k = q * float(np.sqrt(scale)), k * float(np.sqrt(scale))
    softcap, mode = call.attr("softcap", 0.0), call.attr("qk_matmul_output_mode", 0)
    if not softcap and (len(call.proto.output) < 4 or not call.proto.output[3]):
        y, scores = gd.scaled_dot_product_attention(q, k, v, bias, scale=1.0), None
    else:
        y, scores = _attention_parts(q, k, v, bias, softcap, mode)
    if split:
        y = gd.reshape(gd.transpose(y, (0, 2, 1, 3)), (-1, y.shape[2], y.shape[1] * y.shape[3]))
    return (y, *present, scores)


def _heads(call, x, heads="kv_num_heads"):
    """(batch, length, heads·size) as (batch, heads, length, size)."""
    n = call.attr(heads)
    if n is None:
        call.malformed(f"3-D inputs need the {heads} attribute")
    return gd.transpose(gd.reshape(x, (-1, x.shape[1], n, x.shape[2] // n)), (0, 2, 1, 3))


def _attention_bias(call, q, keys, past):
    """The additive bias of the scores (queries × keys; None: none), -inf where masked."""
    length, dtype = q.shape[2], q.dtype
    masked = np.asarray(-np.inf, dtype)
    bias = None
    if call.has(3):
        mask = call.node(3)
        if mask.shape[-1] is not None and mask.shape[-1] < keys:  # the keys past it: masked
            fill = False if mask.dtype == np.bool_ else -np.inf
            mask = gd.pad(mask, [0, keys - mask.shape[-1]], value=fill)
        bias = gd.where(mask, np.zeros((), dtype), masked) if mask.dtype == np.bool_ else mask
    rows, cols = np.arange(length).reshape(-1, 1), np.arange(keys)
    padded = call.node(6) if call.has(6) else None
    # a query i sees keys up to i + offset: the keys before its block (per batch with padding)
    offset = (gd.reshape(padded, (-1, 1, 1, 1)) - length if padded is not None and not call.has(4)
              else past)
    diff = offset + rows - cols  # how far each key is behind each query (an array or a node)
    allowed = []
    if call.attr("is_causal", 0):
        allowed.append(diff >= 0)
    left, right = call.attr("left_window_size", -1), call.attr("right_window_size", -1)
    if left >= 0:
        allowed.append(diff <= left)
    if right >= 0:
        allowed.append(diff >= -right)
    if padded is not None:
        allowed.append(gd.less(cols, gd.reshape(padded, (-1, 1, 1, 1))))
    for keep in allowed:
        term = gd.where(keep, np.zeros((), dtype), masked)
        bias = term if bias is None else bias + term
    return bias


def _attention_parts(q, k, v, bias, softcap, mode):
    """Attention of scaled q and k spelled out, for soft-capping and the scores' output (by
    `qk_matmul_output_mode`: 0 and 1 the capped scores, 2 with the bias, 3 the weights)."""
    scores = gd.matmul(q, gd.transpose(k, (0, 1, 3, 2)))
    if softcap:
        scores = gd.tanh(scores / softcap) * softcap
    biased = scores if bias is None else scores + bias
    weights = gd.softmax(biased, -1)
    if bias is not None:  # a query whose keys are all masked: weights 0, not NaN
        dead = gd.equal(gd.max(bias, -1, keepdims=True), -np.inf)
        weights = gd.where(dead, gd.zeros_like(weights), weights)
    return gd.matmul(weights, v), {0: scores, 1: scores, 2: biased, 3: weights}[mode]


# ---------------------------------------------------------------- sampling
@op("GridSample")
def _grid_sample(call):
    """grid_sample: ONNX's linear and cubic (opset 20) are bilinear and bicubic."""
    mode = {"linear": "bilinear", "cubic": "bicubic"}.get(call.attr("mode", "bilinear"),
                                                         call.attr("mode", "bilinear"))
    if mode == "bicubic":
        call.refuse("cubic sampling is not supported (graphdl's grid_sample: linear, nearest)")
    return gd.grid_sample(call.node(0), call.node(1), mode, call.attr("padding_mode", "zeros"),
                          bool(call.attr("align_corners", 0)))


@op("AffineGrid")
def _affine_grid(call):
    size = [int(n) for n in call.static(1, "size")]
    return gd.affine_grid(call.node(0), size, bool(call.attr("align_corners", 0)))
