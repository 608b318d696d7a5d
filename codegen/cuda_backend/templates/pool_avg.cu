// avg_pool2d: each window's sum (the padding adds zeros) over its divisor.
extern "C" __global__ void ${name}(const ${xt}* __restrict__ x, ${vt}* __restrict__ out)
{
    using namespace ${name}_ns;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < TOTAL; e += gridDim.x * blockDim.x) {
        const int nc = e / (OH * OW), oh = e / OW % OH, ow = e % OW;
        V sum = V(0);
        for (int i = 0; i < KH; ++i) {
            const int h = oh * SH - PT + i;
            if (h < 0 || h >= H) continue;
            for (int j = 0; j < KW; ++j) {
                const int w = ow * SW - PL + j;
                if (w >= 0 && w < W) sum += x[(nc * H + h) * W + w];
            }
        }
        out[e] = sum / V(divisor(oh, ow));
    }
}
