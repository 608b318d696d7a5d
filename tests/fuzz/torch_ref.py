"""The same programs in PyTorch float64: the reference values, gradients and second derivatives.

Each op is written the way a PyTorch user would write it, so the comparison checks graphdl
against PyTorch's conventions: `amax`/`amin` split a tie's gradient evenly, `maximum`/`minimum`
give each side half at a tie, relu'(0) = 0, max-pooling routes to the first maximum of a window,
`cross_entropy` is PyTorch's loss and the hinge loss is `multi_margin_loss` times the number
of classes (written out: PyTorch has no double backward for it). Negative `take` indices count from
the end, as in NumPy, whose indexing graphdl follows; PyTorch's `index_select` is fed the
equivalent non-negative ones.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from graphdl import runtime


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))


def _reduction(fn):
    def reduce(x, axis=None, keepdims=False, **options):
        axes = _axes(axis, x.ndim)
        if not axes:  # a 0-d value: reducing over no axis is the identity
            return fn(x.reshape(1), 0, False, **options).reshape(())
        return fn(x, axes, keepdims, **options)
    return reduce


def _prod(x, axes, keepdim):
    """torch.prod over several axes (it takes one): over them moved last and flattened."""
    axes = (axes,) if isinstance(axes, int) else axes
    kept = [a for a in range(x.ndim) if a not in axes]
    flat = x.permute(kept + list(axes)).reshape([x.shape[a] for a in kept] + [-1])
    out = flat.prod(-1)
    return out.reshape([1 if a in axes else x.shape[a] for a in range(x.ndim)]) if keepdim else out


def _norm(x, axes, keepdim, p):
    return torch.linalg.vector_norm(x, 2 if p == "fro" else p, axes, keepdim)


def _as_float(fn):
    """An integer or bool result cast to float64: what graphdl's program casts it to."""
    return lambda *args, **kwargs: fn(*args, **kwargs).to(torch.float64)


def _arg_extremum(fn):
    return _as_float(lambda x, axis=None, keepdims=False: fn(x, axis, keepdims))


def _topk(x, k, axis, largest):
    """torch.topk's values, taking tied elements in their order (a stable sort's), as graphdl
    does (topk's choice among ties is unspecified; their gradients go where it chose)."""
    return torch.sort(x, dim=axis, descending=largest, stable=True).values.narrow(axis, 0, k)


def _take(x, indices, axis):
    if axis is None:
        x, axis = x.reshape(-1), 0
    idx = torch.as_tensor(indices) % x.shape[axis]
    out = torch.index_select(x, axis, idx.reshape(-1))
    return out.reshape(x.shape[:axis] + tuple(indices.shape) + x.shape[axis + 1:])


def _embedding(w, indices, padding_idx):
    return F.embedding(torch.as_tensor(indices), w, padding_idx=padding_idx)


def _dropout(x, p, mask=None, key=None):
    """x · mask / (1 − p): F.dropout with the same keep-mask (it draws its own): the caller's,
    or graphdl's reference draw from the key (what every backend must draw)."""
    if p == 0:
        return x
    if key is not None:
        mask = _random_uniform(x, key, "float32") >= p
    return x * (torch.as_tensor(mask).to(x.dtype) * (0.0 if p == 1 else 1 / (1 - p)))


def _random_uniform(x, key, dtype=None):
    """graphdl's reference draw (no PyTorch generator draws the same numbers)."""
    dtype = np.dtype(str(x.dtype).removeprefix("torch.")) if dtype is None else np.dtype(dtype)
    return torch.from_numpy(runtime._random_uniform(key, tuple(x.shape), dtype))


def _attention(q, k, v, attn_mask, is_causal, scale):
    mask = None if attn_mask is None else torch.as_tensor(attn_mask)
    if mask is not None and mask.is_floating_point():
        mask = mask.to(q.dtype)
    # the math kernel: the CPU flash kernel (4-D, no mask) has no double backward
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                              scale=scale)


def _batch_norm(x, *wb, running_mean, running_var, training):
    stats = [None if s is None else torch.as_tensor(s).to(x.dtype)
             for s in (running_mean, running_var)]
    return F.batch_norm(x, *stats, *wb, training=training)


