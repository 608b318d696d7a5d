// max_pool2d: each window's maximum; a window wholly in the padding gives the lowest value.
extern "C" __global__ void ${name}(const ${xt}* __restrict__ x, ${vt}* __restrict__ out)
{
    using namespace ${name}_ns;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < TOTAL; e += gridDim.x * blockDim.x) {
        const int arg = argmax(x, e / (OH * OW), e / OW % OH, e % OW);
        out[e] = arg < 0 ? ${lowest} : x[arg];
    }
}
