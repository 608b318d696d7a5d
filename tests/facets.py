"""The facets the test suite adds to `graphdl.facets.FACETS`: a finite-difference case for
every op, and the fuzzer's proposer for every public one."""

from __future__ import annotations

import graphdl as gd
from graphdl.facets import HAS, MISSING, NA, Facet


def _grad_case(op):
    from tests.test_ops_grad import CASES, LEAVES

    if op.name in LEAVES:
        return NA, "nothing to differentiate (tests/test_ops_grad.py LEAVES)"
    return (HAS, "") if op.name in CASES else (MISSING, "")


def _fuzzed(op):
    try:
        from tests.fuzz import programs
        from tests.test_fuzz_covers_ops import INDIRECT, NOT_FUZZED
    except ImportError as e:  # the fuzzer evaluates its programs in PyTorch
        return NA, f"not checked here: {e}"
    if op.kind == "leaf":
        return NA, "a leaf"
    if op.name not in gd.__all__:
        return NA, "not public: reached through a public op (its gradient, a decomposition)"
    if op.name in NOT_FUZZED:
        return NA, NOT_FUZZED[op.name]
    return (HAS, "") if op.name in programs.PROPOSERS or op.name in INDIRECT else (MISSING, "")


FACETS = (
    Facet("gradient case", "its inputs in tests/test_ops_grad.py CASES (finite differences)",
          _grad_case),
    Facet("fuzzer", "public ops: a proposer in tests/fuzz/programs.py PROPOSERS and its PyTorch "
          "form in tests/fuzz/torch_ref.py", _fuzzed),
)
