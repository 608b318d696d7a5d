"""The rewrite engine: rules as data, applied in one bottom-up sweep over the graph."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from graphdl.ir import describe, substitute


@dataclass(frozen=True)
class Rule:
    """Replace a node of op `op` ("*": any op) by `apply(node)` when that returns a node."""

    name: str
    op: str
    apply: Callable


def rewrite(outputs, rules):
    """Rebuild `outputs` bottom-up, applying `rules` at every node until none fires there.

    Returns the new outputs and a Counter of how often each rule fired.
    """
    by_op = {}
    for rule in rules:
        by_op[rule.op] = by_op.get(rule.op, ()) + (rule,)
    fired = Counter()

    def step(node):
        for rule in by_op.get(node.op.name, ()) + by_op.get("*", ()):
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

    new_outputs, _ = substitute(outputs, {}, step)
    return new_outputs, fired
