"""The fuzzer's random programs (tests/fuzz/programs.py) propose every public op of graphdl.

A public op is a name in `graphdl.__all__` that builds graph nodes; the helpers listed in
`NOT_OPS` are not ops, each for the reason given. An op is proposed when it is a key of
`programs.PROPOSERS` (the step calls `gd.<op>` or its `programs.GD` form), or is reached
through one of them as `INDIRECT` says. `NOT_FUZZED` would list a public op the fuzzer
leaves out, with the reason; it is empty.
"""

from __future__ import annotations

import pytest

import graphdl as gd

pytest.importorskip("torch")  # tests/fuzz/programs.py evaluates every step in PyTorch

from tests.fuzz import programs

NOT_OPS = {
    "REGISTRY": "the registry of OpDefs, not a function",
    "OpDef": "the op contract's class",
    "Node": "the IR's node class",
    "CustomOp": "the class custom_op returns",
    "Drawing": "the result of draw",
    "Explanation": "the result of explain",
    "DescentPlot": "the result of descent_plot",
    "GraphError": "an exception",
    "InputError": "an exception",
    "DotNotFound": "an exception",
    "input": "a leaf: every program's fed inputs are `input` steps",
    "constant": "a leaf: every program's weighted sum reads constants",
    "compile": "runs a graph: the fuzzer's differential modes compile every program",
    "evaluate": "runs a graph: the fuzzer's `evaluate` mode",
    "grad": "differentiates a graph: every program is differentiated",
    "check_grad": "a view (finite-difference check), not an op",
    "check_op": "a view (finite-difference check), not an op",
    "draw": "a view (drawing), not an op",
    "explain": "a view (narration), not an op",
    "activation_table": "a view (the lecture's table of activations), not an op",
    "descent_plot": "a view (gradient descent drawn), not an op",
    "symbolic": "a view (closed form), not an op",
    "symbolic_grad": "a view (closed form), not an op",
    "to_networkx": "a view (graph export), not an op",
    "topological_order": "a graph walk, not an op",
    "elementwise_op": "declares user ops; tests/test_extend.py covers them",
    "custom_op": "declares user ops; tests/test_extend.py covers them",
    "optim": "a module of optimizers (update builders over ops the fuzzer draws)",
    "onnx": "a module: import/export, tests/test_onnx*.py",
}

# public op -> the proposer that reaches it (and how)
INDIRECT = {cmp: "where (its `cmp` draws the comparison)" for cmp in programs.COMPARISONS}

NOT_FUZZED: dict[str, str] = {}


def public_ops():
    return set(gd.__all__) - set(NOT_OPS)


def test_every_public_op_is_proposed_by_the_fuzzer():
    proposed = set(programs.PROPOSERS) | set(INDIRECT)
    missing = sorted(public_ops() - proposed - set(NOT_FUZZED))
    assert not missing, (f"public ops the fuzzer never proposes: {', '.join(missing)} "
                         "(add a proposer in tests/fuzz/programs.py and torch_ref.py, or list "
                         "the op in NOT_FUZZED with the reason)")


def test_the_exclusion_lists_name_real_names():
    assert set(NOT_OPS) <= set(gd.__all__), sorted(set(NOT_OPS) - set(gd.__all__))
    stale = sorted(set(NOT_FUZZED) & set(programs.PROPOSERS) | set(NOT_FUZZED) - public_ops())
    assert not stale, f"NOT_FUZZED names ops that are proposed or not public: {stale}"
    assert set(INDIRECT) <= public_ops(), sorted(set(INDIRECT) - public_ops())


def test_every_proposer_yields_its_op_in_drawn_programs():
    """A proposer that always fails (NoSlot, PyTorch refusing it) would cover nothing: the first
    programs `python -m tests.fuzz` draws, 8 per proposer (each op is one of a hundred and more),
    contain every proposed op."""
    from tests.fuzz import runner

    seen = set()
    for seed in range(8 * len(programs.PROPOSERS)):
        seen.update(runner.program_of(seed)[0].ops())
    never = sorted(set(programs.PROPOSERS) - seen - {"add"})  # add: also the final sum's step
    assert not never, f"proposers that never yield their op: {never}"
