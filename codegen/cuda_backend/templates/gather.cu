// $NODE
// take along an axis: the output, viewed as ($OUTER, $POSITIONS, $INNER), reads row
// idx[p] (negative counts from the end, as NumPy's take) of the input viewed as
// ($OUTER, $LENGTH, $INNER). The indices were range-checked before (check_index).
extern "C" __global__ void ${NAME}(const $T* in, const $TI* idx, $T* out) {
  for ($INDEX i = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; i < $COUNT;
       i += ($INDEX)blockDim.x * gridDim.x) {
    const $INDEX q = i % $INNER, p = i / $INNER % $POSITIONS, o = i / ($INNER * $POSITIONS);
    long long row = (long long)idx[p];
    if (row < 0) row += $LENGTH;
    out[i] = in[(o * $LENGTH + row) * $INNER + q];
  }
}
