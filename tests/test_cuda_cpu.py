"""CUDA C kernels run on the CPU (graphdl.codegen.cuda_backend.cpu): results against NumPy in
two thread orders, and the checks that turn kernel bugs into errors or NaNs."""

from __future__ import annotations

import math
import re
import shutil
import subprocess

import numpy as np
import pytest

from graphdl.codegen.cuda_backend.cpu import loader
from graphdl.codegen.cuda_backend.cpu.loader import BuildError, KernelError, load

HAVE_GXX = shutil.which("g++") is not None
needs_gxx = pytest.mark.skipif(not HAVE_GXX, reason="g++ not found: CUDA kernels run on the CPU "
                               "by compiling them with g++ (install g++ to run these tests)")
ORDERS = ("forward", "reverse")

KERNELS = r"""
#include <cuda_runtime.h>

extern "C" __global__ void fused_sigmoid_fma(const float* __restrict__ a,
                                             const float* __restrict__ b,
                                             const float* __restrict__ c,
                                             float* __restrict__ out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 1.0f / (1.0f + expf(-(a[i] * b[i] + c[i])));
}

// Each block sums 2 * blockDim.x elements into partial[blockIdx.x]; blockDim.x a power of 2.
extern "C" __global__ void block_sum(const float* __restrict__ x, float* __restrict__ partial,
                                     int n) {
  extern __shared__ float sdata[];
  unsigned tid = threadIdx.x, i = blockIdx.x * (blockDim.x * 2) + tid;
  float v = 0.0f;
  if (i < (unsigned)n) v += x[i];
  if (i + blockDim.x < (unsigned)n) v += x[i + blockDim.x];
  sdata[tid] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) sdata[tid] += sdata[tid + s];
    __syncthreads();
  }
  if (tid == 0) partial[blockIdx.x] = sdata[0];
}

#define TILE 16
// C[M,N] = A[M,K] B[K,N], row-major, blockDim (16, 16).
extern "C" __global__ void sgemm_tiled(const float* __restrict__ A, const float* __restrict__ B,
                                       float* __restrict__ C, int M, int N, int K) {
  __shared__ float As[TILE][TILE];
  __shared__ float Bs[TILE][TILE];
  int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
  float acc = 0.0f;
  for (int t = 0; t < (K + TILE - 1) / TILE; ++t) {
    int ak = t * TILE + threadIdx.x, bk = t * TILE + threadIdx.y;
    As[threadIdx.y][threadIdx.x] = (row < M && ak < K) ? A[row * K + ak] : 0.0f;
    Bs[threadIdx.y][threadIdx.x] = (bk < K && col < N) ? B[bk * N + col] : 0.0f;
    __syncthreads();
    for (int k = 0; k < TILE; ++k) acc += As[threadIdx.y][k] * Bs[k][threadIdx.x];
    __syncthreads();
  }
  if (row < M && col < N) C[row * N + col] = acc;
}

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Grid-stride sum with warp shuffles, one shared slot per warp and an atomicAdd per block.
template <typename T> __device__ void shuffle_sum(const T* x, T* out, long long n) {
  __shared__ T warp_sums[32];
  T v = 0;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    v += x[i];
  v = warp_sum(v);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (int)((blockDim.x + 31) / 32) ? warp_sums[lane] : T(0);
    v = warp_sum(v);
    if (lane == 0) atomicAdd(out, v);
  }
}
extern "C" __global__ void sum_float(const float* x, float* out, long long n) {
  shuffle_sum(x, out, n);
}
extern "C" __global__ void sum_double(const double* x, double* out, long long n) {
  shuffle_sum(x, out, n);
}

// NCHW max-pool 2x2 stride 2, one thread per output element.
extern "C" __global__ void maxpool2x2(const float* __restrict__ x, float* __restrict__ y,
                                      int NC, int H, int W) {
  int OH = H / 2, OW = W / 2, idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= NC * OH * OW) return;
  int ow = idx % OW, oh = (idx / OW) % OH, nc = idx / (OW * OH);
  const float* p = x + (long long)nc * H * W + (2 * oh) * W + 2 * ow;
  y[idx] = fmaxf(fmaxf(p[0], p[1]), fmaxf(p[W], p[W + 1]));
}

// Per thread: inclusive scan (shfl_up), butterfly sum (shfl_xor), lane 3's value (shfl),
// shfl_down by 1 within segments of 8, ballot of odd values.
extern "C" __global__ void warp_ops(const int* x, int* out) {
  const unsigned FULL = 0xffffffffu;
  int t = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x & 31, v = x[t];
  int scan = v;
  for (int o = 1; o < 32; o <<= 1) {
    int y = __shfl_up_sync(FULL, scan, o);
    if (lane >= o) scan += y;
  }
  int total = v;
  for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(FULL, total, o);
  out[t * 5 + 0] = scan;
  out[t * 5 + 1] = total;
  out[t * 5 + 2] = __shfl_sync(FULL, v, 3);
  out[t * 5 + 3] = __shfl_down_sync(FULL, v, 1, 8);
  out[t * 5 + 4] = (int)__ballot_sync(FULL, v & 1);
}

extern "C" __global__ void count_positive(const float* x, int* counts, int* any_big) {
  float v = x[blockIdx.x * blockDim.x + threadIdx.x];
  int c = __syncthreads_count(v > 0.0f);
  int big = __syncthreads_or(v > 2.0f);
  if (threadIdx.x == 0) {
    counts[blockIdx.x] = c;
    any_big[blockIdx.x] = big;
  }
}

// Records the position at which each thread ran.
extern "C" __global__ void run_order(int* counter, int* when) {
  when[blockIdx.x * blockDim.x + threadIdx.x] = atomicAdd(counter, 1);
}

extern "C" __global__ void add_one_in_place(const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] + 1.0f;
}

extern "C" __global__ void half_scale_relu(const __half* a, __half* out, float s, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2half(fmaxf(__half2float(a[i]) * s, 0.0f));
}
"""

