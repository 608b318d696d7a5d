"""The collective of data-parallel training: `allreduce`, the sum or the mean of an array over the
workers that run the same graph (`graphdl.distributed`), each with its own rows of the batch.

With one worker it is the identity. Its gradient is the allreduce of the cotangent: the loss of
the whole run is the sum of the workers' losses, and each worker's value reaches every worker's
copy of the result. The mean may be weighted by each worker's rows, so that an uneven split of a
batch gives the mean over rows, as one worker with the whole batch.
"""

from __future__ import annotations

import numpy as np

from graphdl import runtime
from graphdl.errors import GraphError
from graphdl.ir import Node, describe
from graphdl.opdef import OpDef, register
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf

OPS = ("mean", "sum")


def _infer(inputs, attrs):
    x = inputs[0]
    if x.dtype.kind != "f":
        raise GraphError(f"allreduce of {describe(x)}: expects floating-point input, got "
                         f"{x.dtype}; convert it first with gd.cast")
    if len(inputs) == 2 and (inputs[1].shape != () or inputs[1].dtype.kind != "f"):
        raise GraphError(f"allreduce of {describe(x)}: the weight {describe(inputs[1])} must be "
                         f"a floating-point scalar (this worker's rows)")
    return x.shape, x.dtype


def _pullback(node, g):
    """Sum: every worker's x reaches every worker's y, so dx = Σ of the cotangents; mean:
    dx = w_r / Σ w · Σ g (unweighted: the mean of g). The weight is a count: no gradient."""
    how = node.attrs["how"]
    if len(node.inputs) == 1:
        return [ALLREDUCE(g, how=how)]
    weight = node.inputs[1]
    share = weight / ALLREDUCE(weight, how="sum")
    return [ALLREDUCE(g, how="sum") * ew.cast(share, node.dtype.name), None]


def _workers():
    from graphdl import distributed

    n = distributed.world_size()
    return f"{n} worker{'s' if n != 1 else ''}"


def _label(node, folded):
    return f"{'averaged' if node.attrs['how'] == 'mean' else 'summed'} over {_workers()}"


def _narration(w):
    if w.k == 1:
        return "no gradient flows to the weight: it counts rows"
    how = "averaged" if w.node.attrs["how"] == "mean" else "summed"
    weighted = " weighted by rows" if len(w.node.inputs) == 2 else ""
    return f"{w.dx} = {w.dy} {how} over {_workers()}{weighted}, as {w.y} was → {w.shape}"


# allreduce: y = Σ_r x_r ("sum") or Σ_r w_r x_r / Σ_r w_r ("mean"; w_r = 1 without a weight)
# over the workers r; x itself with one worker.
ALLREDUCE = register(OpDef(
    "allreduce", infer=_infer,
    impl=lambda x, weight=None, *, how: runtime._allreduce(x, how, weight),
    pullback=_pullback, label=_label, narration=_narration,
    closed_form=lambda node, args: args[0],  # the value with one worker, where graphs are checked
    kinks="linear", extra={"communicates": True},
    aliases=True,  # with one worker the result is x itself: nothing may write into it in place
))


def allreduce(x, op="mean", *, weight=None):
    """The mean (`op="mean"`) or sum (`"sum"`) of `x` over the workers of the process group
    (`graphdl.distributed.init`); with a `weight` (a scalar, this worker's rows) the mean is
    Σ w_r x_r / Σ w_r, the mean over rows of an unevenly split batch. The identity with one
    worker. Compiled, it is one collective call in the generated code."""
    (x,) = leaf.lift_all([x])
    if op not in OPS:
        raise GraphError(f"allreduce of {describe(x)}: op must be one of {OPS}, got {op!r}")
    if weight is None:
        return ALLREDUCE(x, how=op)
    if op != "mean":
        raise GraphError(f"allreduce of {describe(x)}: a weight applies to op='mean' only")
    if not isinstance(weight, Node):
        weight = leaf.constant(np.asarray(weight, np.float64))
    return ALLREDUCE(x, weight, how=op)
