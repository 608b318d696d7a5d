constexpr int PB = ${pb}, PR = ${pr};  // the padding's bottom and right
constexpr bool COUNT_PAD = ${count_include_pad};

// The cells window o counts along one axis (PyTorch's rule): clipped to the padded input (a
// ceil-mode window may reach past it), the padding counted or not.
__device__ __forceinline__ int side(int o, int s, int p0, int n, int p1, int k)
{
    const int start = o * s - p0, end = min(start + k, n + p1);
    return COUNT_PAD ? end - start : max(min(end, n) - max(start, 0), 0);
}
// never below 1: a window wholly in the padding averages to 0
__device__ __forceinline__ int divisor(int oh, int ow)
{
    return max(side(oh, SH, PT, H, PB, KH) * side(ow, SW, PL, W, PR, KW), 1);
}