MATH = r"""
// Columns: expf, logf, log1pf, tanhf, fmaxf, sqrtf, erff, exp (float overload).
extern "C" __global__ void math_float(const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = x[i], *r = y + 8 * i;
  r[0] = expf(v); r[1] = logf(fabsf(v) + 1.0f); r[2] = log1pf(fabsf(v)); r[3] = tanhf(v);
  r[4] = fmaxf(v, 0.0f); r[5] = sqrtf(fabsf(v)); r[6] = erff(v); r[7] = exp(v);
}
// The same in double.
extern "C" __global__ void math_double(const double* x, double* y, long long n) {
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  double v = x[i], *r = y + 8 * i;
  r[0] = exp(v); r[1] = log(fabs(v) + 1.0); r[2] = log1p(fabs(v)); r[3] = tanh(v);
  r[4] = fmax(v, 0.0); r[5] = sqrt(fabs(v)); r[6] = erf(v); r[7] = exp(v);
}

template <typename T> __device__ T relu(T v) { return v > T(0) ? v : T(0); }

// A template kernel with a templated static shared tile: y = relu(x) reversed per block.
template <typename T, int BLOCK> __global__ void reverse_relu(const T* x, T* y) {
  __shared__ T tile[BLOCK];
  long long base = (long long)blockIdx.x * BLOCK;
  tile[threadIdx.x] = relu(x[base + threadIdx.x]);
  __syncthreads();
  y[base + threadIdx.x] = tile[BLOCK - 1 - threadIdx.x];
}
"""

