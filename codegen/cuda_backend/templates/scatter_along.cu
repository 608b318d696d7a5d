// $NODE
// scatter_add along an axis (gather_along's adjoint): the zeroed output, viewed as ($OUTER,
// $LENGTH, $INNER), gets g's element i, at (o, p, q) of g viewed as ($OUTER, $POSITIONS, $INNER),
// added at (o, idx[i], q) (negative counts from the end); repeated indices add up through
// atomics, in an order that varies from run to run.
extern "C" __global__ void ${NAME}(const $T* g, const $TI* idx, $T* out) {
  for ($INDEX i = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; i < $COUNT;
       i += ($INDEX)blockDim.x * gridDim.x) {
    const $INDEX q = i % $INNER, o = i / ($INNER * $POSITIONS);
    long long row = (long long)idx[i];
    if (row < 0) row += $LENGTH;
    atomicAdd(&out[(o * $LENGTH + row) * $INNER + q], g[i]);
  }
}
