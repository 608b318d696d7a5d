"""The examples' data-parallel loop (examples/training.py, `--workers N`): two workers, each on
its shard of every global batch, end where one worker with the whole batch ends, both replicas
bit-identical; only rank 0 prints; one worker never imports torch. The MLP of
examples/mlp_fashion_mnist.py on random data (tests/training_worker.py), both runs started at
once (importing torch dominates: ~15 s on the shared 2-core machine, marked slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{workers: (stdout, {rank: what it saved})} for one and for two workers."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("data-parallel") / "run"
    env = {**os.environ, "TRAINING_WORKER_OUT": str(out), "PYTHONPATH": str(ROOT)}
    procs = {workers: subprocess.Popen([sys.executable, "-m", "tests.training_worker",
                                        "--epochs", "2", "--workers", str(workers)], cwd=ROOT,
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True) for workers in (1, 2)}
    results = {}
    for workers, proc in procs.items():
        printed = proc.communicate(timeout=180)[0]
        assert proc.returncode == 0, printed[-3000:]
        results[workers] = printed, {rank: _load(f"{out}-{workers}-{rank}.npz")
                                     for rank in range(workers)}
    return results


def _load(path):
    with np.load(path) as saved:
        return dict(saved)


def test_two_workers_train_as_one_with_the_whole_batch(runs):
    one, (rank0, rank1) = runs[1][1][0], runs[2][1].values()
    assert set(rank0) == set(one)
    for name, value in one.items():
        if name == "torch":
            continue
        np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=f"replicas differ: {name}")
        np.testing.assert_allclose(rank0[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_only_rank_0_prints_and_one_worker_imports_no_torch(runs):
    assert runs[2][0].count("final test accuracy") == 1, runs[2][0][-3000:]
    assert "data-parallel on 2 workers" in runs[2][0]
    assert not runs[1][1][0]["torch"] and runs[2][1][0]["torch"]
