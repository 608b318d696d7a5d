"""Compiled: the callable a backend returns, with its source, kernels and pass reports.

Compilation is specialized per set of input shapes and cached: the same shapes never compile
twice; a new batch size compiles once, also where several threads call with it at once.
Generated code holds its shapes (sizes folded, strides baked), so a graph with unknown
dimensions has no code until shapes are known: `fn.specialize(x=(64, 784))` compiles one
without running it, `fn.specializations` lists those compiled so far.
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
from graphdl.ir import format_shape
from graphdl.ops import leaf
from graphdl.ops.movement import shapes_match
from graphdl.passes.optimize import prepare
from graphdl.passes.rewrite import collection_paused


@dataclass
class Generated:
    """What a backend generates for one specialization: `source`, the text a user reads
    (`fn.source`); `module`, the Python module that defines `run(*inputs)` (the same text for
    NumPy, a driver that launches the kernels for CUDA); `env`, globals the module runs with
    (a kernel loader); `kernels`, the schedule's kernels; `files`, what `fn.save` writes beside
    the module (name suffix -> text); `comment`, how a line comment starts in `source` (the
    line `fn.source` adds to name the specialization it shows)."""

    source: str
    module: str
    kernels: list
    env: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    comment: str = "#"


def _check_declared(results, declared):
    for k, (r, (shape, dtype)) in enumerate(zip(results, declared)):
        if r.shape != shape or r.dtype != dtype:  # a code generator bug: never return it
            raise AssertionError(
                f"graphdl internal error: output {k} was computed with shape {r.shape} and "
                f"dtype {r.dtype}, but the graph declares {shape} {dtype}")


class Specialization:
    """One specialization: the input `shapes` (name -> shape) it was compiled for, what the
    backend generated (`source`, `kernels`), the pass `reports` and the `run` function it
    defines (inputs by position)."""

    def __init__(self, generated, reports, filename, declared, shapes):
        self.generated, self.reports, self.shapes = generated, reports, shapes
        self.source, self.kernels = generated.source, generated.kernels
        self.declared = declared  # (shape, dtype) of each output, as the graph declares them
        self.checked = False  # whether a call has confirmed them (they cannot change later)
        module = generated.module
        linecache.cache[filename] = (len(module), None, module.splitlines(True), filename)
        namespace = {"__name__": "graphdl_generated", **generated.env}
        exec(compile(module, filename, "exec"), namespace)  # noqa: S102 - our own generated code
        self.run = namespace["run"]

    def save(self, path):
        """Write the generated module (for NumPy: importing it elsewhere needs only NumPy) and
        the files it reads beside it (its larger constants as an `.npz`; for CUDA the `.cu`).
        A CUDA module runs where it was compiled: on a GPU through CuPy, or with
        device="cpu" on the CPU through graphdl's emulator (which needs graphdl and g++)."""
        path = Path(path)
        path.write_text(self.generated.module, encoding="utf-8")
        for suffix, content in self.generated.files.items():
            if isinstance(content, bytes):
                path.with_suffix(suffix).write_bytes(content)
            else:
                path.with_suffix(suffix).write_text(content, encoding="utf-8")


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
        self._unknown = [n for n in inputs if None in n.shape]  # what a specialization binds
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
        program = self._program(tuple(a.shape for a in arrays))  # `bind` checked the shapes
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

    def specialize(self, shapes=None, /, **kwargs):
        """The `Specialization` for inputs of these shapes, compiled once:
        `fn.specialize(x=(64, 784))` or `fn.specialize({"x": (64, 784)})`; an input whose
        declared shape has no unknown dimension may be left out. Its `.source`, `.kernels`,
        `.reports` and `.save` are those of that specialization, which `fn.source` then shows."""
        shapes = fd.merge(shapes, kwargs)
        unknown = sorted(set(shapes) - set(self.input_names))
        if unknown:
            raise InputError(f"unknown input {unknown[0]!r}; this graph's inputs are "
                             f"{self.input_names}")
        return self._program(tuple(_bound(n, shapes.get(n.name)) for n in self.inputs))

    @property
    def specializations(self):
        """The input shapes compiled so far (name -> shape, one dict each), oldest first."""
        return [dict(zip(self.input_names, key)) for key in list(self._programs)]

    def _program(self, key):
        """The program for `key` (a shape per input, in order), compiled once."""
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
        program = Specialization(generated, reports, filename, declared,
                                 dict(zip(self.input_names, key)))
        self.compile_seconds += time.perf_counter() - start
        return program

    def _current(self):
        """The most recently used program; a graph with no unknown dimension has one, compiled
        on first use."""
        if self._last is None:
            if self._unknown:
                raise RuntimeError(f"{self._pending()}; then ask again")
            self.specialize()
        return self._last

    def _pending(self):
        """Why there is no code yet, and how to get some (names the unknown inputs)."""
        unknown = ", ".join(f"{n.name}: {format_shape(n.shape)}" for n in self._unknown)
        pick = ", ".join(f"{n.name}={format_shape(n.shape)}" for n in self._unknown)
        return (f"this graph has unknown dimensions ({unknown}) and code is generated per set "
                f"of input shapes: call it once, or pick shapes with fn.specialize({pick}) "
                f"(a size for each ?)")

    @property
    def source(self):
        """The generated module of the most recently used specialization. Where the graph has
        unknown dimensions its first line (a comment) names the shapes it was compiled for and
        how many others exist; before any, a text listing the inputs and how to get code."""
        if self._last is None and self._unknown:
            inputs = "".join(f"\n  {n.name}: {format_shape(n.shape)} {n.dtype}"
                             for n in self.inputs)
            return (f"graphdl: no code generated yet. Inputs:{inputs}\n{self._pending()}. "
                    f"fn.specializations lists the shapes compiled so far.\n")
        program = self._current()
        if not self._unknown:
            return program.source
        return f"{self._header(program)}\n{program.source}"

    def _header(self, program):
        """The comment line naming the specialization `fn.source` shows, and the others."""
        bound = ", ".join(f"{n.name}: {format_shape(program.shapes[n.name])}"
                          for n in self._unknown)
        count = len(self._programs)
        which = ("the only specialization so far" if count == 1 else
                 f"the most recent of {count} specializations (fn.specializations lists them)")
        return (f"{program.generated.comment} graphdl: specialized to {bound}, {which}; "
                f"fn.specialize(...) compiles or picks one by shape")

    @property
    def kernels(self):
        return self._current().kernels

    @property
    def reports(self):
        """What each pass did (nodes left, rules fired, time) in the most recent specialization."""
        return self._current().reports

    def save(self, path):
        """Save the most recently used specialization (`Specialization.save`)."""
        self._current().save(path)


def _bound(node, shape):
    """`shape` for input `node`, checked against its declared shape (None: the declared one,
    which must then be fully known)."""
    declared = node.shape
    if shape is None:
        if None in declared:
            raise InputError(f"input {node.name!r} has unknown dimensions "
                             f"{format_shape(declared)}: give its shape")
        return tuple(declared)
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
            for d in shape):
        raise InputError(f"input {node.name!r}: sizes are non-negative integers, not {shape!r}")
    if not shapes_match(tuple(shape), declared):
        raise InputError(f"input {node.name!r} is declared with shape {format_shape(declared)}, "
                         f"not {format_shape(shape)}")
    return tuple(int(d) for d in shape)
