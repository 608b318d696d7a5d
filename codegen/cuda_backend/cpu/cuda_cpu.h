// cuda_cpu.h: the CUDA C built-ins a graphdl kernel uses, defined for g++ on the CPU.
//
// loader.py force-includes this header into the kernel source (the same text nvcc and NVRTC
// compile) and builds a shared library:
//   g++ -std=c++17 -O1 -fPIC -shared -fvisibility=hidden -fno-gnu-unique
//       -I include -include cuda_cpu.h -x c++ kernels.cu -o kernels.so
// -fvisibility=hidden and -fno-gnu-unique give every library its own scheduler state (inline
// variables would otherwise be one process-wide object, and two loaded modules would share it).
//
// Execution model. A launch runs its blocks one after another on the calling thread. Each CUDA
// thread of a block is a fiber with its own stack; a fiber runs until it reaches a barrier
// (__syncthreads, __syncwarp, a warp shuffle or vote) or returns, then the next fiber runs.
// The order in which fibers (and blocks) run is chosen per launch: forward, reverse or a seeded
// random permutation. A kernel whose result depends on that order has a race, typically a
// missing barrier (float atomics differ only by rounding). Checks that raise in Python instead of computing a wrong number: barriers reached
// at different source lines, threads that exit while others wait at __syncthreads, __trap().
// Shared memory is filled with 0xFF bytes (NaN as float, -1 as int) before each block uses it,
// so a read of shared memory nobody wrote shows up.
//
// Static `__shared__` variables become function-local statics (blocks never overlap, so one
// copy serves every block); loader.py follows each declaration with GDL_SHARED_FIRST_USE, which
// poisons the variable when the first thread of a block reaches it. `extern __shared__ T
// name[];` is not C++: loader.py rewrites it to a pointer into the launch's dynamic shared
// memory (GDL_DYN_SMEM), which is poisoned before each block.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <math.h>
#include <sys/mman.h>
#include <type_traits>
#include <utility>
#include <vector>
#if !defined(__x86_64__) && !defined(GDL_CPU_UCONTEXT)
#define GDL_CPU_UCONTEXT 1  // the hand-written stack switch below is x86-64 only
#endif
#ifdef GDL_CPU_UCONTEXT
#include <ucontext.h>
#endif
// NVRTC has no <math.h> constants: M_PI, M_SQRT2 and the rest (glibc defines them, with
// g++'s _GNU_SOURCE, in every width) are removed here, so a kernel that names one fails
// to build on the CPU as it would for a GPU. The kernel's own #include <cmath> or
// <math.h> cannot bring them back: both are already included, behind include guards.
#undef M_E
#undef M_Ef
#undef M_El
#undef M_Ef32
#undef M_Ef64
#undef M_Ef128
#undef M_Ef32x
#undef M_Ef64x
#undef M_LOG2E
#undef M_LOG2Ef
#undef M_LOG2El
#undef M_LOG2Ef32
#undef M_LOG2Ef64
#undef M_LOG2Ef128
#undef M_LOG2Ef32x
#undef M_LOG2Ef64x
#undef M_LOG10E
#undef M_LOG10Ef
#undef M_LOG10El
#undef M_LOG10Ef32
#undef M_LOG10Ef64
#undef M_LOG10Ef128
#undef M_LOG10Ef32x
#undef M_LOG10Ef64x
#undef M_LN2
#undef M_LN2f
#undef M_LN2l
#undef M_LN2f32
#undef M_LN2f64
#undef M_LN2f128
#undef M_LN2f32x
#undef M_LN2f64x
#undef M_LN10
#undef M_LN10f
#undef M_LN10l
#undef M_LN10f32
#undef M_LN10f64
#undef M_LN10f128
#undef M_LN10f32x
#undef M_LN10f64x
#undef M_PI
#undef M_PIf
#undef M_PIl
#undef M_PIf32
#undef M_PIf64
#undef M_PIf128
#undef M_PIf32x
#undef M_PIf64x
#undef M_PI_2
#undef M_PI_2f
#undef M_PI_2l
#undef M_PI_2f32
#undef M_PI_2f64
#undef M_PI_2f128
#undef M_PI_2f32x
#undef M_PI_2f64x
#undef M_PI_4
#undef M_PI_4f
#undef M_PI_4l
#undef M_PI_4f32
#undef M_PI_4f64
#undef M_PI_4f128
#undef M_PI_4f32x
#undef M_PI_4f64x
#undef M_1_PI
#undef M_1_PIf
#undef M_1_PIl
#undef M_1_PIf32
#undef M_1_PIf64
#undef M_1_PIf128
#undef M_1_PIf32x
#undef M_1_PIf64x
#undef M_2_PI
#undef M_2_PIf
#undef M_2_PIl
#undef M_2_PIf32
#undef M_2_PIf64
#undef M_2_PIf128
#undef M_2_PIf32x
#undef M_2_PIf64x
#undef M_2_SQRTPI
#undef M_2_SQRTPIf
#undef M_2_SQRTPIl
#undef M_2_SQRTPIf32
#undef M_2_SQRTPIf64
#undef M_2_SQRTPIf128
#undef M_2_SQRTPIf32x
#undef M_2_SQRTPIf64x
#undef M_SQRT2
#undef M_SQRT2f
#undef M_SQRT2l
#undef M_SQRT2f32
#undef M_SQRT2f64
#undef M_SQRT2f128
#undef M_SQRT2f32x
#undef M_SQRT2f64x
#undef M_SQRT1_2
#undef M_SQRT1_2f
#undef M_SQRT1_2l
#undef M_SQRT1_2f32
#undef M_SQRT1_2f64
#undef M_SQRT1_2f128
#undef M_SQRT1_2f32x
#undef M_SQRT1_2f64x
#ifndef GDL_CPU_STACK_BYTES
#define GDL_CPU_STACK_BYTES (64 * 1024)  // per CUDA thread; a guard page sits below each stack
#endif

