"""The models benchmarks/gpu_check.sh runs with graphdl's CUDA backend, one subcommand per step.

    nvcc      the generated `.cu` of every model compiled by nvcc (-cubin, -Xptxas -v): registers,
              shared memory, spills per kernel; fails on a spill or a compile error
    check     the CUDA backend (--device gpu or cpu) against the NumPy backend: the MLP and LeNet
              training steps (loss and updated parameters, three steps), the lecture's sigmoid
              neuron (value and gradients); on the CPU in two thread orders
    sanitize  every model once at small shapes on the GPU, for compute-sanitizer to watch
    bench     graphdl's kernels against PyTorch (cuBLAS/cuDNN, TF32 off and on): a fused
              elementwise chain against a device-to-device copy, the MLP and LeNet training steps,
              AlexNet's conv layers and training step at batch 128, a word2vec skip-gram step;
              one summary table

    PYTHONPATH=benchmarks python benchmarks/gpu_models.py {nvcc,check,sanitize,bench} [options]

Timing: "graphdl kernels" is the sum of CUDA-event times around each kernel launch of the
generated driver (host transfers excluded: the driver takes and returns NumPy arrays); "graphdl
call" is the wall time of `fn(...)` as a user calls it, transfers included. "torch kernels" is
the sum of the CUDA kernel times torch.profiler records for one step; "torch step" the CUDA-event
time of one eager step on GPU-resident tensors. Medians over repetitions after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from machine import ROOT, source_version

import graphdl as gd

sys.path.insert(0, str(ROOT / "examples"))  # alexnet.py declares the network once
TOLERANCE = {"float32": 2e-4, "float64": 1e-10}  # relative to each array's largest magnitude


# ---------------------------------------------------------------- the models
def mlp(batch, d_in=784, hidden=256, classes=10, lr=0.1):
    """The MLP training step: (loss, updates, feeds maker)."""
    x, y = gd.input("x", (batch, d_in)), gd.input("y", (batch,), "int64")
    shapes = {"W1": (d_in, hidden), "b1": (hidden,), "W2": (hidden, classes), "b2": (classes,)}
    p = {k: gd.input(k, s) for k, s in shapes.items()}
    loss = gd.softmax_cross_entropy(gd.relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"], y)
    return loss, _sgd(loss, p, lr), _feeds({"x": (batch, d_in)}, classes, batch, shapes)


LENET = {"c1w": (6, 1, 5, 5), "c1b": (6,), "c2w": (16, 6, 5, 5), "c2b": (16,),
         "f1w": (400, 120), "f1b": (120,), "f2w": (120, 84), "f2b": (84,),
         "f3w": (84, 10), "f3b": (10,)}


def lenet_logits(x, p, conv2d=gd.conv2d, pool=gd.max_pool2d, relu=gd.relu, flat=None):
    """LeNet (examples/lenet_fashion_mnist.py) written once for graphdl and for torch."""
    h = pool(relu(conv2d(x, p["c1w"], p["c1b"], padding=2)), 2)
    h = pool(relu(conv2d(h, p["c2w"], p["c2b"])), 2)
    h = flat(h) if flat else gd.reshape(h, (-1, 400))
    h = relu(h @ p["f1w"] + p["f1b"])
    h = relu(h @ p["f2w"] + p["f2b"])
    return h @ p["f3w"] + p["f3b"]


def lenet(batch, lr=0.01):
    """The LeNet training step: (loss, updates, feeds maker)."""
    x, y = gd.input("x", (batch, 1, 28, 28)), gd.input("y", (batch,), "int64")
    p = {k: gd.input(k, s) for k, s in LENET.items()}
    loss = gd.softmax_cross_entropy(lenet_logits(x, p), y)
    return loss, _sgd(loss, p, lr), _feeds({"x": (batch, 1, 28, 28)}, 10, batch, LENET)


def neuron():
    """The lecture's sigmoid neuron f = σ(w0·x0 + w1·x1 + w2) and its five gradients."""
    names = ["w0", "x0", "w1", "x1", "w2"]
    v = {k: gd.input(k, (), "float64") for k in names}
    f = gd.sigmoid(v["w0"] * v["x0"] + v["w1"] * v["x1"] + v["w2"])
    values = dict(zip(names, [2.0, -1.0, -3.0, -2.0, -3.0]))  # the lecture's numbers
    return [f, *gd.grad(f, list(v.values()))], {k: np.float64(x) for k, x in values.items()}


