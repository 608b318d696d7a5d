// ${name}: ${what}
// An implicit GEMM, out[m, p] = sum_k A[m, k] * B[k, p] per group, with A and B read from the
// node's inputs through the index maps below (no im2col buffer).
// Each block computes a BM x BN tile of one group: the K axis is walked in BK-wide steps,
// staged in shared memory, and each thread accumulates a TM x TN register tile whose rows and
// columns are TY and TX apart (neighbouring threads touch neighbouring cells: coalesced
// stores, conflict-free shared reads). With SPLIT > 1 (weight gradient: K = N*OH*OW is long)
// blockIdx.z also picks a slice of K and the partial sums meet by atomicAdd in a zeroed output.
// With MASKED (input gradient) b_at says whether B's cell is a product at all: a kernel tap
// that lands on no output pixel adds nothing, rather than A * 0 (NaN for an inf or NaN A).
// A step whose A tile is all finite (the block votes) runs the plain loop, where that A * 0 is
// an exact 0; a step with an inf or NaN in A skips the taps that land nowhere.
namespace ${name}_ns {
typedef ${t} T;  // the output's type, in which the sums run
typedef ${ta} TA;  // A's and B's input types (promoted to T as read)
typedef ${tb} TB;
constexpr int M = ${m}, P = ${p}, K = ${k}, GROUPS = ${groups}, SPLIT = ${split};
constexpr int BM = ${bm}, BN = ${bn}, BK = ${bk}, TM = 4, TN = 4;
constexpr int TY = BM / TM, TX = BN / TN, THREADS = TX * TY;
constexpr int K_PER_SPLIT = ${k_per_split};  // a multiple of BK
constexpr bool B_K_FAST = ${b_k_fast};  // B is contiguous along k (else along p)
constexpr bool MASKED = ${masked};  // b_at may return a cell that is no product (skipped)
// the convolution's geometry: x (N, C, H, W), w (O, C/GROUPS, KH, KW), y (N, O, OH, OW)
constexpr int C = ${c}, H = ${h}, W = ${w}, O = ${o}, OH = ${oh}, OW = ${ow};  // N: in P or K
constexpr int KH = ${kh}, KW = ${kw}, SH = ${sh}, SW = ${sw}, PT = ${pt}, PL = ${pl};
constexpr int DH = ${dh}, DW = ${dw}, CG = C / GROUPS, OG = O / GROUPS;

// x[n, grp*CG + c] at kernel tap (i, j) of output pixel (oh, ow); 0 in the padding
template <class TX>
__device__ __forceinline__ T x_at(const TX* x, int grp, int c, int i, int j, int n, int oh,
                                  int ow)
{
    const int h = oh * SH - PT + i * DH, w = ow * SW - PL + j * DW;
    const bool inside = h >= 0 && h < H && w >= 0 && w < W;
    return inside ? T(x[((n * C + grp * CG + c) * H + h) * W + w]) : T(0);
}
${maps}

__device__ __forceinline__ bool is_finite(T v) { return v - v == T(0); }  // false: ±inf, NaN

// one BK step of the register tile's sums from the staged tiles; with SKIP, only the B cells
// whose `hit` is set
template <bool SKIP>
__device__ __forceinline__ void accumulate(T (&acc)[TM][TN], const T (*as)[BM + 1],
                                           const T (*bs)[BN + 1], const bool (*hit)[BN], int tx,
                                           int ty)
{
#pragma unroll (SKIP ? 1 : BK)  // the rare skipping path spends no registers on unrolling
    for (int kk = 0; kk < BK; ++kk) {
        T a[TM], b[TN];
        bool h[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = as[kk][ty + i * TY];
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            b[j] = bs[kk][tx + j * TX];
            h[j] = !SKIP || hit[kk][tx + j * TX];
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j)
                if (h[j]) acc[i][j] += a[i] * b[j];
    }
}
}  // namespace ${name}_ns

extern "C" __global__ void __launch_bounds__(${threads})
${name}(const ${ta}* __restrict__ a_src, const ${tb}* __restrict__ b_src, ${t}* __restrict__ out)
{
    using namespace ${name}_ns;
    __shared__ T as[BK][BM + 1];  // +1: the k-fast stores hit distinct banks
    __shared__ T bs[BK][BN + 1];
    __shared__ bool hit[MASKED ? BK : 1][BN];  // MASKED: whether bs's cell is a product
    const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
    const int p0 = blockIdx.x * BN, m0 = blockIdx.y * BM;
    const int grp = blockIdx.z % GROUPS;
    const int k_begin = (blockIdx.z / GROUPS) * K_PER_SPLIT;
    const int k_end = min(K, k_begin + K_PER_SPLIT);
    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        bool special = false;  // this thread staged an inf or NaN into A
        for (int e = tid; e < BM * BK; e += THREADS) {
            const int kk = e % BK, mm = e / BK, k = k0 + kk, m = m0 + mm;
            const T v = (m < M && k < k_end) ? a_at(a_src, grp, m, k) : T(0);
            as[kk][mm] = v;
            if (MASKED) special |= !is_finite(v);
        }
        for (int e = tid; e < BK * BN; e += THREADS) {
            const int kk = B_K_FAST ? e % BK : e / BN, pp = B_K_FAST ? e / BK : e % BN;
            const int k = k0 + kk, p = p0 + pp;
            bool h = true;  // past K, A is 0 too; columns past P are never stored
            bs[kk][pp] = (p < P && k < k_end) ? b_at(b_src, grp, k, p, h) : T(0);
            if (MASKED) hit[kk][pp] = h;
        }
        bool skip = false;  // skip the B cells that are no product: A holds an inf or NaN
        if (MASKED) skip = __syncthreads_or(special);  // the block's vote (a barrier too)
        else __syncthreads();
        if (skip) accumulate<MASKED>(acc, as, bs, hit, tx, ty);
        else accumulate<false>(acc, as, bs, hit, tx, ty);
        __syncthreads();  // the tiles are overwritten by the next step
    }
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int m = m0 + ty + i * TY, p = p0 + tx + j * TX;
            if (m < M && p < P) {
                T* dst = out + out_at(grp, m, p);
                if (SPLIT > 1) atomicAdd(dst, acc[i][j]);
                else *dst = acc[i][j];
            }
        }
}
