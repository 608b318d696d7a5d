// max_pool2d_select: u read at each window's arg-max in x (0 for a window wholly in padding).
extern "C" __global__ void ${name}(const ${vt}* __restrict__ u, const ${xt}* __restrict__ x,
                                   ${vt}* __restrict__ out)
{
    using namespace ${name}_ns;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < TOTAL; e += gridDim.x * blockDim.x) {
        const int arg = argmax(x, e / (OH * OW), e / OW % OH, e % OW);
        out[e] = arg < 0 ? V(0) : u[arg];
    }
}
