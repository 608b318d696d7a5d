"""Run a program in graphdl's three modes and compare with PyTorch float64; shrink failures.

Compared, in this order (the first difference is reported, so it names the earliest op that
went wrong): the value of every intermediate slot, the scalar, its gradient wrt every input,
and (for a subset of programs) the gradient of sum_i <grad_i, W_i> (W_i fixed random weights)
wrt every input, against `torch.autograd` double backward.
"""

from __future__ import annotations

import functools
import operator
import re
import time
from dataclasses import dataclass

import numpy as np

import graphdl as gd

from . import programs, torch_ref

MODES = ("optimized", "unoptimized", "evaluate", "sgd-step")
CUDA_CPU = "cuda-cpu"  # the CUDA backend's kernels on the CPU emulator (`--cuda`: slower)
CUDA_STEP = "cuda-sgd-step"  # "sgd-step" on the CUDA backend's kernels on the CPU
BACKEND_MODES = ("optimized", "sgd-step", CUDA_CPU, CUDA_STEP)  # `--mode backends`
OPTIONS = {CUDA_CPU: {"backend": "cuda", "device": "cpu"}, CUDA_STEP: {"backend": "cuda",
                                                                      "device": "cpu"}}
# Relative tolerance by the program's dtype: float32 results are compared with the float64
# reference, so they carry float32's rounding of every step.
RTOL = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-4}
LR = 0.1  # "sgd-step": every input updated in place to input - LR * its gradient

# Ops whose gradient at a NaN operand is graphdl's documented convention (see __init__).
NAN_KINKS = ("relu", "maximum", "minimum")


@dataclass(frozen=True)
class Failure:
    seed: int
    mode: str
    kind: str  # "mismatch" or "crash"
    where: str  # "value", "grad" or "second"
    op: str  # the op of the first differing slot ("value"), or the exception's gist
    detail: str

    @property
    def key(self):
        return (self.mode, self.kind, self.where, self.op)


def differs(got, expected, dtype=None):
    """Why `got` is not `expected` within the RTOL of `dtype` (the dtype `got` must have;
    `expected`'s by default), scaled by the array's magnitude, or None. NaN must sit exactly
    where the reference has NaN; infinities must match exactly."""
    got, dtype = np.asarray(got), np.dtype(dtype or expected.dtype)
    if got.shape != expected.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    if got.dtype != dtype:
        return f"dtype {got.dtype}, expected {dtype}"
    got = got.astype(expected.dtype)
    nan_g, nan_e = np.isnan(got), np.isnan(expected)
    if np.any(nan_g != nan_e):
        return f"NaN at {np.argwhere(nan_g != nan_e)[0].tolist()}: got {got[nan_g != nan_e][0]}, " \
               f"expected {expected[nan_g != nan_e][0]}"
    finite = np.isfinite(expected)
    if np.any(got[~finite & ~nan_e] != expected[~finite & ~nan_e]):
        return (f"infinities differ: got {got[~finite & ~nan_e]}, "
                f"expected {expected[~finite & ~nan_e]}")
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    with np.errstate(over="ignore"):  # near float64's largest, the bound may round to inf
        error = np.abs(got[finite] - expected[finite])
        bad = error > RTOL.get(dtype, 0.0) * (np.abs(expected[finite]) + scale)  # ints: exact
    if np.any(bad):
        k = int(np.argmax(bad))
        return f"got {got[finite][k]!r}, expected {expected[finite][k]!r} " \
               f"(max abs error {error.max():.3g}, scale {scale:.3g})"
    return None


def _second_weights(program):
    rng = np.random.default_rng(program.seed + 1)
    return [np.asarray(np.round(rng.standard_normal(program.steps[k].params["value"].shape), 3),
                       program.dtype) for k in program.inputs]


def _nan_at_kink(steps, values):
    return any(np.any(np.isnan(values[a])) for s in steps if s.op in NAN_KINKS for a in s.args)


