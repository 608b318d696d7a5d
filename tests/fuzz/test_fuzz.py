"""CI's share of the differential fuzzer: a few hundred programs from a fixed seed within a time
budget, against PyTorch float64, in all three modes. No failure is expected: each one printed is
a bug (or a convention to document in `tests/fuzz/__init__.py`), with its reproducer."""

from __future__ import annotations

import numpy as np

from . import programs, runner

SEED, PROGRAMS, BUDGET_SECONDS = 20240607, 1000, 40.0


def test_graphdl_matches_pytorch_on_random_programs():
    result = runner.run(SEED, PROGRAMS, BUDGET_SECONDS)
    summary = runner.report(result, shrink=False)
    print(summary)
    assert result.programs >= 100, f"too few programs ran within the budget\n{summary}"
    assert not result.failures, f"graphdl differs from PyTorch:\n{summary}"


def test_generator_feeds_take_indices_and_class_labels_as_int64_inputs():
    """Constant indices let optimization fold the run-time index check away: the generator must
    also feed them, as int64 inputs that are fed but never differentiated."""
    consumers = set()
    for seed in range(400):  # enough draws to meet each consumer (268 needed with 47 ops)
        program = programs.generate(seed, 8)
        for k in program.fed:
            if program.steps[k].op == "index_input":
                assert k not in program.inputs
                assert program.feeds()[program.steps[k].params["name"]].dtype == np.int64
                consumers |= {s.op for s in program.steps if k in s.args}
    assert consumers == {"take", "lookup_dot", "softmax_cross_entropy", "hinge_loss"}
