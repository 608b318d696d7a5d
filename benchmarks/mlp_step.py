"""One SGD step of a 784-256-10 MLP, three ways, timed against NumPy's own GEMM rate.

The step: h = relu(x @ W1 + b1), logits = h @ W2 + b2, loss = softmax cross-entropy with integer
labels (mean over the batch), gradients of all four parameters, and `p -= lr * dp` in place;
batch 128, float32.

    (a)  graphdl: `gd.compile(loss, updates={p: p - lr * dp})`, called with keyword feeds
    (a') the same generated `run(*arrays)` called directly (no feed checks): the wrapper's cost
    (b)  numpy:   a hand-written step (stable softmax, dlogits = p - onehot, in-place updates)
    (c)  torch:   PyTorch CPU eager, autograd, `p.sub_(lr * p.grad)` under no_grad (if installed)
    (g)  the step's 5 matrix products alone on the same shapes: the "GEMM floor"

First (a), (b) and (c) take one step from identical weights and must agree (loss and updated
weights, float32 tolerances). Then, after a warm-up, all run round-robin, one call each per
repetition (the order rotates). Reported: medians and 10th percentiles, ratios to (b), GFLOP/s
on the 5 products' FLOPs, and the fraction of NumPy's GEMM rate (floor time / step time).

torch runs with OMP_WAIT_POLICY=PASSIVE unless the environment sets it (or --omp-active): with
OpenMP's default spinning, torch's idle threads hold the second core after each op and slow
whatever runs next in the interleaved loop (the GEMM floor measured 2x slower).

    PYTHONPATH=. python benchmarks/mlp_step.py [--reps N] [--quick] [--profile] [--threads N]

Then the peak memory of one step beyond what it holds before it (see `peak_memory.py`): RSS in
a fresh process per implementation, and tracemalloc for the two NumPy steps (`--no-memory`
skips both).

`--profile` also times every statement of graphdl's generated `run` and of the hand-written step
(medians, the two interleaved). The OpenBLAS kernel NumPy runs is printed: see the README.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import platform
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import peak_memory
from machine import ROOT, cpu_model, source_version

sys.path.insert(0, str(ROOT))

import graphdl as gd

BATCH, D_IN, D_HID, N_CLASSES = 128, 784, 256, 10
LR = 0.1
DTYPE = np.float32
PARAMS = ("W1", "b1", "W2", "b2")
# the 5 matrix products of one step (m, n, k): x@W1, h@W2, dlogits@W2.T, h.T@dlogits, x.T@dh
GEMMS = [(BATCH, D_HID, D_IN), (BATCH, N_CLASSES, D_HID), (BATCH, D_HID, N_CLASSES),
         (D_HID, N_CLASSES, BATCH), (D_IN, D_HID, BATCH)]
STEP_FLOPS = sum(2 * m * n * k for m, n, k in GEMMS)


# ---------------------------------------------------------------- the machine
def blas_info():
    """Which BLAS NumPy runs: library, version, kernel (core type) and threads."""
    env = {k: os.environ.get(k, "<unset>") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                     "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    env_text = " ".join(f"{k}={v}" for k, v in env.items())
    try:
        import threadpoolctl
    except ImportError:
        config = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        return (f"{config.get('name', '?')} {config.get('version', '?')} (kernel unknown: "
                f"pip install threadpoolctl); {env_text}")
    lines = []
    for lib in threadpoolctl.threadpool_info():
        if lib.get("user_api") == "blas" and "numpy" in lib.get("filepath", ""):
            lines.append(f"{lib['internal_api']} {lib.get('version')} kernel="
                         f"{lib.get('architecture')} threads={lib['num_threads']}")
    return "; ".join(lines or ["no BLAS found by threadpoolctl"]) + f"; {env_text}"


# ---------------------------------------------------------------- data
def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, D_IN)).astype(DTYPE)
    y = rng.integers(0, N_CLASSES, BATCH).astype(np.int64)
    params = {
        "W1": (rng.standard_normal((D_IN, D_HID)) * np.sqrt(2 / D_IN)).astype(DTYPE),
        "b1": (rng.standard_normal(D_HID) * 0.01).astype(DTYPE),
        "W2": (rng.standard_normal((D_HID, N_CLASSES)) * np.sqrt(1 / D_HID)).astype(DTYPE),
        "b2": (rng.standard_normal(N_CLASSES) * 0.01).astype(DTYPE),
    }
    return x, y, params


# ---------------------------------------------------------------- (a) graphdl
def graphdl_step_fn():
    x = gd.input("x", (BATCH, D_IN))
    y = gd.input("y", (BATCH,), "int64")
    W1, b1 = gd.input("W1", (D_IN, D_HID)), gd.input("b1", (D_HID,))
    W2, b2 = gd.input("W2", (D_HID, N_CLASSES)), gd.input("b2", (N_CLASSES,))
    h = gd.relu(x @ W1 + b1)
    loss = gd.softmax_cross_entropy(h @ W2 + b2, y)
    params = [W1, b1, W2, b2]
    grads = gd.grad(loss, params)
    return gd.compile(loss, updates={p: p - LR * g for p, g in zip(params, grads)})


def make_graphdl(x, y, params):
    fn = graphdl_step_fn()
    p = {k: v.copy() for k, v in params.items()}

    def step():
        return float(fn(x=x, y=y, **p))

    return step, p, fn


def graphdl_run_only(fn, x, y, params):
    """The generated `run` called directly: the step without `Compiled.__call__`'s feed checks."""
    arrays = {"x": x, "y": y, **{k: v.copy() for k, v in params.items()}}
    args = [arrays[name] for name in fn.input_names]
    run = fn.specialize({name: a.shape for name, a in zip(fn.input_names, args)}).run
    return lambda: run(*args)


