"""One worker of tests/test_distributed.py: `python -m tests.distributed_worker RANK WORLD
RENDEZVOUS OUT SCENARIO` joins a gloo group through the `file://` rendezvous and writes what it
computed to OUT (.npz); under torchrun, `python -m tests.distributed_worker torchrun DIRECTORY
OUT [DIE]` joins from the environment, checkpoints into DIRECTORY, and with DIE rank 1 dies once
mid-run; `python -m tests.distributed_worker launch DIRECTORY OUT` starts that run (without
DIE) on two workers itself, by `gdd.launch`; `python -m tests.distributed_worker elastic
DIRECTORY` runs an elastic Ray Train job that grows from one node to two. `train` is also what
the test runs in its own process, as one worker with the whole batch."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

import graphdl as gd
import graphdl.distributed as gdd

STEPS = 3
# each optimizer in each dtype, each once with an even split of 8 rows and once with 4 + 3; the
# small LeNet too; each model once compiled by the CUDA backend (on the emulator: its collective
# runs on the driver's device buffers)
RUNS = [("sgd", "float64", 8, "mlp"), ("sgd", "float32", 7, "mlp"),
        ("adam", "float64", 7, "mlp"), ("adam", "float32", 8, "mlp"),
        ("sgd", "float32", 8, "lenet"), ("adam", "float64", 7, "lenet")]
if shutil.which("g++"):  # the emulator builds with it
    RUNS += [("adam", "float32", 7, "mlp", "cuda"), ("sgd", "float64", 8, "lenet", "cuda")]
BACKENDS = {"numpy": {}, "cuda": {"backend": "cuda", "device": "cpu"}}
# each model's input (one row's shape) and parameters
INPUTS = {"mlp": (4,), "lenet": (1, 8, 8)}
PARAMETERS = {"mlp": {"W1": (4, 5), "b1": (5,), "W2": (5, 2), "b2": (2,)},
              "lenet": {"K": (3, 1, 3, 3), "c": (3,), "W": (48, 2), "b": (2,)}}


def forward(model, x, p):
    if model == "mlp":
        return gd.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    pooled = gd.max_pool2d(gd.relu(gd.conv2d(x, p["K"], p["c"], padding=1)), 2)
    return gd.reshape(pooled, (-1, 48)) @ p["W"] + p["b"]


def batch(k, rows, dtype, model="mlp"):
    """Global batch k: it depends on k alone, on every worker."""
    rng = np.random.default_rng(100 + k)
    return (rng.standard_normal((rows, *INPUTS[model])).astype(dtype),
            rng.standard_normal((rows, 2)).astype(dtype))


def initial(dtype, model="mlp"):
    """Parameters that differ between ranks: broadcast_parameters must make them equal."""
    rng = np.random.default_rng(gdd.rank())
    return {name: (rng.standard_normal(shape) * 0.5).astype(dtype)
            for name, shape in PARAMETERS[model].items()}


def train(optimizer, dtype, rows, model, backend="numpy", *, allreduce, steps=STEPS,
          checkpoints=False, directory=None, die=None):
    """The parameters after `steps` steps of `model` on this rank's shard of each global batch;
    with `checkpoints`, resumed from the last checkpoint and checkpointed every 3 steps (in
    `directory`, and in Ray's records under gdd.run); with `die` (a directory), rank 1 dies
    after step 7, once (it leaves a mark in `die`)."""
    x = gd.input("x", (None, *INPUTS[model]), dtype)
    y = gd.input("y", (None, 2), dtype)
    arrays = initial(dtype, model)
    params = {name: gd.input(name, a.shape, dtype) for name, a in arrays.items()}
    loss = gd.mean((forward(model, x, params) - y) ** 2)
    reduce = {"allreduce": "mean", "rows": x} if allreduce else {}
    if optimizer == "sgd":
        opt = gd.optim.sgd(loss, list(params.values()), lr=0.02, momentum=0.9, **reduce)
    else:
        opt = gd.optim.adam(loss, list(params.values()), lr=0.01, **reduce)
    step = gd.compile(loss, updates=opt.updates, **BACKENDS[backend])
    arrays.update(opt.init())
    start = gdd.resume(arrays, directory) if checkpoints else 0
    if not checkpoints:
        gdd.broadcast_parameters(arrays)
    for k in range(start, steps):
        died = os.path.join(str(die), "rank 1 died")
        if die and k == 7 and gdd.rank() == 1 and not os.path.exists(died):  # once
            open(died, "w").close()
            os._exit(1)
        xs, ys = batch(k, rows, dtype, model)
        step(x=gdd.shard(xs), y=gdd.shard(ys), **arrays)
        if checkpoints and (k + 1) % 3 == 0:
            gdd.checkpoint(arrays, k + 1, directory)
    return arrays


def under_torchrun(directory, out, die=False):
    """12 steps of Adam on 7-row batches, checkpointed; rank 0 saves the end state to `out`."""
    gdd.init()
    arrays = train("adam", "float64", 7, "mlp", allreduce=True, steps=12, checkpoints=True,
                   directory=directory, die=directory if die else None)
    if gdd.rank() == 0:
        np.savez(out, **arrays)


def half(directory):
    """The first 6 of `under_torchrun`'s 12 steps, checkpointed into `directory`: a test
    resumes them on another number of workers."""
    return train("adam", "float64", 7, "mlp", allreduce=True, steps=6, checkpoints=True,
                 directory=directory)


def main(rank, world, rendezvous, out, scenario):
    gdd.init(init_method=f"file://{rendezvous}", rank=rank, world_size=world, timeout=20)
    if scenario == "half":  # its checkpoints beside the rendezvous
        half(os.path.join(os.path.dirname(rendezvous), "half"))
        return
    results = {}
    if scenario == "train":  # then rank 1 hangs
        results = {"-".join(map(str, run)) + f"-{name}": value for run in RUNS
                   for name, value in train(*run, allreduce=True).items()}
        results.update(reduced_into_out(rank))
        if rank == 1:
            np.savez(out, **results)
    # both ranks reach this: the group is whole (rank 1's connections are made, its results
    # saved) before it fails
    gdd.allreduce_array(np.ones(1), "sum")
    np.savez(out, **results, **failed_peer(rank, scenario))


def reduced_into_out(rank):
    """allreduce_array(..., out=): x itself reduced in place and returned; another out
    written (a weighted mean too), x left as it was; allreduce_start: its array, reduced in
    place, returned by its wait."""
    x = np.arange(3.0) + rank
    returned = gdd.allreduce_array(x, "sum", out=x)
    y, out = np.full(2, 1.0 + rank), np.empty(2)
    mean = gdd.allreduce_array(y, "mean", weight=rank + 1, out=out)
    z = np.arange(4.0).reshape(2, 2) * (rank + 1)
    travelling = gdd.allreduce_start(z, "mean")
    started = travelling.wait()
    return {"out-x": x, "out-x-returned": returned is x, "out-y": y, "out-mean": out,
            "out-mean-returned": mean is out, "start-mean": z, "start-returned": started is z}


def failed_peer(rank, scenario):
    """Rank 1 dies ("killed") or hangs ("train") where rank 0 reduces: rank 0's
    CollectiveError and how long it took to come."""
    gdd.set_timeout(2)
    if rank == 1:
        if scenario == "killed":
            sys.exit(3)
        time.sleep(60)  # the test ends it first
        sys.exit(4)
    start = time.monotonic()
    try:  # a killed peer is found by a started collective's wait too
        if scenario == "killed":
            gdd.allreduce_start(np.ones(3)).wait()
        gdd.allreduce_array(np.ones(3), "sum")
    except gdd.CollectiveError as error:
        return {"message": str(error), "seconds": time.monotonic() - start}
    return {}


def on_ray(config):
    """Ray Train's worker: `under_torchrun`'s run, its checkpoints in Ray's records alone."""
    gdd.init()
    arrays = train("adam", "float64", 7, "mlp", allreduce=True, steps=12, checkpoints=True,
                   die=config["die"])
    if gdd.rank() == 0:
        np.savez(config["out"], **arrays)


def on_ray_elastic(config):
    """Ray Train's worker of an elastic run (`workers=(1, 2)`): each attempt logs its world
    size and the step it resumed from. On one worker it trains 6 of the 12 steps, asks for a
    second node (the file `grow`) and waits for Ray to restart the run on two; on two it
    trains to the end."""
    gdd.init()
    resume = gdd.resume

    def logged(arrays, directory=None):
        step = resume(arrays, directory)
        with open(config["log"], "a") as log:
            log.write(f"world {gdd.world_size()} rank {gdd.rank()} from step {step}\n")
        return step

    gdd.resume = logged
    if gdd.world_size() == 1:
        train("adam", "float64", 7, "mlp", allreduce=True, steps=6, checkpoints=True)
        open(config["grow"], "w").close()
        time.sleep(config["patience"])
        raise RuntimeError(f"Ray did not resize the run within {config['patience']} s")
    arrays = train("adam", "float64", 7, "mlp", allreduce=True, steps=12, checkpoints=True)
    if gdd.rank() == 0:
        np.savez(config["out"], **arrays)


def elastic(directory):
    """A Ray cluster of one 1-CPU node running `on_ray_elastic` on 1 to 2 workers; a second
    node joins when the one worker asks for it. Ray's record of the end goes to record.npz."""
    import threading

    import ray
    from ray.cluster_utils import Cluster

    directory = Path(directory)
    config = {"grow": str(directory / "grow"), "log": str(directory / "log"),
              "out": str(directory / "out.npz"), "patience": 120}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    ray.init(address=cluster.address)
    ended = {}
    fit = threading.Thread(target=lambda: ended.update(result=gdd.run(
        on_ray_elastic, workers=(1, 2), resize_interval=1.0, config=config,
        storage=str(directory / "ray"))))
    fit.start()
    while fit.is_alive() and not os.path.exists(config["grow"]):
        time.sleep(0.1)
    if fit.is_alive():
        cluster.add_node(num_cpus=1)  # here: starting a node sets this thread's signal handlers
    fit.join()
    result = ended["result"]
    assert result.error is None, result.error
    step, saved = gdd.load_checkpoint(result.checkpoint)
    np.savez(directory / "record.npz", step=step, **saved)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__" and sys.argv[1] == "elastic":
    elastic(sys.argv[2])
elif __name__ == "__main__" and sys.argv[1] == "launch":  # two workers by gdd.launch
    gdd.launch(2)
    under_torchrun(sys.argv[2], sys.argv[3])
elif __name__ == "__main__" and sys.argv[1] == "torchrun":
    under_torchrun(sys.argv[2], sys.argv[3], die=len(sys.argv) > 4)
elif __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
