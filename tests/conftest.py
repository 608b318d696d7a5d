"""Shared test settings: a deterministic hypothesis profile, seeded random generators, the
`slow` mark that the quick tier leaves out, and skips where a system program is missing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Deterministic property tests: the same examples on every run and every machine.
settings.register_profile(
    "graphdl",
    derandomize=True,
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("graphdl")

# The quick tier (`bash scripts/test.sh --quick`, i.e. `pytest -m "not slow"`) leaves out the
# tests marked slow here: whole files where nearly all the time goes to slow tests, and single
# tests (every parametrization) of 3 s or more. Seconds: `pytest tests -n 2 --durations=0` on 2
# cores under load (about 4x an idle machine's), 2026-12; a new slow test belongs here.
SLOW_FILES = {
    "tests/fuzz/test_fuzz.py",  # 198 s: the fuzzer's CI share, on time budgets
    "tests/fuzz/test_saturated.py",  # 63 s
    "tests/test_backends_agree.py",  # 93 s
    "tests/test_browser.py",  # headless Chromium, where installed
    "tests/test_compiled_source.py",  # 34 s
    "tests/test_cuda_backend.py",  # 176 s (g++ builds, nvcc where installed)
    "tests/test_cuda_conv.py",  # 39 s
    "tests/test_data_parallel_examples.py",  # 36 s: torchrun's workers import torch
    "tests/test_detection.py",  # 182 s (training the example's detector)
    "tests/test_extend.py",  # 14 s
    "tests/test_ir.py",  # 11 s
    "tests/test_label_errors.py",  # 64 s
    "tests/test_localization.py",  # 53 s
    "tests/test_pool_ceil_mode.py",  # 45 s
    "tests/test_saturated_derivatives.py",  # 21 s
    "tests/test_word2vec_models.py",  # 14 s
}
SLOW_TESTS = {
    "tests/test_activations.py::test_value_and_two_derivatives_equal_pytorchs",  # 6 s (cuda-cpu)
    "tests/test_boxes_data.py::test_box_is_the_bounding_box_of_the_pasted_nonzero_pixels",  # 11
    "tests/test_boxes_data.py::test_items_come_from_their_own_split_and_labels_follow_the_sources",
    "tests/test_codegen.py::test_deep_graph_compiles_without_recursion_limit",  # 7 s
    "tests/test_compiled_semantics.py::test_large_constants_live_beside_the_module_not_in_its_text",
    "tests/test_distributed.py::test_two_workers_step_as_one_with_the_whole_batch",  # 40 s: all
    "tests/test_distributed.py::test_a_failed_peer_is_named_within_the_timeout",  # the workers
    "tests/test_distributed.py::test_torchrun_restart_after_a_kill_ends_as_uninterrupted",
    "tests/test_distributed.py::test_a_checkpoint_of_two_workers_resumes_on_one",  # the workers
    "tests/test_distributed.py::test_ray_train_restart_after_a_kill_ends_as_uninterrupted",  # 50
    "tests/test_distributed.py::test_ray_train_elastic_run_grows_onto_a_new_node_and_resumes",

    "tests/test_notebooks.py::test_notebook_runs_and_displays_drawings_and_steppers",  # 23 s
    "tests/test_onnx.py::test_imported_gradients_match_pytorch_autograd",  # 4 s
    "tests/test_onnx.py::test_imported_models_match_pytorch_and_onnxruntime",  # 3 s
    "tests/test_onnx_models.py::test_decoder_and_attention_run_on_cuda_kernels_on_the_cpu",  # 17
    "tests/test_onnx_models.py::test_resnet18_input_gradient_matches_autograd",  # 10 s
    "tests/test_onnx_models.py::test_resnet18_with_a_dynamic_batch_runs_at_two_sizes",  # 25 s
    "tests/test_onnx_models.py::test_torchvision_model_runs_like_pytorch_and_onnxruntime",  # 19
    "tests/test_optim.py::test_compiled_steps_follow_torch_optim",  # 9 s
    "tests/test_properties.py::test_grad_matches_finite_differences",  # 5 s
    "tests/test_sparse_updates.py::test_cuda_kernels_update_only_the_addressed_rows",  # 7 s
    "tests/test_teach.py::test_cli_explain_into_a_closed_pipe_exits_quietly",  # 6 s
    "tests/test_teach.py::test_installed_graphdl_command_explains_a_file",  # 6 s
    "tests/test_teach_embedding.py::test_the_toy_example_runs_and_prints_the_huffman_codes",  # 7
    "tests/test_word2vec_distributed.py::test_two_processes_end_with_bit_identical_replicas",  # 23
    "tests/test_word2vec_distributed.py::test_fixed_round_steps_repeat_the_run",  # 15 s
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path, _, name = item.nodeid.partition("::")
        if path in SLOW_FILES or f"{path}::{name.split('[')[0]}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def rng():
    """A freshly seeded generator per test, so tests do not depend on their order."""
    return np.random.default_rng(20240607)


# Programs from system packages that some tests need part of the way (a test that checks the
# NumPy backend and then CUDA on the CPU, an example that renders its drawing). Where one is not
# installed, the error graphdl raises for it turns the test into a skip that names the package;
# where it is installed, the same error is a failure as any other.
_PROGRAMS = (  # (program, the error's class name, what its message says, the skip reason)
    ("g++", "BuildError", "g++ was not found",
     "g++ is not installed: CUDA kernels run on the CPU compiled by g++ (apt-get install g++)"),
    ("dot", "DotNotFound", "",
     "Graphviz's dot is not installed: the drawing cannot be rendered (apt-get install graphviz)"),
)


def _missing_program(error):
    """The skip reason when `error` (or an exception it was raised from) says that a program
    which is indeed not on PATH is missing; else None."""
    while error is not None:
        for program, kind, says, reason in _PROGRAMS:
            if (type(error).__name__ == kind and says in str(error)
                    and shutil.which(program) is None):
                return reason
        error = error.__cause__ or error.__context__
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.excinfo is not None and report.failed and not hasattr(report, "wasxfail"):
        reason = _missing_program(call.excinfo.value)
        if reason is not None:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {reason}")
    return report
