"""CI's share of the differential fuzzer, one test per mode: programs from fixed seeds within a
time budget each. No failure is expected: each one printed is a bug (or a convention to
document in `tests/fuzz/__init__.py`), with its reproducer. The `planted` tests show that each
mode fails on a bug of its kind."""

from __future__ import annotations

import inspect
import shutil
import time

import numpy as np
import pytest

import graphdl as gd
from tests.helpers import only

from . import backends, programs, runner, sizes, threads

SEED, PROGRAMS, BUDGET_SECONDS = 20240607, 1000, 40.0
needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")


def _numpy_thresholds():
    """Seeds of every side of every NumPy size threshold (in both dtypes' turns)."""
    n = len(sizes.THRESHOLDS)
    return [s for s in range(3 * n) if sizes.THRESHOLDS[s % n].modes == sizes.NUMPY]


def _cuda_thresholds():
    """One seed per CUDA size threshold, its side turning with the threshold's place."""
    n = len(sizes.THRESHOLDS)
    return [i + n * (i % 3) for i, t in enumerate(sizes.THRESHOLDS) if t.modes == sizes.CUDA]


EVERY = float("inf")  # no time budget: every seed runs, whatever the machine's load

# mode -> (seeds, at least this many programs, budget in seconds). Coverage that must be whole
# (each side of each size threshold) and the slow CUDA-emulator modes run a fixed set of seeds
# to the end, so a loaded machine makes them slower, never flaky.
CI = {
    "random": (range(SEED, SEED + PROGRAMS), 100, BUDGET_SECONDS),
    "sizes": (_numpy_thresholds(), None, EVERY),
    "sizes-cuda": (_cuda_thresholds(), None, EVERY),
    "threads": (range(SEED, SEED + 40), 10, 8.0),
    "threads-cuda": (range(SEED, SEED + 1), None, EVERY),
    "backends": (range(SEED, SEED + 3), None, EVERY),
}


def _run(name, monkeypatch=None):
    seeds, least, budget = CI[name]
    if name == "threads-cuda" and monkeypatch:  # the CUDA emulator: two calls per thread
        monkeypatch.setattr(threads, "CALLS", 2)
    mode = name.removesuffix("-cuda")
    if name == "threads":
        monkeypatch.setattr(threads, "MODES", ("numpy-threads",))
    if name == "threads-cuda":
        monkeypatch.setattr(threads, "MODES", ("cuda-threads",))
    result = runner.run(seeds, budget, mode=mode)
    summary = runner.report(result, shrink=False)
    print(summary)
    if least is None:
        assert result.programs and result.programs + result.skipped == len(seeds), summary
    else:
        assert result.programs >= least, f"too few programs ran within the budget\n{summary}"
    return result, summary


def test_graphdl_matches_pytorch_on_random_programs():
    result, summary = _run("random")
    assert not result.failures, f"graphdl differs from PyTorch:\n{summary}"


def test_both_sides_of_every_numpy_size_threshold():
    result, summary = _run("sizes")
    assert not result.failures, f"graphdl differs from PyTorch:\n{summary}"


@needs_gpp
def test_both_sides_of_every_cuda_size_threshold():
    result, summary = _run("sizes-cuda")
    assert not result.failures, f"graphdl differs from PyTorch:\n{summary}"


def test_one_numpy_function_called_from_threads(monkeypatch):
    result, summary = _run("threads", monkeypatch)
    assert not result.failures, f"threaded calls differ:\n{summary}"


@needs_gpp
def test_one_cuda_function_called_from_threads(monkeypatch):
    result, summary = _run("threads-cuda", monkeypatch)
    assert not result.failures, f"threaded calls differ:\n{summary}"


@needs_gpp
def test_numpy_and_cuda_agree_with_pytorch_and_each_other():
    result, summary = _run("backends")
    assert not result.failures, f"the backends differ:\n{summary}"


# ---------------------------------------------------------------- the modes catch bugs
def _corrupt_outputs(monkeypatch, wrong, backend="numpy"):
    """gd.compile whose functions on `backend` return wrong(array) for every array returned."""
    compile_ = gd.compile

    def planted(*args, **kwargs):
        fn = compile_(*args, **kwargs)
        if kwargs.get("backend", "numpy") != backend:
            return fn
        return lambda *a, **k: [wrong(np.array(r)) for r in fn(*a, **k)]
    monkeypatch.setattr(gd, "compile", planted)


def test_planted_size_bug_is_found_above_its_threshold_only(monkeypatch):
    """A result off by one part in 1e5 wherever an array holds more than 64 KiB of float32:
    the `del` threshold's side +1 (float32) fails, its side -1 (float32) passes."""
    k = next(i for i, t in enumerate(sizes.THRESHOLDS) if t.where.endswith("FREED_BYTES"))
    limit = sizes.THRESHOLDS[k].value // 4

    def wrong(a):
        if a.size > limit:
            a.flat[0] += 1e-3 * max(1.0, float(np.abs(a).max()))
        return a
    _corrupt_outputs(monkeypatch, wrong)
    n = len(sizes.THRESHOLDS)
    below, above = (runner.run([k + turn * n], 10, mode="sizes") for turn in (0, 2))
    assert not below.failures and above.failures


