"""The NumPy and CUDA backends against each other (`python -m tests.fuzz --mode backends`).

Each random program runs compiled on NumPy and on the CUDA backend's kernels on the CPU
(`backend="cuda", device="cpu"`), each compared with PyTorch float64 (`differential`), as a
plain call and as a training step (`updates=`) that also returns inputs it updates (their
call-time values). Then the "edges" mode feeds the same program, in float32 or float64,
edge values (±0, ±denormal, ±inf, NaN) at a third of its float entries, and its index inputs
in an integer dtype drawn from INDEX_DTYPES, half the time with one index out of range
(the dtype's largest or smallest value): NumPy compiled, CUDA and `gd.evaluate` must agree on
every intermediate, the scalar and the gradients (NaN at the same places, infinities equal,
finite numbers within `differential.RTOL`), or all raise the same kind of error.
"""

from __future__ import annotations

import numpy as np

import graphdl as gd

from . import differential, programs

MODES = differential.BACKEND_MODES + ("edges",)
INDEX_DTYPES = ("int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8")
EDGE_SHARE = 1 / 3
RUNS = {"numpy": {}, "cuda-cpu": {"backend": "cuda", "device": "cpu"}, "evaluate": None}


def edge_values(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    return np.array([0.0, -0.0, tiny, -tiny, np.finfo(dtype).tiny / 2, np.inf, -np.inf,
                     np.nan], dtype)


def _edged(value, dtype, rng):
    value = np.array(value, dtype)
    spots = rng.random(value.shape) < EDGE_SHARE
    value[spots] = rng.choice(edge_values(dtype), int(spots.sum()))
    return value


def _index(value, rng):
    """The indices in a dtype drawn among those that hold them (negative ones folded to
    -v - 1 for an unsigned dtype: still in range), half the time with one entry the
    dtype's extreme (out of range for any array here)."""
    dtype = np.dtype(str(rng.choice(INDEX_DTYPES)))
    if dtype.kind == "u":
        value = np.where(value < 0, -value - 1, value)
    info = np.iinfo(dtype)
    if value.size and (value.min() < info.min or value.max() > info.max):
        dtype, info = np.dtype(np.int64), np.iinfo(np.int64)
    value = value.astype(dtype)
    if value.size and rng.random() < 1 / 2:
        value.flat[int(rng.integers(value.size))] = info.max if rng.random() < 0.5 or \
            dtype.kind == "u" else info.min
    return value


def with_edges(program):
    """The program with edge-valued inputs, its constants and float array parameters in a
    dtype drawn, and its indices in an index dtype drawn (see the module's docstring)."""
    rng = np.random.default_rng((program.seed, 19))
    dtype = np.dtype(str(rng.choice(["float32", "float64"])))
    steps = []
    for step in program.steps:
        params = dict(step.params)
        if step.op == "input":
            params["value"] = _edged(params["value"], dtype, rng)
        elif step.op == "index_input":
            params["value"] = _index(params["value"], rng)
        if step.op not in programs.LEAVES:  # constants, weights, running stats, masks...
            params = {k: _recast(v, dtype) for k, v in params.items()}
        steps.append(programs.Step(step.op, step.args, params))
    return programs.Program(program.seed, steps)


def _recast(param, dtype):
    """A float array parameter in the program's dtype (one float64 array would promote the
    step's float32 result to float64, as NumPy does); any other parameter as it is."""
    if isinstance(param, np.ndarray) and param.dtype.kind == "f":
        return param.astype(dtype)
    return param


def _run(how, outputs, feeds):
    """The outputs' values, or the exception raised."""
    with np.errstate(all="ignore"):
        try:
            if how is None:
                return gd.evaluate(outputs, feeds)
            return gd.compile(outputs, **how)(feeds)
        except Exception as exc:  # noqa: BLE001 - compared across the runs
            return exc


def edges(program):
    """The first disagreement between NumPy, CUDA and the interpreter on the edge-valued
    program, as a list of at most one Failure."""
    edged = with_edges(program)
    nodes = programs.build(edged)
    inputs = [nodes[k] for k in edged.inputs]
    body = [k for k, s in enumerate(edged.steps)
            if s.op not in (*programs.LEAVES, "constant", "wsum", "add")]
    outputs = [nodes[k] for k in body] + [nodes[-1], *gd.grad(nodes[-1], inputs)]
    labels = [f"v{k} ({edged.steps[k].op})" for k in body] + ["the scalar"] + [
        f"the gradient wrt {edged.steps[k].params['name']}" for k in edged.inputs]
    results = {name: _run(how, outputs, edged.feeds()) for name, how in RUNS.items()}
    reference = results.pop("numpy")
    for name, got in results.items():
        why = _disagree(reference, got, edged.dtype, labels)
        if why:
            return [differential.Failure(program.seed, "edges", "mismatch", name, why[0],
                                         f"{name} vs numpy: {why[1]}")]
    return []


def _disagree(reference, got, dtype, labels):
    """(what, why) two runs' results disagree, or None: both raise the same kind of error,
    or both return values that agree."""
    raised = [type(r).__name__ for r in (reference, got) if isinstance(r, Exception)]
    if raised:
        if len(raised) == 2 and raised[0] == raised[1]:
            return None
        gists = [differential._gist(r) if isinstance(r, Exception) else "values"
                 for r in (reference, got)]
        return "raises", f"numpy: {gists[0]}; other: {gists[1]}"
    for label, a, b in zip(labels, reference, got):
        why = differential.differs(b, np.asarray(a, np.float64), dtype)
        if why:
            return "values", f"{label}: {why}"
    return None


def check(program, second):
    """Each backend against PyTorch, then against each other on edge values."""
    return differential.check(program, second, differential.BACKEND_MODES) + edges(program)