def _index(i, given):
    """The index operand: the fed index input (a tensor) or the constant param."""
    return torch.as_tensor(i[0] if i else given).long()


def _take_along_axis(x, *i, axis, indices=None):
    """numpy.take_along_axis: both sides broadcast off the axis, negatives from the end."""
    idx = _index(i, indices)
    shape = [max(a, b) for a, b in zip(x.shape, idx.shape)]
    x = x.expand(*shape[:axis], x.shape[axis], *shape[axis + 1:])
    idx = idx.expand(*shape[:axis], idx.shape[axis], *shape[axis + 1:])
    return torch.gather(x, axis, idx % x.shape[axis])


def _getitem(x, key):
    """NumPy basic indexing (ints and slices, negative steps included) with index_select."""
    drop = []
    for axis, k in enumerate(key):
        d = x.shape[axis]
        rows = [k % d] if isinstance(k, int) else list(range(*k.indices(d)))
        if isinstance(k, int):
            drop.append(axis)
        x = torch.index_select(x, axis, torch.tensor(rows, dtype=torch.int64))
    return x.squeeze(tuple(drop)) if drop else x


def _advanced_index(x, *fed, key):
    """NumPy's advanced indexing: the fed index (if any) in place of the key's "i"; an int
    beside index arrays is a 1-element index array (PyTorch indexes by an int first)."""
    key = [fed[0] if isinstance(k, str) else k for k in key]
    return x[tuple(k if k is None or isinstance(k, slice) else torch.tensor([k])
                   if isinstance(k, int) else torch.as_tensor(k) for k in key)]


def _conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if isinstance(padding, tuple) and len(padding) == 4:  # graphdl's (top, bottom, left, right)
        top, bottom, left, right = padding
        x, padding = F.pad(x, (left, right, top, bottom)), 0
    return F.conv2d(x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _conv3d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if isinstance(padding, tuple) and len(padding) == 6:  # (front, back, top, bottom, left, right)
        front, back, top, bottom, left, right = padding
        x, padding = F.pad(x, (left, right, top, bottom, front, back)), 0
    return F.conv3d(x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _conv_transpose3d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                      dilation=1):
    if not (isinstance(padding, tuple) and len(padding) == 6):
        return F.conv_transpose3d(x, w, bias, stride, padding, output_padding, groups, dilation)
    # six sides: the full scatter, zeros added for the output padding, cropped by the sides
    full = F.conv_transpose3d(x, w, None, stride, 0, 0, groups, dilation)
    extra = (output_padding,) * 3 if isinstance(output_padding, int) else output_padding
    full = F.pad(full, (0, extra[2], 0, extra[1], 0, extra[0]))
    front, back, top, bottom, left, right = padding
    y = full[:, :, front:full.shape[2] - back, top:full.shape[3] - bottom,
             left:full.shape[4] - right]
    return y if bias is None else y + bias.reshape(1, -1, 1, 1, 1)


def _pixels(shuffle, x, r):
    """F.pixel_shuffle / pixel_unshuffle, except that torch 2.13 gives an empty input back in
    its own shape ((0, 2, 6, 6) at r = 3 stays (0, 2, 6, 6), not (0, 18, 2, 2)): an empty
    input (its batch empty; the fuzzer's C, H, W are not) takes the shape of its (C, H, W)."""
    if x.numel():
        return shuffle(x, r)
    return x.reshape(x.shape[:-3] + shuffle(torch.zeros(x.shape[-3:], dtype=x.dtype), r).shape)


def _max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, dilation=1):
    return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)


def _cross_entropy(logits, target=None, labels=None):
    if labels is not None:
        target = torch.as_tensor(labels)
    if logits.ndim > 1:  # graphdl's classes are the last axis, PyTorch's the second
        logits = logits.movedim(-1, 1)
        target = target.movedim(-1, 1) if target.is_floating_point() else target
    return F.cross_entropy(logits, target)


def _hinge(scores, labels):
    """F.multi_margin_loss times the number of classes, written out because PyTorch has no
    double backward for it: max(0, z) contributes where z > 0, so a margin of exactly 0 has
    gradient 0 (multi_margin_loss's own rule). Summed in its kernel's order, (1 - s_y) + s_j,
    so that rounding puts a margin at exactly 0 where PyTorch's does."""
    labels = torch.as_tensor(labels)[..., None]
    correct = torch.gather(scores, -1, labels)
    z = 1 - correct + scores
    others = torch.ones_like(scores).scatter(-1, labels, 0.0)
    return (torch.where(z > 0, z, 0.0) * others).sum(-1).mean()


