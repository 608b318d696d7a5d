// $NODE
// $OP over $REDUCED elements for each of $COUNT outputs. The input's axes are grouped into kept
// and reduced runs (sizes and strides below); each group of $GROUP threads (a warp, or the whole
// block) computes one output: a grid-stride loop over its reduced elements in registers, then
// warp shuffles, then (block groups) one partial per warp through shared memory.
__device__ __forceinline__ $ACC ${NAME}_combine($ACC a, $ACC b) {
  $COMBINE
}

extern "C" __global__ void __launch_bounds__($BLOCK) ${NAME}(const $TIN* in, $TOUT* out) {
  const $INDEX kept_size[] = {$KEPT_SIZES};
  const $INDEX kept_stride[] = {$KEPT_STRIDES};
  const $INDEX red_size[] = {$RED_SIZES};
  const $INDEX red_stride[] = {$RED_STRIDES};
  __shared__ $ACC partial[$BLOCK / 32];
  const int lane = threadIdx.x % $GROUP;
  const $INDEX j = ($INDEX)blockIdx.x * ($BLOCK / $GROUP) + threadIdx.x / $GROUP;
  $ACC acc = $IDENTITY;
  if (j < $COUNT) {
    $INDEX rest = j, base = 0;
#pragma unroll
    for (int d = $KEPT_NDIM - 1; d >= 0; --d) {
      base += rest % kept_size[d] * kept_stride[d];
      rest /= kept_size[d];
    }
    for ($INDEX r = lane; r < $REDUCED; r += $GROUP) {
      $INDEX rest_r = r, offset = base;
#pragma unroll
      for (int d = $RED_NDIM - 1; d >= 0; --d) {
        offset += rest_r % red_size[d] * red_stride[d];
        rest_r /= red_size[d];
      }
      acc = ${NAME}_combine(acc, ($ACC)in[offset]);
    }
  }
#pragma unroll
  for (int delta = 16; delta > 0; delta /= 2)
    acc = ${NAME}_combine(acc, __shfl_down_sync(0xffffffffu, acc, delta));
  if ($GROUP > 32) {  // the block is one group: combine its warps' partials
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x < 32) {
      acc = threadIdx.x < $BLOCK / 32 ? partial[threadIdx.x] : $IDENTITY;
#pragma unroll
      for (int delta = 16; delta > 0; delta /= 2)
        acc = ${NAME}_combine(acc, __shfl_down_sync(0xffffffffu, acc, delta));
    }
  }
  if (lane == 0 && j < $COUNT) out[j] = ($TOUT)acc;
}
