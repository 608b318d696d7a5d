// $NODE
// the linear recurrence s_k = g_k + a_k * s_previous along an axis (logcumsumexp's gradient):
// the arrays viewed as ($OUTER, $LENGTH, $INNER), one thread per (outer, inner) line, from the
// start (REVERSE 0) or the end (REVERSE 1); s is g at the first element.
extern "C" __global__ void ${NAME}(const $T* a, const $T* g, $T* out) {
  for ($INDEX line = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; line < $LINES;
       line += ($INDEX)blockDim.x * gridDim.x) {
    const $INDEX base = line / $INNER * $LENGTH * $INNER + line % $INNER;
    $T s = 0;
    for ($INDEX k = 0; k < $LENGTH; ++k) {
      const $INDEX at = base + ($REVERSE ? $LENGTH - 1 - k : k) * $INNER;
      s = k == 0 ? g[at] : g[at] + a[at] * s;
      out[at] = s;
    }
  }
}