def _sgd(loss, params, lr):
    return {p: p - lr * g for p, g in zip(params.values(), gd.grad(loss, list(params.values())))}


def _feeds(inputs, classes, batch, params):
    def make(rng):
        feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in inputs.items()}
        feeds["y"] = rng.integers(0, classes, batch)
        for k, s in params.items():
            fan_in = int(np.prod(s[1:])) if len(s) == 4 else s[0]
            scale = 0.1 if len(s) == 1 else np.sqrt(2.0 / fan_in)
            feeds[k] = (rng.standard_normal(s) * scale).astype(np.float32)
        return feeds
    return make


def steps(small):
    """(name, loss, updates, feeds maker) of the two training steps."""
    yield ("mlp", *(mlp(8, 12, 16, 5) if small else mlp(128)))
    yield ("lenet", *(lenet(2) if small else lenet(64)))


# ---------------------------------------------------------------- nvcc
def cmd_nvcc(args):
    """Each model's source through nvcc -cubin: the largest register and shared-memory use
    ptxas reports, and its spills (any spill fails)."""
    failed = False
    models = [(name, gd.compile(loss, updates=upd, backend="cuda", device="cpu"))
              for name, loss, upd, _ in steps(small=False)]
    models.append(("neuron", gd.compile(neuron()[0], backend="cuda", device="cpu")))
    outs, _, shapes, _ = alexnet_step(1)
    models.append(("alexnet", gd.compile(outs, backend="cuda", device="cpu")))
    models[-1][1].specialize(shapes)  # AlexNet's batch is unknown until shapes are given
    for arch in args.arch:
        for name, fn in models:
            log, rc, seconds = _nvcc(fn.source, arch)
            spills = sum(int(n) for n in re.findall(r"(\d+) bytes spill stores", log))
            regs = [int(n) for n in re.findall(r"Used (\d+) registers", log)]
            smem = [int(n) for n in re.findall(r"(\d+) bytes smem", log)]
            kernels = fn.source.count('extern "C" __global__')
            print(f"nvcc {arch} {name:<8} {'ok' if rc == 0 else 'FAILED'}: {kernels} kernels, "
                  f"max {max(regs, default=0)} registers, max {max(smem, default=0)} B static "
                  f"shared memory, {spills} B spilled, {seconds:.1f} s")
            if rc != 0 or spills:
                failed = True
                print(log[-3000:])
    return 1 if failed else 0


def _nvcc(source, arch):
    with tempfile.TemporaryDirectory() as tmp:
        cu = os.path.join(tmp, "model.cu")
        with open(cu, "w") as f:
            f.write(source)
        start = time.perf_counter()
        result = subprocess.run(["nvcc", "-cubin", f"-arch={arch}", "-std=c++17", "-Xptxas",
                                 "-v,-warn-spills", "-o", os.path.join(tmp, "model.cubin"), cu],
                                capture_output=True, text=True, check=False)
        return result.stdout + result.stderr, result.returncode, time.perf_counter() - start


# ---------------------------------------------------------------- check
def cmd_check(args):
    """CUDA backend against the NumPy backend; on the CPU in the forward and reverse orders."""
    orders = ("forward", "reverse") if args.device == "cpu" else (None,)
    worst = []
    for order in orders:
        if order:
            os.environ["GRAPHDL_CUDA_CPU_ORDER"] = order
        for name, loss, updates, make in steps(args.small):
            worst.append(_check_step(name, loss, updates, make, args.device, order))
        outs, feeds = neuron()
        got = gd.compile(outs, backend="cuda", device=args.device)(feeds)
        worst.append(_report("neuron", order, _compare(got, gd.compile(outs)(feeds))))
    failed = [w for w in worst if w > 1]
    print(f"check ({args.device}): {len(worst) - len(failed)}/{len(worst)} agree with NumPy")
    return 1 if failed else 0