def _bce_with_logits(x, t, pos_weight=None, reduction="mean"):
    if pos_weight is not None:  # a number or a slot (one weight per class)
        pos_weight = torch.as_tensor(pos_weight, dtype=x.dtype)
    return F.binary_cross_entropy_with_logits(x, t, pos_weight=pos_weight, reduction=reduction)


def _class_weight(weight, x):
    return None if weight is None else torch.as_tensor(weight, dtype=x.dtype)


def _nll_loss(x, target, weight=None, **kwargs):
    return F.nll_loss(x, torch.as_tensor(target), _class_weight(weight, x), **kwargs)


def _torch_cross_entropy(x, target, weight=None, **kwargs):
    return F.cross_entropy(x, torch.as_tensor(target), _class_weight(weight, x), **kwargs)


def _kl_div(x, t, reduction, log_target):
    with warnings.catch_warnings():  # PyTorch's warning that 'mean' is not 'batchmean'
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(x, t, reduction=reduction, log_target=log_target)


def _one_hot(x, labels, num_classes):
    return F.one_hot(torch.as_tensor(labels), num_classes).to(x.dtype) * x


def _where(a, b, cmp):
    return torch.where(getattr(torch, {"greater_equal": "ge", "less_equal": "le",
                                       "not_equal": "ne", "equal": "eq", "greater": "gt",
                                       "less": "lt"}[cmp])(a, b), a, b)


def _scan(function):
    """A torch scan (x, dim) with graphdl's axis None (x flattened) and reverse (from the end)."""
    def scan(x, axis, reverse):
        if axis is None:
            x, axis = x.reshape(-1), 0
        if reverse:
            return torch.flip(function(torch.flip(x, [axis]), axis), [axis])
        return function(x, axis)
    return scan


def _logcumsumexp(x, axis):
    """torch.logcumsumexp as a logsumexp over each prefix (-inf past it). The values are the
    same; torch.logcumsumexp's double backward splits the cotangent into logs of its positive
    and negative parts, which have no slope where it is 0: its second derivatives there are
    0 or NaN, this form's (and graphdl's) are right (tests/test_scans.py)."""
    x = x.movedim(axis, -1)
    prefix = torch.ones(x.shape[-1], x.shape[-1], dtype=torch.bool).tril()  # [i, j]: j <= i
    masked = torch.where(prefix, x.unsqueeze(-2), torch.tensor(-torch.inf, dtype=x.dtype))
    return torch.logsumexp(masked, -1).movedim(-1, axis)


def _bits(a):
    """a as a small integer, as the fuzzer's programs make it: tanh·64 truncated."""
    return (torch.tanh(a) * 64).to(torch.int64)


def _softplus(a, beta=1.0, threshold=None):
    """gd.softplus: F.softplus with a threshold; without one the exact value, log(1 + e^βx)/β
    (F.softplus cuts off at 20)."""
    if threshold is None:
        return torch.logaddexp(beta * a, torch.zeros_like(a)) / beta
    return F.softplus(a, beta, threshold)


def _given(*values, default=None):
    """The one argument given of its spellings (graphdl's `axis`, PyTorch's `dim`), else
    `default`."""
    return next((v for v in values if v is not None), default)


def _diagonal(x, offset, axis1=None, axis2=None, dim1=None, dim2=None):
    return torch.diagonal(x, offset, _given(axis1, dim1, default=0), _given(axis2, dim2, default=1))


