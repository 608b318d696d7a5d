// $NODE
// an update by take's gradient, in place: the target, viewed as ($OUTER, $LENGTH, $INNER),
// gets -scale times g's element (o, p, q) added at row idx[p] (negative counts from the end);
// only the addressed rows are touched; repeated indices add up through atomics, in an order
// that varies from run to run.
extern "C" __global__ void ${NAME}(const $T* g, const $TI* idx, const $T* scale, $T* target) {
  const $T s = scale[0];
  for ($INDEX i = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; i < $COUNT;
       i += ($INDEX)blockDim.x * gridDim.x) {
    const $INDEX q = i % $INNER, p = i / $INNER % $POSITIONS, o = i / ($INNER * $POSITIONS);
    long long row = (long long)idx[p];
    if (row < 0) row += $LENGTH;
    atomicAdd(&target[(o * $LENGTH + row) * $INNER + q], -s * g[i]);
  }
}
