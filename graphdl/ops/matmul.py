"""Matrix product with NumPy's semantics (batched, broadcasting batch dims, 1-D operands)."""

from __future__ import annotations

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.opdef import OpDef, register
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv


def _matmul_infer(inputs, attrs):
    a, b = inputs
    k1, k2 = a.shape[-1], b.shape[-2]
    if None not in (k1, k2) and k1 != k2:
        raise GraphError(
            f"matmul: {describe(a)} (shape {format_shape(a.shape)}) @ {describe(b)} "
            f"(shape {format_shape(b.shape)}): inner dimensions {k1} and {k2} differ"
        )
    batch = ew.broadcast_dims([a.shape[:-2], b.shape[:-2]])
    if len(batch) == 2 and isinstance(batch[1], list):
        raise GraphError(
            f"matmul: cannot broadcast the batch dimensions of {describe(a)} "
            f"(shape {format_shape(a.shape)}) and {describe(b)} (shape {format_shape(b.shape)})"
        )
    return batch + (a.shape[-2], b.shape[-1]), ew.promote(inputs, attrs)


def _narration(w):
    (a, b), out = w.args, w.shape_of(w.node)
    sa, sb = (w.shape_of(i) for i in w.node.inputs)
    if w.k == 0:
        return f"{w.y} = {a} @ {b}: {w.dx} = {w.dy} · {b}ᵀ  {out}·{sb}ᵀ → {w.shape}"
    return f"{w.y} = {a} @ {b}: {w.dx} = {a}ᵀ · {w.dy}  {sa}ᵀ·{out} → {w.shape}"


# matmul (operands of 2 or more dims): dA = g @ Bᵀ, dB = Aᵀ @ g, summed over broadcast batches.
MATMUL = register(OpDef(
    "matmul", infer=_matmul_infer, impl=np.matmul, broadcasts=True,
    pullback=lambda n, g: [MATMUL(g, mv.swap_last(n.inputs[1])),
                           MATMUL(mv.swap_last(n.inputs[0]), g)],
    label="@", narration=_narration, closed_form="needs arrays of two or more dimensions",
    kinks="smooth (bilinear)",
))


def matmul(a, b):
    """a @ b as NumPy does it: 1-D operands are promoted to matrices and the axis dropped."""
    a, b = leaf.lift_all([a, b])
    for x in (a, b):
        if x.ndim == 0:
            raise GraphError(f"matmul: {describe(x)} is a scalar; use * to scale")
    a2 = mv.expand_dims(a, 0) if a.ndim == 1 else a
    b2 = mv.expand_dims(b, -1) if b.ndim == 1 else b
    out = MATMUL(a2, b2)
    drop = ([out.ndim - 2] if a.ndim == 1 else []) + ([out.ndim - 1] if b.ndim == 1 else [])
    return mv.SQUEEZE(out, axis=tuple(drop)) if drop else out
