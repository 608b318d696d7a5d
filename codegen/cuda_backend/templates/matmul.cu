// $NODE
// C = A @ B for $BATCH batched products of ($M x $K) by ($K x $N), batch dimensions broadcast
// through A's and B's batch strides (0 where a dimension is stretched). A block computes a
// $TILE_M x $TILE_N tile of C through $TILE_K-wide slabs of A and B staged in shared memory;
// thread (tx, ty) accumulates, in registers, rows ty + $THREADS_Y * i and columns
// tx + $THREADS_X * j of the tile (consecutive threads read consecutive shared-memory words).
// Row tiles run along the grid's x (up to 2**31 - 1 of them), column tiles along y.
extern "C" __global__ void __launch_bounds__($THREADS_X * $THREADS_Y)
${NAME}(const $TA* a, const $TB* b, $TC* c) {
  const $INDEX batch_size[] = {$BATCH_SIZES};
  const $INDEX a_stride[] = {$A_STRIDES};
  const $INDEX b_stride[] = {$B_STRIDES};
  __shared__ $TC a_tile[$TILE_K][$TILE_M];  // transposed: a_tile[k][m]
  __shared__ $TC b_tile[$TILE_K][$TILE_N];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * $THREADS_X + tx;
  const $INDEX m0 = ($INDEX)blockIdx.x * $TILE_M, n0 = ($INDEX)blockIdx.y * $TILE_N;
  for ($INDEX batch = blockIdx.z; batch < $BATCH; batch += gridDim.z) {
    $INDEX rest = batch, a_base = 0, b_base = 0;
#pragma unroll
    for (int d = $BATCH_NDIM - 1; d >= 0; --d) {
      $INDEX k = rest % batch_size[d];
      rest /= batch_size[d];
      a_base += k * a_stride[d];
      b_base += k * b_stride[d];
    }
    $TC acc[$ROWS][$COLS];
#pragma unroll
    for (int i = 0; i < $ROWS; ++i)
#pragma unroll
      for (int j = 0; j < $COLS; ++j) acc[i][j] = 0;
    for ($INDEX k0 = 0; k0 < $K; k0 += $TILE_K) {
#pragma unroll
      for (int load = 0; load < $TILE_M * $TILE_K / ($THREADS_X * $THREADS_Y); ++load) {
        const int e = tid + load * $THREADS_X * $THREADS_Y, m = e / $TILE_K, k = e % $TILE_K;
        const bool inside = m0 + m < $M && k0 + k < $K;
        a_tile[k][m] = inside ? ($TC)a[a_base + (m0 + m) * $K + k0 + k] : ($TC)0;
      }
#pragma unroll
      for (int load = 0; load < $TILE_K * $TILE_N / ($THREADS_X * $THREADS_Y); ++load) {
        const int e = tid + load * $THREADS_X * $THREADS_Y, k = e / $TILE_N, n = e % $TILE_N;
        const bool inside = k0 + k < $K && n0 + n < $N;
        b_tile[k][n] = inside ? ($TC)b[b_base + (k0 + k) * $N + n0 + n] : ($TC)0;
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < $TILE_K; ++k) {
        $TC a_reg[$ROWS], b_reg[$COLS];
#pragma unroll
        for (int i = 0; i < $ROWS; ++i) a_reg[i] = a_tile[k][ty + $THREADS_Y * i];
#pragma unroll
        for (int j = 0; j < $COLS; ++j) b_reg[j] = b_tile[k][tx + $THREADS_X * j];
#pragma unroll
        for (int i = 0; i < $ROWS; ++i)
#pragma unroll
          for (int j = 0; j < $COLS; ++j) acc[i][j] += a_reg[i] * b_reg[j];
      }
      __syncthreads();  // the next slab overwrites the tiles
    }
    const $INDEX c_base = batch * ($M * $N);
#pragma unroll
    for (int i = 0; i < $ROWS; ++i)
#pragma unroll
      for (int j = 0; j < $COLS; ++j) {
        const $INDEX m = m0 + ty + $THREADS_Y * i, n = n0 + tx + $THREADS_X * j;
        if (m < $M && n < $N) c[c_base + m * $N + n] = acc[i][j];
      }
  }
}