def test_planted_race_is_found_by_threaded_calls(monkeypatch):
    """Functions that keep their result in one shared place, as a shared buffer would."""
    compile_ = gd.compile

    def racy(*args, **kwargs):
        fn, shared = compile_(*args, **kwargs), {}

        def call(*a, **k):
            shared["result"] = fn(*a, **k)
            time.sleep(1e-3)  # another thread's call overwrites it meanwhile
            return shared["result"]
        return call
    monkeypatch.setattr(gd, "compile", racy)
    program, _ = runner.program_of(SEED)
    assert {f.mode for f in threads.check(program, ("numpy-threads",))} == {"numpy-threads"}


@needs_gpp
def test_planted_nan_loss_is_found_by_edge_values(monkeypatch):
    """A backend that turns NaN into 0 (as `x - x` simplified to 0 would)."""
    _corrupt_outputs(monkeypatch, lambda a: np.where(np.isnan(a), 0, a).astype(a.dtype), "cuda")
    found = [f for s in range(SEED, SEED + 10) for f in backends.edges(runner.program_of(s)[0])]
    assert found and {f.mode for f in found} == {"edges"}


# the proposers that draw float arrays as parameters (running statistics, class weights, masks)
ARRAY_PARAMS = ("batch_norm", "nll_loss", "cross_entropy", "scaled_dot_product_attention",
                "dropout")


def test_edge_programs_keep_their_float_dtype(monkeypatch):
    """The edge-valued program is in one float dtype throughout, its array parameters too (a
    float64 running_mean would make a float32 batch_norm float64, as NumPy promotes)."""
    monkeypatch.setattr(programs, "PROPOSERS", {op: programs.PROPOSERS[op]
                                                for op in ARRAY_PARAMS})
    drawn = set()
    for seed in range(1000, 1040):
        edged = backends.with_edges(programs.generate(seed))
        for step, node in zip(edged.steps, programs.build(edged)):
            drawn.add(step.op)
            assert node.dtype.kind != "f" or node.dtype == edged.dtype, (seed, step.op)
    assert set(ARRAY_PARAMS) <= drawn


def test_size_table_literals_are_still_in_the_code():
    """A threshold that is a bare literal in the code names its text: if the code changes, so
    must the table."""
    for threshold in sizes.THRESHOLDS:
        if threshold.literal:
            where, text = threshold.literal
            assert text in inspect.getsource(where), (threshold.name, text)


def test_generator_feeds_take_indices_and_class_labels_as_int64_inputs():
    """Constant indices let optimization fold the run-time index check away: the generator must
    also feed them, as int64 inputs that are fed but never differentiated."""
    consumers = set()
    for seed in range(1000):  # enough draws to meet each consumer (657 needed with 140 ops)
        program = programs.generate(seed, 8)
        for k in program.fed:
            if program.steps[k].op == "index_input":
                assert k not in program.inputs
                assert program.feeds()[program.steps[k].params["name"]].dtype == np.int64
                consumers |= {s.op for s in program.steps if k in s.args}
    assert consumers == {"take", "lookup_dot", "softmax_cross_entropy", "hinge_loss", "one_hot",
                         "nll_loss", "cross_entropy", "gather", "take_along_axis", "index_select",
                         "index_add", "scatter", "scatter_add", "scatter_reduce",
                         "advanced_index"}


def _program_with(op, tries=40):
    """A program holding `op` (drawn from its proposer after one or two fresh inputs)."""
    for seed in range(tries):
        g = programs.Generator(SEED + seed)
        for _ in range(1 + seed % 2):
            g.fresh(g.shape())
        try:
            g.add(op, *programs.PROPOSERS[op](g))
        except (programs.NoSlot, RuntimeError, IndexError):
            continue
        g.finish()
        return programs.Program(g.seed, g.steps)
    return None


@pytest.mark.parametrize("op", sorted(programs.PROPOSERS))
def test_every_reproducer_builds_the_program_it_prints(op):
    """A failure's reproducer (`Program.code`) is graphdl source a user pastes: for each op,
    it runs and computes what the fuzzer's own graph computed."""
    program = _program_with(op)
    if program is None:
        pytest.skip(f"{op}: its proposer found no slot in 40 seeds")
    scope = {}
    exec(program.code(), scope)  # noqa: S102 (the fuzzer's own generated source)
    printed, built = scope[f"v{len(program.steps) - 1}"], programs.build(program)[-1]
    got = gd.evaluate(printed, only(scope["feeds"], [printed]))
    want = gd.evaluate(built, only(program.feeds(), [built]))
    np.testing.assert_array_equal(got, want)
