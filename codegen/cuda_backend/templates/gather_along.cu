// $NODE
// gather along an axis (torch.gather, numpy.take_along_axis): the output, viewed as ($OUTER,
// $POSITIONS, $INNER) as the indices are, reads element (o, idx[i], q) (negative counts from the
// end) of the input viewed as ($OUTER, $LENGTH, $INNER). The indices were range-checked before.
extern "C" __global__ void ${NAME}(const $T* in, const $TI* idx, $T* out) {
  for ($INDEX i = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; i < $COUNT;
       i += ($INDEX)blockDim.x * gridDim.x) {
    const $INDEX q = i % $INNER, o = i / ($INNER * $POSITIONS);
    long long row = (long long)idx[i];
    if (row < 0) row += $LENGTH;
    out[i] = in[(o * $LENGTH + row) * $INNER + q];
  }
}
