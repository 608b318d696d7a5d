"""The CUDA backend's convolution and pooling kernels (codegen/cuda_backend/conv.py), run
without a GPU: every configuration of the table is lowered, all kernels are built into one
module on the CPU emulator, launched by a tiny driver in two thread orders and compared with
the ops' NumPy references; nvcc (where present) compiles the same source for sm_80 without
spills and within 48 KB of shared memory."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import zlib

import numpy as np
import pytest

import graphdl as gd
from graphdl.codegen.cuda_backend import BACKEND
from graphdl.codegen.cuda_backend import conv as cuda_conv
from graphdl.codegen.cuda_backend.cpu.loader import load
from graphdl.ops import conv as cv

# ---------------------------------------------------------------- the table
# conv: (x shape, w shape, stride, padding, dilation, groups)
CONV = {
    "plain": ((2, 3, 7, 7), (4, 3, 3, 3), 1, 0, 1, 1),
    "stride2_pad1": ((2, 3, 7, 8), (4, 3, 3, 2), 2, 1, 1, 1),
    "groups_dilation": ((1, 4, 9, 7), (6, 2, 3, 3), (2, 1), (1, 2), (2, 1), 2),
    "same_even_kernel": ((1, 2, 6, 5), (3, 2, 4, 2), 1, "same", 1, 1),
    "same_dilated": ((1, 2, 6, 5), (3, 2, 3, 3), 1, "same", (2, 1), 1),
    "four_sided": ((2, 2, 6, 7), (2, 2, 3, 2), (1, 3), (0, 2, 1, 0), 1, 1),
    "depthwise": ((2, 4, 6, 6), (8, 1, 3, 3), 1, 1, 1, 4),
    "stride_over_kernel": ((1, 2, 8, 8), (2, 2, 2, 2), 3, 0, 1, 1),
    "padding_over_kernel": ((1, 3, 5, 5), (2, 3, 3, 3), 2, 4, 1, 1),
    "many_tiles": ((2, 8, 11, 10), (70, 8, 3, 3), 1, 1, 1, 1),
    "mid_tiles_dilated": ((3, 2, 9, 9), (20, 2, 3, 3), 2, 2, 2, 1),
}
# max: (x shape, kernel, stride, padding, dilation, ceil_mode)
MAX = {
    "2x2": ((2, 3, 6, 6), 2, None, 0, 1, False),
    "ceil": ((1, 2, 7, 8), 3, 2, 1, 1, True),
    "dilation": ((2, 2, 9, 7), (3, 2), (2, 1), (1, 0), (2, 1), False),
    "overlap": ((1, 2, 5, 6), 3, 1, 1, 1, False),
    "ceil_dilated": ((1, 2, 6, 6), 3, 2, 1, 2, True),
    "padding_over_kernel": ((1, 1, 4, 4), 2, 2, 3, 1, False),
    "four_sided_ceil": ((1, 2, 5, 7), (2, 3), 1, (0, 2, 1, 0), 1, True),
}
# avg: (x shape, kernel, stride, padding, ceil_mode, count_include_pad)
AVG = {
    "2x2": ((2, 3, 6, 6), 2, None, 0, False, True),
    "ceil_count_pad": ((1, 2, 7, 8), 3, 2, 1, True, True),
    "ceil_no_count_pad": ((1, 2, 7, 8), 3, 2, 1, True, False),
    "rect_no_count_pad": ((2, 2, 9, 7), (3, 2), (2, 1), (1, 1), False, False),
    "ceil_stride3": ((1, 1, 8, 8), 3, 3, 1, True, True),
    "padding_over_kernel": ((1, 1, 4, 4), 2, 2, 3, False, False),
    "padding_over_kernel_count": ((1, 1, 4, 4), 2, 2, 3, False, True),
    "four_sided_ceil": ((1, 2, 5, 7), (2, 3), 1, (0, 2, 1, 0), True, False),
}
FLOATS = ("float32", "float64")


def ties(rng, shape, dtype):
    """Few distinct values: windows hold tied maxima (the first in scan order must win)."""
    return rng.integers(-3, 3, shape).astype(dtype)


def with_nans(rng, shape, dtype):
    """Ties, some NaNs (a NaN wins its window) and -inf (a real cell equal to the padding)."""
    x = ties(rng, shape, dtype)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 3, replace=False)] = np.nan
    flat[rng.choice(flat.size, 2, replace=False)] = -np.inf
    return x


def normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def conv_cases(cfg, dtype, w_dtype=None):
    xs, ws, stride, padding, dilation, groups = cfg
    x, w = gd.input("x", xs, dtype), gd.input("w", ws, w_dtype or dtype)
    y = gd.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    g = gd.input("g", y.shape, y.dtype)
    attrs = dict(y.attrs)
    yield "conv2d", y, (normal, normal)
    yield "input_grad", cv.CONV2D_INPUT_GRAD(g, w, x, **attrs), (normal, normal, normal)
    yield "weight_grad", cv.CONV2D_WEIGHT_GRAD(x, g, w, **attrs), (normal, normal, normal)


def max_cases(cfg, dtype, data):
    xs, k, s, p, d, ceil = cfg
    x = gd.input("x", xs, dtype)
    y = gd.max_pool2d(x, k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    g = gd.input("g", y.shape, "float64" if x.dtype.kind != "f" else dtype)
    u = gd.input("u", xs, g.dtype)
    yield "max_pool2d", y, (data,)
    yield "max_grad", cv.MAX_POOL2D_GRAD(g, x, **y.attrs), (normal, data)
    yield "max_select", cv.MAX_POOL2D_SELECT(u, x, **y.attrs), (normal, data)


def avg_cases(cfg, dtype):
    xs, k, s, p, ceil, cip = cfg
    x = gd.input("x", xs, dtype)
    y = gd.avg_pool2d(x, k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip)
    g = gd.input("g", y.shape, dtype)
    yield "avg_pool2d", y, (normal,)
    yield "avg_grad", cv.AVG_POOL2D_GRAD(g, x, **y.attrs), (normal, normal)


def all_cases():
    for dtype in FLOATS:
        for key, cfg in CONV.items():
            yield from ((f"{op}-{key}-{dtype}", n, d) for op, n, d in conv_cases(cfg, dtype))
        for key, cfg in MAX.items():
            yield from ((f"{op}-{key}-{dtype}", n, d) for op, n, d in max_cases(cfg, dtype, ties))
        for key, cfg in AVG.items():
            yield from ((f"{op}-{key}-{dtype}", n, d) for op, n, d in avg_cases(cfg, dtype))
    yield from ((f"{op}-groups_dilation-mixed", n, d)  # float32 x, float64 w: promoted
                for op, n, d in conv_cases(CONV["groups_dilation"], "float32", "float64"))
    for key in ("overlap", "padding_over_kernel", "ceil_dilated"):
        yield from ((f"{op}-{key}-nan", n, d) for op, n, d in max_cases(MAX[key], "float32",
                                                                         with_nans))
    for dtype in ("int32", "int64", "uint8", "int8", "bool"):
        yield from ((f"{op}-overlap-{dtype}", n, d) for op, n, d in max_cases(MAX["overlap"],
                                                                               dtype, ties))


CASES = {case_id: (node, data) for case_id, node, data in all_cases()}


def kernel_name(case_id):
    return "k_" + re.sub(r"\W", "_", case_id)


LOWERINGS = {case_id: node.op.impls["cuda"](node, kernel_name(case_id))
             for case_id, (node, _) in CASES.items()}
SOURCE = "\n".join(lowering.source for lowering in LOWERINGS.values())


@pytest.fixture(scope="module")
def module():
    return load(SOURCE)


def test_every_conv_and_pool_op_has_its_cuda_kernel():
    ops = (cv.CONV2D, cv.CONV2D_INPUT_GRAD, cv.CONV2D_WEIGHT_GRAD, cv.MAX_POOL2D,
           cv.MAX_POOL2D_GRAD, cv.MAX_POOL2D_SELECT, cv.AVG_POOL2D, cv.AVG_POOL2D_GRAD)
    assert {op.impls["cuda"].__module__ for op in ops} == {cuda_conv.__name__}
    assert {node.op for node, _ in CASES.values()} == set(ops)


# ---------------------------------------------------------------- the driver
def run(module, node, lowering, arrays, order):
    """Allocate the output (poisoned with 0xFF bytes, NaN for floats, unless zeroed) and the
    scratch buffers, and launch the kernels in order."""
    out = np.empty(node.shape, node.dtype)
    out.view(np.uint8)[...] = 0 if lowering.zero_output else 0xFF
    scratch = [np.empty(count, dtype) for count, dtype in lowering.scratch]
    for buffer in scratch:
        buffer.view(np.uint8)[...] = 0xFF
    buffers = {"in": lambda k: arrays[k], "out": lambda: out, "scratch": lambda k: scratch[k]}
    for launch in lowering.launches:
        args = tuple(buffers[a[0]](*a[1:]) for a in launch.args)
        module.get_function(launch.kernel)(launch.grid, launch.block, args, order=order)
    return out


def feeds(case_id, node, data):
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    return [make(rng, i.shape, i.dtype) for make, i in zip(data, node.inputs)]


def reference(node, arrays):
    return node.op.impl(*arrays, **node.attrs)


def tolerance(node):
    eps = np.finfo(node.dtype).eps if node.dtype.kind == "f" else 0
    return 64 * eps


@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("case_id", list(CASES))
def test_kernel_matches_numpy_reference(module, case_id, order):
    node, data = CASES[case_id]
    arrays = feeds(case_id, node, data)
    got = run(module, node, LOWERINGS[case_id], arrays, order)
    want = reference(node, arrays)
    assert got.dtype == want.dtype == node.dtype
    if node.op in (cv.MAX_POOL2D, cv.MAX_POOL2D_SELECT):  # values copied: exact
        np.testing.assert_array_equal(got, want)
    else:
        scale = max(float(np.nanmax(np.abs(want), initial=0)), 1.0)
        np.testing.assert_allclose(got, want, rtol=tolerance(node), atol=tolerance(node) * scale)


# ---------------------------------------------------------------- nvcc: registers, spills, smem
# Full-size layers (AlexNet at batch 128, LeNet at 64): the constants of real models.
FULL_SIZE_CONV = {
    "alexnet_conv1": ((128, 3, 227, 227), (64, 3, 11, 11), 4, 2, 1, 1),
    "alexnet_conv2": ((128, 64, 27, 27), (192, 64, 5, 5), 1, 2, 1, 1),
    "alexnet_conv3": ((128, 192, 13, 13), (384, 192, 3, 3), 1, 1, 1, 1),
    "lenet_conv1": ((64, 1, 28, 28), (6, 1, 5, 5), 1, 2, 1, 1),
}
FULL_SIZE_MAX = {"alexnet_pool1": ((128, 64, 55, 55), 3, 2, 0, 1, False)}
FULL_SIZE_AVG = {"lenet_pool1": ((64, 6, 28, 28), 2, 2, 0, False, True)}


def nvcc_lowerings():
    """One table case per distinct instantiation (op, dtypes, block, split) and the full-size
    layers in both float dtypes."""
    chosen = {}
    for case_id, (node, _) in CASES.items():
        lowering = LOWERINGS[case_id]
        key = (node.op.name, tuple(str(i.dtype) for i in node.inputs), str(node.dtype),
               lowering.launches[0].block, lowering.zero_output)
        chosen.setdefault(key, lowering)
    lowerings = list(chosen.values())
    for dtype in FLOATS:
        full = [case for cfg in FULL_SIZE_CONV.values() for case in conv_cases(cfg, dtype)]
        full += [case for cfg in FULL_SIZE_MAX.values() for case in max_cases(cfg, dtype, ties)]
        full += [case for cfg in FULL_SIZE_AVG.values() for case in avg_cases(cfg, dtype)]
        lowerings += [node.op.impls["cuda"](node, f"full_{op}_{k}_{dtype}")
                      for k, (op, node, _) in enumerate(full)]
    return lowerings


def ptxas_entries(log):
    """kernel -> (spill stores, spill loads, registers, shared bytes) from `ptxas -v`."""
    entries = {}
    for chunk in log.split("Compiling entry function ")[1:]:
        kernel = re.match(r"'(\w+)'", chunk)[1]
        spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", chunk)
        registers = re.search(r"Used (\d+) registers", chunk)[1]
        smem = re.search(r"(\d+) bytes smem", chunk)
        entries[kernel] = (int(spills[1]), int(spills[2]), int(registers),
                           int(smem[1]) if smem else 0)
    return entries


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed: the sm_80 "
                    "compile check of the conv/pool kernels needs the CUDA toolkit")
def test_nvcc_compiles_every_instantiation_without_spills(tmp_path):
    lowerings = nvcc_lowerings()
    source = tmp_path / "conv.cu"
    source.write_text("\n".join(lowering.source for lowering in lowerings))
    done = subprocess.run(["nvcc", "-cubin", "-arch=sm_80", "-Xptxas", "-v,-warn-spills",
                           "-o", str(tmp_path / "conv.cubin"), str(source)],
                          check=False, capture_output=True, text=True)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "warning" not in log.lower(), log
    threads = {launch.kernel: math.prod(launch.block)
               for lowering in lowerings for launch in lowering.launches}
    entries = ptxas_entries(log)
    assert set(entries) == set(threads)
    for kernel, (spill_stores, spill_loads, registers, smem) in entries.items():
        assert spill_stores == spill_loads == 0, kernel
        assert smem <= 48 * 1024, kernel
        assert registers * threads[kernel] <= 65536, kernel


# ---------------------------------------------------------------- refusals
def test_float16_conv_is_refused_naming_the_node():
    x, w = gd.input("image", (1, 1, 4, 4), "float16"), gd.input("w", (1, 1, 2, 2), "float16")
    with pytest.raises(gd.GraphError, match="no float16 kernel for .*image"):
        BACKEND.generate([gd.conv2d(x, w)], [x, w])


def test_array_beyond_32_bit_indexing_is_refused():
    x = gd.input("huge", (2 ** 16, 2, 2 ** 8, 2 ** 8), "float32")
    with pytest.raises(gd.GraphError, match="32-bit indexing"):
        cuda_conv.max_pool2d(gd.max_pool2d(x, 2), "k")


# ---------------------------------------------------------------- inf and NaN
# A kernel tap whose window misses an input pixel adds nothing to that pixel's gradient: not
# 0 * w, which is NaN for an inf or NaN weight (NumPy's col2im, the reference and PyTorch only
# ever form the products of taps that land). A padding cell is a real zero: 0 * inf is NaN in
# the forward pass and the weight gradient, in all three alike (PyTorch in float64; its float32
# oneDNN path skips the padding there, giving fewer NaNs: the sweep compares float64).
def inf_corner_case(stride, padding):
    x, w = gd.input("x", (1, 1, 4, 4), "float64"), gd.input("w", (1, 1, 2, 2), "float64")
    (gx,) = gd.grad(gd.sum(gd.conv2d(x, w, stride=stride, padding=padding)), [x])
    return gx, {"x": np.ones((1, 1, 4, 4)), "w": np.array([[[[np.inf, 1.0], [1.0, 1.0]]]])}


INF, NAN = np.inf, np.nan
INF_CORNER = {  # (stride, padding): NumPy's and PyTorch's input gradient
    (1, 0): [[INF, INF, INF, 1], [INF, INF, INF, 2], [INF, INF, INF, 2], [1, 2, 2, 1]],
    (2, 0): [[INF, 1, INF, 1], [1, 1, 1, 1], [INF, 1, INF, 1], [1, 1, 1, 1]],
    ((2, 1), 1): [[2, 2, 2, 2], [INF] * 4, [2, 2, 2, 2], [INF] * 4],
    (1, 1): [[INF] * 4] * 4,
}


def assert_same_non_finite(got, want):
    """NaN exactly where `want` has one, the infinities equal, the finite values close."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride, padding", list(INF_CORNER))
