"""Compiled: the callable a backend returns, with its source, kernels and pass reports.

Compilation is specialized per set of input shapes and cached: the same shapes never compile
twice; a new batch size compiles once, also where several threads call with it at once.
"""

from __future__ import annotations

import itertools
import linecache
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.array_utils import byte_bounds

from graphdl import feeds as fd
from graphdl.errors import InputError
from graphdl.ops import leaf
from graphdl.passes.optimize import prepare
from graphdl.passes.rewrite import collection_paused


@dataclass
class Generated:
    """What a backend generates for one specialization: `source`, the text a user reads
    (`fn.source`); `module`, the Python module that defines `run(*inputs)` (the same text for
    NumPy, a driver that launches the kernels for CUDA); `env`, globals the module runs with
    (a kernel loader); `kernels`, the schedule's kernels; `files`, what `fn.save` writes beside
    the module (name suffix -> text)."""

    source: str
    module: str
    kernels: list
    env: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)


def _check_declared(results, declared):
    for k, (r, (shape, dtype)) in enumerate(zip(results, declared)):
        if r.shape != shape or r.dtype != dtype:  # a code generator bug: never return it
            raise AssertionError(
                f"graphdl internal error: output {k} was computed with shape {r.shape} and "
                f"dtype {r.dtype}, but the graph declares {shape} {dtype}")


class Program:
    """One specialization: what the backend generated and the `run` function it defines."""

    def __init__(self, generated, reports, filename, declared):
        self.generated, self.reports = generated, reports
        self.source, self.kernels = generated.source, generated.kernels
        self.declared = declared  # (shape, dtype) of each output, as the graph declares them
        self.checked = False  # whether a call has confirmed them (they cannot change later)
        module = generated.module
        linecache.cache[filename] = (len(module), None, module.splitlines(True), filename)
        namespace = {"__name__": "graphdl_generated", **generated.env}
        exec(compile(module, filename, "exec"), namespace)  # noqa: S102 - our own generated code
        self.run = namespace["run"]


def _bounds(array):
    """(memory space, first byte, one past the last byte) of a host or GPU array."""
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is None:
        return ("host", *byte_bounds(array))
    start, itemsize = interface["data"][0], array.dtype.itemsize
    strides = interface.get("strides") or tuple(  # None: C order
        math.prod(array.shape[k + 1:]) * itemsize for k in range(array.ndim))
    low = start + sum(s * (n - 1) for s, n in zip(strides, array.shape) if s < 0)
    high = start + sum(s * (n - 1) for s, n in zip(strides, array.shape) if s > 0) + itemsize
    return ("gpu", low, high)


class Compiled:
    """Call with inputs by name (`fn(x=..., W=...)` or `fn({"x": ...})`) or by position in
    `input_names` order (`fn(x, W)`, as the saved module's `run`); returns the outputs."""

    def __init__(self, outputs, single, updates, inputs, generate, options, device_arrays=False):
        self.outputs, self.single, self.updates = outputs, single, updates
        self.device_arrays = device_arrays  # runs on a GPU: its arrays are fed as they are
        self.inputs = inputs
        self.input_names = [n.name for n in inputs]
        self._generate, self.options = generate, options
        self._in_place = {t.name for t, _ in updates}
        self._programs = {}
        self._compiling = threading.Lock()
        self._last = None
        self._disjoint = ()  # the updated arrays the last call found disjoint
        self.compile_seconds = 0.0

    def __call__(self, *args, **kwargs):
        feeds = fd.from_call(self.input_names, args, kwargs)
        arrays = fd.bind(self.inputs, feeds, self._in_place, self.device_arrays)
        self._refuse_shared_updates(arrays)
        program = self.specialize({n.name: a.shape for n, a in zip(self.inputs, arrays)})
        results = [r if isinstance(r, np.ndarray) or hasattr(r, "__cuda_array_interface__")
                   else np.asarray(r) for r in program.run(*arrays)]
        if not program.checked:  # shapes and dtypes follow from the specialization's alone
            _check_declared(results, program.declared)
            program.checked = True
        return results[0] if self.single else results

    def _refuse_shared_updates(self, arrays):
        """Updated inputs are written in place: two of them in one array would each see the
        other's write. One sweep over the arrays' memory bounds, sorted (what
        `numpy.may_share_memory` compares), not a test of every pair; none at all for the very
        arrays the last call checked (a training loop's parameters: an array's memory never
        moves)."""
        updated = [(k, n.name, a) for k, (n, a) in enumerate(zip(self.inputs, arrays))
                   if n.name in self._in_place]
        if len(updated) == len(self._disjoint) and all(
                a is b for (_, _, a), b in zip(updated, self._disjoint)):
            return
        spans = sorted((*_bounds(a), k, name) for k, name, a in updated if a.size)
        for (space, _, high, k1, first), (other, low, _, k2, second) in itertools.pairwise(spans):
            if space == other and low < high:
                (_, a), (_, b) = sorted([(k1, first), (k2, second)])
                raise InputError(f"inputs {a!r} and {b!r} are both updated in place, so they "
                                 f"must be different arrays; they share memory")
        self._disjoint = tuple(a for _, _, a in updated)

    def specialize(self, shapes):
        """The program for inputs of these shapes (name -> shape), compiled once."""
        key = tuple(tuple(shapes[n]) for n in self.input_names)
        program = self._programs.get(key) or self._compile_once(key)
        self._last = program
        return program

    def _compile_once(self, key):
        """The program for `key`, compiled by one thread while others calling with it wait."""
        with self._compiling:
            if key not in self._programs:
                with collection_paused():  # passes, lowering, rendering, compiling the module
                    self._programs[key] = self._compile(key)
            return self._programs[key]

    def _compile(self, key):
        start = time.perf_counter()
        roots = self.outputs + [v for _, v in self.updates] + [t for t, _ in self.updates]
        final, reports = prepare(roots, dict(zip(self.input_names, key)), **self.options)
        n_out, n_upd = len(self.outputs), len(self.updates)
        updates = list(zip(final[n_out + n_upd:], final[n_out:n_out + n_upd]))
        inputs = [leaf.input(n.name, shape, n.dtype.name) for n, shape in zip(self.inputs, key)]
        generated = self._generate(final[:n_out], inputs, updates)
        filename = f"<graphdl program {id(self)}.{len(self._programs)}>"
        declared = [(o.shape, o.dtype) for o in final[:n_out]]
        program = Program(generated, reports, filename, declared)
        self.compile_seconds += time.perf_counter() - start
        return program

    def _current(self):
        if self._last is None:
            if any(None in n.shape for n in self.inputs):
                raise RuntimeError(
                    "this graph has unknown dimensions: call it once (or use .specialize) "
                    "before asking for its source"
                )
            self.specialize({n.name: n.shape for n in self.inputs})
        return self._last

    @property
    def source(self):
        """The generated module of the most recent specialization."""
        return self._current().source

    @property
    def kernels(self):
        return self._current().kernels

    @property
    def reports(self):
        """What each pass did (nodes left, rules fired, time) in the most recent specialization."""
        return self._current().reports

    def save(self, path):
        """Write the generated module (for NumPy: importing it elsewhere needs only NumPy) and
        the files it reads beside it (its larger constants as an `.npz`; for CUDA the `.cu`)."""
        generated = self._current().generated
        path = Path(path)
        path.write_text(generated.module, encoding="utf-8")
        for suffix, content in generated.files.items():
            if isinstance(content, bytes):
                path.with_suffix(suffix).write_bytes(content)
            else:
                path.with_suffix(suffix).write_text(content, encoding="utf-8")

