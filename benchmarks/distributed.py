"""Data-parallel training's cost (graphdl.distributed) against PyTorch DDP, in one run.

The training steps of the examples' LeNet (examples/lenet_fashion_mnist.py: batch 64, 1x28x28)
and MLP (examples/mlp_fashion_mnist.py: 784-256-10, batch 128), float32, momentum SGD as there,
on a fixed random batch:

    1 worker:  this process, the whole batch: graphdl's compiled step (no collective in it) and
               PyTorch eager with torch.optim.SGD;
    2 workers: two processes spawned here, joined in a gloo group by a `file://` rendezvous
               (no port to race for), each stepping on its half of the same global batch:
               graphdl's step with `allreduce="mean", rows=x` (one collective per step) and
               PyTorch's DistributedDataParallel over the same group; and, to separate the
               communication from the work, each one's step on the same half batch without any
               collective ("local"); last, the collective alone on a buffer of the
               gradients' size, called back to back (what gloo's transport costs when
               neither worker is late), graphdl's and torch.distributed's all_reduce.

graphdl's time in the collective is measured directly: `graphdl.distributed.allreduce_array`
(which the generated step calls, looked up at each call) is wrapped here in a timer. It counts
packing the gradients into the buffer, waiting for the other worker (a slower peer's lateness
is time this one spends in the collective), the transfer, and the division. DDP overlaps its
collectives with the backward pass, so its cost is read as step - local step, the same
difference printed for graphdl beside the measured time.

Every process runs --threads threads (default 1: OpenBLAS through threadpoolctl, torch by
`set_num_threads`): two workers use the two cores that one worker leaves half idle, so the ideal
2-worker step is half the 1-worker step. Each repetition takes one step of each implementation
in every process, the order rotating (the same on both ranks: their collectives must pair up);
after --warmup repetitions, --reps are timed, and medians (and the median of the per-repetition
ratios graphdl / PyTorch) are printed. Rank 0's times are reported: a step that reduces waits
for the other rank anyway.

    PYTHONPATH=. python benchmarks/distributed.py [--reps N] [--warmup N] [--models lenet,mlp]
    PYTHONPATH=. python benchmarks/distributed.py --quick       # a few seconds of stepping
    PYTHONPATH=. python benchmarks/distributed.py --word2vec    # and word2vec (~15 min)

--word2vec adds word2vec on 1, 2 and 4 ranks that share no memory beside graphdl's processes
sharing the tables (benchmarks/word2vec.py's `distributed_rows`: words/s, analogies, WordSim).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# this tree's graphdl, the examples, and benchmarks/ (machine.py) where the tests import this
sys.path[:0] = [str(ROOT), str(ROOT / "examples"), str(ROOT / "benchmarks")]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle torch threads must not spin

import lenet_fashion_mnist as lenet_example
import machine
import mlp_fashion_mnist as mlp_example
import torch
import torch.nn.functional as F

import graphdl as gd
import graphdl.distributed as gdd

WORKERS = 2


# ---------------------------------------------------------------- the models
def lenet_torch(x, p):
    """examples/lenet_fashion_mnist.py's `lenet` in PyTorch, on the same parameter layouts."""
    h = F.max_pool2d(F.relu(F.conv2d(x, p["c1w"], p["c1b"], padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["c2w"], p["c2b"])), 2)
    h = F.relu(h.reshape(-1, 16 * 5 * 5) @ p["f1w"] + p["f1b"])
    h = F.relu(h @ p["f2w"] + p["f2b"])
    return h @ p["f3w"] + p["f3b"]


def mlp_torch(x, p):
    """examples/mlp_fashion_mnist.py's `mlp` in PyTorch."""
    return F.relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


# name: (what the table calls it, one row's shape, batch, learning rate, momentum, initial
# parameters from a generator, graphdl's logits, PyTorch's logits)
MODELS = {
    "lenet": ("LeNet (examples/lenet_fashion_mnist.py)", (1, 28, 28), lenet_example.BATCH,
              lenet_example.LR, lenet_example.MOMENTUM, lenet_example.init_params,
              lenet_example.lenet, lenet_torch),
    "mlp": ("MLP 784-256-10 (examples/mlp_fashion_mnist.py)", (784,), mlp_example.BATCH,
            mlp_example.LR, mlp_example.MOMENTUM, lambda rng: mlp_example.init_params(784, rng),
            mlp_example.mlp, mlp_torch),
}


def global_batch(model, seed=0):
    """(x, y, parameters): the same on every worker (one seed)."""
    _, row, batch, *_, init, _, _ = MODELS[model]
    rng = np.random.default_rng(seed)
    params = init(rng)
    x = rng.random((batch, *row), np.float32)  # pixel values in [0, 1), as the examples'
    return x, rng.integers(0, 10, batch), params


