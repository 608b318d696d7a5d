"""Differential fuzzing of graphdl against PyTorch float64.

    python -m tests.fuzz --seed 0 --programs 300 --budget 60     # what CI runs, with a summary
    python -m tests.fuzz --seed 0 --long                         # 5000 longer programs

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