def _check_step(name, loss, updates, make, device, order, n_steps=3):
    """Three training steps from the same start; the losses and final parameters compared."""
    feeds = make(np.random.default_rng(0))
    mine = {k: v.copy() for k, v in feeds.items()}
    ref = {k: v.copy() for k, v in feeds.items()}
    cuda = gd.compile(loss, updates=updates, backend="cuda", device=device)
    numpy_fn = gd.compile(loss, updates=updates)
    got, want = [], []
    for _ in range(n_steps):
        got.append(cuda(mine))
        want.append(numpy_fn(ref))
    params = [p.name for p in updates]
    return _report(name, order, _compare(got + [mine[k] for k in params],
                                         want + [ref[k] for k in params]))


def _compare(got, want):
    """The largest error of `got` relative to its tolerance (above 1: they disagree)."""
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape or g.dtype != w.dtype:
            return np.inf
        scale = max(1.0, float(np.max(np.abs(w), initial=0.0)))
        error = float(np.max(np.abs(g.astype(np.float64) - w), initial=0.0))
        worst = max(worst, error / (TOLERANCE[w.dtype.name] * scale))
    return worst


def _report(name, order, worst):
    where = f" ({order} thread order)" if order else ""
    print(f"  {name:<8}{where}: {'ok' if worst <= 1 else 'WRONG'}, largest error "
          f"{worst:.3g} x tolerance")
    return worst


# ---------------------------------------------------------------- sanitize
def cmd_sanitize(args):
    """Small shapes on the GPU, for compute-sanitizer to watch. CuPy's memory pool is turned
    off: memcheck sees only cudaMalloc's bounds, and a pool hands out pieces of larger blocks."""
    import cupy

    cupy.cuda.set_allocator(None)
    args.small, args.device = True, "gpu"
    return cmd_check(args)


# ---------------------------------------------------------------- timing tools
class KernelTimer:
    """A loader for the generated driver whose kernels record CUDA events around each launch."""

    def __init__(self, cupy):
        self.cupy, self.events = cupy, []

    def load(self, source):
        module = self.cupy.RawModule(code=source, options=("-std=c++17",))
        timer = self

        class Module:
            def get_function(self, name):
                kernel = module.get_function(name)

                def launch(grid, block, args, shared_mem=0):
                    start, stop = timer.cupy.cuda.Event(), timer.cupy.cuda.Event()
                    start.record()
                    kernel(grid, block, args, shared_mem=shared_mem)
                    stop.record()
                    timer.events.append((name, start, stop))
                return launch
        return Module()

    def collect(self):
        """{kernel name: milliseconds} of the launches since the last collect."""
        self.cupy.cuda.Device().synchronize()
        times = {}
        for name, start, stop in self.events:
            times[name] = times.get(name, 0.0) + self.cupy.cuda.get_elapsed_time(start, stop)
        self.events = []
        return times


def timed_driver(fn, feeds, timer):
    """The generated driver of `fn` for these feeds, its kernels timed; (run, argument list)."""
    shapes = {k: np.shape(v) for k, v in feeds.items()}
    program = fn.specialize({n: shapes[n] for n in fn.input_names})
    namespace = {"__name__": "graphdl_timed", "_DEVICE": (timer.load, timer.cupy)}
    exec(compile(program.generated.module, "<graphdl driver>", "exec"), namespace)  # noqa: S102
    dtypes = {n.name: n.dtype for n in fn.inputs}
    arrays = [np.ascontiguousarray(feeds[n], dtype=dtypes[n]) for n in namespace["INPUTS"]]
    return namespace["run"], arrays


