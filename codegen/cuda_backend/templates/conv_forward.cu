// conv2d: y[n, o, oh, ow] = sum over (c, i, j) of w[o, c, i, j] * x[n, c, oh*SH - PT + i*DH, ...]
// A = w as (OG, CG*KH*KW) per group, B[k = (c, i, j), p = (n, oh, ow)] = x through the windows.
__device__ __forceinline__ T a_at(const TA* w, int grp, int m, int k)
{
    return T(w[(grp * OG + m) * K + k]);
}
__device__ __forceinline__ T b_at(const TB* x, int grp, int k, int p, bool&)
{
    return x_at(x, grp, k / (KH * KW), k / KW % KH, k % KW, p / (OH * OW), p / OW % OH, p % OW);
}
__device__ __forceinline__ int out_at(int grp, int m, int p)
{
    return ((p / (OH * OW)) * O + grp * OG + m) * (OH * OW) + p % (OH * OW);
}
