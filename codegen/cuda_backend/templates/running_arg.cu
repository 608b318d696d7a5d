// $NODE
// the index of the running extremum along an axis (PyTorch's cummax/cummin): the input and
// output viewed as ($OUTER, $LENGTH, $INNER), one thread per (outer, inner) line, from the start
// (REVERSE 0) or the end (REVERSE 1). An element takes the place of the extremum where it is
// NaN, or where the extremum is not NaN and the element $CMP it (of ties, the one seen last).
extern "C" __global__ void ${NAME}(const $T* in, long long* out) {
  for ($INDEX line = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; line < $LINES;
       line += ($INDEX)blockDim.x * gridDim.x) {
    const $INDEX base = line / $INNER * $LENGTH * $INNER + line % $INNER;
    $T best = 0;  // replaced by the first element
    long long index = 0;
    for ($INDEX k = 0; k < $LENGTH; ++k) {
      const $INDEX position = $REVERSE ? $LENGTH - 1 - k : k;
      const $INDEX at = base + position * $INNER;
      const $T value = in[at];
      if (k == 0 || value != value || (best == best && value $CMP best)) {
        best = value;
        index = position;
      }
      out[at] = index;
    }
  }
}