def graphdl_step(model, x, y, params, allreduce):
    """A function taking one compiled momentum-SGD step on (x, y), as the example does (keyword
    feeds); with `allreduce`, the gradients averaged over the workers inside the step."""
    _, _, _, lr, mu, _, logits, _ = MODELS[model]
    xi = gd.input("x", (None, *x.shape[1:]))
    yi = gd.input("y", (None,), "int64")
    nodes = {name: gd.input(name, value.shape) for name, value in params.items()}
    loss = gd.softmax_cross_entropy(logits(xi, nodes), yi)
    reduce = {"allreduce": "mean", "rows": xi} if allreduce else {}
    opt = gd.optim.sgd(loss, list(nodes.values()), lr, momentum=mu, **reduce)
    step = gd.compile(loss, updates=opt.updates)
    arrays = {name: value.copy() for name, value in params.items()} | opt.init()
    gdd.broadcast_parameters(arrays)
    return lambda: step(x=x, y=y, **arrays)


def torch_step(model, x, y, params, ddp):
    """A function taking one PyTorch momentum-SGD step on (x, y); with `ddp`, through
    DistributedDataParallel on the default (gloo) group."""
    _, _, _, lr, mu, _, _, logits = MODELS[model]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.ParameterDict(
                {name: torch.nn.Parameter(torch.tensor(value)) for name, value in params.items()})

        def forward(self, inputs):
            return logits(inputs, self.p)

    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=mu)
    if ddp:
        net = torch.nn.parallel.DistributedDataParallel(net)
    tx, ty = torch.tensor(x), torch.tensor(y)
    return lambda: machine.torch_step(opt, F.cross_entropy(net(tx), ty))


