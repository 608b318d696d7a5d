"""Compiled: the callable a backend returns, with its source, kernels and pass reports.

Compilation is specialized per set of input shapes and cached: the same shapes never compile
twice; a new batch size compiles once.
"""

from __future__ import annotations

import linecache
import time

import numpy as np

from graphdl import feeds as fd
from graphdl.ops import leaf
from graphdl.optimize import prepare


class Program:
    """One specialization: generated source and the `run` function it defines."""

    def __init__(self, source, kernels, reports, filename):
        self.source, self.kernels, self.reports = source, kernels, reports
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace = {"__name__": "graphdl_generated"}
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own generated code
        self.run = namespace["run"]


class Compiled:
    """Call with inputs by name (`fn(x=..., W=...)` or `fn({"x": ...})`); returns the outputs."""

    def __init__(self, outputs, single, updates, inputs, generate, options):
        self.outputs, self.single, self.updates = outputs, single, updates
        self.inputs = inputs
        self.input_names = [n.name for n in inputs]
        self._generate, self.options = generate, options
        self._in_place = {t.name for t, _ in updates}
        self._programs = {}
        self._last = None
        self.compile_seconds = 0.0

    def __call__(self, feeds=None, **kwargs):
        arrays = fd.bind(self.inputs, fd.merge(feeds, kwargs), self._in_place)
        program = self.specialize({n.name: a.shape for n, a in zip(self.inputs, arrays)})
        results = [r if isinstance(r, np.ndarray) else np.asarray(r) for r in program.run(*arrays)]
        return results[0] if self.single else results

    def specialize(self, shapes):
        """The program for inputs of these shapes (name -> shape), compiled once."""
        key = tuple(tuple(shapes[n]) for n in self.input_names)
        program = self._programs.get(key)
        if program is None:
            start = time.perf_counter()
            roots = self.outputs + [v for _, v in self.updates] + [t for t, _ in self.updates]
            final, reports = prepare(roots, dict(zip(self.input_names, key)), **self.options)
            n_out, n_upd = len(self.outputs), len(self.updates)
            updates = list(zip(final[n_out + n_upd:], final[n_out:n_out + n_upd]))
            inputs = [leaf.input(n.name, shape, n.dtype.name) for n, shape in zip(self.inputs, key)]
            source, kernels = self._generate(final[:n_out], inputs, updates)
            program = Program(source, kernels, reports, f"<graphdl program {id(self)}.{len(self._programs)}>")
            self._programs[key] = program
            self.compile_seconds += time.perf_counter() - start
        self._last = program
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
        """Write the generated module: importing it elsewhere needs only NumPy."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.source)

