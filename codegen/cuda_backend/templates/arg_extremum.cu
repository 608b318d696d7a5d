// $NODE
// arg${WHAT} along an axis: the input viewed as ($OUTER, $LENGTH, $INNER), one thread per
// (outer, inner) line, scanning it in order as NumPy's arg${WHAT} does: the first ${WHAT}imum
// wins, and so does the first NaN (a NaN compares with nothing, so once held it is kept).
extern "C" __global__ void ${NAME}(const $T* in, long long* out) {
  for ($INDEX line = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; line < $LINES;
       line += ($INDEX)blockDim.x * gridDim.x) {
    const $INDEX base = line / $INNER * $LENGTH * $INNER + line % $INNER;
    $T best = in[base];
    long long at = 0;
    for ($INDEX k = 1; k < $LENGTH && best == best; ++k) {
      const $T value = in[base + k * $INNER];
      if (value $BEYOND best || value != value) {
        best = value;
        at = k;
      }
    }
    out[line] = at;
  }
}