// ---------------------------------------------------------------- qualifiers and types
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static __attribute__((aligned(16)))
#define GDL_DYN_SMEM(T, name) T* const name = reinterpret_cast<T*>(gdl_cpu::g_dyn_smem)
#define GDL_SHARED_FIRST_USE(name) \
  { static unsigned long long gdl_seen_; gdl_cpu::first_use(gdl_seen_, (void*)&(name), sizeof(name)); }

struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
// CUDA's alignments: vectorised loads through reinterpret_cast rely on them.
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
constexpr int warpSize = 32;

// ---------------------------------------------------------------- errors
namespace gdl_cpu {
inline int g_error = 0;
inline char g_errmsg[512];
inline unsigned char* g_dyn_smem = nullptr;
inline unsigned long long g_block = 0;  // counts blocks run by this module, never repeats

inline void first_use(unsigned long long& seen, void* var, size_t size) {
  if (seen == g_block) return;
  seen = g_block;
  memset(var, 0xFF, size);
}

// The first failure of a launch wins: later ones are consequences.
inline void fail(const char* what, int line) {
  if (g_error) return;
  g_error = 1;
  snprintf(g_errmsg, sizeof g_errmsg, "%s (source line %d, block (%u,%u,%u), thread (%u,%u,%u))",
           what, line, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y,
           threadIdx.z);
}
inline uint3 unflatten(unsigned t, dim3 d) { return {t % d.x, (t / d.x) % d.y, t / (d.x * d.y)}; }
}  // namespace gdl_cpu