BUGS = r"""
// Reduction without the __syncthreads inside the loop.
extern "C" __global__ void missing_sync(const float* x, float* partial, int n) {
  __shared__ float s[256];
  unsigned t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  s[t] = i < (unsigned)n ? x[i] : 0.0f;
  __syncthreads();
  for (unsigned k = blockDim.x / 2; k > 0; k >>= 1) {
    if (t < k) s[t] += s[t + k];
  }
  if (t == 0) partial[blockIdx.x] = s[0];
}

// Threads past n return while the others wait at the barrier.
extern "C" __global__ void early_exit(const float* x, float* y, int n) {
  __shared__ float s[256];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  s[threadIdx.x] = x[i];
  __syncthreads();
  y[i] = s[(threadIdx.x + 1) % blockDim.x];
}

extern "C" __global__ void divergent_barrier(float* y) {
  if (threadIdx.x < 16) __syncthreads();
  else __syncthreads();
  y[threadIdx.x] = 1.0f;
}

// A tile for 256 threads that only 128 load.
extern "C" __global__ void unwritten_shared(const float* x, float* y) {
  __shared__ float s[256];
  if (threadIdx.x < 128) s[threadIdx.x] = x[threadIdx.x];
  __syncthreads();
  y[threadIdx.x] = s[255 - threadIdx.x];
}

extern "C" __global__ void unwritten_dynamic_shared(float* y) {
  extern __shared__ float d[];
  if (threadIdx.x < 4) d[threadIdx.x] = 1.0f;
  __syncthreads();
  y[threadIdx.x] = d[threadIdx.x];
}

// Off by one: reads x[n], writes y[n].
extern "C" __global__ void off_by_one(const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) y[i] = x[i] * 2.0f;
}

// Reads one element past the end, in float and double.
extern "C" __global__ void read_past_end(const float* x, const double* d, float* y, double* z,
                                         int n) {
  y[0] = x[n];
  z[0] = d[n];
}

// Warp-sum with a full mask in a block of 48: lanes 32..47 have no lanes 48..63 to read.
extern "C" __global__ void partial_warp_sum(const float* x, float* y) {
  float v = x[threadIdx.x];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  y[threadIdx.x] = v;
}

extern "C" __global__ void traps(int* y) {
  if (threadIdx.x == 5) __trap();
  y[threadIdx.x] = 1;
}
"""


@pytest.fixture(scope="module")
def kernels():
    if not HAVE_GXX:
        pytest.skip("g++ not found: CUDA kernels run on the CPU by compiling them with g++")
    return load(KERNELS)


@pytest.fixture(scope="module")
def math_kernels():
    if not HAVE_GXX:
        pytest.skip("g++ not found: CUDA kernels run on the CPU by compiling them with g++")
    return load(MATH, name_expressions=["reverse_relu<float, 64>", "reverse_relu<double, 32>"])


@pytest.fixture(scope="module")
def bugs():
    if not HAVE_GXX:
        pytest.skip("g++ not found: CUDA kernels run on the CPU by compiling them with g++")
    return load(BUGS)


def blocks(n, size):
    return ((n + size - 1) // size,)


# ---------------------------------------------------------------- results against NumPy


@pytest.mark.parametrize("order", ORDERS)
def test_fused_elementwise(kernels, rng, order):
    n = 1000
    a, b, c = (rng.standard_normal(n, dtype=np.float32) for _ in range(3))
    out = loader.empty(n, np.float32)
    kernels.get_function("fused_sigmoid_fma")(blocks(n, 256), (256,), (a, b, c, out, np.int32(n)),
                                              order=order)
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-(a.astype(np.float64) * b + c))), rtol=1e-6)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("n", [1, 1000, 1 << 16])
def test_block_reduction_with_dynamic_shared_memory(kernels, rng, order, n):
    x = rng.standard_normal(n, dtype=np.float32)
    partial = loader.empty(blocks(n, 512), np.float32)
    kernels.get_function("block_sum")(blocks(n, 512), (256,), (x, partial, np.int32(n)),
                                      shared_mem=256 * 4, order=order)
    assert partial.astype(np.float64).sum() == pytest.approx(x.astype(np.float64).sum(),
                                                             abs=1e-4 * math.sqrt(n))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("m, n, k", [(16, 16, 16), (33, 17, 45)])
def test_tiled_sgemm(kernels, rng, order, m, n, k):
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = loader.empty((m, n), np.float32)
    kernels.get_function("sgemm_tiled")((blocks(n, 16)[0], blocks(m, 16)[0]), (16, 16),
                                        (a, b, c, np.int32(m), np.int32(n), np.int32(k)),
                                        order=order)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, atol=1e-5 * k)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shuffle_and_atomic_sum(kernels, rng, order, dtype):
    x = rng.standard_normal(100_000).astype(dtype)
    out = np.zeros(1, dtype)
    name = "sum_float" if dtype == np.float32 else "sum_double"
    kernels.get_function(name)((40,), (256,), (x, out, np.int64(x.size)), order=order)
    assert out[0] == pytest.approx(x.astype(np.float64).sum(), abs=1e-2 if dtype == np.float32
                                   else 1e-9)