# ---------------------------------------------------------------- (b) hand-written NumPy
def numpy_step(x, y, W1, b1, W2, b2, lr):
    n = x.shape[0]
    h = x @ W1
    h += b1
    np.maximum(h, 0, out=h)  # relu in place: h > 0 exactly where x @ W1 + b1 > 0
    z = h @ W2
    z += b2
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = np.log(s).sum() / n - z[rows, y].sum() / n
    e /= s  # softmax probabilities
    e[rows, y] -= 1
    e *= 1 / n  # dloss/dlogits
    dh = e @ W2.T
    dh *= h > 0
    dW2 = h.T @ e
    db2 = e.sum(axis=0)
    dW1 = x.T @ dh
    db1 = dh.sum(axis=0)
    dW1 *= lr
    W1 -= dW1
    b1 -= lr * db1
    dW2 *= lr
    W2 -= dW2
    b2 -= lr * db2
    return loss


def make_numpy(x, y, params):
    p = {k: v.copy() for k, v in params.items()}
    W1, b1, W2, b2 = (p[k] for k in PARAMS)

    def step():
        return float(numpy_step(x, y, W1, b1, W2, b2, LR))

    return step, p


# ---------------------------------------------------------------- (c) PyTorch eager
def make_torch(x, y, params):
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    W1, b1, W2, b2 = (p[k] for k in PARAMS)
    cross_entropy = torch.nn.functional.cross_entropy

    def step():
        h = torch.relu(xt @ W1 + b1)
        loss = cross_entropy(h @ W2 + b2, yt)
        loss.backward()
        with torch.no_grad():
            for t in (W1, b1, W2, b2):
                t.sub_(LR * t.grad)
                t.grad = None  # zero the gradients the way optimizer.zero_grad() does
        return loss.item()

    return step, p


