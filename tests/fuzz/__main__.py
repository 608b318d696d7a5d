"""`python -m tests.fuzz [--mode MODE] --seed S --programs N --budget SECONDS [--long] [--cuda]`:
run the differential fuzzer and print a summary (see `tests.fuzz`).

Modes: random (graphdl's three modes and a training step against PyTorch), sizes (both sides
of every size threshold, `tests.fuzz.sizes`), threads (one compiled function called from
several threads, `tests.fuzz.threads`), backends (NumPy and CUDA-on-CPU against PyTorch and
each other, edge values, `tests.fuzz.backends`), all (each in turn)."""

from __future__ import annotations

import argparse
import sys

from .runner import DRAWS, report, run

# --long: programs per mode unless --programs is given (several thousand; the CUDA emulator's
# modes take 1-10 s a program)
LONG_PROGRAMS = {"random": 5000, "sizes": 2600, "threads": 2000, "backends": 2000}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--mode", choices=(*DRAWS, "all"), default="random")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first program")
    parser.add_argument("--programs", type=int, default=300, help="programs to run per mode")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="stop each mode after this many seconds")
    parser.add_argument("--long", action="store_true",
                        help="thousands of programs per mode (see LONG_PROGRAMS) unless "
                             "--programs is given, longer programs, second derivatives for "
                             "every third, the largest size thresholds, no time limit unless "
                             "--budget is given")
    parser.add_argument("--no-shrink", action="store_true", help="print failures unreduced")
    parser.add_argument("--cuda", action="store_true",
                        help="random and sizes modes: also run the CUDA backend's kernels on "
                             "the CPU (needs g++; slow: each program builds a module)")
    args = parser.parse_args(argv)
    given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
    budget = args.budget if "--budget" in given or not args.long else float("inf")
    failed = False
    for mode in DRAWS if args.mode == "all" else (args.mode,):
        n = args.programs if "--programs" in given or not args.long else LONG_PROGRAMS[mode]
        result = run(range(args.seed, args.seed + n), budget, long=args.long, mode=mode,
                     cuda=args.cuda)
        print(report(result, shrink=not args.no_shrink), flush=True)
        failed |= bool(result.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
