"""`python -m tests.fuzz --seed S --programs N --budget SECONDS [--long]`: run the differential
fuzzer and print a summary (see `tests.fuzz`)."""

from __future__ import annotations

import argparse
import sys

from . import differential
from .runner import report, run


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="seed of the first program")
    parser.add_argument("--programs", type=int, default=300, help="programs to run")
    parser.add_argument("--budget", type=float, default=60.0, help="stop after this many seconds")
    parser.add_argument("--long", action="store_true",
                        help="thousands of programs (5000 unless --programs is given), longer "
                             "programs, second derivatives for every third, no time limit "
                             "unless --budget is given")
    parser.add_argument("--no-shrink", action="store_true", help="print failures unreduced")
    parser.add_argument("--cuda", action="store_true",
                        help="also run the CUDA backend's kernels on the CPU (needs g++; slow: "
                             "each program builds a module)")
    args = parser.parse_args(argv)
    given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
    n = args.programs if "--programs" in given or not args.long else 5000
    budget = args.budget if "--budget" in given or not args.long else float("inf")
    modes = differential.MODES + ((differential.CUDA_CPU,) if args.cuda else ())
    result = run(args.seed, n, budget, long=args.long, modes=modes)
    print(report(result, shrink=not args.no_shrink))
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