// ---------------------------------------------------------------- math beyond <cmath>
// The C library provides the float (expf, log1pf, erff, ...) and double functions, and C++
// overloads exp(float) as CUDA does; these are CUDA's own additions.
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN: 0
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline double rcbrt(double x) { return 1.0 / cbrt(x); }
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
inline double normcdf(double x) { return 0.5 * erfc(-x * 0.70710678118654752); }
inline float sinpif(float x) { return sinf(3.14159265358979f * x); }
inline float cospif(float x) { return cosf(3.14159265358979f * x); }
inline double sinpi(double x) { return sin(3.14159265358979323846 * x); }
inline double cospi(double x) { return cos(3.14159265358979323846 * x); }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline float __int2float_rn(int x) { return (float)x; }
inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
inline unsigned __float_as_uint(float x) { unsigned i; memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
inline float __uint_as_float(unsigned i) { float x; memcpy(&x, &i, 4); return x; }
inline long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
inline double __longlong_as_double(long long i) { double x; memcpy(&x, &i, 8); return x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return (unsigned)(((unsigned long long)a * b) >> 32);
}
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
template <class T> inline T __ldg(const T* p) { return *p; }
// CUDA's min/max are overloaded functions in the global namespace.
#define GDL_MINMAX(T, lo, hi)                 \
  inline T min(T a, T b) { return lo(a, b); } \
  inline T max(T a, T b) { return hi(a, b); }
#define GDL_LESS(a, b) ((b) < (a) ? (b) : (a))
#define GDL_MORE(a, b) ((a) < (b) ? (b) : (a))
GDL_MINMAX(int, GDL_LESS, GDL_MORE)
GDL_MINMAX(unsigned, GDL_LESS, GDL_MORE)
GDL_MINMAX(long long, GDL_LESS, GDL_MORE)
GDL_MINMAX(unsigned long long, GDL_LESS, GDL_MORE)
GDL_MINMAX(float, fminf, fmaxf)
GDL_MINMAX(double, fmin, fmax)
#undef GDL_MINMAX
inline long long clock64() { return 0; }

// ---------------------------------------------------------------- __half (GCC's _Float16)
#ifdef __FLT16_MANT_DIG__
typedef _Float16 __half;
inline __half __float2half(float f) { return (__half)f; }
inline __half __float2half_rn(float f) { return (__half)f; }
inline float __half2float(__half h) { return (float)h; }
inline __half __hadd(__half a, __half b) { return (__half)((float)a + (float)b); }
inline __half __hsub(__half a, __half b) { return (__half)((float)a - (float)b); }
inline __half __hmul(__half a, __half b) { return (__half)((float)a * (float)b); }
inline __half __hfma(__half a, __half b, __half c) { return (__half)fmaf(a, b, c); }
#endif

// ---------------------------------------------------------------- atomics
// Fibers never run at the same time, so a read-modify-write is atomic as written. The
// overloads are CUDA's, so a call nvcc would reject (atomicMax on float) fails here too.
#define GDL_ATOMIC(name, T, expr) \
  inline T name(T* a, T v) { T old = *a; *a = (expr); return old; }
#define GDL_ADD(T) GDL_ATOMIC(atomicAdd, T, old + v)
GDL_ADD(int) GDL_ADD(unsigned) GDL_ADD(unsigned long long) GDL_ADD(float) GDL_ADD(double)
GDL_ATOMIC(atomicSub, int, old - v) GDL_ATOMIC(atomicSub, unsigned, old - v)
#define GDL_BITS_MINMAX(T)                        \
  GDL_ATOMIC(atomicMin, T, GDL_LESS(old, v))      \
  GDL_ATOMIC(atomicMax, T, GDL_MORE(old, v))      \
  GDL_ATOMIC(atomicAnd, T, old & v)               \
  GDL_ATOMIC(atomicOr, T, old | v)                \
  GDL_ATOMIC(atomicXor, T, old ^ v)               \
  GDL_ATOMIC(atomicExch, T, v)                    \
  inline T atomicCAS(T* a, T cmp, T v) { T old = *a; if (old == cmp) *a = v; return old; }
GDL_BITS_MINMAX(int) GDL_BITS_MINMAX(unsigned) GDL_BITS_MINMAX(unsigned long long)
GDL_ATOMIC(atomicMin, long long, GDL_LESS(old, v))
GDL_ATOMIC(atomicMax, long long, GDL_MORE(old, v))
GDL_ATOMIC(atomicExch, float, v)
GDL_ATOMIC(atomicInc, unsigned, old >= v ? 0u : old + 1u)
GDL_ATOMIC(atomicDec, unsigned, (old == 0u || old > v) ? v : old - 1u)
#undef GDL_ADD
#undef GDL_BITS_MINMAX
#undef GDL_ATOMIC
#undef GDL_LESS
#undef GDL_MORE
inline void __threadfence() {}
inline void __threadfence_block() {}

// ---------------------------------------------------------------- fibers
namespace gdl_cpu {
enum State : unsigned char { READY, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };

#ifdef GDL_CPU_UCONTEXT
struct Context { ucontext_t uc; };
#else
// Saves the callee-saved registers on the current stack, stores the stack pointer in *save_sp
// and resumes the context whose stack pointer is new_sp. swapcontext() would also save the
// signal mask, a system call per switch (about ten times slower).
extern "C" void gdl_cpu_switch(void** save_sp, void* new_sp);
asm(R"(
  .text
  .weak gdl_cpu_switch
  .hidden gdl_cpu_switch
  .type gdl_cpu_switch,@function
gdl_cpu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size gdl_cpu_switch, .-gdl_cpu_switch
)");
struct Context { void* sp; };
#endif

struct Fiber {
  Context ctx;
  State state;
  int line;  // the source line of the barrier it waits at
};

struct Scheduler {
  std::vector<Fiber> fibers;
  std::vector<unsigned> order;             // fiber run order within a block
  std::vector<unsigned long long> slots;   // one per thread: values exchanged by warp ops
  unsigned char* stacks = nullptr;         // one mapping: [guard page, stack] per thread
  unsigned nstacks = 0;
  Context main;
  unsigned cur = 0;
  void (*body)(void*) = nullptr;
  void* payload = nullptr;
};
inline Scheduler S;
constexpr size_t kPage = 4096;
constexpr size_t kSlot = kPage + ((GDL_CPU_STACK_BYTES + kPage - 1) / kPage) * kPage;

inline void switch_to(Context& save, Context& to) {
#ifdef GDL_CPU_UCONTEXT
  swapcontext(&save.uc, &to.uc);
#else
  gdl_cpu_switch(&save.sp, to.sp);
#endif
}

inline void fiber_main() {
  S.body(S.payload);
  S.fibers[S.cur].state = DONE;
#ifndef GDL_CPU_UCONTEXT
  switch_to(S.fibers[S.cur].ctx, S.main);  // a finished fiber is never resumed
  __builtin_unreachable();
#endif  // ucontext returns to S.main through uc_link
}

inline void start_fiber(Fiber& f, unsigned char* stack_lo, size_t size) {
  f.state = READY;
#ifdef GDL_CPU_UCONTEXT
  getcontext(&f.ctx.uc);
  f.ctx.uc.uc_stack.ss_sp = stack_lo;
  f.ctx.uc.uc_stack.ss_size = size;
  f.ctx.uc.uc_link = &S.main.uc;
  makecontext(&f.ctx.uc, fiber_main, 0);
#else
  // The frame gdl_cpu_switch pops: padding, six zeroed registers, the return address
  // fiber_main, and padding that leaves rsp % 16 == 8 on entry, as after a call.
  uintptr_t top = ((uintptr_t)(stack_lo + size)) & ~(uintptr_t)15;
  void** sp = (void**)top - 11;
  for (int r = 0; r < 11; ++r) sp[r] = nullptr;
  sp[7] = (void*)&fiber_main;
  f.ctx.sp = sp;
#endif
}

// Stacks are mapped for a launch and unmapped after it: each one's guard page splits the
// mapping, and a process holding hundreds of loaded modules would otherwise run out of
// mappings (vm.max_map_count) long before it runs out of memory.
inline bool ensure_stacks(unsigned n) {
  if (n <= S.nstacks) return true;
  if (S.stacks) munmap(S.stacks, S.nstacks * kSlot);
  S.nstacks = 0;
  void* p = mmap(nullptr, n * kSlot, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  S.stacks = (unsigned char*)p;
  for (unsigned i = 0; i < n; ++i) mprotect(S.stacks + i * kSlot, kPage, PROT_NONE);
  S.nstacks = n;
  return true;
}
inline void release_stack_pages() {
  if (S.stacks) munmap(S.stacks, S.nstacks * kSlot);
  S.stacks = nullptr;
  S.nstacks = 0;
}

inline void wait_at(State barrier, int line) {
  Fiber& me = S.fibers[S.cur];
  me.state = barrier;
  me.line = line;
  switch_to(me.ctx, S.main);
}

// __trap(): end the launch with an error. The fiber is abandoned, never resumed.
inline void trap(int line) {
  fail("__trap() called", line);
  S.fibers[S.cur].state = DONE;
  switch_to(S.fibers[S.cur].ctx, S.main);
}

// 0 forward, 1 reverse, 2 random (a seeded permutation, the same for every launch with that seed).
inline void permutation(std::vector<unsigned>& p, unsigned n, int order, unsigned long long seed) {
  p.resize(n);
  for (unsigned i = 0; i < n; ++i) p[i] = order == 1 ? n - 1 - i : i;
  if (order != 2) return;
  unsigned long long s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (unsigned i = n; i > 1; --i) {  // Fisher-Yates with a 64-bit LCG
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    std::swap(p[i - 1], p[(unsigned)((s >> 33) % i)]);
  }
}

inline void resume(unsigned i) {
  S.cur = i;
  threadIdx = unflatten(i, blockDim);
  switch_to(S.main, S.fibers[i].ctx);
}

// Releases every warp whose live threads all wait at one __syncwarp/shuffle site. Returns
// whether any warp was released; -1 on divergent sites within a warp.
inline int release_warps(unsigned n, bool& any_live) {
  bool released = false;
  for (unsigned lo = 0; lo < n; lo += 32) {
    unsigned hi = lo + 32 < n ? lo + 32 : n;
    bool live = false, all_wait = true;
    int line = -1;
    for (unsigned i = lo; i < hi && all_wait; ++i) {
      const Fiber& f = S.fibers[i];
      if (f.state == DONE) continue;
      live = any_live = true;
      if (f.state != AT_WARP_BARRIER) all_wait = false;
      else if (line < 0) line = f.line;
      else if (line != f.line) {
        threadIdx = unflatten(i, blockDim);
        fail("threads of one warp wait at different __syncwarp/shuffle sites", f.line);
        return -1;
      }
    }
    if (!live || !all_wait) continue;
    for (unsigned i = lo; i < hi; ++i)
      if (S.fibers[i].state == AT_WARP_BARRIER) S.fibers[i].state = READY;
    released = true;
  }
  return released;
}

// Releases the block barrier when every live thread waits at the same __syncthreads.
inline bool release_block(unsigned n) {
  int line = -1;
  bool some_done = false;
  for (unsigned i = 0; i < n; ++i) {
    const Fiber& f = S.fibers[i];
    if (f.state == DONE) { some_done = true; continue; }
    threadIdx = unflatten(i, blockDim);
    if (f.state != AT_BLOCK_BARRIER) {
      fail("deadlock: some threads wait at __syncthreads, others at a warp barrier", f.line);
      return false;
    }
    if (line < 0) line = f.line;
    else if (line != f.line) {
      fail("threads wait at different __syncthreads (a barrier in divergent code)", f.line);
      return false;
    }
  }
  if (some_done) {
    fail("some threads returned while others wait at __syncthreads", line);
    return false;
  }
  for (unsigned i = 0; i < n; ++i) S.fibers[i].state = READY;
  return true;
}

// Runs one block to completion; false on a kernel error.
inline bool run_block(unsigned n) {
  for (unsigned i = 0; i < n; ++i) start_fiber(S.fibers[i], S.stacks + i * kSlot + kPage,
                                               kSlot - kPage);
  for (;;) {
    for (unsigned k = 0; k < n && !g_error; ++k)
      if (S.fibers[S.order[k]].state == READY) resume(S.order[k]);
    if (g_error) return false;
    bool any_live = false;
    int warps = release_warps(n, any_live);
    if (warps < 0) return false;
    if (!any_live) return true;
    if (!warps && !release_block(n)) return false;
  }
}

template <class... P, size_t... I>
inline void call_unpacked(void (*k)(P...), void** a, std::index_sequence<I...>) {
  k(*static_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(a[I])...);
}

inline std::vector<unsigned char> g_dyn_buf;

// A cuLaunchKernel-like entry: args[i] points at the i-th argument's value. Returns 0, or 1
// with the message in g_errmsg.
template <class... P>
int launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, void** args, int order,
           unsigned long long seed) {
  struct Payload { void (*k)(P...); void** a; } payload{kernel, args};
  unsigned n = block.x * block.y * block.z;
  g_error = 0;
  if (!ensure_stacks(n)) { fail("cannot map fiber stacks", 0); return 1; }
  gridDim = grid;
  blockDim = block;
  S.body = [](void* p) {
    auto* q = static_cast<Payload*>(p);
    call_unpacked(q->k, q->a, std::index_sequence_for<P...>{});
  };
  S.payload = &payload;
  S.fibers.resize(n);
  S.slots.assign(n, 0);
  permutation(S.order, n, order, seed);
  if (g_dyn_buf.size() < smem + 16) g_dyn_buf.resize(smem + 16);  // never a null pointer
  g_dyn_smem = g_dyn_buf.data();
  std::vector<unsigned> blocks;
  permutation(blocks, grid.x * grid.y * grid.z, order, seed + 1);
  for (unsigned b : blocks) {
    blockIdx = unflatten(b, grid);
    ++g_block;
    memset(g_dyn_smem, 0xFF, smem);
    if (!run_block(n)) break;
  }
  release_stack_pages();
  return g_error;
}

// ---------------------------------------------------------------- warp and block collectives
// Every live lane of the warp must reach the same call (CUDA requires it of the lanes in
// `mask`). A lane reads a source lane's value only if that lane is in `mask` and live;
// otherwise it gets 0xFF bytes (NaN), where a GPU would give an undefined value.
template <class T>
inline T shuffle(unsigned mask, T v, int mode, int arg, int width, int line) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  unsigned t = S.cur, lane = t & 31, base = t - lane, seg = lane - lane % width;
  if (!(mask >> lane & 1u)) fail("a warp shuffle's mask excludes the calling lane", line);
  memcpy(&S.slots[t], &v, sizeof(T));
  wait_at(AT_WARP_BARRIER, line);
  int src = (int)lane;
  switch (mode) {
    case 0: src = (int)(seg + (unsigned)arg % width); break;
    case 1: if ((int)(lane - seg) + arg < width) src = (int)lane + arg; break;
    case 2: if ((int)(lane - seg) - arg >= 0) src = (int)lane - arg; break;
    default: src = (int)(lane ^ (unsigned)arg); if (src >= (int)(seg + width)) src = (int)lane;
  }
  unsigned s = base + (unsigned)src;
  T r;
  if (s < S.fibers.size() && S.fibers[s].state != DONE && (mask >> src & 1u))
    memcpy(&r, &S.slots[s], sizeof(T));
  else
    memset(&r, 0xFF, sizeof(T));
  wait_at(AT_WARP_BARRIER, line);  // no lane overwrites its slot before all have read
  return r;
}
inline unsigned ballot(int pred, int line) {
  unsigned t = S.cur, base = t - (t & 31), r = 0;
  S.slots[t] = pred != 0;
  wait_at(AT_WARP_BARRIER, line);
  for (unsigned i = base; i < base + 32 && i < S.fibers.size(); ++i)
    if (S.fibers[i].state != DONE && S.slots[i]) r |= 1u << (i - base);
  wait_at(AT_WARP_BARRIER, line);
  return r;
}
inline unsigned active_mask() {
  unsigned t = S.cur, base = t - (t & 31), r = 0;
  for (unsigned i = base; i < base + 32 && i < S.fibers.size(); ++i)
    if (S.fibers[i].state != DONE) r |= 1u << (i - base);
  return r;
}
inline int syncthreads_count(int pred, int line) {
  S.slots[S.cur] = pred != 0;
  wait_at(AT_BLOCK_BARRIER, line);
  int c = 0;
  for (unsigned i = 0; i < S.fibers.size(); ++i) c += (int)S.slots[i];
  wait_at(AT_BLOCK_BARRIER, line);
  return c;
}
inline int width_or_32() { return 32; }
inline int width_or_32(int w) { return w; }
}  // namespace gdl_cpu