class Case:
    """A program's graphdl nodes, the nodes each mode computes, and PyTorch's answers."""

    def __init__(self, program, second, outputs_seed):
        self.program = program
        weights = _second_weights(program) if second else None
        self.ref_values, self.ref_grads, self.ref_second = torch_ref.evaluate(program.steps,
                                                                              weights)
        nodes = programs.build(program)
        inputs = [nodes[k] for k in program.inputs]
        self.intermediates = [k for k, s in enumerate(program.steps)
                              if s.op not in (*programs.LEAVES, "wsum", "add")]
        self.grads = gd.grad(nodes[-1], inputs)
        self.second = []
        if second:
            terms = [gd.sum(g * gd.constant(w)) for g, w in zip(self.grads, weights)]
            self.second = gd.grad(functools.reduce(operator.add, terms), inputs)
        # Compiled modes compute the scalar and the derivatives, and half of the time a random
        # subset of intermediates too (asking for an intermediate changes what fuses).
        rng = np.random.default_rng(outputs_seed)
        self.shown = [k for k in self.intermediates if rng.random() < 0.5] \
            if rng.random() < 0.5 else []
        # Steps also return a random half of the inputs they update: their call-time values.
        self.returned = [k for k in program.inputs if rng.random() < 0.5]
        self.nodes = nodes
        self.skip_grads = _nan_at_kink(program.steps, self.ref_values)

    def expected(self, mode):
        if mode in ("sgd-step", CUDA_STEP):
            return self._step_expected()
        shown = self.intermediates if mode == "evaluate" else self.shown
        expected = [("value", k, self.ref_values[k]) for k in shown]
        expected.append(("value", len(self.nodes) - 1, self.ref_values[-1]))
        if not self.skip_grads:
            expected += [("grad", k, g) for k, g in zip(self.program.inputs, self.ref_grads)]
            expected += [("second", k, g) for k, g in
                         zip(self.program.inputs, self.ref_second or [])]
        return expected, [self.nodes[k] for k in shown] + [self.nodes[-1]] + (
            [] if self.skip_grads else list(self.grads) + list(self.second))

    def _step_expected(self):
        """The scalar, the returned inputs as they were at call time, then each input after
        `input -= LR * gradient` (what `updates=` writes in place: accumulated products and
        scatters where the lowering chooses them)."""
        feeds = self.program.feeds()
        expected = [("value", len(self.nodes) - 1, self.ref_values[-1])]
        expected += [("returned", k, feeds[self.program.steps[k].params["name"]])
                     for k in self.returned]
        if not self.skip_grads:
            expected += [("step", k, feeds[self.program.steps[k].params["name"]] - LR * g)
                         for k, g in zip(self.program.inputs, self.ref_grads)]
        return expected, [self.nodes[-1]]

    def _step(self, feeds, options):
        arrays = {name: np.array(value) for name, value in feeds.items()}  # updated in place
        updates = {} if self.skip_grads else {
            self.nodes[k]: self.nodes[k] - LR * g for k, g in zip(self.program.inputs, self.grads)}
        outputs = [self.nodes[-1]] + [self.nodes[k] for k in self.returned]
        got = gd.compile(outputs, updates=updates, **options)(arrays)
        return got + [arrays[self.program.steps[k].params["name"]] for k in self.program.inputs]

    def run(self, mode):
        expected, outputs = self.expected(mode)
        feeds = self.program.feeds()
        with np.errstate(all="ignore"):
            if mode in ("sgd-step", CUDA_STEP):
                got = self._step(feeds, OPTIONS.get(mode, {}))
            elif mode == "evaluate":
                got = gd.evaluate(outputs, feeds)
            else:
                got = gd.compile(outputs, optimize=mode != "unoptimized",
                                 **OPTIONS.get(mode, {}))(feeds)
        return expected, got


def _gist(exc):
    """An exception's type and message with numbers and names blurred, to group crashes."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    message = re.sub(r"\d+", "N", re.sub(r"'[^']*'", "'…'", message))[:90]
    return f"{type(exc).__name__}: {message}"


def check(program, second=False, modes=MODES):
    """The first failure of each mode (an empty list when all agree with PyTorch)."""
    try:
        case = Case(program, second, program.seed + 2)
    except Exception as exc:  # noqa: BLE001 - building the graph or differentiating crashed
        return [Failure(program.seed, "build", "crash", "build", _gist(exc), repr(exc))]
    failures = []
    for mode in modes:
        try:
            expected, got = case.run(mode)
        except Exception as exc:  # noqa: BLE001 - a crash is a finding, never a fuzzer error
            failures.append(Failure(program.seed, mode, "crash", "run", _gist(exc), repr(exc)))
            continue
        for (where, slot, ref), value in zip(expected, got):
            why = differs(value, ref, program.dtype)
            if why is not None:
                step = program.steps[slot]
                label = step.op if where == "value" else f"{where} {step.params['name']}"
                failures.append(Failure(program.seed, mode, "mismatch", where,
                                        step.op if where == "value" else where,
                                        f"{label} (v{slot}): {why}"))
                break
    return failures


# ---------------------------------------------------------------- shrinking
def _cone(steps, sinks, dtype):
    """The steps `sinks` depend on, renumbered, then a weighted sum of the sinks."""
    keep, stack = set(), list(sinks)
    while stack:
        k = stack.pop()
        if k not in keep:
            keep.add(k)
            stack.extend(steps[k].args)
    order = sorted(keep)
    new = {old: i for i, old in enumerate(order)}
    out = [programs.Step(steps[k].op, tuple(new[a] for a in steps[k].args), steps[k].params)
           for k in order]
    values = torch_ref.forward(out)
    rng = np.random.default_rng(0)
    total = None
    for k in sorted(new[s] for s in sinks):
        weights = np.asarray(np.round(rng.standard_normal(values[k].shape), 3) + 0.0, dtype)
        out.append(programs.Step("wsum", (k,), {"weights": weights}))
        if total is not None:
            out.append(programs.Step("add", (total, len(out) - 1)))
        total = len(out) - 1
    return out


def _sinks(steps):
    body = [k for k, s in enumerate(steps) if s.op not in ("wsum", "add")]
    used = {a for k in body for a in steps[k].args}
    return [k for k in body if k not in used]


def shrink(program, failure, second, budget=20.0):
    """A smaller program failing the same way: greedily drop final ops and extra sinks."""
    deadline = time.monotonic() + budget

    def fails(steps):
        candidate = programs.Program(program.seed, steps)
        try:
            return any(f.key == failure.key for f in check(candidate, second, (failure.mode,)))
        except Exception:  # noqa: BLE001 - a candidate the reference cannot run is no use
            return False

    steps = program.steps
    changed = True
    while changed and time.monotonic() < deadline:
        changed = False
        sinks = _sinks(steps)
        for k in sorted(sinks, reverse=True):
            dropped = [s for s in sinks if s != k]
            # index inputs stay with their op: a weighted sum of integers is no float program
            args = {a for a in steps[k].args if steps[a].op != "index_input"}
            lifted = sorted(set(dropped) | args)
            for candidate in (dropped, lifted):
                if candidate and time.monotonic() < deadline:
                    smaller = _cone(steps, candidate, program.dtype)
                    if len(smaller) < len(steps) and fails(smaller):
                        steps, changed = smaller, True
                        break
            if changed:
                break
    return programs.Program(program.seed, steps)
