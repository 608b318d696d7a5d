constexpr int DH = ${dh}, DW = ${dw};  // the dilation

// The flat index into x of window (nc, oh, ow)'s first maximum in scan order among its real
// cells, a NaN winning (the first NaN), or -1 when the window lies wholly in the padding.
__device__ __forceinline__ int argmax(const X* x, int nc, int oh, int ow)
{
    int arg = -1;
    X best = X(0);
    for (int i = 0; i < KH; ++i) {
        const int h = oh * SH - PT + i * DH;
        if (h < 0 || h >= H) continue;
        for (int j = 0; j < KW; ++j) {
            const int w = ow * SW - PL + j * DW;
            if (w < 0 || w >= W) continue;
            const int at = (nc * H + h) * W + w;
            const X v = x[at];
            if (arg < 0 || v > best || (v != v && best == best)) {  // v != v: v is NaN
                arg = at;
                best = v;
            }
        }
    }
    return arg;
}