TORCH = {
    "neg": torch.neg,
    "posify": lambda a: a * a + 0.5,
    "affine": lambda a, scale, shift: a * scale + shift,
    "exp": torch.exp,
    "erf": torch.erf,
    "erfc": torch.erfc,
    "gelu": torch.nn.functional.gelu,
    "silu": F.silu,
    "elu": F.elu,
    "selu": F.selu,
    "celu": F.celu,
    "leaky_relu": F.leaky_relu,
    "relu6": F.relu6,
    "hardtanh": F.hardtanh,
    "hardsigmoid": lambda a: F.relu6(a + 3) / 6,  # F.hardsigmoid has no double backward
    "hardswish": F.hardswish,
    "mish": F.mish,
    "softsign": F.softsign,
    "glu": lambda a, axis=None, dim=None: F.glu(a, next((d for d in (axis, dim)
                                                         if d is not None), -1)),
    "cumsum": _scan(torch.cumsum),
    "cumprod": _scan(torch.cumprod),
    "logcumsumexp": _scan(_logcumsumexp),
    "cummax": _scan(lambda x, axis: torch.cummax(x, axis).values),
    "cummin": _scan(lambda x, axis: torch.cummin(x, axis).values),
    "random_uniform": lambda x, key: x * _random_uniform(x, key),
    "allreduce": lambda x, op, weight=None: x,  # one worker: the identity
    "log": torch.log,
    "sqrt": torch.sqrt,
    "reciprocal": torch.reciprocal,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": _softplus,
    "log_sigmoid": torch.nn.functional.logsigmoid,
    "relu": torch.relu,
    "abs": torch.abs,
    "clip": lambda a, lo, hi: torch.clamp(a, lo, hi),
    "stop_gradient": torch.Tensor.detach,
    "zeros_like": torch.zeros_like,  # no gradient flows through it
    "cast": lambda a, via: a.to(getattr(torch, via)).to(torch.float64),
    "pow": lambda a, exponent: torch.pow(a, exponent),
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "where": _where,
    "sum": _reduction(lambda x, axes, keep: torch.sum(x, axes, keepdim=keep)),
    "mean": _reduction(lambda x, axes, keep: torch.mean(x, axes, keepdim=keep)),
    "max": _reduction(lambda x, axes, keep: torch.amax(x, axes, keepdim=keep)),
    "min": _reduction(lambda x, axes, keep: torch.amin(x, axes, keepdim=keep)),
    "amax": _reduction(lambda x, axes, keep: torch.amax(x, axes, keepdim=keep)),
    "amin": _reduction(lambda x, axes, keep: torch.amin(x, axes, keepdim=keep)),
    "prod": _reduction(_prod),
    "any": _as_float(_reduction(lambda x, axes, keep: torch.any(x, axes, keepdim=keep))),
    "all": _as_float(_reduction(lambda x, axes, keep: torch.all(x, axes, keepdim=keep))),
    "var": _reduction(lambda x, axes, keep, correction: torch.var(x, axes, keepdim=keep,
                                                                  correction=correction)),
    "std": _reduction(lambda x, axes, keep, correction: torch.std(x, axes, keepdim=keep,
                                                                  correction=correction)),
    "norm": _reduction(_norm),
    "argmax": _arg_extremum(torch.argmax),
    "argmin": _arg_extremum(torch.argmin),
    "argsort": _as_float(lambda x, axis, descending: torch.argsort(
        x, dim=axis, descending=descending, stable=True)),
    "sort": lambda x, axis, descending: torch.sort(x, dim=axis, descending=descending,
                                                   stable=True).values,
    "topk": _topk,
    "reshape": lambda x, shape: x.reshape(shape),
    "transpose": lambda x, axes: x.permute(axes if axes is not None else
                                           tuple(range(x.ndim))[::-1]),
    "broadcast_to": lambda x, shape: torch.broadcast_to(x, shape),
    "expand_dims": lambda x, axis: x.unsqueeze(axis),
    "squeeze": lambda x, axis: x.squeeze() if axis is None else x.squeeze(axis),
    "concatenate": lambda *xs, axis: torch.cat(xs, axis),
    "flip": lambda x, axis=None, dims=None: torch.flip(x, _axes(_given(axis, dims), x.ndim)),
    "roll": lambda x, shifts, axis=None, dims=None: torch.roll(x, shifts, _given(axis, dims)),
    "stack": lambda *xs, axis: torch.stack(xs, axis),
    "pixel_shuffle": lambda x, upscale_factor: _pixels(F.pixel_shuffle, x, upscale_factor),
    "pixel_unshuffle": lambda x, downscale_factor: _pixels(F.pixel_unshuffle, x,
                                                           downscale_factor),
    "grid_sample": F.grid_sample,
    "fold": F.fold,
    "affine_grid": lambda theta, size, align_corners: F.affine_grid(theta, size, align_corners),
    "tile": lambda x, reps=None, dims=None: torch.tile(x, _given(reps, dims)),
    "repeat": lambda x, sizes: x.repeat(*sizes),
    "repeat_interleave": lambda x, repeats, axis=None, dim=None: torch.repeat_interleave(
        x, repeats, _given(axis, dim)),
    "tril": torch.tril,
    "triu": torch.triu,
    "pad": F.pad,
    "diagonal": _diagonal,
    "meshgrid": lambda *xs, indexing, pick: torch.meshgrid(*xs, indexing=indexing)[pick],
    "getitem": _getitem,
    "advanced_index": _advanced_index,
    "take": _take,
    "unfold": lambda x, dimension, size, step: x.unfold(dimension, size, step),
    "gather": lambda x, *i, dim, index=None: torch.gather(x, dim, _index(i, index)),
    "take_along_axis": _take_along_axis,
    "scatter": lambda x, src, *i, dim, index=None: torch.scatter(x, dim, _index(i, index), src),
    "scatter_add": lambda x, src, *i, dim, index=None: torch.scatter_add(
        x, dim, _index(i, index), src),
    "scatter_reduce": lambda x, src, *i, dim, reduce, include_self, index=None: (
        torch.scatter_reduce(x, dim, _index(i, index), src, reduce, include_self=include_self)),
    "index_select": lambda x, *i, dim, index=None: torch.index_select(x, dim, _index(i, index)),
    "index_add": lambda x, src, *i, dim, alpha, index=None: torch.index_add(
        x, dim, _index(i, index), src, alpha=alpha),
    "one_hot": _one_hot,
    "sum_to": lambda x, like: x.sum_to_size(like.shape),
    "lookup_dot": lambda table, partner, indices: (
        _take(table, indices, 0) * partner.unsqueeze(1)).sum(2),
    "matmul": torch.matmul,
    "einsum": lambda *xs, equation: torch.einsum(equation, *xs),
    "conv1d": F.conv1d,
    "conv2d": _conv2d,
    "conv3d": _conv3d,
    "conv_transpose1d": F.conv_transpose1d,
    "conv_transpose2d": F.conv_transpose2d,
    "conv_transpose3d": _conv_transpose3d,
    "max_pool2d": _max_pool2d,
    "avg_pool2d": F.avg_pool2d,
    "max_pool1d": F.max_pool1d,
    "avg_pool1d": F.avg_pool1d,
    "max_pool3d": F.max_pool3d,
    "avg_pool3d": F.avg_pool3d,
    "adaptive_avg_pool1d": F.adaptive_avg_pool1d,
    "adaptive_max_pool1d": F.adaptive_max_pool1d,
    "adaptive_avg_pool2d": F.adaptive_avg_pool2d,
    "adaptive_max_pool2d": F.adaptive_max_pool2d,
    "interpolate": F.interpolate,
    "softmax": lambda x, axis: torch.softmax(x, axis),
    "softmin": lambda x, axis=None, dim=None: F.softmin(x, _given(axis, dim)),
    "prelu": F.prelu,
    "layer_norm": lambda x, normalized_shape: torch.nn.functional.layer_norm(x, normalized_shape),
    "linear": F.linear,
    "embedding": _embedding,
    "dropout": _dropout,
    "scaled_dot_product_attention": _attention,
    "group_norm": lambda x, *wb, num_groups: F.group_norm(x, num_groups, *wb),
    "batch_norm": _batch_norm,
    "instance_norm": lambda x, *wb, eps: F.instance_norm(x, None, None, *wb, eps=eps),
    "local_response_norm": F.local_response_norm,
    "normalize": F.normalize,
    "rms_norm": lambda x, *w, normalized_shape, eps: F.rms_norm(x, normalized_shape, *w, eps=eps),
    "log_softmax": lambda x, axis: torch.log_softmax(x, axis),
    "logsumexp": lambda x, axis, keepdims: torch.logsumexp(x, axis, keepdim=keepdims),
    "softmax_cross_entropy": _cross_entropy,
    "hinge_loss": _hinge,
    "mse": lambda a, b: F.mse_loss(a, b),
    "smooth_l1": lambda a, b, beta, reduction: F.smooth_l1_loss(a, b, reduction=reduction,
                                                                beta=beta),
    "binary_cross_entropy_with_logits": _bce_with_logits,
    "nll_loss": _nll_loss,
    "cross_entropy": _torch_cross_entropy,
    "kl_div": _kl_div,
    "huber_loss": lambda a, b, reduction, delta: F.huber_loss(a, b, reduction, delta),
    "l1_loss": lambda a, b, reduction: F.l1_loss(a, b, reduction=reduction),
    "cosine_similarity": lambda a, b, dim: F.cosine_similarity(a, b, dim),
    "margin_ranking_loss": lambda a, b, y, margin, reduction: F.margin_ranking_loss(
        a, b, y, margin, reduction=reduction),
    "l2": lambda *ps, lam: sum(torch.sum(p * p) for p in ps) * lam,
    "wsum": lambda a, weights: torch.sum(a * torch.from_numpy(weights)),
    "constant": lambda value: torch.tensor(value, dtype=torch.float64),
    **{name: getattr(torch, name) for name in (
        "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
        "exp2", "log2", "log10", "log1p", "expm1", "square", "rsqrt", "floor", "ceil", "trunc",
        "round", "sign", "atan2", "copysign", "remainder", "fmod")},
    # graphdl's floor_divide has gradient 0; PyTorch's none
    "floor_divide": lambda a, b: torch.floor_divide(a.detach(), b.detach()),
    "power": torch.pow,
    "isclose": lambda a, b, **tolerances: torch.where(torch.isclose(a, b, **tolerances), a, b),
    **{op: lambda a, b, op=op: torch.where(getattr(torch, op)(a > 0, b), a, b)
       for op in ("logical_and", "logical_or", "logical_xor")},
    "logical_not": lambda a: torch.where(torch.logical_not(a > 0), a, -a),
    **{op: lambda a, b, op=op: a + getattr(torch, op)(_bits(a), _bits(b) & 7 if "shift" in op
                                                      else _bits(b)).to(a.dtype)
       for op in ("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift",
                  "bitwise_right_shift")},
    "bitwise_not": lambda a: a + torch.bitwise_not(_bits(a)).to(a.dtype),
    **{mask: lambda a, fill, mask=mask: torch.where(
        getattr(torch, mask)(torch.where(a > 0, a, fill)), a, -a)
       for mask in ("isnan", "isinf", "isfinite")},
}