def test_warp_shuffles_and_ballot(kernels, rng):
    x = rng.integers(0, 100, 128, dtype=np.int32)
    out = np.zeros((128, 5), np.int32)
    kernels.get_function("warp_ops")((2,), (64,), (x, out), order="reverse")
    warps, segments = x.reshape(4, 32), x.reshape(16, 8)
    np.testing.assert_array_equal(out[:, 0], np.cumsum(warps, axis=1).ravel())
    np.testing.assert_array_equal(out[:, 1], np.repeat(warps.sum(1), 32))
    np.testing.assert_array_equal(out[:, 2], np.repeat(warps[:, 3], 32))
    np.testing.assert_array_equal(out[:, 3], np.hstack([segments[:, 1:], segments[:, 7:]]).ravel())
    odd = [sum(1 << lane for lane in range(32) if w[lane] & 1) for w in warps]
    np.testing.assert_array_equal(out[:, 4].view(np.uint32), np.repeat(np.uint32(odd), 32))


def test_syncthreads_count_and_or(kernels, rng):
    x = rng.standard_normal(4 * 128, dtype=np.float32)
    counts, big = np.zeros(4, np.int32), np.zeros(4, np.int32)
    kernels.get_function("count_positive")((4,), (128,), (x, counts, big))
    np.testing.assert_array_equal(counts, (x.reshape(4, 128) > 0).sum(1))
    np.testing.assert_array_equal(big, (x.reshape(4, 128) > 2).any(1))


@pytest.mark.parametrize("order", ORDERS)
def test_max_pool(kernels, rng, order):
    x = rng.standard_normal((2, 3, 8, 10), dtype=np.float32)
    y = loader.empty((2, 3, 4, 5), np.float32)
    kernels.get_function("maxpool2x2")((1,), (128,), (x, y, np.int32(6), np.int32(8),
                                                      np.int32(10)), order=order)
    np.testing.assert_array_equal(y, x.reshape(2, 3, 4, 2, 5, 2).max(axis=(3, 5)))


def test_half_precision(kernels, rng):
    a = rng.standard_normal(1000).astype(np.float16)
    out = np.empty_like(a)
    kernels.get_function("half_scale_relu")((4,), (256,), (a, out, np.float32(1.5),
                                                           np.int32(1000)))
    np.testing.assert_array_equal(out, np.maximum(a.astype(np.float32) * 1.5, 0).astype(np.float16))


@pytest.mark.parametrize("dtype, name, index", [(np.float32, "math_float", np.int32),
                                                (np.float64, "math_double", np.int64)])
def test_math_functions(math_kernels, rng, dtype, name, index):
    x = (rng.standard_normal(100) * 3).astype(dtype)
    y = loader.empty((100, 8), dtype)
    math_kernels.get_function(name)((2,), (64,), (x, y, index(100)))
    erf = np.vectorize(math.erf)(x)
    expected = np.stack([np.exp(x), np.log(abs(x) + 1), np.log1p(abs(x)), np.tanh(x),
                         np.maximum(x, 0), np.sqrt(abs(x)), erf, np.exp(x)], axis=1)
    np.testing.assert_allclose(y, expected, rtol=4e-7 if dtype == np.float32 else 1e-15, atol=0)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name, dtype, size", [("reverse_relu<float, 64>", np.float32, 64),
                                               ("reverse_relu<double, 32>", np.float64, 32)])
def test_template_kernel_instances(math_kernels, rng, order, name, dtype, size):
    x = rng.standard_normal(3 * size).astype(dtype)
    y = loader.empty(3 * size, dtype)
    math_kernels.get_function(name)((3,), (size,), (x, y), order=order)
    np.testing.assert_array_equal(y, np.maximum(x, 0).reshape(3, size)[:, ::-1].ravel())


def test_same_array_for_two_parameters_is_one_memory(kernels):
    x = np.arange(300, dtype=np.float32)
    kernels.get_function("add_one_in_place")(blocks(300, 128), (128,), (x, x, np.int32(300)))
    np.testing.assert_array_equal(x, np.arange(300) + 1)


# ---------------------------------------------------------------- thread order


