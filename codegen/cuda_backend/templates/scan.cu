// $NODE
// cumulative $WHAT along an axis: the input and output viewed as ($OUTER, $LENGTH, $INNER),
// one thread per (outer, inner) line, combining in order from the start (REVERSE 0) or the end
// (REVERSE 1), as NumPy's scan does (the same order, so the same rounding for sums and
// products).
$HELPER
extern "C" __global__ void ${NAME}(const $T* in, $R* out) {
  for ($INDEX line = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; line < $LINES;
       line += ($INDEX)blockDim.x * gridDim.x) {
    const $INDEX base = line / $INNER * $LENGTH * $INNER + line % $INNER;
    $R acc = $START;
    for ($INDEX k = 0; k < $LENGTH; ++k) {
      const $INDEX at = base + ($REVERSE ? $LENGTH - 1 - k : k) * $INNER;
      acc = $STEP;
      out[at] = acc;
    }
  }
}