def run_step(step, args):
    """The value of one step given its arguments' tensors, in float64 whatever the program's
    dtype (inputs become leaves; index inputs, integers, are not differentiated)."""
    if step.op == "input":
        return torch.tensor(step.params["value"], dtype=torch.float64, requires_grad=True)
    if step.op == "index_input":
        return torch.tensor(step.params["value"], dtype=torch.int64)
    return TORCH[step.op](*args, **step.params)


def forward(steps):
    """The tensor of every slot."""
    values = []
    for step in steps:
        values.append(run_step(step, [values[a] for a in step.args]))
    return values


def _grad(output, leaves, create_graph=False):
    """d output / d leaves, zeros where output does not depend on a leaf."""
    if not output.requires_grad:
        return [torch.zeros_like(x) for x in leaves]
    grads = torch.autograd.grad(output, leaves, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves)]


def evaluate(steps, second_weights=None):
    """Values of every slot, the gradient of the last (a scalar) wrt every input, and, given
    `second_weights` (one array per input), the gradient of sum_i <grad_i, weights_i>.

    Returns numpy float64 arrays: (values, grads, second)."""
    values = forward(steps)
    leaves = [values[k] for k, s in enumerate(steps) if s.op == "input"]
    grads = _grad(values[-1], leaves, create_graph=second_weights is not None)
    second = None
    if second_weights is not None:
        z = sum(torch.sum(g * torch.from_numpy(w)) for g, w in zip(grads, second_weights))
        # force: abs's second derivative is one of PyTorch's zero tensors, which numpy() refuses
        second = [h.detach().numpy(force=True) for h in _grad(z, leaves)]
    return ([v.detach().numpy() for v in values], [g.detach().numpy() for g in grads], second)