def test_inf_weight_reaches_only_the_pixels_its_windows_cover(stride, padding):
    gx, feed = inf_corner_case(stride, padding)
    want = np.array(INF_CORNER[stride, padding])[None, None]
    assert_same_non_finite(gd.compile([gx])(**feed)[0], want)
    assert_same_non_finite(gd.compile([gx], backend="cuda", device="cpu")(**feed)[0], want)


SWEEP = [(stride, padding, dilation, groups) for stride in (1, 2, (2, 1)) for padding in (0, 1)
         for dilation in (1, 2) for groups in (1, 2)]
PLANTED = ("w", "g")  # where an inf and a NaN are planted (first and last cell): weights, dy


def sweep_id(cfg):
    return "s{}_p{}_d{}_g{}".format(*(str(v).replace(", ", "x") for v in cfg))


def sweep_nodes(cfg):
    """conv2d and its two gradients on float64 x (2, 4, 7, 6), w (4, 4/groups, 2, 3)."""
    stride, padding, dilation, groups = cfg
    x, w = gd.input("x", (2, 4, 7, 6), "float64"), gd.input("w", (4, 4 // groups, 2, 3), "float64")
    y = gd.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    g = gd.input("g", y.shape, "float64")
    return {"conv2d": y, "input_grad": cv.CONV2D_INPUT_GRAD(g, w, x, **y.attrs),
            "weight_grad": cv.CONV2D_WEIGHT_GRAD(x, g, w, **y.attrs)}, (x, w, g)


def planted_feed(inputs, planted):
    rng = np.random.default_rng(5)
    feed = {i.name: rng.standard_normal(i.shape) for i in inputs}
    feed[planted].reshape(-1)[[0, -1]] = INF, NAN
    return feed


SWEEP_NODES = {sweep_id(cfg): sweep_nodes(cfg) for cfg in SWEEP}
SWEEP_LOWERINGS = {(key, op): node.op.impls["cuda"](node, kernel_name(f"nonfinite_{key}_{op}"))
                   for key, (nodes, _) in SWEEP_NODES.items() for op, node in nodes.items()}


@pytest.fixture(scope="module")
def sweep_module():
    return load("\n".join(lowering.source for lowering in SWEEP_LOWERINGS.values()))


def sweep_cuda(module, key, feed):
    """The three ops' values from the CUDA kernels on the CPU emulator."""
    nodes, _ = SWEEP_NODES[key]
    return {op: run(module, node, SWEEP_LOWERINGS[key, op], [feed[i.name] for i in node.inputs],
                    "forward") for op, node in nodes.items()}


@pytest.mark.parametrize("planted", PLANTED)
@pytest.mark.parametrize("key", list(SWEEP_NODES))
def test_inf_and_nan_match_numpy(sweep_module, key, planted):
    nodes, inputs = SWEEP_NODES[key]
    feed = planted_feed(inputs, planted)
    with np.errstate(invalid="ignore"):  # NumPy warns of the NaNs its products make
        want = dict(zip(nodes, gd.compile(list(nodes.values()))(**feed)))
    got = sweep_cuda(sweep_module, key, feed)
    for op in nodes:
        assert np.isfinite(want[op]).any(), op  # the plants leave finite cells to compare
        assert_same_non_finite(got[op], want[op])


@pytest.mark.parametrize("planted", PLANTED)
@pytest.mark.parametrize("key", list(SWEEP_NODES))
def test_inf_and_nan_match_torch(sweep_module, key, planted):
    torch = pytest.importorskip("torch")
    nodes, inputs = SWEEP_NODES[key]
    feed = planted_feed(inputs, planted)
    attrs = nodes["conv2d"].attrs
    (pt, pb, pl, pr) = attrs["padding"]
    assert (pt, pl) == (pb, pr)  # symmetric: torch's padding argument
    x, w = (torch.tensor(feed[n], requires_grad=True) for n in ("x", "w"))
    y = torch.nn.functional.conv2d(x, w, stride=attrs["stride"], padding=(pt, pl),
                                   dilation=attrs["dilation"], groups=attrs["groups"])
    gx, gw = torch.autograd.grad(y, [x, w], torch.tensor(feed["g"]))
    want = {"conv2d": y.detach().numpy(), "input_grad": gx.numpy(), "weight_grad": gw.numpy()}
    got = sweep_cuda(sweep_module, key, feed)
    for op in nodes:
        assert_same_non_finite(got[op], want[op])
