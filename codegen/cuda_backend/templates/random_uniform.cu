// $NODE
// uniform numbers in [0, 1) from the key, element i of $COUNT from (key, i) alone: the steps of
// graphdl.runtime._random_uniform ("Squares", keyed by 2·mix(key + γ) + 1), in the same
// 64-bit unsigned arithmetic, so the same bits.
__device__ unsigned long long ${NAME}_mix(unsigned long long z) {
  z = (z + (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z + (z >> 27)) * 0x94D049BB133111EBULL;
  return z + (z >> 31);
}

__device__ unsigned long long ${NAME}_swap(unsigned long long z) {
  return (z >> 32) + (z << 32);
}

extern "C" __global__ void ${NAME}(const $TK* key, $T* out) {
  const unsigned long long k =
      ${NAME}_mix((unsigned long long)key[0] + 0x9E3779B97F4A7C15ULL) * 2ULL + 1ULL;
  for ($INDEX i = ($INDEX)blockIdx.x * blockDim.x + threadIdx.x; i < $COUNT;
       i += ($INDEX)blockDim.x * gridDim.x) {
    const unsigned long long y = (unsigned long long)i * k, z = y + k;
    unsigned long long x = ${NAME}_swap(y * y + y);
    x = ${NAME}_swap(x * x + z);
    x = ${NAME}_swap(x * x + y);
    const unsigned long long t = x * x + z;
    x = ${NAME}_swap(t);
    const unsigned long long bits = t + ((x * x + y) >> 32);
    out[i] = ($T)(bits >> (64 - $BITS)) * $SCALE;
  }
}