def test_orders_run_threads_and_blocks_forward_reverse_and_seeded_random(kernels):
    def when(order):
        counter, when = np.zeros(1, np.int32), np.zeros(64, np.int32)
        kernels.get_function("run_order")((2,), (32,), (counter, when), order=order)
        return when

    np.testing.assert_array_equal(when("forward"), np.arange(64))
    np.testing.assert_array_equal(when("reverse"), np.arange(64)[::-1])
    shuffled = when("random:1")
    np.testing.assert_array_equal(np.sort(shuffled), np.arange(64))
    assert not np.array_equal(shuffled, np.arange(64))
    np.testing.assert_array_equal(when("random:1"), shuffled)
    assert not np.array_equal(when("random:2"), shuffled)


def test_module_order_is_the_default_and_a_call_overrides_it(kernels, monkeypatch):
    monkeypatch.setenv(loader.ORDER_ENV, "random:5")
    reverse = load(KERNELS, order="reverse")
    counter, when = np.zeros(1, np.int32), np.zeros(4, np.int32)
    reverse.get_function("run_order")((1,), (4,), (counter, when))
    np.testing.assert_array_equal(when, [3, 2, 1, 0])
    counter[0] = 0
    reverse.get_function("run_order")((1,), (4,), (counter, when), order="forward")
    np.testing.assert_array_equal(when, [0, 1, 2, 3])


def test_missing_syncthreads_gives_different_results_in_forward_and_reverse_order(bugs):
    # Run every kernel in two orders and compare: this is the check that catches the race.
    x = np.arange(512, dtype=np.float32)
    results = {}
    for order in ORDERS:
        partial = np.zeros(2, np.float32)
        bugs.get_function("missing_sync")((2,), (256,), (x, partial, np.int32(512)), order=order)
        results[order] = partial
    assert not np.array_equal(results["forward"], results["reverse"])
    assert not np.array_equal(results["forward"], [x[:256].sum(), x[256:].sum()])


def test_unknown_order_is_refused(kernels):
    with pytest.raises(ValueError, match="thread order 'backward'"):
        kernels.get_function("run_order")((1,), (4,), (np.zeros(1, np.int32),
                                                       np.zeros(4, np.int32)), order="backward")


# ---------------------------------------------------------------- bugs become errors or NaNs


def test_out_of_bounds_write_raises(bugs):
    x, y = np.ones(1000, np.float32), np.zeros(1000, np.float32)
    with pytest.raises(IndexError, match=r"off_by_one wrote out of bounds of argument 1 'y'"):
        bugs.get_function("off_by_one")((4,), (256,), (x, y, np.int32(1000)))
    assert not y.any()  # a failed launch leaves the caller's arrays alone


def test_out_of_bounds_read_sees_nan_in_float_and_double(bugs):
    y, z = np.zeros(1, np.float32), np.zeros(1, np.float64)
    bugs.get_function("read_past_end")((1,), (1,), (np.ones(5, np.float32), np.ones(5),
                                                    y, z, np.int32(5)))
    assert np.isnan(y[0]) and np.isnan(z[0])


def test_unwritten_shared_memory_reads_nan(bugs, math_kernels):
    x, y = np.ones(256, np.float32), np.zeros(256, np.float32)
    bugs.get_function("unwritten_shared")((1,), (256,), (x, y))
    assert np.isnan(y[:128]).all() and (y[128:] == 1).all()
    y = np.zeros(8, np.float32)
    bugs.get_function("unwritten_dynamic_shared")((1,), (8,), (y,), shared_mem=8 * 4)
    assert (y[:4] == 1).all() and np.isnan(y[4:]).all()


def test_shuffle_from_a_lane_past_the_block_reads_nan(bugs):
    x, y = np.ones(48, np.float32), np.zeros(48, np.float32)
    bugs.get_function("partial_warp_sum")((1,), (48,), (x, y))
    assert y[0] == 32 and np.isnan(y[32])


def test_thread_returning_before_a_barrier_raises(bugs):
    x, y = np.ones(300, np.float32), np.zeros(300, np.float32)
    with pytest.raises(KernelError, match="returned while others wait at __syncthreads"):
        bugs.get_function("early_exit")((2,), (256,), (x, y, np.int32(300)))


def test_barrier_in_divergent_code_raises(bugs):
    with pytest.raises(KernelError, match="different __syncthreads"):
        bugs.get_function("divergent_barrier")((1,), (32,), (np.zeros(32, np.float32),))


def test_trap_raises(bugs):
    with pytest.raises(KernelError, match=r"__trap\(\) called .*thread \(5,0,0\)"):
        bugs.get_function("traps")((1,), (32,), (np.zeros(32, np.int32),))


