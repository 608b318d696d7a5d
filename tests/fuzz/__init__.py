"""Differential fuzzing of graphdl against PyTorch float64.

    python -m tests.fuzz --seed 0 --programs 300 --budget 60     # random programs, a summary
    python -m tests.fuzz --seed 0 --long                         # 5000 longer programs
    python -m tests.fuzz --mode sizes|threads|backends|all [--long] [--cuda]

Modes besides these random programs: `sizes` (both sides of every size threshold in the code,
`sizes.THRESHOLDS`, float32 and float64, 10^4 to 10^6 elements), `threads` (one compiled
function called from 8 threads, training steps per thread, NumPy and CUDA-on-CPU), `backends`
(NumPy and CUDA-on-CPU against PyTorch, training steps returning updated inputs, and against
each other on edge values and every index dtype). `test_saturated` holds the tables: second
derivatives of every smooth op at |x| up to 1,000, every elementwise op at edge values, index
dtypes at their extremes, on every backend. `test_fuzz` runs each mode's CI share.

`programs` draws random programs (DAGs ending in a scalar) over the whole public op set, with ties
and kinks planted on purpose, `take` indices and class labels constant or fed (int64 inputs, so
optimized graphs keep their run-time range check); `torch_ref` runs the same program in PyTorch
float64; `differential` compares graphdl's three modes (compiled optimized, compiled unoptimized,
`gd.evaluate`) with it: every intermediate value, the scalar, the gradient wrt every input and, for
a subset of programs, second derivatives (double backward), within a relative tolerance of 1e-7
scaled by each array's magnitude, NaN exactly where PyTorch has NaN. `differential.shrink` reduces a
failing program to a few lines of graphdl; `runner` counts and groups the outcomes.
`test_edge_values` is the float32 edge-value table.

Where graphdl's conventions differ from PyTorch's on purpose (checked by hand, torch 2.x CPU):

- relu, maximum and minimum at a NaN operand give gradient 0 to every operand; PyTorch passes
  the incoming gradient on (relu'(NaN) = 1; maximum(NaN, b) gives g to both a and b). The fuzzer
  skips the derivative comparisons of a program (values are still compared) exactly when an
  operand of one of these ops holds NaN in PyTorch's forward pass.
- Negative `take` indices count from the end (NumPy's rule); the reference feeds PyTorch the
  equivalent non-negative ones.

Everything else is compared with PyTorch's own conventions: relu'(0) = 0; maximum/minimum give
each side half at a tie; max/min reductions split a tie's gradient evenly (`amax`/`amin`);
max-pooling routes a window's gradient to its first maximum; cross-entropy is
`F.cross_entropy` (classes on the last axis); the hinge loss is `F.multi_margin_loss` times the
number of classes, whose gradient at a margin of exactly 0 is 0.
"""
