// $NODE
// stable argsort along an axis: the input viewed as ($OUTER, $LENGTH, $INNER). One thread per
// element counts the elements of its line that come before it (those that sort before it, and
// equal ones at lower positions) and writes its position at that rank.
__device__ __forceinline__ bool ${NAME}_before($T a, $T b) {  // a sorts strictly before b
  $BEFORE
}

extern "C" __global__ void ${NAME}(const $T* in, long long* out) {
  for ($INDEX i = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; i < $COUNT;
       i += ($INDEX)blockDim.x * gridDim.x) {
    const $INDEX q = i % $INNER, k = i / $INNER % $LENGTH, o = i / ($INNER * $LENGTH);
    const $INDEX base = o * $LENGTH * $INNER + q;
    const $T value = in[i];
    $INDEX rank = 0;
    for ($INDEX j = 0; j < $LENGTH; ++j) {
      const $T other = in[base + j * $INNER];
      rank += ${NAME}_before(other, value) || (j < k && !${NAME}_before(value, other));
    }
    out[base + rank * $INNER] = k;
  }
}