# ---------------------------------------------------------------- argument and launch checks


def test_wrong_argument_dtype_raises_before_launch(kernels):
    kernel = kernels.get_function("fused_sigmoid_fma")
    a = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match=r"argument 2 'c' \(const float\*\): expected an array of "
                                        "float32, got an array of float64"):
        kernel((1,), (32,), (a, a, a.astype(np.float64), a, np.int32(4)))
    with pytest.raises(TypeError, match=r"argument 4 'n' \(int\): expected a NumPy scalar "
                                        r"np.int32\(...\), got int64 int64"):
        kernel((1,), (32,), (a, a, a, a, np.int64(4)))
    with pytest.raises(TypeError, match=r"np.int32\(...\), got int$"):
        kernel((1,), (32,), (a, a, a, a, 4))
    with pytest.raises(TypeError, match="not C-contiguous"):
        kernel((1,), (32,), (a, a, a, np.zeros(8, np.float32)[::2], np.int32(4)))
    with pytest.raises(TypeError, match="takes 5 arguments"):
        kernel((1,), (32,), (a, a, a, a))


def test_read_only_array_for_a_non_const_pointer_raises(kernels):
    a = np.zeros(4, np.float32)
    out = np.zeros(4, np.float32)
    out.flags.writeable = False
    with pytest.raises(TypeError, match="argument 3 'out' .* read-only"):
        kernels.get_function("fused_sigmoid_fma")((1,), (32,), (a, a, a, out, np.int32(4)))


def test_arguments_overlapping_in_part_raise(kernels):
    x = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="overlap in part"):
        kernels.get_function("add_one_in_place")((1,), (32,), (x[:6], x[4:], np.int32(6)))


def test_launch_configuration_is_checked(kernels):
    kernel = kernels.get_function("run_order")
    args = (np.zeros(1, np.int32), np.zeros(2048, np.int32))
    with pytest.raises(ValueError, match="more than 1024 threads"):
        kernel((1,), (64, 32), args)
    with pytest.raises(ValueError, match="shared_mem=49153 bytes, the limit is 49152"):
        kernel((1,), (32,), args, shared_mem=48 * 1024 + 1)
    with pytest.raises(TypeError, match="grid must be an int or a tuple"):
        kernel((1.0,), (32,), args)


def test_unknown_kernel_name_lists_the_kernels(math_kernels):
    with pytest.raises(LookupError, match=r"no kernel 'reverse_relu'.*'math_double'.*"
                                          "name_expressions"):
        math_kernels.get_function("reverse_relu")


# ---------------------------------------------------------------- building


def test_shared_memory_at_file_scope_is_refused():
    with pytest.raises(ValueError, match="at file scope"):
        loader.translate("__shared__ float s[4];\n"
                         'extern "C" __global__ void k(float* y) { y[0] = s[0]; }')


def test_kernel_names_ignore_comments_and_template_kernels():
    source = ('// __global__ void commented(int n) {}\n'
              'template <int N> __global__ void tmpl(float* y) {}\n'
              'extern "C" __global__ void plain(const float* x, float* y, int n) {}\n')
    _, symbols = loader.translate(source, ["tmpl<4>"])
    assert symbols == {"plain": "plain", "tmpl<4>": "gdl_expr_0"}
    assert loader.find_kernels(source)["plain"].param_names == ("x", "y", "n")


@needs_gxx
def test_built_module_is_cached_by_source(tmp_path, monkeypatch):
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path))
    source = 'extern "C" __global__ void cached_kernel(int* y) { y[threadIdx.x] = 7; }'
    first = load(source)
    built = first.path.stat().st_mtime_ns
    assert first.path.parent == tmp_path
    assert load(source).path == first.path and first.path.stat().st_mtime_ns == built
    y = np.zeros(3, np.int32)
    first.get_function("cached_kernel")((1,), (3,), (y,))
    np.testing.assert_array_equal(y, [7, 7, 7])