# ---------------------------------------------------------------- (g) the 5 products alone
def make_gemms(x, params):
    rng = np.random.default_rng(1)
    h = rng.random((BATCH, D_HID), dtype=DTYPE)
    dlogits = rng.random((BATCH, N_CLASSES), dtype=DTYPE)
    dh = rng.random((BATCH, D_HID), dtype=DTYPE)
    W1, W2 = params["W1"], params["W2"]

    def step():
        x @ W1
        h @ W2
        dlogits @ W2.T
        h.T @ dlogits
        x.T @ dh

    return step


# ---------------------------------------------------------------- agreement
def check_agreement(impls, params):
    """One step each from the same weights: losses and updated weights must agree."""
    print("agreement after one step from identical weights "
          "(np.allclose rtol=1e-5 atol=1e-6 on weights, rtol=1e-5 on the loss):")
    ref_loss = impls["numpy"][0]()
    ref = impls["numpy"][1]
    ok = True
    for name, (step, p) in impls.items():
        loss = ref_loss if name == "numpy" else step()
        got = {k: np.asarray(v.detach().numpy() if hasattr(v, "detach") else v) for k, v in
               p.items()}
        close_loss = bool(np.isclose(loss, ref_loss, rtol=1e-5, atol=0))
        parts = [f"loss {loss:.7f} {'ok' if close_loss else 'MISMATCH'}"]
        ok &= close_loss
        for k in PARAMS:
            close = bool(np.allclose(got[k], ref[k], rtol=1e-5, atol=1e-6))
            ok &= close
            update = np.abs(ref[k] - params[k]).max()
            diff = np.abs(got[k] - ref[k]).max()
            parts.append(f"{k} {'ok' if close else 'MISMATCH'} (max|diff| {diff:.1e}, "
                         f"max|update| {update:.1e})")
        print(f"  {name:8s} " + ", ".join(parts))
    print("  -> all agree" if ok else "  -> DISAGREEMENT")
    return ok


# ---------------------------------------------------------------- timing
def bench(fns, reps, warmup):
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times = {n: [] for n in names}
    clock = time.perf_counter
    for r in range(reps):
        k = r % len(names)
        for n in names[k:] + names[:k]:  # rotate the order so no one always goes first
            f = fns[n]
            t0 = clock()
            f()
            times[n].append(clock() - t0)
    return {n: np.array(t) for n, t in times.items()}


def report(times, labels):
    """Medians (and 10th percentiles, less disturbed by other jobs on a shared machine)."""
    stats = {n: (float(np.median(t)), *np.percentile(t, [10, 90])) for n, t in times.items()}
    gemm, gemm10, _ = stats["gemm"]
    base, base10, _ = stats["numpy"]
    print(f"\nstep FLOPs (5 matrix products, 2*m*n*k): {STEP_FLOPS / 1e6:.1f} MFLOP; "
          f"GEMM floor (the 5 products alone): median {gemm * 1e3:.3f} ms = "
          f"{STEP_FLOPS / gemm / 1e9:.1f} GFLOP/s (p10 {gemm10 * 1e3:.3f} ms = "
          f"{STEP_FLOPS / gemm10 / 1e9:.1f} GFLOP/s)")
    print(f"{'':24s} {'median ms':>9s} {'p10 ms':>7s} {'p90 ms':>7s} | {'vs numpy':>8s} "
          f"{'GFLOP/s':>7s} {'of GEMM':>7s} | p10: {'vs numpy':>8s} {'of GEMM':>7s}")
    for n, label in labels.items():
        med, p10, p90 = stats[n]
        print(f"{label:24s} {med * 1e3:9.3f} {p10 * 1e3:7.3f} {p90 * 1e3:7.3f} | "
              f"{med / base:7.2f}x {STEP_FLOPS / med / 1e9:7.1f} {gemm / med:7.0%} | "
              f"     {p10 / base10:7.2f}x {gemm10 / p10:7.0%}")
    print("(of GEMM: the GEMM floor's time over the step's, i.e. the fraction of NumPy's GEMM "
          "rate on these shapes the whole step reaches)")


