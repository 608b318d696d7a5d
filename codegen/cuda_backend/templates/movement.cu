// $NODE
// A strided copy of $COUNT elements: element i of the iteration space (sizes below, C order)
// reads in[$IN_BASE + sum_d i_d * in_stride[d]] and writes out[$OUT_BASE + sum_d i_d * out_stride[d]]
// (transposes, broadcasts, slices with any step, a slab of a concatenation, a plain copy).
extern "C" __global__ void ${NAME}(const $TIN* in, $TOUT* out) {
  const $INDEX size[] = {$SIZES};
  const $INDEX in_stride[] = {$IN_STRIDES};
  const $INDEX out_stride[] = {$OUT_STRIDES};
  for ($INDEX i = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; i < $COUNT;
       i += ($INDEX)blockDim.x * gridDim.x) {
    $INDEX rest = i, src = $IN_BASE, dst = $OUT_BASE;
#pragma unroll
    for (int d = $NDIM - 1; d >= 0; --d) {
      const $INDEX k = rest % size[d];
      rest /= size[d];
      src += k * in_stride[d];
      dst += k * out_stride[d];
    }
    out[dst] = ($TOUT)in[src];
  }
}
