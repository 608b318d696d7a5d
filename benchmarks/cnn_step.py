"""One training step of a LeNet-style CNN: graphdl's NumPy backend against PyTorch CPU eager.

The step (batch 64, input 3x32x32, float32): conv 6@5x5 -> ReLU -> maxpool 2 -> conv 16@5x5 ->
ReLU -> maxpool 2 -> FC 120 -> ReLU -> FC 84 -> ReLU -> FC 10, softmax cross-entropy, gradients
of all ten parameters and `p -= lr * dp` in place.

    graphdl: `gd.compile(loss, updates={p: p - lr * dp})`; its generated `run(*arrays)` is timed
             (the keyword-feed wrapper adds ~30 us, reported separately)
    torch:   eager autograd, `p.sub_(lr * p.grad)` under no_grad

Both first take one step from identical weights and must agree. Then, after a warm-up, they run
interleaved in one process (one call each per repetition, the order alternating); medians and
the median of the per-repetition ratios are printed. Both use the same number of threads
(--threads, default: torch's default, which is also given to OpenBLAS when threadpoolctl is
installed); torch runs with OMP_WAIT_POLICY=PASSIVE unless the environment sets it, so its idle
OpenMP threads do not spin against NumPy's.

Then the peak memory of one step beyond what it holds before it (see `peak_memory.py`): RSS
in a fresh process per framework, and tracemalloc for graphdl (`--no-memory` skips both).

    PYTHONPATH=. python benchmarks/cnn_step.py [--reps N] [--threads N] [--profile] [--no-memory]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import peak_memory
from machine import limit_threads

import graphdl as gd

BATCH, LR = 64, 0.01
SHAPES = {
    "c1w": (6, 3, 5, 5), "c1b": (6,), "c2w": (16, 6, 5, 5), "c2b": (16,),
    "f1w": (400, 120), "f1b": (120,), "f2w": (120, 84), "f2b": (84,), "f3w": (84, 10),
    "f3b": (10,),
}
# multiply-accumulates of the forward pass per image: conv1, conv2, the three FC layers
MACS = 6 * 28 * 28 * 75 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in SHAPES.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
        scale = 0.0 if len(shape) == 1 else np.sqrt(2.0 / fan_in)
        params[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    x = rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    return x, y, params


def lenet(x, p):
    h = gd.max_pool2d(gd.relu(gd.conv2d(x, p["c1w"], p["c1b"])), 2)
    h = gd.max_pool2d(gd.relu(gd.conv2d(h, p["c2w"], p["c2b"])), 2)
    h = gd.reshape(h, (-1, 400))
    h = gd.relu(h @ p["f1w"] + p["f1b"])
    h = gd.relu(h @ p["f2w"] + p["f2b"])
    return h @ p["f3w"] + p["f3b"]


def make_graphdl(x, y, params):
    xi = gd.input("x", x.shape, x.dtype.name)
    yi = gd.input("y", y.shape, "int64")
    p = {name: gd.input(name, shape, x.dtype.name) for name, shape in SHAPES.items()}
    loss = gd.softmax_cross_entropy(lenet(xi, p), yi)
    grads = gd.grad(loss, list(p.values()))
    fn = gd.compile(loss, updates={v: v - LR * g for v, g in zip(p.values(), grads)})
    feeds = {"x": x, "y": y, **params}
    fn(feeds)  # compiles (and takes one step)
    run = fn.specialize({name: np.shape(v) for name, v in feeds.items()}).run
    args = [feeds[name] for name in fn.input_names]

    def step():
        return run(*args)

    step.run = run  # the generated function: its module holds the pooled work buffers
    return step, (lambda: fn(feeds)), fn


def make_torch(x, y, params):
    import torch
    import torch.nn.functional as F

    t = {name: torch.tensor(v, requires_grad=True) for name, v in params.items()}
    tx, ty = torch.tensor(x), torch.tensor(y)

    def step():
        h = F.max_pool2d(F.relu(F.conv2d(tx, t["c1w"], t["c1b"])), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, t["c2w"], t["c2b"])), 2)
        h = h.reshape(-1, 400)
        h = F.relu(h @ t["f1w"] + t["f1b"])
        h = F.relu(h @ t["f2w"] + t["f2b"])
        loss = F.cross_entropy(h @ t["f3w"] + t["f3b"], ty)
        for v in t.values():
            v.grad = None
        loss.backward()
        with torch.no_grad():
            for v in t.values():
                v.sub_(LR * v.grad)
        return loss

    return step, t


def check_agreement(x, y, params):
    """One step each from the same weights, in float64: the same updated weights. In float32
    the two legitimately differ by up to ~1e-2 of an update: with zero biases, windows of
    conv2's ReLU output are all zero but for values within float32 rounding of 0 (~1e-6 for
    sums of 150 products), and which side of 0 each lands on decides where max-pooling
    routes the window's gradient. Float64 moves that boundary out of the way."""
    import torch  # noqa: F401

    x = x.astype(np.float64)
    params = {k: v.astype(np.float64) for k, v in params.items()}
    mine = {k: v.copy() for k, v in params.items()}
    make_graphdl(x, y, mine)  # make_graphdl already took one step on `mine`
    step, t = make_torch(x, y, {k: v.copy() for k, v in params.items()})
    step()
    worst = 0.0
    for name in SHAPES:  # float32 sums over 50k terms: compare the updates, relative to size
        ours, theirs = mine[name] - params[name], t[name].detach().numpy() - params[name]
        worst = max(worst, float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))))
    return worst