# ---------------------------------------------------------------- per-statement profile
class _Timed(ast.NodeTransformer):
    """Wrap each top-level statement of one function in perf_counter calls."""

    def __init__(self, func):
        self.func, self.lines = func, []

    def visit_FunctionDef(self, node):
        if node.name != self.func:
            return node
        body = []
        for stmt in node.body:
            if isinstance(stmt, ast.Return):
                body.append(stmt)
                continue
            i = len(self.lines)
            self.lines.append(stmt.lineno)
            body += ast.parse("_t0_ = _clock_()").body
            body.append(stmt)
            body += ast.parse(f"_T_[{i}].append(_clock_() - _t0_)").body
        node.body = body
        return node


def instrument(source, func, namespace=None):
    """`func` from `source` with every statement timed: (function, statement texts, times)."""
    tree = _Timed(func)
    module = ast.fix_missing_locations(tree.visit(ast.parse(source)))
    times = [[] for _ in range(10_000)]
    ns = dict(namespace or {})
    ns.update(_clock_=time.perf_counter, _T_=times)
    exec(compile(module, f"<profiled {func}>", "exec"), ns)  # noqa: S102 - our own source
    src = source.splitlines()
    return ns[func], [src[line - 1].strip() for line in tree.lines], times


def profile(x, y, params, fn, reps, warmup):
    """Per-statement medians of graphdl's generated run() and of numpy_step(), interleaved."""
    arrays = {"x": x, "y": y, **{k: v.copy() for k, v in params.items()}}
    g_args = [arrays[name] for name in fn.input_names]
    p = {k: v.copy() for k, v in params.items()}
    h_args = [x, y, *(p[k] for k in PARAMS), LR]
    g, g_text, g_times = instrument(fn.source, "run")
    h, h_text, h_times = instrument(textwrap.dedent(inspect.getsource(numpy_step)), "numpy_step",
                                    {"np": np})
    totals = {"g": [], "h": []}
    clock = time.perf_counter
    for r in range(warmup + reps):
        if r == warmup:
            for t in g_times + h_times:
                t.clear()
            totals = {"g": [], "h": []}
        for key, f, a in ((("g", g, g_args), ("h", h, h_args))[::1 if r % 2 else -1]):
            t0 = clock()
            f(*a)
            totals[key].append(clock() - t0)
    for title, key, text, times in (("graphdl generated run()", "g", g_text, g_times),
                                    ("hand-written numpy_step()", "h", h_text, h_times)):
        med = [float(np.median(times[i])) for i in range(len(text))]
        total = float(np.median(totals[key]))
        print(f"\n{title}: median {total * 1e3:.3f} ms per call instrumented, sum of statement "
              f"medians {sum(med) * 1e3:.3f} ms; per statement (median over {reps} calls):")
        for t, line in zip(med, text):
            line = line if len(line) <= 90 else line[:87] + "..."
            print(f"  {t * 1e6:7.1f} us {t / sum(med):6.1%}  {line}")


# ---------------------------------------------------------------- main
# ---------------------------------------------------------------- peak memory
MAKERS = {"graphdl": make_graphdl, "numpy": make_numpy, "torch": make_torch}


def peak_child(name):
    """The `--peak-child` process: one implementation's step, its RSS peak printed (bytes)."""
    x, y, params = make_data()
    print(peak_memory.rss_peak(MAKERS[name](x, y, params)[0]))


