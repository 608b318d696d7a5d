"""Peak memory of one training step beyond what is held before it, for the step benchmarks.

Two measurements, both of a step taken after warm-up steps:

- RSS, every framework the same way: each in a fresh subprocess of the benchmark script
  (`--peak-child NAME`), with glibc told to serve every block over 64 KiB by its own mmap
  (`MALLOC_MMAP_THRESHOLD_`, which also stops glibc from raising that threshold as it runs), so
  a freed array goes back to the system at once and resident memory follows the live arrays.
  After the warm-up the kernel's high-water mark is reset (`/proc/self/clear_refs`); the peak
  is VmHWM after one step minus VmRSS before it. It counts the pages touched, whoever allocated
  them: NumPy, torch, OpenBLAS or oneDNN work space.
- tracemalloc, for the NumPy steps, in the benchmark's own process: NumPy reports its array
  data to tracemalloc, which gives the largest number of bytes allocated during the step and
  alive at once. It also counts arrays allocated and never touched. torch reports nothing to
  tracemalloc, and torch 2.13's profiler (`profile_memory=True`) recorded only the frees of a
  CPU step, not its allocations, so torch has the RSS column only.

graphdl's generated module keeps its large work buffers between calls (`_scratch`): they are
held before the step, so neither column counts them; `scratch_bytes` gives their size apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc

MIB = 1 << 20
MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 10)}


def _status(field):
    """A byte count from /proc/self/status (VmRSS: resident now; VmHWM: its peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_peak(step, warmup=3):
    """Bytes of resident memory one call of `step` adds at its peak, after `warmup` calls."""
    for _ in range(warmup):
        step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS
    before = _status("VmRSS")
    step()
    return _status("VmHWM") - before


def traced_peak(step):
    """The most bytes allocated during one call of `step` (after one warm-up call) and alive
    at the same time, as tracemalloc sees them."""
    step()
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def rss_peaks(script, names, args=()):
    """{name: bytes}: `rss_peak` of each named step in a fresh process of `script`, run as
    `script --peak-child NAME *args`; the child prints the byte count as its last word."""
    env = {**os.environ, **MMAP_ENV}
    peaks = {}
    for name in names:
        done = subprocess.run([sys.executable, str(script), "--peak-child", name, *args],
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"peak-memory child {name!r} failed:\n{done.stderr[-2000:]}")
        peaks[name] = int(done.stdout.split()[-1])
    return peaks


def scratch_bytes(run):
    """Bytes of the work buffers a generated `run` keeps pooled between calls."""
    scratch = run.__globals__.get("_scratch")
    pool = getattr(scratch, "__dict__", {}).get("pool", {})
    return sum(buffer.nbytes for buffer in pool.values())


def print_table(labels, rss, traced, scratch):
    """The peaks in MiB: `labels` {name: label}, `rss` and `traced` {name: bytes} (missing:
    not measured), and graphdl's pooled buffers."""
    print("\npeak memory of one step beyond what is held before it (MiB; see peak_memory.py):")
    print(f"  {'':26s} {'RSS, own process':>16s} {'tracemalloc':>11s}")
    for name, label in labels.items():
        cells = [f"{d[name] / MIB:.2f}" if name in d else "-" for d in (rss, traced)]
        print(f"  {label:26s} {cells[0]:>16s} {cells[1]:>11s}")
    print(f"  graphdl's pooled work buffers, held between steps (in neither column): "
          f"{scratch / MIB:.2f} MiB")
