// $NODE
// Copies $COUNT indices, each checked to lie in [$LOW, $HIGH): any that does not sets the flag
// (every such thread stores the same 1; the host finds the first failure in the copy). The
// test is made in a type that holds every value of $TI.
extern "C" __global__ void ${NAME}(const $TI* idx, $TI* out, int* flag) {
  for ($INDEX i = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; i < $COUNT;
       i += ($INDEX)blockDim.x * gridDim.x) {
    const $TI value = idx[i];
    out[i] = value;
    if ($OUTSIDE) *flag = 1;
  }
}
