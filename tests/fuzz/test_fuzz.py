"""CI's share of the differential fuzzer: a few hundred programs from a fixed seed within a time
budget, against PyTorch float64, in all three modes. No failure is expected: each one printed is
a bug (or a convention to document in `tests/fuzz/__init__.py`), with its reproducer."""

from __future__ import annotations

from . import runner

SEED, PROGRAMS, BUDGET_SECONDS = 20240607, 1000, 40.0


def test_graphdl_matches_pytorch_on_random_programs():
    result = runner.run(SEED, PROGRAMS, BUDGET_SECONDS)
    summary = runner.report(result, shrink=False)
    print(summary)
    assert result.programs >= 100, f"too few programs ran within the budget\n{summary}"
    assert not result.failures, f"graphdl differs from PyTorch:\n{summary}"