def graphdl_times(fn, feeds, cupy, reps):
    """(kernels ms, call ms, [(ms, kernel)] slowest first) medians; the updates write into
    copies of feeds."""
    timer = KernelTimer(cupy)
    run, arrays = timed_driver(fn, feeds, timer)
    run(*arrays)
    timer.collect()
    kernel_ms, per_kernel = [], {}
    for _ in range(reps):
        run(*arrays)
        times = timer.collect()
        kernel_ms.append(sum(times.values()))
        for k, v in times.items():
            per_kernel.setdefault(k, []).append(v)
    call = {k: v.copy() for k, v in feeds.items()}
    fn(call)
    call_ms = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(call)
        call_ms.append(1e3 * (time.perf_counter() - start))
    ranked = sorted(((statistics.median(v), k) for k, v in per_kernel.items()), reverse=True)
    return statistics.median(kernel_ms), statistics.median(call_ms), ranked


def torch_times(torch, step, reps):
    """(kernels ms, step ms) of the eager `step()` on GPU tensors."""
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    step_ms = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        stop.record()
        stop.synchronize()
        step_ms.append(start.elapsed_time(stop))
    return _profiled_kernel_ms(torch, step), statistics.median(step_ms)


def _profiled_kernel_ms(torch, step):
    """The CUDA kernels' time of one step as torch.profiler records it (None if it cannot)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
        total_us = sum(e.device_time_total for e in kernels)
    except (RuntimeError, AttributeError) as e:
        print(f"  (torch.profiler: {e}; torch kernels not reported)")
        return None
    return total_us / 1e3 if kernels else None


# ---------------------------------------------------------------- bench
def alexnet_step(batch):
    """AlexNet's forward and backward pass (examples/alexnet.py): (outputs [loss, gradients],
    parameters, input shapes by name, feeds maker)."""
    import alexnet

    _, logits, _, params = alexnet.declare()
    labels = gd.input("label", (None,), "int64")
    loss = gd.softmax_cross_entropy(logits, labels)
    shapes = {"image": (batch, 3, 227, 227), "label": (batch,), **{p.name: p.shape for p in params}}

    def make(rng):
        feeds = {"image": rng.standard_normal(shapes["image"], np.float32),
                 "label": rng.integers(0, 1000, batch)}
        for p in params:
            feeds[p.name] = rng.standard_normal(p.shape, np.float32) * np.float32(0.01)
        return feeds
    return [loss, *gd.grad(loss, params)], params, shapes, make


class Bench:
    """Runs the timed items while the time budget lasts; collects the table's rows."""

    def __init__(self, args):
        import cupy
        import torch

        self.cupy, self.torch, self.args = cupy, torch, args
        self.deadline = time.monotonic() + args.budget
        self.rows = []

    def item(self, name, run):
        left = self.deadline - time.monotonic()
        if left < 20:
            print(f"{name}: skipped ({left:.0f} s of the time budget left)")
            self.rows.append((name, None, None, None, None, "skipped: time budget"))
            return
        start = time.monotonic()
        try:
            run(name)
        except Exception as e:  # noqa: BLE001 - one failing item must not lose the others
            print(f"{name}: FAILED: {type(e).__name__}: {e}")
            self.rows.append((name, None, None, None, None, f"failed: {type(e).__name__}"))
        print(f"  ({time.monotonic() - start:.1f} s)", flush=True)

    def torch_both(self, step):
        """{tf32: (kernels ms, step ms)} with TF32 off and on."""
        out = {}
        for tf32 in (False, True):
            self.torch.backends.cuda.matmul.allow_tf32 = tf32
            self.torch.backends.cudnn.allow_tf32 = tf32
            out[tf32] = torch_times(self.torch, step, self.args.reps)
        return out

    def add(self, name, ours_ms, theirs, note):
        self.rows.append((name, ours_ms, theirs[False][0] or theirs[False][1],
                          theirs[True][0] or theirs[True][1], theirs, note))

    def table(self):
        props = self.cupy.cuda.runtime.getDeviceProperties(0)
        card = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        print(f"\n== summary: {card}, graphdl {source_version()}, CuPy {self.cupy.__version__}, "
              f"torch {self.torch.__version__}, CUDA runtime "
              f"{self.cupy.cuda.runtime.runtimeGetVersion()}")
        print("ms: graphdl = its kernels (CUDA events per launch); torch = its kernels "
              "(profiler), else its step")
        print(f"{'item':<28}{'graphdl':>10}{'torch fp32':>12}{'ratio':>8}{'torch tf32':>12}"
              f"{'ratio':>8}  note")
        for name, ours, fp32, tf32, _, note in self.rows:
            cells = [_ms(ours), _ms(fp32), _ratio(ours, fp32), _ms(tf32), _ratio(ours, tf32)]
            print(f"{name:<28}{cells[0]:>10}{cells[1]:>12}{cells[2]:>8}{cells[3]:>12}"
                  f"{cells[4]:>8}  {note}")


