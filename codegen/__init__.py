"""Code generation: an optimized graph in, a `Compiled` callable (source text + function) out.

`codegen` imports `graphdl`, never the reverse; `graphdl.compile` reaches this package lazily.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

from graphdl.codegen import numpy_backend
from graphdl.codegen.compiled import Compiled

from graphdl import feeds as fd
from graphdl.errors import GraphError
from graphdl.ir import Node, describe, format_shape, graph_inputs
from graphdl.ops import leaf

BACKENDS = {"numpy": numpy_backend.generate}
_cache = OrderedDict()  # the most recently used compiled functions, by graph and options
CACHE_SIZE = 128


def compile(outputs, backend="numpy", *, optimize=True, stabilize=True, updates=None,
            debug=False):
    """Compile `outputs` (a node or a list of nodes) with `backend`.

    updates: {input node: new value node}, written into the caller's arrays after each call
        (an SGD step: `{W: W - lr * dW}`); those inputs must be fed as arrays of their dtype.
    optimize: run the optimizer's passes (elementwise results are bit-identical either way;
        reductions over folded constants may differ in the last bits).
    stabilize: rewrite overflow-prone patterns (sigmoid, softplus, tanh circuits) first.
    debug: one statement per node, each checked: the first node producing NaN or Inf raises.
    """
    single = isinstance(outputs, Node)
    outputs = [outputs] if single else list(outputs)
    for i, o in enumerate(outputs):
        if not isinstance(o, Node):
            raise GraphError(f"compile: output {i} is {o!r}, not a graph node")
    if backend not in BACKENDS:
        raise GraphError(f"compile: unknown backend {backend!r}; available: {sorted(BACKENDS)}")
    updates = _check_updates(updates or {})
    options = {"optimize": bool(optimize), "stabilize": bool(stabilize)}
    key = (tuple(outputs), single, tuple(updates), backend, debug, tuple(options.items()))
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    roots = outputs + [v for _, v in updates] + [t for t, _ in updates]
    inputs = list(fd.unique_inputs(graph_inputs(roots)).values())
    generate = partial(BACKENDS[backend], debug=debug)
    _cache[key] = Compiled(outputs, single, updates, inputs, generate, options)
    if len(_cache) > CACHE_SIZE:  # the cache holds graphs alive: keep it bounded
        _cache.popitem(last=False)
    return _cache[key]


def _check_updates(updates):
    pairs = []
    for target, value in updates.items():
        if not isinstance(target, Node) or target.op is not leaf.INPUT:
            raise GraphError(f"compile: update targets must be inputs, got {target!r}")
        if not isinstance(value, Node):
            raise GraphError(f"compile: the update of {target.name!r} must be a graph node")
        if value.shape != target.shape or value.dtype != target.dtype:
            raise GraphError(
                f"compile: the update of {target.name!r} ({format_shape(target.shape)} "
                f"{target.dtype}) has shape {format_shape(value.shape)} and dtype {value.dtype}: "
                f"{describe(value)}"
            )
        pairs.append((target, value))
    return pairs
