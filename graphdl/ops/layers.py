"""Layers as PyTorch's functional API has them, declared as composites of primitives (their
gradients, both backends, ONNX export and narration come from their parts)."""

from __future__ import annotations

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import reduce as rd
from graphdl.ops.composite import _floating, _named, composite


@composite("layer_norm", "LayerNorm",
           "dL/dx = (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)) / σ with ĝ = g · weight, "
           "x̂ = (x − mean) / σ, σ = √(var + eps)",
           (ew.MUL, ew.ADD), arity=None)
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(x − mean) / √(var + eps) · weight + bias over the last len(normalized_shape) axes, the
    variance biased (÷ N), as torch.nn.functional.layer_norm."""
    x = _floating(x, "layer_norm")
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or tuple(x.shape[x.ndim - len(shape):]) != shape or len(shape) > x.ndim:
        raise GraphError(f"layer_norm: {describe(x)} has shape {format_shape(x.shape)}, whose "
                         f"last axes are not normalized_shape {shape}")
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    centered = x - rd.mean(x, axes, keepdims=True)
    variance = rd.mean(centered * centered, axes, keepdims=True)
    y = centered * ew.RECIPROCAL(ew.SQRT(variance + eps))
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