def _ms(v):
    return "-" if v is None else f"{v:.3f}"


def _ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}x"


def bench_chain(b, name):
    """A chain of 36 elementwise nodes over 2^26 float32 values: one fused kernel, bound by
    memory bandwidth (8 bytes per element)."""
    n, cupy, torch = 1 << 26, b.cupy, b.torch
    x = gd.input("x", (n,))
    h = x
    for k in range(16):
        h = gd.tanh(h * (1.0 + k / 64) + 0.25) if k % 4 == 3 else h * 0.999 + 0.001 * k
    h.name = "chain"
    fn = gd.compile(h, backend="cuda")
    feeds = {"x": np.random.default_rng(0).standard_normal(n).astype(np.float32)}
    ours, call, ranked = graphdl_times(fn, feeds, cupy, b.args.reps)
    src, dst = cupy.asarray(feeds["x"]), cupy.empty(n, np.float32)
    copy = []
    for _ in range(b.args.reps + 3):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        cupy.copyto(dst, src)
        stop.record()
        stop.synchronize()
        copy.append(cupy.cuda.get_elapsed_time(start, stop))
    copy_ms = statistics.median(copy[3:])
    gbs = 2 * 4 * n / ours / 1e6
    print(f"{name}: {len(ranked)} kernel(s), {ours:.3f} ms = {gbs:.0f} GB/s; device-to-device copy "
          f"of the same bytes {copy_ms:.3f} ms = {2 * 4 * n / copy_ms / 1e6:.0f} GB/s: "
          f"{copy_ms / ours:.0%} of copy bandwidth (target 80%); call with transfers {call:.1f} ms")
    xt = torch.from_numpy(feeds["x"]).cuda()

    def step():
        t = xt
        for k in range(16):
            t = torch.tanh(t * (1.0 + k / 64) + 0.25) if k % 4 == 3 else t * 0.999 + 0.001 * k
        return t
    b.add(name, ours, b.torch_both(step), f"{copy_ms / ours:.0%} of copy bw (copy "
          f"{copy_ms:.3f} ms); torch eager unfused")