# ---------------------------------------------------------------- one process's measurement
def measure(model, reps, warmup):
    """{implementation: [seconds per step]} in this process (one worker, or one of the group),
    and "collective": graphdl's seconds in allreduce_array per step."""
    x, y, params = global_batch(model)
    x, y = gdd.shard(x), gdd.shard(y)  # the whole batch with one worker
    several = gdd.world_size() > 1
    steps = {"graphdl": graphdl_step(model, x, y, params, several),
             "torch": torch_step(model, x, y, params, several)}
    if several:  # the same half batch, nothing communicated
        steps["graphdl local"] = graphdl_step(model, x, y, params, False)
        steps["torch local"] = torch_step(model, x, y, params, False)
    names = list(steps)
    times = {name: [] for name in [*names, "collective"]}
    for rep in range(warmup + reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            SPENT[0] = 0.0
            start = time.perf_counter()
            steps[name]()
            took = time.perf_counter() - start
            if rep >= warmup:
                times[name].append(took)
                if name == "graphdl":
                    times["collective"].append(SPENT[0])
    if several:  # back to back: the workers meet at once, no step's lateness is waited for
        gradients = np.zeros(sum(value.size for value in params.values()), np.float32)
        times["collective alone"] = _durations(
            lambda: gdd.allreduce_array(gradients, "mean", len(x)), reps, warmup)
        tensor = torch.from_numpy(gradients)
        times["torch collective alone"] = _durations(
            lambda: torch.distributed.all_reduce(tensor), reps, warmup)
    return times


def _durations(function, reps, warmup):
    """The seconds of each of `reps` calls of `function` after `warmup` calls."""
    took = []
    for _ in range(warmup + reps):
        start = time.perf_counter()
        function()
        took.append(time.perf_counter() - start)
    return took[warmup:]


def _timed_collectives():
    """Wrap gdd.allreduce_array in a timer: [seconds spent in it since last reset]."""
    spent, reduce = [0.0], gdd.allreduce_array

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return reduce(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    gdd.allreduce_array = timed
    return spent


SPENT = _timed_collectives()  # once: the seconds in graphdl's collective since reset to 0


def worker(rank, rendezvous, out, models, reps, warmup, threads):
    """One of the two workers: join the group, measure each model, rank 0 saves the times."""
    machine.limit_threads(threads)
    gdd.init(init_method=f"file://{rendezvous}", rank=rank, world_size=WORKERS, timeout=300)
    results = {model: measure(model, reps, warmup) for model in models}
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    # Out without the interpreter's teardown: in it, after the group is destroyed, a worker
    # that ran DDP aborted now and then ("terminate called without an active exception",
    # SIGABRT, 3 runs of 14 here, also before this change's tree), failing a finished run.
    sys.stdout.flush()
    os._exit(0)


def spawn_workers(args):
    """The two-worker measurement, in two processes started at once; rank 0's times."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        command = [sys.executable, __file__, "--models", args.models, "--reps", str(args.reps),
                   "--warmup", str(args.warmup), "--threads", str(args.threads), "--worker"]
        procs = [subprocess.Popen([*command, str(rank), str(Path(tmp) / "rendezvous"),
                                   str(out)], env=env) for rank in range(WORKERS)]
        codes = [proc.wait() for proc in procs]
        if any(codes):
            sys.exit(f"a worker failed (exit codes {codes})")
        return json.loads(out.read_text())


# ---------------------------------------------------------------- the step table
def step_table(args):
    """Measure one worker here, then two, and print a table per model."""
    models = args.models.split(",")
    machine.limit_threads(args.threads)
    one = {model: measure(model, args.reps, args.warmup) for model in models}
    two = spawn_workers(args)
    for model in models:
        print_model(model, one[model], two[model])


def print_model(model, one, two):
    title, _, batch, *_ = MODELS[model]
    _, _, params = global_batch(model)
    size = sum(value.size for value in params.values())

    def ms(times):
        return statistics.median(times) * 1e3

    def ratio(a, b):
        return statistics.median(np.array(a) / np.array(b))

    print(f"\n{title}: {size:,} parameters ({size * 4 / 1024:.0f} KiB of float32 gradients "
          f"reduced per step)")
    print(f"{'workers':>7} {'rows':>5} | {'graphdl':>8} {'in coll.':>8} {'- local':>8} | "
          f"{'PyTorch':>8} {'- local':>8} | {'graphdl/PyTorch':>15} | {'speed-up':>8} {'torch':>6}")
    print(f"{'':>7} {'each':>5} | {'ms/step':>8} {'ms':>8} {'ms':>8} | "
          f"{'ms/step':>8} {'ms':>8} | {'median ratio':>15} | {'graphdl':>8} {'':>6}")
    g1, t1 = ms(one["graphdl"]), ms(one["torch"])
    print(f"{1:>7} {batch:>5} | {g1:8.3f} {'-':>8} {'-':>8} | {t1:8.3f} {'-':>8} | "
          f"{ratio(one['graphdl'], one['torch']):15.2f} | {1:8.2f} {1:6.2f}")
    g2, t2 = ms(two["graphdl"]), ms(two["torch"])
    print(f"{WORKERS:>7} {batch // WORKERS:>5} | {g2:8.3f} {ms(two['collective']):8.3f} "
          f"{g2 - ms(two['graphdl local']):8.3f} | {t2:8.3f} {t2 - ms(two['torch local']):8.3f} | "
          f"{ratio(two['graphdl'], two['torch']):15.2f} | {g1 / g2:8.2f} {t1 / t2:6.2f}")
    print(f"  local steps on the same half batch, no collective: graphdl "
          f"{ms(two['graphdl local']):.3f} ms, PyTorch {ms(two['torch local']):.3f} ms; "
          f"graphdl's collective is {ms(two['collective']) / g2:.0%} of its 2-worker step")
    print(f"  the collective alone, back to back: gdd.allreduce_array of {size:,} float32 and "
          f"the weight {ms(two['collective alone']):.3f} ms, torch.distributed.all_reduce of "
          f"the {size:,} {ms(two['torch collective alone']):.3f} ms")


# ---------------------------------------------------------------- word2vec
def word2vec_table(args):
    """word2vec's words/s and quality on ranks that share no memory (--distributed, replicas
    combined in rounds) beside the shared-memory processes, from benchmarks/word2vec.py; a run
    of minutes per row on the whole corpus, so only with --word2vec."""
    import word2vec  # benchmarks/word2vec.py, beside this file

    word2vec.distributed_rows(words=args.word2vec_words or None, epochs=args.word2vec_epochs,
                              workers=tuple(int(w) for w in args.word2vec_workers.split(",")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200, help="timed repetitions (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed first repetitions")
    parser.add_argument("--threads", type=int, default=1, help="threads per process (default 1)")
    parser.add_argument("--models", default="lenet,mlp", help="of: " + ",".join(MODELS))
    parser.add_argument("--quick", action="store_true", help="20 repetitions after 5")
    parser.add_argument("--word2vec", action="store_true",
                        help="also word2vec across processes (benchmarks/word2vec.py's "
                             "distributed rows: minutes per row)")
    parser.add_argument("--word2vec-words", type=int, default=0,
                        help="the corpus's first WORDS tokens (default 0: all of it)")
    parser.add_argument("--word2vec-epochs", type=int, default=5)
    parser.add_argument("--word2vec-workers", default="1,2,4", help="rank counts")
    parser.add_argument("--worker", nargs=3, metavar=("RANK", "RENDEZVOUS", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.reps, args.warmup = 20, 5
    if args.worker:
        rank, rendezvous, out = args.worker
        worker(int(rank), rendezvous, out, args.models.split(","), args.reps, args.warmup,
               args.threads)
        return
    print(f"data-parallel steps, float32, {args.threads} thread(s) per process; graphdl "
          f"{machine.source_version()}, torch {torch.__version__}, numpy {np.__version__}; "
          f"{machine.cpu_model()}, {os.cpu_count()} CPUs; median of {args.reps} repetitions "
          f"after {args.warmup}")
    step_table(args)
    if args.word2vec:
        word2vec_table(args)


if __name__ == "__main__":
    main()
