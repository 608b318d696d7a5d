// max_pool2d_grad: g routed to each window's arg-max in x; overlapping windows add up, by
// atomicAdd into the zeroed output.
extern "C" __global__ void ${name}(const ${vt}* __restrict__ g, const ${xt}* __restrict__ x,
                                   ${vt}* __restrict__ out)
{
    using namespace ${name}_ns;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < TOTAL; e += gridDim.x * blockDim.x) {
        const int arg = argmax(x, e / (OH * OW), e / OW % OH, e % OW);
        if (arg >= 0) atomicAdd(out + arg, g[e]);
    }
}
