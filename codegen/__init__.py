"""Code generation: an optimized graph in, a `Compiled` callable (source text + function) out.

`codegen` imports `graphdl`, never the reverse; `graphdl.compile` reaches this package lazily.
A backend is the `BACKEND` object its package defines, a `backend.Backend` (whose docstring is
the protocol): `BACKENDS` names the packages, each imported on first use, so a NumPy compile
imports nothing of CUDA's.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from functools import partial

from graphdl import feeds as fd
from graphdl.codegen.compiled import Compiled
from graphdl.errors import GraphError
from graphdl.ir import Node, describe, format_shape, graph_inputs
from graphdl.ops import leaf

BACKENDS = {"numpy": "graphdl.codegen.numpy_backend",  # backend name -> module with BACKEND
            "cuda": "graphdl.codegen.cuda_backend"}
_cache = OrderedDict()  # the most recently used compiled functions, by graph and options
_cache_lock = threading.Lock()  # gd.compile may be called from several threads at once
CACHE_SIZE = 128


def compile(outputs, backend="numpy", *, device=None, optimize=True, stabilize=True,
            updates=None, debug=False, outputs_on_device=False):
    """Compile `outputs` (a node or a list of nodes) with `backend` ("numpy" or "cuda").

    device: where the code runs. "cuda" runs on an NVIDIA GPU through CuPy ("gpu", the
        default) or, with "cpu", runs the very same kernels on the CPU (g++ and an emulation of
        the CUDA built-ins: for tests, and for learners without a GPU).
    outputs_on_device: ("cuda") return device arrays (CuPy on a GPU), each a copy of its own,
        instead of NumPy arrays on the host.
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
    chosen = backend_named(backend)
    device = _device(chosen, device)
    updates = _check_updates(updates or {})
    options = {"optimize": bool(optimize), "stabilize": bool(stabilize)}
    given = {"outputs_on_device": True} if outputs_on_device else {}  # the backend's options
    _check_options(chosen, given)
    key = (tuple(outputs), single, tuple(updates), backend, device, debug,
           bool(outputs_on_device), tuple(options.items()))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _new_compiled(outputs, single, updates, chosen, device, debug, given,
                                        options)
            if len(_cache) > CACHE_SIZE:  # the cache holds graphs alive: keep it bounded
                _cache.popitem(last=False)
        _cache.move_to_end(key)
        return _cache[key]


def backend_named(name):
    """The `Backend` called `name` (its module imported on first use)."""
    return importlib.import_module(BACKENDS[name]).BACKEND


def _new_compiled(outputs, single, updates, backend, device, debug, given, options):
    """A `Compiled` for these outputs; it specializes (generates code) on its first call."""
    roots = outputs + [v for _, v in updates] + [t for t, _ in updates]
    inputs = list(fd.unique_inputs(graph_inputs(roots)).values())
    generate = partial(backend.generate, debug=debug, device=device, **given)
    return Compiled(outputs, single, updates, inputs, generate, options,
                    device_arrays=device in backend.array_devices)


def _device(backend, device):
    devices = backend.devices
    device = devices[0] if device is None else device
    if device not in devices:
        raise GraphError(f"compile: backend {backend.name!r} runs on {' or '.join(devices)}, "
                         f"not {device!r}")
    backend.check_device(device)
    return device


def _check_options(backend, given):
    for option in given:
        if option not in backend.options:  # the error names the backends taking it (all imported)
            takers = " or ".join(f"backend={name!r}" for name in BACKENDS
                                 if option in backend_named(name).options)
            raise GraphError(f"compile: {option} is for {takers}, not {backend.name!r}")


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
