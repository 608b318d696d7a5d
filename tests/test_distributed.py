"""Data-parallel training (graphdl.distributed, gd.allreduce, the optimizers' allreduce=).

One worker, in this process (no process group): allreduce is the identity and a step with
allreduce="mean" is bit-identical to the plain one. Two workers: pairs of spawned processes
joined by gloo through a `file://` rendezvous in tmp_path (loopback only; no port to race for),
all pairs started at once (importing torch dominates their time): an MLP and a small LeNet
trained with SGD-momentum and Adam on halves of each global batch (and an uneven 4 + 3 split)
end where one worker with the whole batch ends, both replicas bit-identical; a killed and a
hung peer make rank 0 raise within the timeout, naming rank 1; under torchrun and Ray Train a
run with a worker killed and restarted ends bit-identical to an uninterrupted one; an elastic
Ray Train run that grows from one worker to two when a node joins ends where it would have.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import graphdl as gd
import graphdl.distributed as gdd
from graphdl.errors import GraphError
from tests import distributed_worker as worker
from tests.helpers import run_on, runner_params

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- one worker
@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.filterwarnings("error::graphdl.facets.FallbackWarning")  # no runner falls back
def test_allreduce_is_the_identity_with_one_worker_and_its_gradient_too(runner):
    x = gd.input("x", (2, 3), "float64")
    w = gd.input("w", (), "float64")
    a = np.random.default_rng(0).standard_normal((2, 3))
    for y in (gd.allreduce(x), gd.allreduce(x, "sum"), gd.allreduce(x, weight=w)):
        loss = gd.sum(gd.sin(y) * x)
        feeds = {"x": a, "w": 3.0} if len(y.inputs) == 2 else {"x": a}
        value, dx = run_on(runner, [y, *gd.grad(loss, [x])], feeds)
        np.testing.assert_array_equal(value, a)
        np.testing.assert_allclose(dx, np.cos(a) * a + np.sin(a), rtol=1e-15)


def test_one_workers_allreduce_returns_arrays_the_caller_owns():
    """With one worker the result is its input itself (the fed array, or a constant of the
    module: here the gradient is allreduce(const)): each output must be the caller's own, as
    any other, or writing into it changes the caller's input or the next call's results (the
    fuzzer found both, and a crash where the constant was read-only)."""
    x = gd.input("x", (2,), "float64")
    weights = np.array([0.5, -0.25])
    loss = gd.sum(gd.allreduce(x, "sum") * gd.constant(weights))
    fn = gd.compile([gd.allreduce(x), *gd.grad(loss, [x])])
    a = np.array([1.0, 2.0])
    for _ in range(2):
        y, dx = fn({"x": a})
        np.testing.assert_array_equal(y, [1.0, 2.0])
        np.testing.assert_array_equal(dx, weights)
        y += 1
        dx += 1
    np.testing.assert_array_equal(a, [1.0, 2.0])


def test_one_workers_allreduce_array_copies_into_out_and_checks_it():
    x = np.arange(6.0).reshape(2, 3)
    assert gdd.allreduce_array(x, "sum", out=x) is x
    out = np.empty((2, 3))
    assert gdd.allreduce_array(x, "mean", weight=4, out=out) is out
    np.testing.assert_array_equal(out, x)
    for bad in (np.empty((3, 2)), np.empty((2, 3), np.float32), np.empty((3, 2)).T):
        with pytest.raises(ValueError, match=r"out must be a C-contiguous float64 array of "
                                             r"shape \(2, 3\)"):
            gdd.allreduce_array(x, "sum", out=bad)


def test_one_workers_started_allreduce_has_arrived_and_is_x():
    x = np.arange(6.0).reshape(2, 3)
    for op in ("sum", "mean"):
        travelling = gdd.allreduce_start(x, op)
        assert travelling.ready() and travelling.wait() is x
        np.testing.assert_array_equal(x, np.arange(6.0).reshape(2, 3))
    with pytest.raises(ValueError, match="op must be 'sum' or 'mean', got 'max'"):
        gdd.allreduce_start(x, "max")
    with pytest.raises(ValueError, match="C-contiguous NumPy array"):
        gdd.allreduce_start(x.T)


def test_the_generated_code_shows_the_collective():
    x = gd.input("x", (2, 3), "float32")
    source = gd.compile(gd.allreduce(x * 2, weight=5.0)).source
    assert "= _allreduce(" in source and "graphdl.distributed where several workers" in source


@pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")
def test_the_cuda_driver_reduces_its_device_buffers_in_place(tmp_path):
    """The CUDA backend's collective is a call in its driver on the device arrays themselves
    (CuPy's on a GPU), not a trip through the host."""
    x = gd.input("x", (2, 3), "float32")
    fn = gd.compile(gd.allreduce(x * 2, weight=5.0) + 1, backend="cuda", device="cpu")
    np.testing.assert_array_equal(fn(x=np.ones((2, 3), "float32")), np.full((2, 3), 3.0))
    fn.save(tmp_path / "driver.py")
    calls = [line for line in (tmp_path / "driver.py").read_text().splitlines()
             if "= _allreduce(" in line]
    assert len(calls) == 1 and calls[0].strip().startswith("b_allreduce[...] = _allreduce(b_mul,")
    assert calls[0].split("#")[0].rstrip().endswith(", _xp)")


@pytest.mark.parametrize("make", [
    lambda loss, ps, **k: gd.optim.sgd(loss, ps, lr=0.1, momentum=0.9, **k),
    lambda loss, ps, **k: gd.optim.adam(loss, ps, lr=0.01, **k),
], ids=["sgd-momentum", "adam"])
def test_a_step_with_allreduce_mean_is_bit_identical_to_the_plain_step(make):
    x, y = gd.input("x", (None, 4), "float32"), gd.input("y", (None, 2), "float32")
    W = gd.input("W", (4, 2), "float32")
    b = gd.input("b", (2,), "float64")  # a second dtype: a second flat buffer
    loss = gd.mean((gd.tanh(x @ W) + gd.cast(b, "float32") - y) ** 2)
    rng = np.random.default_rng(1)
    start = {"W": rng.standard_normal((4, 2)).astype("float32"), "b": rng.standard_normal(2)}
    xs, ys = rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    ends = []
    for reduce in ({}, {"allreduce": "mean", "rows": x}):
        opt = make(loss, [W, b], **reduce)
        step = gd.compile(loss, updates=opt.updates)
        arrays = {**{k: v.copy() for k, v in start.items()}, **opt.init()}
        for _ in range(3):
            step(x=xs, y=ys, **arrays)
        ends.append(arrays)
        assert ("_allreduce(" in step.source) == bool(reduce)
    for name in ends[0]:
        np.testing.assert_array_equal(ends[0][name], ends[1][name], err_msg=name)


def test_one_worker_shards_nothing_and_broadcasts_nothing():
    a = np.arange(12.0).reshape(4, 3)
    assert gdd.world_size() == 1 and gdd.rank() == 0
    np.testing.assert_array_equal(gdd.shard(a), a)
    np.testing.assert_array_equal(gdd.shard(a, axis=1), a)
    assert np.shares_memory(gdd.shard(a, axis=-1), a)  # a view
    gdd.broadcast_parameters({"a": a})
    np.testing.assert_array_equal(a, np.arange(12.0).reshape(4, 3))
    assert "torch" not in sys.modules or gdd._dist() is None


def test_a_run_resumed_from_its_checkpoint_ends_bit_identical(tmp_path):
    """Stopped after step 3 of 5 with a checkpoint every 2 steps (and a partial file a crash
    left behind), a resumed run replays steps 3 and 4 and ends where an uninterrupted one does."""
    x, y = gd.input("x", (None, 3), "float32"), gd.input("y", (None,), "float32")
    W = gd.input("W", (3,), "float32")
    opt = gd.optim.adam(gd.mean((gd.tanh(x @ W) - y) ** 2), [W], lr=0.1, allreduce="mean", rows=x)
    step = gd.compile(opt.updates[W], updates=opt.updates)

    def run(arrays, start, stop, directory=None):
        for k in range(start, stop):
            rng = np.random.default_rng(k)  # batch k depends on k alone
            step(x=rng.standard_normal((4, 3)), y=rng.standard_normal(4), **arrays)
            if directory is not None and (k + 1) % 2 == 0:
                gdd.checkpoint(arrays, k + 1, directory)

    def fresh():
        return {"W": np.full(3, 0.5, np.float32), **opt.init()}

    uninterrupted = fresh()
    run(uninterrupted, 0, 5)
    interrupted = fresh()
    assert gdd.resume(interrupted, tmp_path) == 0
    run(interrupted, 0, 3, tmp_path)  # stopped after step 3: the checkpoint holds step 2
    (tmp_path / ".step-4.npz.partial").write_bytes(b"a crash while writing")
    resumed = {name: np.zeros_like(value) for name, value in fresh().items()}
    start = gdd.resume(resumed, tmp_path)
    assert start == 2
    run(resumed, start, 5, tmp_path)
    for name, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-2.npz", "step-4.npz"]
    step_saved, saved = gdd.load_checkpoint(tmp_path)
    assert step_saved == 4 and set(saved) == set(resumed)


def test_checkpoints_need_a_place_and_loading_names_an_empty_one(tmp_path):
    with pytest.raises(ValueError, match="give a directory .*gdd.run"):
        gdd.checkpoint({"W": np.zeros(2)}, 1)
    with pytest.raises(FileNotFoundError, match="no step-<step>.npz in"):
        gdd.load_checkpoint(tmp_path)


def test_bad_allreduce_calls_are_refused_by_name():
    x = gd.input("x", (3,), "float32")
    with pytest.raises(GraphError, match="op must be one of"):
        gd.allreduce(x, "max")
    with pytest.raises(GraphError, match="floating-point"):
        gd.allreduce(gd.input("k", (3,), "int64"))
    with pytest.raises(GraphError, match="weight applies to op='mean'"):
        gd.allreduce(x, "sum", weight=2.0)
    with pytest.raises(GraphError, match="allreduce must be one of"):
        gd.optim.sgd(gd.sum(x * x), [x], lr=0.1, allreduce="max")


def test_onnx_exports_one_workers_allreduce_the_identity():
    pytest.importorskip("onnx")
    x = gd.input("x", (3,), "float32")
    ops = [n.op_type for n in gd.onnx.save(gd.allreduce(x, weight=4.0) * 2).graph.node]
    assert "Identity" in ops


# ---------------------------------------------------------------- two workers
PAIRS = ("train", "killed", "half")  # after training, rank 1 of "train" hangs


@pytest.fixture(scope="session")
def pairs(tmp_path_factory):
    """{scenario: rank 0's results, "train-1": rank 1's, torchrun job: its results}. The
    processes run once a session: the first pytest-xdist worker to get here starts them, under
    a lock the others wait on, and every worker reads their results (each worker running
    them cost a minute of CI)."""
    pytest.importorskip("torch")
    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = shared.parent  # the session's directory, above each worker's own
    root = shared / "distributed"
    with open(shared / "distributed.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "ran").exists():
            _run_pairs(root)
            (root / "ran").touch()
    results = {name: _load(root / f"{name}-0.npz") for name in ("whole", "died", *PAIRS)}
    results["train-1"] = _load(root / "train-1.npz")  # saved before rank 0 ended it
    results["half"] = root / "half"  # where "half" checkpoints
    results["rank 1 died"] = (root / "died" / "rank 1 died").exists()
    return results


def _run_pairs(root):
    """Every process started at once (importing torch dominates); each rank 1 that failed on
    purpose is ended here."""
    root.mkdir()
    commands = {}
    # standalone: torchrun binds a free port itself, no race for one; the uninterrupted job is
    # started by the script itself (gdd.launch), the other under torchrun's command line
    commands["whole", 0] = ["tests.distributed_worker", "launch", str(root / "whole"),
                            str(root / "whole-0.npz")]
    commands["died", 0] = ["torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "--max-restarts", "1", "-m", "tests.distributed_worker", "torchrun",
                           str(root / "died"), str(root / "died-0.npz"), "die"]
    for scenario in PAIRS:
        for rank in (0, 1):
            commands[scenario, rank] = ["tests.distributed_worker", str(rank), "2",
                                        str(root / f"{scenario}.rendezvous"),
                                        str(root / f"{scenario}-{rank}.npz"), scenario]
    procs = {}
    for (name, rank), command in commands.items():
        with open(root / f"{name}-{rank}.log", "w") as log:
            procs[name, rank] = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT,
                                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        for (name, rank), proc in procs.items():
            if rank == 0:  # a rank 1 that hangs ("train") is ended below
                proc.wait(timeout=180)
                log = (root / f"{name}-0.log").read_text()[-3000:]
                assert proc.returncode == 0, log
    finally:
        for proc in procs.values():  # SIGTERM: torchrun passes it to its workers
            if proc.poll() is None:
                proc.terminate()
            proc.wait()


def _load(path):
    if not path.exists():
        return None
    with np.load(path) as saved:
        return dict(saved)


def _close(a, b, dtype):
    tolerance = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("run", worker.RUNS, ids=lambda r: "-".join(map(str, r)))
def test_two_workers_step_as_one_with_the_whole_batch(pairs, run):
    rank0, rank1 = pairs["train"], pairs["train-1"]
    one = worker.train(*run, allreduce=False)  # this process: one worker, the whole batch
    for name, value in one.items():
        key = "-".join(map(str, run)) + f"-{name}"
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=f"replicas differ: {key}")
        _close(rank0[key], value, run[1])


def test_allreduce_array_and_start_reduce_in_place(pairs):
    for report in (pairs["train"], pairs["train-1"]):
        np.testing.assert_array_equal(report["out-x"], [1.0, 3.0, 5.0])  # [0 1 2] + [1 2 3]
        np.testing.assert_allclose(report["out-mean"], [5 / 3] * 2, rtol=1e-15)  # (1·1 + 2·2)/3
        assert report["out-x-returned"] and report["out-mean-returned"]
        np.testing.assert_array_equal(report["start-mean"], [[0.0, 1.5], [3.0, 4.5]])
        assert report["start-returned"]
    np.testing.assert_array_equal(pairs["train"]["out-y"], [1.0, 1.0])  # not written


@pytest.mark.parametrize("scenario", ["killed", "train"], ids=["killed", "hung"])
def test_a_failed_peer_is_named_within_the_timeout(pairs, scenario):
    report = pairs[scenario]
    assert "message" in report, "rank 0 did not raise CollectiveError"
    message = str(report["message"])
    assert "rank 0: allreduce #" in message and "failed within 2 s" in message, message
    assert "rank 1 did not reach it" in message, message
    assert float(report["seconds"]) < 2 + 2 + 3  # timeout, the others' moment to report, slack


def test_torchrun_restart_after_a_kill_ends_as_uninterrupted(pairs):
    """Rank 1 dies after step 7 of 12; torchrun restarts both workers, which resume from the
    checkpoint of step 6 and replay steps 6 and 7: no update lost, none doubled."""
    whole, died = pairs["whole"], pairs["died"]
    assert pairs["rank 1 died"] and whole is not None and died is not None
    for name, value in whole.items():
        np.testing.assert_array_equal(died[name], value, err_msg=name)


def test_a_checkpoint_of_two_workers_resumes_on_one(pairs, monkeypatch):
    """Elastic runs: the first 6 steps on two workers, the other 6 resumed from their
    checkpoint on one worker (this process), end where the uninterrupted two-worker run ends,
    to rounding: each step is the whole global batch's, however it was split."""
    starts = []
    resume = gdd.resume
    monkeypatch.setattr(gdd, "resume", lambda *a: starts.append(resume(*a)) or starts[-1])
    done = worker.train("adam", "float64", 7, "mlp", allreduce=True, steps=12,
                        checkpoints=True, directory=pairs["half"])
    assert starts == [6] and gdd.load_checkpoint(pairs["half"])[0] == 12
    for name, value in pairs["whole"].items():
        _close(done[name], value, "float64")


@pytest.fixture
def ray_environment():
    """The environment for a process that starts a Ray cluster, with Ray's temporary directory
    its own (short: Ray's socket paths must fit ~100 characters). Ray records there the
    address that a later bare `ray.init()` joins; if this cluster were killed with its record
    in /tmp/ray, later runs would wait on it forever."""
    pytest.importorskip("ray.train")
    directory = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    yield {**os.environ, "RAY_TMPDIR": directory}
    shutil.rmtree(directory, ignore_errors=True)


def test_ray_train_restart_after_a_kill_ends_as_uninterrupted(pairs, tmp_path, ray_environment):
    """gdd.run on Ray Train, rank 1 dying after step 7 of 12 (max_failures=1): Ray restarts
    both workers, which resume from Ray's record of step 6 (the only place the checkpoints
    go) and end where the uninterrupted torchrun job ended; the run's last record is that
    end state. Ray's start-up takes most of a minute here."""
    out, marks = tmp_path / "ray.npz", tmp_path / "marks"
    marks.mkdir()
    config = {"die": str(marks), "out": str(out)}
    script = ("import numpy as np\n"
              "import graphdl.distributed as gdd\n"
              "from tests import distributed_worker as worker\n"
              f"result = gdd.run(worker.on_ray, workers=2, max_failures=1, config={config!r}, "
              f"storage={str(tmp_path / 'ray')!r})\n"
              "assert result.error is None, result.error\n"
              "step, saved = gdd.load_checkpoint(result.checkpoint)\n"
              f"np.savez({str(tmp_path / 'record.npz')!r}, step=step, **saved)\n")
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT,
                          env=ray_environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (marks / "rank 1 died").exists()
    ray, record = _load(out), _load(tmp_path / "record.npz")
    assert record.pop("step") == 12
    for name, value in pairs["whole"].items():
        np.testing.assert_array_equal(ray[name], value, err_msg=name)
        np.testing.assert_array_equal(record[name], value, err_msg=name)


def test_ray_train_elastic_run_grows_onto_a_new_node_and_resumes(pairs, tmp_path,
                                                               ray_environment):
    """gdd.run(workers=(1, 2)) on a Ray cluster of one 1-CPU node: one worker trains steps 0-5
    and checkpoints; a second node joins; Ray restarts the run on two workers, which resume
    from step 6 and end where the uninterrupted two-worker run ends, to rounding (each step is
    the global batch's, however it is split)."""
    done = subprocess.run([sys.executable, "-m", "tests.distributed_worker", "elastic",
                           str(tmp_path)], check=False, cwd=ROOT, env=ray_environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    attempts = sorted((tmp_path / "log").read_text().splitlines())
    assert attempts == ["world 1 rank 0 from step 0", "world 2 rank 0 from step 6",
                        "world 2 rank 1 from step 6"]
    grown, record = _load(tmp_path / "out.npz"), _load(tmp_path / "record.npz")
    assert record.pop("step") == 12
    for name, value in pairs["whole"].items():
        _close(grown[name], value, "float64")
        np.testing.assert_array_equal(record[name], grown[name], err_msg=name)