@needs_gxx
def test_builds_load_the_precompiled_header(tmp_path, monkeypatch):
    """The header's precompiled form is made once in the cache, and g++ takes it (it prints
    '!' before a precompiled header it uses, under -H) with the build's own flags."""
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path))
    load('extern "C" __global__ void seven(int* y) { y[threadIdx.x] = 7; }')
    (precompiled,) = tmp_path.glob("header-*/cuda_cpu.h.gch")
    source = tmp_path / "empty.cu"
    source.write_text("")
    done = subprocess.run(["g++", *loader.FLAGS, "-H", "-I", str(loader.INCLUDE_DIR), "-include",
                           str(precompiled.with_suffix("")), "-x", "c++", str(source), "-o",
                           str(tmp_path / "empty.so")], check=True, capture_output=True,
                          text=True)
    assert f"! {precompiled}" in done.stderr, done.stderr[:2000]


@needs_gxx
def test_compiler_error_is_reported_with_its_message():
    with pytest.raises(BuildError, match="(?s)g\\+\\+ could not compile.*undeclared_name"):
        load('extern "C" __global__ void broken(float* y) { y[0] = undeclared_name; }')


@needs_gxx
def test_portable_context_switch_gives_the_same_results(rng):
    # ucontext is the only fiber switch on CPUs other than x86-64: keep it tested here.
    module = load(KERNELS, options=("-DGDL_CPU_UCONTEXT",))
    x = rng.standard_normal(3000, dtype=np.float32)
    partial = np.zeros(3, np.float32)
    module.get_function("block_sum")((3,), (512,), (x, partial, np.int32(3000)),
                                     shared_mem=512 * 4, order="reverse")
    assert partial.sum() == pytest.approx(x.sum(), abs=1e-3)
    out = np.zeros(1, np.float64)
    module.get_function("sum_double")((4,), (96,), (x.astype(np.float64), out, np.int64(3000)))
    assert out[0] == pytest.approx(x.astype(np.float64).sum(), abs=1e-9)


def test_empty_device_array_reads_nan():
    assert np.isnan(loader.empty((2, 3), np.float32)).all()
    assert (loader.empty(4, np.int32) == -1).all()


def test_launches_leave_no_mappings_behind():
    """Fiber stacks (each with a guard page, which splits the mapping) are unmapped after a
    launch: a process that loads hundreds of modules must not run out of mappings (it did at
    ~125 modules, 517 mappings each)."""
    import os

    def mappings():
        with open(f"/proc/{os.getpid()}/maps") as f:
            return sum(1 for _ in f)

    x = np.ones(1024, np.float32)
    counts = []
    for k in range(3):  # distinct sources: distinct modules, as compiled graphs are
        module = load(f"""// module {k}
extern "C" __global__ void twice(const float* x, float* y, int n) {{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.0f * x[i] + {k}.0f;
}}""")
        y = np.empty_like(x)
        module.get_function("twice")((4,), (256,), (x, y, np.int32(x.size)))
        assert y[0] == 2.0 + k
        counts.append(mappings())
    assert counts[2] - counts[1] < 50  # the shared object's own few, not one per fiber


# ---------------------------------------------------------------- no more permissive than NVRTC

@needs_gxx
@pytest.mark.parametrize("macro", ["M_SQRT2", "M_PI", "M_LN2", "M_PIf", "M_SQRT1_2l"])
def test_math_h_constants_do_not_build_as_nvrtc_has_none(macro, tmp_path, monkeypatch):
    """NVRTC defines no M_PI, M_SQRT2, ...: a kernel naming one must fail here too, even after
    including <cmath> and <math.h> itself (glibc defines them with g++'s _GNU_SOURCE)."""
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path))
    source = f"""#include <cmath>
#include <math.h>
extern "C" __global__ void scale(double* y) {{ y[threadIdx.x] *= (double){macro}; }}
"""
    with pytest.raises(BuildError, match=f"{macro}. was not declared"):
        load(source)


@needs_gxx
def test_the_header_leaves_no_math_h_constant_defined():
    """Every M_ macro of every width (M_PI, M_PIf, M_PIl, M_PIf128, ...), checked on what g++
    itself has defined after the force-included header."""
    done = subprocess.run(
        ["g++", *loader.FLAGS, "-I", str(loader.INCLUDE_DIR), "-include", str(loader.HEADER),
         "-dM", "-E", "-x", "c++", "-"], input="", capture_output=True, text=True, check=True)
    defined = sorted(m for m in re.findall(r"#define (\w+)", done.stdout) if m.startswith("M_"))
    assert defined == []