#define __syncthreads() gdl_cpu::wait_at(gdl_cpu::AT_BLOCK_BARRIER, __LINE__)
#define __syncwarp(...) gdl_cpu::wait_at(gdl_cpu::AT_WARP_BARRIER, __LINE__)
#define __syncthreads_count(p) gdl_cpu::syncthreads_count((p), __LINE__)
#define __syncthreads_and(p) \
  (gdl_cpu::syncthreads_count((p), __LINE__) == (int)(blockDim.x * blockDim.y * blockDim.z))
#define __syncthreads_or(p) (gdl_cpu::syncthreads_count((p), __LINE__) != 0)
#define GDL_SHFL(mode, m, v, a, ...) \
  gdl_cpu::shuffle((m), (v), mode, (a), gdl_cpu::width_or_32(__VA_ARGS__), __LINE__)
#define __shfl_sync(m, v, lane, ...) GDL_SHFL(0, m, v, lane, __VA_ARGS__)
#define __shfl_down_sync(m, v, d, ...) GDL_SHFL(1, m, v, d, __VA_ARGS__)
#define __shfl_up_sync(m, v, d, ...) GDL_SHFL(2, m, v, d, __VA_ARGS__)
#define __shfl_xor_sync(m, v, x, ...) GDL_SHFL(3, m, v, x, __VA_ARGS__)
#define __ballot_sync(m, p) gdl_cpu::ballot((p), __LINE__)
#define __any_sync(m, p) (gdl_cpu::ballot((p), __LINE__) != 0u)
#define __all_sync(m, p) (gdl_cpu::ballot((p), __LINE__) == gdl_cpu::active_mask())
#define __activemask() gdl_cpu::active_mask()
#define __trap() gdl_cpu::trap(__LINE__)

