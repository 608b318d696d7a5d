"""Time to first result vs graph size: an L-layer tanh MLP, graphdl vs JAX jit vs PyTensor.

The model: width 64, batch 16, float32, h <- tanh(h @ W_i + b_i) for i < L, loss = mean(h * h),
gradients with respect to every W_i and b_i. For each L every measurement runs in a fresh Python
subprocess (so no in-process cache helps; imports are timed apart), with Python's default
recursion limit, and the external frameworks under a time limit:

    graphdl:  build the graph | gd.grad | gd.compile + first call (optimize, generate, exec, run)
    JAX:      trace (jit(value_and_grad(f)).lower) | XLA compile | first call
    PyTensor: build the graph | pytensor.grad | pytensor.function + first call

    PYTHONPATH=. python benchmarks/compile_time.py [--sizes 10,100,1000] [--no-external]

JAX and PyTensor are optional (pip install jax jaxlib pytensor): missing ones are reported and
skipped. PyTensor runs twice: its default mode (3.x: the numba backend) and mode="CVM" (its C
backend). It keeps compiled code in an on-disk cache; each measurement starts from a fresh copy
of a cache that an L=2 run filled with PyTensor's own library code, so no graph-specific code is
reused from an earlier measurement (a user's first compile of that graph, not their first
session). JAX's persistent compilation cache is off unless configured.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import ROOT, source_version

WIDTH, BATCH = 64, 16


def data(layers, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    Ws = [(rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
          for _ in range(layers)]
    bs = [(rng.standard_normal(WIDTH) * 0.1).astype(np.float32) for _ in range(layers)]
    return x, Ws, bs


def reference_loss(x, Ws, bs):
    h = x
    for W, b in zip(Ws, bs):
        h = np.tanh(h @ W + b)
    return float(np.mean(h * h))


# ---------------------------------------------------------------- workers (one per subprocess)
class Phases:
    """Times named phases into `result`, printing it after each so a timeout keeps the rest."""

    def __init__(self, **result):
        self.result = result

    @contextlib.contextmanager
    def __call__(self, name):
        self.result["stage"] = name
        print("PARTIAL " + json.dumps(self.result), flush=True)
        t = time.perf_counter()
        yield
        self.result[f"{name}_s"] = time.perf_counter() - t
        print("PARTIAL " + json.dumps(self.result), flush=True)


def work_graphdl(layers, phase):
    with phase("import"):
        import graphdl as gd
    x_np, Ws_np, bs_np = data(layers)
    r = phase.result
    with phase("build"):
        x = gd.input("x", (BATCH, WIDTH))
        params = []
        h = x
        for i in range(layers):
            W, b = gd.input(f"W{i}", (WIDTH, WIDTH)), gd.input(f"b{i}", (WIDTH,))
            params += [W, b]
            h = gd.tanh(h @ W + b)
        loss = gd.mean(h * h)
    r["nodes_forward"] = len(gd.topological_order([loss]))
    with phase("grad"):
        grads = gd.grad(loss, params)
    r["nodes_with_grad"] = len(gd.topological_order([loss, *grads]))

    feeds = {"x": x_np}
    for i in range(layers):
        feeds[f"W{i}"], feeds[f"b{i}"] = Ws_np[i], bs_np[i]
    with phase("compile_call"):
        fn = gd.compile([loss, *grads])
        out = fn(feeds)
    passes = {p.name: p.seconds for p in fn.reports if p.seconds}
    r["passes_s"] = passes
    r["codegen_s"] = fn.compile_seconds - sum(passes.values())  # generate + exec
    r["first_run_s"] = r["compile_call_s"] - fn.compile_seconds
    last = [p for p in fn.reports if p.nodes is not None]
    r["nodes_compiled"] = last[-1].nodes if last else None
    r["source_lines"] = len(fn.source.splitlines())
    return float(out[0])


def work_jax(layers, phase):
    with phase("import"):
        import jax
        import jax.numpy as jnp
    phase.result["version"] = jax.__version__
    x_np, Ws_np, bs_np = data(layers)
    x = jnp.asarray(x_np)
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in zip(Ws_np, bs_np)]
    jax.block_until_ready((x, params))

    def f(params, x):
        h = x
        for W, b in params:
            h = jnp.tanh(h @ W + b)
        return jnp.mean(h * h)

    with phase("build"):  # tracing f and its gradient: jit(value_and_grad(f)).lower
        lowered = jax.jit(jax.value_and_grad(f)).lower(params, x)
    phase.result["grad_s"] = 0.0
    with phase("compile_call"):
        compiled = lowered.compile()
        loss, _ = jax.block_until_ready(compiled(params, x))
    return float(loss)


def work_pytensor(layers, phase, mode=None):
    with phase("import"):
        import pytensor
        import pytensor.tensor as pt
    from pytensor.compile.mode import get_mode

    linker = type(get_mode(mode).linker).__name__  # 3.x default: NumbaLinker; CVM: VMLinker (C)
    phase.result["version"] = f"{pytensor.__version__} {linker}"
    x_np, Ws_np, bs_np = data(layers)
    with phase("build"):
        x = pt.matrix("x", dtype="float32")
        params = []
        h = x
        for i in range(layers):
            W, b = pt.matrix(f"W{i}", dtype="float32"), pt.vector(f"b{i}", dtype="float32")
            params += [W, b]
            h = pt.tanh(h @ W + b)
        loss = pt.mean(h * h)
    with phase("grad"):
        grads = pytensor.grad(loss, params)
    values = [v for W, b in zip(Ws_np, bs_np) for v in (W, b)]
    with phase("compile_call"):
        fn = pytensor.function([x, *params], [loss, *grads], mode=mode)
        out = fn(x_np, *values)
    return float(out[0])


WORKERS = {
    "graphdl": work_graphdl,
    "jax": work_jax,
    "pytensor": work_pytensor,  # PyTensor's default mode (3.x: NUMBA)
    "pytensor-cvm": functools.partial(work_pytensor, mode="CVM"),  # its C backend (Theano's)
}


def worker_main(name, layers):
    phase = Phases(recursion_limit=sys.getrecursionlimit())
    r = phase.result
    try:
        loss = WORKERS[name](layers, phase)
        r.pop("stage")
        r["loss_ok"] = bool(np.isclose(loss, reference_loss(*data(layers)), rtol=1e-4))
    except ImportError as e:
        r.update(error=f"not installed ({e.name})", skipped=True)
    except RecursionError as e:
        r["error"] = f"RecursionError in {r['stage']}: {e}"
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        r["error"] = f"{type(e).__name__} in {r['stage']}: {str(e)[:200]}"
    print("RESULT " + json.dumps(r), flush=True)


# ---------------------------------------------------------------- the driver
def _last_record(stdout):
    if isinstance(stdout, bytes):
        stdout = stdout.decode(errors="replace")
    for line in (stdout or "").splitlines()[::-1]:
        for tag in ("RESULT ", "PARTIAL "):
            if line.startswith(tag):
                return tag.strip(), json.loads(line[len(tag):])
    return None, {}


def run_worker(name, layers, timeout, compiledir=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if name == "jax":
        env.setdefault("JAX_PLATFORMS", "cpu")
    if name.startswith("pytensor"):
        flags = ["floatX=float32"] + [f"base_compiledir={compiledir}"] * bool(compiledir)
        env["PYTENSOR_FLAGS"] = ",".join(filter(None, [env.get("PYTENSOR_FLAGS"), *flags]))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--layers", str(layers)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)
    except subprocess.TimeoutExpired as e:
        _, r = _last_record(e.stdout)
        r["error"] = f"timed out after {timeout:.0f} s in {r.get('stage', 'import')}"
        return r
    tag, r = _last_record(proc.stdout)
    if tag != "RESULT":
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        r["error"] = f"exit {proc.returncode} in {r.get('stage', 'import')}: {tail[0][:200]}"
    return r


def total_s(r):
    parts = [r.get(k) for k in ("build_s", "grad_s", "compile_call_s")]
    return None if None in parts else sum(parts)


def fmt(v, unit="s"):
    if v is None:
        return "-"
    if unit == "s":
        return f"{v:.2f}" if v >= 0.1 else f"{v * 1e3:.0f} ms"
    return str(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,1000", help="layer counts L (default 10,100,1000)")
    ap.add_argument("--no-external", action="store_true", help="graphdl only: no JAX/PyTensor")
    ap.add_argument("--frameworks", default=",".join(WORKERS),
                    help=f"which to run (default {','.join(WORKERS)})")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per external run")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--layers", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.layers)
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    names = [n for n in args.frameworks.split(",") if n in WORKERS]
    if args.no_external:
        names = [n for n in names if n == "graphdl"]
    print(f"graphdl tree: {source_version()}")
    print(f"L-layer tanh MLP, width {WIDTH}, batch {BATCH}, float32; loss and 2L gradients; "
          f"each cell a fresh subprocess; Python {sys.version.split()[0]}, numpy {np.__version__}")
    rows, ok = [], True
    scratch = Path(tempfile.mkdtemp(prefix="graphdl-compile-time-"))
    for name in names:
        timeout = None if name == "graphdl" else args.timeout
        warm = None
        if name.startswith("pytensor"):
            # PyTensor caches compiled code on disk (C modules, numba kernels): an L=2 run fills
            # a fresh cache with its library's own code; each L then starts from a copy of it,
            # so no graph-specific code comes from an earlier run
            warm = scratch / f"{name}-warm"
            r = run_worker(name, 2, timeout, warm)
            if r.get("skipped"):
                print(f"{name}: {r['error']}, skipped")
                continue
        for layers in sizes:
            compiledir = None
            if warm is not None:
                compiledir = scratch / f"{name}-{layers}"
                shutil.copytree(warm, compiledir)
            r = run_worker(name, layers, timeout, compiledir)
            if r.get("skipped"):
                print(f"{name}: {r['error']}, skipped")
                break
            rows.append((name, layers, r))
            if name == "graphdl" and ("error" in r or not r.get("loss_ok")):
                ok = False
            done = r["error"] if "error" in r else f"{total_s(r):.2f} s"
            print(f"  done {name} L={layers}: {done}", flush=True)

    shutil.rmtree(scratch, ignore_errors=True)

    cols = ["framework", "L", "import", "build", "grad", "compile+1st call", "total",
            "nodes fwd", "nodes fwd+grad", "nodes compiled", "source lines", "result"]
    print("\n(seconds; total = build + grad + compile + first call, imports apart)")
    print(" | ".join(cols))
    for name, layers, r in rows:
        grad = "(in build)" if name == "jax" and "grad_s" in r else fmt(r.get("grad_s"))
        outcome = r.get("error") or ("loss ok" if r.get("loss_ok") else "LOSS WRONG")
        cells = [name + (f" {r['version']}" if "version" in r else ""), str(layers),
                 fmt(r.get("import_s")), fmt(r.get("build_s")), grad,
                 fmt(r.get("compile_call_s")), fmt(total_s(r)),
                 fmt(r.get("nodes_forward"), ""), fmt(r.get("nodes_with_grad"), ""),
                 fmt(r.get("nodes_compiled"), ""), fmt(r.get("source_lines"), ""), outcome]
        print(" | ".join(cells))
    breakdown = [(layers, r) for name, layers, r in rows if name == "graphdl" and "passes_s" in r]
    if breakdown:
        print("\ngraphdl compile+1st call, split (seconds): optimizer passes | codegen "
              "(generate + exec) | first run")
        for layers, r in breakdown:
            passes = ", ".join(f"{k} {fmt(v)}" for k, v in r["passes_s"].items())
            print(f"  L={layers}: {passes} | codegen {fmt(r['codegen_s'])} | "
                  f"run {fmt(r['first_run_s'])}")
    limits = {r.get("recursion_limit") for _, _, r in rows if "recursion_limit" in r}
    print(f"\nrecursion limit in the workers: {sorted(limits)} (Python's default; never raised)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
