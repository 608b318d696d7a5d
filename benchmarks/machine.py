"""What the benchmarks print about where they ran: the graphdl tree and the processor."""

from __future__ import annotations

import platform
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def source_version():
    """The graphdl working tree measured: `git describe --always --dirty`, if it is a checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                             capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def limit_threads(threads):
    """The same number of threads for torch and NumPy's OpenBLAS; says how OpenBLAS was
    limited (two spinning OpenBLAS workers on a shared 2-core machine slow a step tenfold)."""
    import torch

    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")
        return f"OpenBLAS limited to {threads} thread(s)"
    except ImportError:
        return "OpenBLAS threads not limited (threadpoolctl missing: set OPENBLAS_NUM_THREADS)"


def torch_step(opt, loss):
    """One PyTorch optimizer step on `loss` (gradients set to None first, as graphdl's step
    starts from none); the loss as a float."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def interleaved(mine, theirs, reps, warmup):
    """Time graphdl's call `mine` against `theirs`, one call each per repetition, the order
    swapped every repetition (neither always runs after the other), after `warmup` untimed
    calls of each: ({"g", "t", "g_cpu", "t_cpu"}: median seconds, wall and CPU), the medians of
    the per-repetition ratios g / t (wall, CPU))."""
    for _ in range(warmup):
        mine()
        theirs()
    times = {"g": [], "t": [], "g_cpu": [], "t_cpu": []}
    for rep in range(reps):
        order = [("g", mine), ("t", theirs)] if rep % 2 == 0 else [("t", theirs), ("g", mine)]
        for name, f in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            f()
            times[name].append(time.perf_counter() - start)
            times[f"{name}_cpu"].append(time.process_time() - start_cpu)
    ratios = [statistics.median(g / t for g, t in zip(times[a], times[b], strict=True))
              for a, b in (("g", "t"), ("g_cpu", "t_cpu"))]
    return {k: statistics.median(v) for k, v in times.items()}, *ratios