def profile(fn, reps):
    """Median time of each statement of the generated `run` (by line), over `reps` calls."""
    program = fn._last
    lines = program.source.splitlines()
    code = compile(program.source, "<profiled>", "exec")
    namespace = {"__name__": "profiled"}
    exec(code, namespace)  # noqa: S102 - graphdl's own generated module
    times = {}
    last = [None, 0.0]

    def tracer(frame, event, arg):
        if frame.f_code.co_name != "run":
            return None
        now = time.perf_counter()
        if last[0] is not None:
            times.setdefault(last[0], []).append(now - last[1])
        last[0] = frame.f_lineno if event == "line" else None
        last[1] = time.perf_counter()
        return tracer

    feeds_args = profile.args
    for _ in range(reps):
        sys.settrace(tracer)
        namespace["run"](*feeds_args)
        sys.settrace(None)
        last[0] = None
    rows = sorted(((statistics.median(v), k) for k, v in times.items()), reverse=True)
    total = sum(t for t, _ in rows)
    print(f"\nper statement (median over {reps} calls, {total * 1e3:.2f} ms in all):")
    for t, k in rows[:14]:
        print(f"  {t * 1e3:7.3f} ms  {lines[k - 1].strip()[:110]}")


def peak_child(name):
    """The `--peak-child` process: one framework's step, its RSS peak printed (in bytes)."""
    x, y, params = make_data()
    step = make_graphdl(x, y, params)[0] if name == "graphdl" else make_torch(x, y, params)[0]
    print(peak_memory.rss_peak(step))


def measure_memory(run, threads):
    """The peak-memory table: RSS of each framework in its own process, tracemalloc here."""
    rss = peak_memory.rss_peaks(Path(__file__), ["graphdl", "torch"], ["--threads", str(threads)])
    traced = {"graphdl": peak_memory.traced_peak(run)}
    peak_memory.print_table({"graphdl": "graphdl (generated run)", "torch": "torch eager"}, rss,
                            traced, peak_memory.scratch_bytes(run.run))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both (default: torch's default)")
    parser.add_argument("--profile", action="store_true", help="time each generated statement")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    parser.add_argument("--peak-child", choices=["graphdl", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    threads = args.threads or torch.get_num_threads()
    blas = limit_threads(threads)
    if args.peak_child:
        return peak_child(args.peak_child)
    print(f"LeNet step, batch {BATCH}, 3x32x32, float32; torch {torch.__version__}, "
          f"numpy {np.__version__}; {threads} thread(s), {blas}; {os.cpu_count()} CPUs")
    x, y, params = make_data()
    worst = check_agreement(x, y, params)
    verdict = "agree" if worst < 1e-9 else "DISAGREE"
    print(f"one step from the same weights: graphdl and torch {verdict}; largest difference of "
          f"an update, relative to the update's largest entry: {worst:.1e}")

    run, call, fn = make_graphdl(x, y, {k: v.copy() for k, v in params.items()})
    tstep, _ = make_torch(x, y, {k: v.copy() for k, v in params.items()})
    for _ in range(10):
        run()
        tstep()
    g_times, t_times, ratios, c_times, cpu_ratios = [], [], [], [], []
    for rep in range(args.reps):
        order = [("g", run), ("t", tstep)] if rep % 2 == 0 else [("t", tstep), ("g", run)]
        got, cpu = {}, {}
        for name, f in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            f()
            got[name] = time.perf_counter() - start
            cpu[name] = time.process_time() - start_cpu
        g_times.append(got["g"])
        t_times.append(got["t"])
        ratios.append(got["g"] / got["t"])
        cpu_ratios.append(cpu["g"] / cpu["t"])
        if rep % 10 == 0:
            start = time.perf_counter()
            call()
            c_times.append(time.perf_counter() - start)
    g, t = statistics.median(g_times), statistics.median(t_times)
    flops = 3 * 2 * MACS * BATCH  # forward + two backward products per layer
    print(f"graphdl (generated run): median {g * 1e3:6.2f} ms   "
          f"p10 {np.percentile(g_times, 10) * 1e3:6.2f} ms   ~{flops / g / 1e9:5.1f} GFLOP/s")
    print(f"graphdl (fn(feeds)):     median {statistics.median(c_times) * 1e3:6.2f} ms")
    print(f"torch eager:             median {t * 1e3:6.2f} ms   "
          f"p10 {np.percentile(t_times, 10) * 1e3:6.2f} ms   ~{flops / t / 1e9:5.1f} GFLOP/s")
    print(f"ratio graphdl / torch:   median of per-repetition ratios "
          f"{statistics.median(ratios):.2f}x  (target <= 1.0x on one thread)")
    print(f"ratio of CPU times:      median of per-repetition ratios "
          f"{statistics.median(cpu_ratios):.2f}x  (process_time, all threads: steadier than "
          f"wall time when other jobs share the cores)")
    if not args.no_memory:
        measure_memory(run, threads)
    if args.profile:
        profile.args = [{"x": x, "y": y, **params}[n] for n in fn.input_names]
        profile(fn, 30)


if __name__ == "__main__":
    main()
