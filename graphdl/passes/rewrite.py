"""The rewrite engine: rules as data, applied in one bottom-up sweep over the graph."""

from __future__ import annotations

import contextlib
import gc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from graphdl.ir import describe, substitute
from graphdl.opdef import OpDef


class _AnyOp:
    """The type of ANY, the rule key matching every op."""

    def __repr__(self):
        return "ANY"


ANY = _AnyOp()  # a Rule's `op` that matches every node


@dataclass(frozen=True)
class Rule:
    """Replace a node whose op is the OpDef `op` (ANY: any op) by `apply(node)` when that
    returns a node. Rules key on the OpDef object, never its name: a user op may reuse a
    built-in's name and must not get its rewrites."""

    name: str
    op: OpDef | _AnyOp
    apply: Callable

    def __post_init__(self):
        if not isinstance(self.op, OpDef) and self.op is not ANY:
            raise TypeError(f"rule {self.name}: op must be an OpDef or ANY, got {self.op!r}")


@contextlib.contextmanager
def collection_paused():
    """Python's cyclic garbage collector held off while a graph is rebuilt: a rebuild allocates
    tens of thousands of nodes (none in a cycle), and each collection it triggers walks every
    object alive, which took a third of a pass's time on a 20,000-node graph."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def rewrite(outputs, rules):
    """Rebuild `outputs` bottom-up, applying `rules` at every node until none fires there.

    Returns the new outputs and a Counter of how often each rule fired.
    """
    by_op = {}
    for rule in rules:
        by_op[rule.op] = by_op.get(rule.op, ()) + (rule,)
    fired = Counter()

    def step(node):
        for rule in by_op.get(node.op, ()) + by_op.get(ANY, ()):
            out = rule.apply(node)
            if out is not None and out is not node:
                if out.shape != node.shape or out.dtype != node.dtype:
                    raise AssertionError(
                        f"rule {rule.name} changed {describe(node)} from {node.shape} {node.dtype} "
                        f"to {out.shape} {out.dtype}"
                    )
                fired[rule.name] += 1
                return out
        return None

    with collection_paused():
        new_outputs, _ = substitute(outputs, {}, step)
    return new_outputs, fired
