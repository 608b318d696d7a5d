// conv2d_input_grad (the transposed convolution): dx[n, c, h, w] = sum over (o, i, j) of
// w[o, c, i, j] * g[n, o, oh, ow] where h = oh*SH - PT + i*DH (and w alike) hits a whole
// oh in [0, OH). Gathered per input pixel: every output cell is written once, no atomics.
// A[m = c, k = (o, i, j)] = w[grp*OG + o, c, i, j], B[k, p = (n, h, w)] = g at the hit; a
// tap (i, j) that lands on no output pixel is no product: `hit` false, so that an inf or NaN
// w[., ., i, j] reaches only the pixels whose windows it is in (NumPy's col2im, PyTorch).
__device__ __forceinline__ T a_at(const TA* w, int grp, int m, int k)
{
    return T(w[((grp * OG + k / (KH * KW)) * CG + m) * (KH * KW) + k % (KH * KW)]);
}
__device__ __forceinline__ T b_at(const TB* g, int grp, int k, int p, bool& hit)
{
    const int o = k / (KH * KW), i = k / KW % KH, j = k % KW;
    const int n = p / (H * W), th = p / W % H + PT - i * DH, tw = p % W + PL - j * DW;
    hit = th >= 0 && tw >= 0 && th % SH == 0 && tw % SW == 0 && th / SH < OH && tw / SW < OW;
    return hit ? T(g[((n * O + grp * OG + o) * OH + th / SH) * OW + tw / SW]) : T(0);
}
__device__ __forceinline__ int out_at(int grp, int m, int p)
{
    return ((p / (H * W)) * C + grp * CG + m) * (H * W) + p % (H * W);
}