def bench_step(b, name, which, batch):
    """A training step: graphdl's kernels against torch eager on the same data."""
    torch = b.torch
    loss, updates, make = (mlp if which == "mlp" else lenet)(batch)
    feeds = make(np.random.default_rng(0))
    fn = gd.compile(loss, updates=updates, backend="cuda")
    ours, call, top = graphdl_times(fn, feeds, b.cupy, b.args.reps)
    print(f"{name}: graphdl kernels {ours:.3f} ms (call with transfers {call:.2f} ms); top: "
          + ", ".join(f"{k} {v:.3f}" for v, k in top[:3]))
    t = {k: torch.tensor(v).cuda() for k, v in feeds.items()}
    params = [t[p.name].requires_grad_() for p in updates]
    F = torch.nn.functional

    def forward():
        if which == "mlp":
            return F.relu(t["x"] @ t["W1"] + t["b1"]) @ t["W2"] + t["b2"]
        return lenet_logits(t["x"], t, conv2d=lambda x, w, bias, padding=0: F.conv2d(
            x, w, bias, padding=padding), pool=F.max_pool2d, relu=F.relu,
            flat=lambda h: h.reshape(-1, 400))

    def step():
        loss_value = F.cross_entropy(forward(), t["y"])
        grads = torch.autograd.grad(loss_value, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(0.01 * g)
    b.add(name, ours, b.torch_both(step), f"call {call:.2f} ms with transfers")


def bench_alexnet_convs(b, name):
    """AlexNet's five conv layers (forward, bias and ReLU fused after) at batch 128."""
    import alexnet

    torch, F, rng = b.torch, b.torch.nn.functional, np.random.default_rng(0)
    size = 227
    for layer, (out, cin, k), stride, pad, groups, pool in alexnet.CONVS:
        x = gd.input("x", (128, cin * groups, size, size))
        w, bias = gd.input("w", (out, cin, k, k)), gd.input("b", (out,))
        y = gd.conv2d(x, w, bias, stride=stride, padding=pad, groups=groups)
        y.name = layer
        fn = gd.compile(y, backend="cuda")
        feeds = {"x": rng.standard_normal(x.shape).astype(np.float32),
                 "w": (rng.standard_normal(w.shape) * 0.01).astype(np.float32),
                 "b": np.zeros(out, np.float32)}
        ours, _, _ = graphdl_times(fn, feeds, b.cupy, b.args.reps)
        flops = 2 * np.prod(y.shape) * cin * k * k
        t = {kk: torch.from_numpy(v).cuda() for kk, v in feeds.items()}
        theirs = b.torch_both(lambda t=t, stride=stride, pad=pad, groups=groups: F.conv2d(
            t["x"], t["w"], t["b"], stride=stride, padding=pad, groups=groups))
        print(f"{name} {layer}: {flops / ours / 1e9:.1f} TFLOP/s; cuDNN fp32 "
              f"{flops / theirs[False][1] / 1e9:.1f}, tf32 {flops / theirs[True][1] / 1e9:.1f}")
        b.add(f"{name} {layer}", ours, theirs, f"{flops / ours / 1e9:.1f} TFLOP/s")
        size = y.shape[2]
        if pool:
            size = (size - 3) // 2 + 1


def bench_alexnet_step(b, name):
    """AlexNet's forward and backward pass at batch 128 (loss and all 16 gradients)."""
    import alexnet

    torch, F = b.torch, b.torch.nn.functional
    outs, params, _, make = alexnet_step(128)
    feeds = make(np.random.default_rng(0))
    fn = gd.compile(outs, backend="cuda")
    ours, call, top = graphdl_times(fn, feeds, b.cupy, max(3, b.args.reps // 4))
    print(f"{name}: graphdl kernels {ours:.2f} ms (call with transfers {call:.1f} ms); top: "
          + ", ".join(f"{k} {v:.2f}" for v, k in top[:3]))
    t = {k: torch.from_numpy(np.asarray(v)).cuda() for k, v in feeds.items()}
    ps = [t[p.name].requires_grad_() for p in params]

    def step():
        h = t["image"]
        for layer, _, stride, pad, groups, pool in alexnet.CONVS:
            h = F.relu(F.conv2d(h, t[layer + "_w"], t[layer + "_b"], stride=stride,
                                padding=pad, groups=groups))
            if pool:
                h = F.max_pool2d(h, 3, stride=2)
        h = h.reshape(-1, 256 * 6 * 6)
        for layer, _, _ in alexnet.FCS:
            h = h @ t[layer + "_w"] + t[layer + "_b"]
            h = F.relu(h) if layer != "fc8" else h
        return torch.autograd.grad(F.cross_entropy(h, t["label"]), ps)
    b.add(name, ours, b.torch_both(step), f"call {call:.0f} ms with transfers")


PAIRS_PER_WORD = 5.14  # skip-gram pairs per effective word, window 5 (the corpus's first 2M)


def bench_word2vec(b, name, batch=16384, vocab=46277, dim=100, negative=5):
    """One skip-gram NS step of examples/word2vec (sparse updates: atomics into the rows) on
    the full corpus's vocabulary size, indices drawn as unigram^0.75 of a Zipf vocabulary,
    against the same step in torch (index_add_ into the tables)."""
    sys.path.append(str(ROOT))  # after the installed graphdl: examples/ as a package
    from examples.word2vec.model import Shape, declare

    torch, rng = b.torch, np.random.default_rng(0)
    model = declare("sg", "ns", Shape(vocab, dim, batch, negative=negative))
    fn = gd.compile(model.loss, updates=model.updates, backend="cuda")
    p = (1.0 / np.arange(1, vocab + 1)) ** 0.75
    draw = lambda shape: rng.choice(vocab, shape, p=p / p.sum())
    feeds = {**model.tables(rng), "lr": np.float32(0.025), "center": draw(batch),
             "target": draw(batch), "negatives": draw((batch, negative))}
    ours, call, top = graphdl_times(fn, feeds, b.cupy, b.args.reps)
    pairs = batch / ours * 1e3
    print(f"{name}: graphdl kernels {ours:.3f} ms = {pairs / 1e6:.1f}M pairs/s = "
          f"{pairs / PAIRS_PER_WORD / 1e6:.2f}M effective words/s (gensim on the dev box: "
          f"0.21M with 1 worker, 0.54M with 2); call {call:.2f} ms; top: "
          + ", ".join(f"{k} {v:.3f}" for v, k in top[:3]))
    t = {k: torch.from_numpy(np.asarray(v)).cuda() for k, v in feeds.items()}

    def step():
        v, u, un = t["W_in"][t["center"]], t["W_out"][t["target"]], t["W_out"][t["negatives"]]
        g_pos = torch.sigmoid((v * u).sum(1)) - 1
        g_neg = torch.sigmoid(torch.einsum("bd,bkd->bk", v, un))
        d_v = g_pos[:, None] * u + torch.einsum("bk,bkd->bd", g_neg, un)
        t["W_out"].index_add_(0, t["target"], g_pos[:, None] * v, alpha=-0.025)
        t["W_out"].index_add_(0, t["negatives"].reshape(-1),
                              (g_neg[..., None] * v[:, None]).reshape(-1, dim), alpha=-0.025)
        t["W_in"].index_add_(0, t["center"], d_v, alpha=-0.025)
    b.add(name, ours, b.torch_both(step), f"{pairs / PAIRS_PER_WORD / 1e6:.2f}M words/s")


def cmd_bench(args):
    b = Bench(args)
    # gpu_check.sh's timeout sends SIGTERM: the items measured so far still get their table
    signal.signal(signal.SIGTERM, lambda *_: (b.table(), sys.exit(4)))
    b.item("fused elementwise chain", bench_chain)
    b.item("mlp step (batch 128)", lambda n: bench_step(b, n, "mlp", 128))
    b.item("lenet step (batch 64)", lambda n: bench_step(b, n, "lenet", 64))
    b.item("alexnet conv", lambda n: bench_alexnet_convs(b, n))
    b.item("alexnet step (batch 128)", lambda n: bench_alexnet_step(b, n))
    b.item("word2vec sg-ns step (16k pairs)", lambda n: bench_word2vec(b, n))
    b.table()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("nvcc")
    p.add_argument("--arch", nargs="+", default=["sm_80", "sm_90"])
    p = sub.add_parser("check")
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--small", action="store_true", help="small shapes")
    sub.add_parser("sanitize")
    p = sub.add_parser("bench")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--budget", type=float, default=240, help="seconds for all timed items")
    args = parser.parse_args()
    commands = {"nvcc": cmd_nvcc, "check": cmd_check, "sanitize": cmd_sanitize,
                "bench": cmd_bench}
    sys.exit(commands[args.command](args))


if __name__ == "__main__":
    main()
