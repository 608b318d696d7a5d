// avg_pool2d_grad: each input cell gathers g over its divisor from every window covering it
// (windows oh with oh*SH - PT <= h < oh*SH - PT + KH, likewise ow): no atomics.
extern "C" __global__ void ${name}(const ${vt}* __restrict__ g, ${vt}* __restrict__ out)
{
    using namespace ${name}_ns;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < TOTAL; e += gridDim.x * blockDim.x) {
        const int nc = e / (H * W), h = e / W % H, w = e % W;
        const int hk = h + PT - KH + 1, wk = w + PL - KW + 1;  // first windows, before clamping
        const int oh0 = hk > 0 ? (hk + SH - 1) / SH : 0, ow0 = wk > 0 ? (wk + SW - 1) / SW : 0;
        const int oh1 = min((h + PT) / SH, OH - 1), ow1 = min((w + PL) / SW, OW - 1);
        V sum = V(0);
        for (int oh = oh0; oh <= oh1; ++oh)
            for (int ow = ow0; ow <= ow1; ++ow)
                sum += g[(nc * OH + oh) * OW + ow] / V(divisor(oh, ow));
        out[e] = sum;
    }
}