def measure_memory(impls, fn, threads):
    """The peak-memory table: RSS of each implementation in its own process, tracemalloc of
    the NumPy steps here."""
    args = ["--threads", str(threads)] if threads else []
    args += ["--no-torch"] if "torch" not in impls else []
    rss = peak_memory.rss_peaks(Path(__file__), list(impls), args)
    traced = {name: peak_memory.traced_peak(impls[name][0]) for name in ("graphdl", "numpy")}
    labels = {"graphdl": "(a) graphdl", "numpy": "(b) hand-written numpy",
              "torch": "(c) torch eager"}
    run = fn.specialize({"x": (BATCH, D_IN), "y": (BATCH,), "W1": (D_IN, D_HID),
                         "b1": (D_HID,), "W2": (D_HID, N_CLASSES), "b2": (N_CLASSES,)}).run
    peak_memory.print_table({n: labels[n] for n in impls}, rss, traced,
                            peak_memory.scratch_bytes(run))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=500, help="timed repetitions (default 500)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="a few reps only: a smoke test for CI")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--omp-active", action="store_true",
                    help="keep OpenMP's default (spinning) wait policy for torch instead of "
                         "OMP_WAIT_POLICY=PASSIVE (see the README: its idle threads then steal "
                         "the second core from OpenBLAS in the interleaved loop)")
    ap.add_argument("--threads", type=int,
                    help="limit NumPy's BLAS (threadpoolctl) and torch to N threads "
                         "(default: leave both at their defaults)")
    ap.add_argument("--profile", action="store_true",
                    help="also time each statement of graphdl's run() and the hand-written step")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    ap.add_argument("--peak-child", choices=list(MAKERS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.warmup = 5, 2

    if args.threads:
        import threadpoolctl

        threadpoolctl.threadpool_limits(args.threads)
    if args.peak_child:
        if args.peak_child == "torch":
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            import torch

            if args.threads:
                torch.set_num_threads(args.threads)
        return peak_child(args.peak_child)
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs; Python "
          f"{platform.python_version()}; numpy {np.__version__}")
    print(f"numpy BLAS: {blas_info()}")
    print(f"graphdl tree: {source_version()}")
    torch = None
    if not args.no_torch and not args.omp_active:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads libgomp
    if not args.no_torch:
        try:
            import torch

            if args.threads:
                torch.set_num_threads(args.threads)
            print(f"torch {torch.__version__}, {torch.get_num_threads()} threads"
                  f"{'' if args.threads else ' (default)'}, OMP_WAIT_POLICY="
                  f"{os.environ.get('OMP_WAIT_POLICY', '<unset>')}")
        except ImportError:
            print("torch: not installed, skipped (pip install torch==2.13.0)")
    print(f"step: batch {BATCH}, {D_IN}-{D_HID}-{N_CLASSES}, float32, lr {LR}\n")

    x, y, params = make_data()
    t0 = time.perf_counter()
    g_step, g_params, fn = make_graphdl(x, y, params)
    impls = {"graphdl": (g_step, g_params), "numpy": make_numpy(x, y, params)}
    g_step()  # compiles on the first call; the agreement check runs a fresh copy below
    compile_s = time.perf_counter() - t0
    if torch is not None:
        impls["torch"] = make_torch(x, y, params)
    g_params.update({k: v.copy() for k, v in params.items()})
    ok = check_agreement(impls, params)
    print(f"graphdl build + grad + compile + first call: {compile_s:.2f} s; generated source: "
          f"{len(fn.source.splitlines())} lines")

    fns = {name: step for name, (step, _) in impls.items()}
    fns["run"] = graphdl_run_only(fn, x, y, params)
    fns["gemm"] = make_gemms(x, params)
    times = bench(fns, args.reps, args.warmup)
    labels = {"graphdl": "(a) graphdl", "run": "(a') graphdl run() only",
              "numpy": "(b) hand-written numpy"}
    if torch is not None:
        labels["torch"] = "(c) torch eager"
    labels["gemm"] = "(g) 5 GEMMs alone"
    print(f"\n{args.reps} round-robin repetitions after {args.warmup} warm-up")
    report(times, labels)
    if not args.no_memory:
        measure_memory({name: impl for name, impl in impls.items()}, fn, args.threads)
    if args.profile:
        profile(x, y, params, fn, args.reps, args.warmup)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
