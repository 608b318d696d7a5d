"""Run many programs within a time budget, count outcomes per mode, and report them grouped."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from . import differential, programs

SETTINGS = {False: {"max_ops": 8, "second_every": 4},  # CI
            True: {"max_ops": 14, "second_every": 3}}  # --long


@dataclass
class Result:
    seed: int
    long: bool
    programs: int = 0
    seconds: float = 0.0
    counts: Counter = field(default_factory=Counter)  # (mode, "pass"/"mismatch"/"crash")
    failures: list = field(default_factory=list)
    ops: Counter = field(default_factory=Counter)
    modes: tuple = differential.MODES


def program_of(seed, long=False):
    """The program a run draws for `seed`, and whether its second derivatives are checked."""
    s = SETTINGS[long]
    return programs.generate(seed, s["max_ops"]), seed % s["second_every"] == 0


def run(seed, n, budget, long=False, modes=differential.MODES):
    result = Result(seed, long, modes=modes)
    start = time.monotonic()
    for s in range(seed, seed + n):
        if time.monotonic() - start > budget:
            break
        program, second = program_of(s, long)
        failures = differential.check(program, second, modes)
        result.programs += 1
        result.ops.update(program.ops())
        failed = {f.mode: f.kind for f in failures}
        for mode in modes:
            result.counts[mode, failed.get(mode, failed.get("build", "pass"))] += 1
        result.failures += failures
    result.seconds = time.monotonic() - start
    return result


def reproducer(seed, long):
    return f"python -m tests.fuzz --seed {seed} --programs 1{' --long' if long else ''}"


def report(result, shrink=True):
    """The summary table, then each group of failures with a reproducer (shrunk if asked)."""
    long = " (long)" if result.long else ""
    lines = [f"{result.programs} programs from seed {result.seed} in {result.seconds:.1f} s{long}",
             f"{'mode':<12} {'pass':>6} {'mismatch':>9} {'crash':>6}"]
    for mode in result.modes:
        c = [result.counts[mode, k] for k in ("pass", "mismatch", "crash")]
        lines.append(f"{mode:<12} {c[0]:>6} {c[1]:>9} {c[2]:>6}")
    lines.append("ops covered: " + ", ".join(f"{op} {n}" for op, n in sorted(result.ops.items())))
    groups = defaultdict(list)
    for f in result.failures:
        groups[f.kind, f.where, f.op].append(f)
    for (kind, where, op), fs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        modes = sorted({f.mode for f in fs})
        seeds = sorted({f.seed for f in fs})
        lines.append(f"\n{kind} in {where} [{op}] x{len(seeds)} programs, modes {modes}")
        lines.append(f"  first: {fs[0].detail[:200]}")
        lines.append(f"  reproduce: {reproducer(seeds[0], result.long)}  (seeds {seeds[:8]})")
        if shrink:
            lines.append(_shrunk(fs[0], result.long))
    return "\n".join(lines)


def _shrunk(failure, long):
    program, second = program_of(failure.seed, long)
    small = differential.shrink(program, failure, second)
    return "  shrunk to:\n" + "\n".join("    " + line for line in small.code().splitlines())
