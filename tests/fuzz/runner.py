"""Run many programs of one fuzzing mode within a time budget, count outcomes per column (a
differential mode, a backend's threads, edges), and report them grouped."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from . import backends, differential, programs, sizes, threads

SETTINGS = {False: {"max_ops": 8, "second_every": 4},  # CI
            True: {"max_ops": 14, "second_every": 3}}  # --long


@dataclass
class Result:
    seed: int
    long: bool
    mode: str = "random"
    cuda: bool = False
    programs: int = 0
    skipped: int = 0  # seeds that draw nothing here (a long-only size threshold)
    seconds: float = 0.0
    counts: Counter = field(default_factory=Counter)  # (column, "pass"/"mismatch"/"crash")
    failures: list = field(default_factory=list)
    ops: Counter = field(default_factory=Counter)
    modes: tuple = ()  # the columns counted, in order of first appearance


def program_of(seed, long=False):
    """The program a run draws for `seed`, and whether its second derivatives are checked."""
    s = SETTINGS[long]
    return programs.generate(seed, s["max_ops"]), seed % s["second_every"] == 0


def _random(seed, long, cuda):
    program, second = program_of(seed, long)
    modes = differential.MODES + ((differential.CUDA_CPU,) if cuda else ())
    return program, modes, lambda: differential.check(program, second, modes)


def _sizes(seed, long, cuda):
    drawn = sizes.generate(seed, long)
    if drawn is None:
        return None
    program, threshold = drawn
    extra = (differential.CUDA_CPU, differential.CUDA_STEP) if cuda else ()
    modes = tuple(dict.fromkeys(threshold.modes + extra))
    return program, modes, lambda: differential.check(program, sizes.second(program), modes)


def _threads(seed, long, cuda):
    program, _ = program_of(seed, long)
    return program, threads.MODES, lambda: threads.check(program, threads.MODES)


def _backends(seed, long, cuda):
    program, second = program_of(seed, long)
    return program, backends.MODES, lambda: backends.check(program, second)


# mode -> draw(seed, long, cuda): (program, columns, check() -> failures), or None
DRAWS = {"random": _random, "sizes": _sizes, "threads": _threads, "backends": _backends}


def run(seeds, budget, long=False, mode="random", cuda=False):
    """The programs of `seeds` in `mode`, until `budget` seconds have passed."""
    seeds = list(seeds)
    result = Result(seeds[0], long, mode, cuda)
    start = time.monotonic()
    for s in seeds:
        if time.monotonic() - start > budget:
            break
        drawn = DRAWS[mode](s, long, cuda)
        if drawn is None:
            result.skipped += 1
            continue
        program, modes, check = drawn
        failures = check()
        result.programs += 1
        result.ops.update(program.ops())
        result.modes = tuple(dict.fromkeys(result.modes + modes))
        failed = {f.mode: f.kind for f in failures}
        for column in modes:
            result.counts[column, failed.get(column, failed.get("build", "pass"))] += 1
        result.failures += failures
    result.seconds = time.monotonic() - start
    return result


def reproducer(result, seed):
    flags = "".join(f" {flag}" for flag, on in (("--long", result.long),
                                                 ("--cuda", result.cuda)) if on)
    return f"python -m tests.fuzz --mode {result.mode} --seed {seed} --programs 1{flags}"


def report(result, shrink=True):
    """The summary table, then each group of failures with a reproducer (shrunk if asked)."""
    long = " (long)" if result.long else ""
    skipped = f", {result.skipped} seeds skipped" if result.skipped else ""
    lines = [(f"{result.mode}: {result.programs} programs from seed {result.seed} in "
             f"{result.seconds:.1f} s{long}{skipped}"),
             f"{'mode':<14} {'pass':>6} {'mismatch':>9} {'crash':>6}"]
    for mode in result.modes:
        c = [result.counts[mode, k] for k in ("pass", "mismatch", "crash")]
        lines.append(f"{mode:<14} {c[0]:>6} {c[1]:>9} {c[2]:>6}")
    lines.append("ops covered: " + ", ".join(f"{op} {n}" for op, n in sorted(result.ops.items())))
    groups = defaultdict(list)
    for f in result.failures:
        groups[f.kind, f.where, f.op].append(f)
    for (kind, where, op), fs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        modes = sorted({f.mode for f in fs})
        seeds = sorted({f.seed for f in fs})
        lines.append(f"\n{kind} in {where} [{op}] x{len(seeds)} programs, modes {modes}")
        lines.append(f"  first: {fs[0].detail[:200]}")
        lines.append(f"  reproduce: {reproducer(result, seeds[0])}  (seeds {seeds[:8]})")
        if shrink and result.mode in ("random", "backends") and fs[0].mode != "edges":
            lines.append(_shrunk(fs[0], result.long))
    return "\n".join(lines)


def _shrunk(failure, long):
    """The failure's program reduced (random programs compared with PyTorch only: a size
    program stays large, a thread or edge failure needs its own run)."""
    program, second = program_of(failure.seed, long)
    small = differential.shrink(program, failure, second)
    return "  shrunk to:\n" + "\n".join("    " + line for line in small.code().splitlines())
