// conv2d_weight_grad: dw[o, c, i, j] = sum over (n, oh, ow) of g[n, o, oh, ow] *
// x[n, c, oh*SH - PT + i*DH, ow*SW - PL + j*DW], the batch summed inside the GEMM's K axis.
// A[m = o, k = (n, oh, ow)] = g, B[k, p = (c, i, j)] = x through the windows (k-contiguous).
__device__ __forceinline__ T a_at(const TA* g, int grp, int m, int k)
{
    return T(g[((k / (OH * OW)) * O + grp * OG + m) * (OH * OW) + k % (OH * OW)]);
}
__device__ __forceinline__ T b_at(const TB* x, int grp, int k, int p, bool&)
{
    return x_at(x, grp, p / (KH * KW), p / KW % KH, p % KW, k / (OH * OW), k / OW % OH, k % OW);
}
__device__ __forceinline__ int out_at(int grp, int m, int p)
{
    return (grp * OG + m) * (CG * KH * KW) + p;
}