// ---------------------------------------------------------------- exports (loader.py appends)
// GDL_CPU_EXPORT(symbol, kernel) defines, for one kernel (a name or a template instance):
//   int gdl_launch_<symbol>(const unsigned grid[3], const unsigned block[3], size_t smem,
//                           void** args, int order, unsigned long long seed)
//   const char* gdl_signature_<symbol>()   GCC's spelling of the kernel's parameter types
namespace gdl_cpu {
template <class F> const char* signature() { return __PRETTY_FUNCTION__; }
}  // namespace gdl_cpu
#define GDL_CPU_EXPORT(symbol, ...)                                                           \
  extern "C" __attribute__((visibility("default"))) int gdl_launch_##symbol(                 \
      const unsigned* g, const unsigned* b, size_t smem, void** args, int order,            \
      unsigned long long seed) {                                                              \
    return gdl_cpu::launch(__VA_ARGS__, dim3(g[0], g[1], g[2]), dim3(b[0], b[1], b[2]), smem, \
                           args, order, seed);                                                \
  }                                                                                           \
  extern "C" __attribute__((visibility("default"))) const char* gdl_signature_##symbol() {    \
    return gdl_cpu::signature<decltype(&__VA_ARGS__)>();                                      \
  }
extern "C" __attribute__((visibility("default"))) const char* gdl_cpu_error() {
  return gdl_cpu::g_errmsg;
}
