"""The CUDA backend's structured-op kernels (`codegen/cuda_backend/structured.py`) run on the
CPU emulator of CUDA and compared with each op's NumPy reference (`node.op.impl`), in two
thread orders; and every kernel compiled by nvcc for sm_80 and sm_90 without register spills.

Every case's kernels go into one source, built once (the emulator caches builds by hash)."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import re
import shutil
import subprocess
import tempfile
import warnings

import numpy as np
import pytest

import graphdl as gd
import graphdl.codegen.cuda_backend
from graphdl import runtime
from graphdl.codegen.cuda_backend import BACKEND
from graphdl.ops import leaf, random, scan
from graphdl.ops import matmul as mm
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd

PROTOTYPE = "/work/shared/reference/cuda-on-cpu/cuda_cpu.py"


@functools.cache
def _emulator():
    """(load, takes_order): the project's emulator (`order=` per launch), else the prototype
    it is ported from (thread order from $GDL_CPU_ORDER)."""
    try:
        from graphdl.codegen.cuda_backend.cpu.loader import load
        return load, True
    except ImportError:
        if not os.path.exists(PROTOTYPE):
            pytest.skip("no CPU emulator of CUDA: neither graphdl.codegen.cuda_backend.cpu "
                        f"nor the prototype {PROTOTYPE}")
        spec = importlib.util.spec_from_file_location("cuda_cpu", PROTOTYPE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.CpuRawModule, False


def _run_kernel(kernel, step, args, order):
    if _emulator()[1]:
        kernel(step.grid, step.block, args, order=order)
        return
    os.environ["GDL_CPU_ORDER"] = order
    try:
        kernel(step.grid, step.block, args)
    finally:
        os.environ.pop("GDL_CPU_ORDER")


# ---------------------------------------------------------------- the cases
def _data(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        return rng.integers(0, 50, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _with_nans(rng, shape, dtype):
    """Normals with a NaN in about every fifth element and some infinities."""
    x = _data(rng, shape, dtype)
    flat = x.reshape(-1)
    flat[rng.random(flat.size) < 0.2] = np.nan
    flat[rng.random(flat.size) < 0.1] = np.inf
    flat[rng.random(flat.size) < 0.1] = -np.inf
    return x


def reduction(op, shape, axes, keepdims=False, dtype="float32", nans=False):
    def make(rng):
        x = gd.input("x", shape, dtype)
        data = (_with_nans if nans else _data)(rng, shape, dtype)
        return op(x, axes=axes, keepdims=keepdims), [data]
    return make


def unary(build, shape, dtype="float32"):
    """A node `build(x)` of one input of `shape`."""
    def make(rng):
        x = gd.input("x", shape, dtype)
        return build(x), [_data(rng, shape, dtype)]
    return make


def with_like(build, shape, like_shape, dtype="float32"):
    """A node `build(x, like)`: `like` is read for its shape only."""
    def make(rng):
        x, like = gd.input("x", shape, dtype), gd.input("like", like_shape, dtype)
        return build(x, like), [_data(rng, shape, dtype), np.zeros(like_shape, dtype)]
    return make


def product(a_shape, b_shape, a_dtype="float32", b_dtype=None):
    def make(rng):
        a = gd.input("a", a_shape, a_dtype)
        b = gd.input("b", b_shape, b_dtype or a_dtype)
        return mm.MATMUL(a, b), [_data(rng, a_shape, a_dtype),
                                 _data(rng, b_shape, b_dtype or a_dtype)]
    return make


def joined(shapes, axis, dtypes=None):
    dtypes = dtypes or ["float32"] * len(shapes)

    def make(rng):
        xs = [gd.input(f"x{k}", s, d) for k, (s, d) in enumerate(zip(shapes, dtypes))]
        return mv.CONCATENATE(*xs, axis=axis), [_data(rng, s, d) for s, d in zip(shapes, dtypes)]
    return make


def _indices(rng, n, shape, negative, idx_dtype):
    """Indices into an axis of n: repeats, negatives (if allowed) and both ends."""
    low = -n if negative else 0
    idx = rng.integers(low, n, shape)
    flat = idx.reshape(-1)
    flat[: min(2, flat.size)] = [n - 1, low][: min(2, flat.size)]
    return idx.astype(idx_dtype)


def gather(a_shape, idx_shape, axis, dtype="float32", idx_dtype="int64"):
    def make(rng):
        a, i = gd.input("a", a_shape, dtype), gd.input("i", idx_shape, idx_dtype)
        idx = _indices(rng, a_shape[axis], idx_shape, True, idx_dtype)
        return mv.TAKE(a, i, axis=axis), [_data(rng, a_shape, dtype), idx]
    return make


def scatter(like_shape, idx_shape, axis, dtype="float32", idx_dtype="int64"):
    g_shape = like_shape[:axis] + idx_shape + like_shape[axis + 1:]

    def make(rng):
        g, i = gd.input("g", g_shape, dtype), gd.input("i", idx_shape, idx_dtype)
        like = gd.input("like", like_shape, dtype)
        idx = _indices(rng, like_shape[axis], idx_shape, True, idx_dtype)
        idx.reshape(-1)[2:4] = idx.reshape(-1)[0]  # a repeated index adds up
        return (mv.SCATTER_ADD(g, i, like, axis=axis),
                [_data(rng, g_shape, dtype), idx, np.zeros(like_shape, dtype)])
    return make


def checked(idx_shape, like_shape, axis, negative, bad=None, idx_dtype="int64"):
    """check_index of indices into axis `axis` of `like`; `bad`: (position, value) to plant."""
    def make(rng):
        i, like = gd.input("i", idx_shape, idx_dtype), gd.input("like", like_shape, "float32")
        idx = _indices(rng, like_shape[axis], idx_shape, negative, idx_dtype)
        if bad:
            for position, value in bad:
                idx.reshape(-1)[position] = value
        node = mv.CHECK_INDEX(i, like, axis=axis, what="take: indices i", negative=negative)
        return node, [idx, np.zeros(like_shape, "float32")]
    return make


def scanned(shape, axis, reverse, dtype="float32", op=scan.CUMSUM, nans=False):
    """A scan: cumsum and cumprod combine in NumPy's order, equal to the reference bit for bit,
    as the running indices are; logcumsumexp within a few roundings."""
    def make(rng):
        x = gd.input("x", shape, dtype)
        data = (_with_nans if nans else _data)(rng, shape, dtype)
        return op(x, axis=axis, reverse=reverse), [data]
    return make


def drawn(shape, dtype, key, like=False, key_dtype="int64"):
    """random_uniform, the same steps in the same uint64 arithmetic: equal bit for bit."""
    def make(rng):
        k = gd.input("key", (), key_dtype)
        if like:
            node = random.RANDOM_UNIFORM(k, gd.input("like", shape), dtype=dtype)
            return node, [np.asarray(key, key_dtype), np.zeros(shape, "float32")]
        return random.RANDOM_UNIFORM(k, shape=shape, dtype=dtype), [np.asarray(key, key_dtype)]
    return make


FLOATS = ("float32", "float64")
SLICES = [((7, 8), ((1, 6, 2), (None, None, -1))), ((10,), ((8, 1, -3),)),
          ((5, 6), ((-4, None, None), (0, 0, None))), ((4, 3, 5), ((None, None, -2), (1, 3, None),
                                                                    (-1, None, -1)))]

CASES = {}
for dt in FLOATS:
    for op in (rd.SUM, rd.MAX, rd.MIN):
        for shape, axes, keep in [((5, 7, 9), (1,), False), ((5, 7, 9), (0, 2), True),
                                  ((3, 600), (1,), False), ((1000,), (0,), False),
                                  ((4, 1, 6), (0, 1), True), ((2, 3, 4, 5), (1, 3), False),
                                  ((6, 5), (), False), ((40, 3), (0,), True)]:
            CASES[f"{op.name}-{shape}-{axes}-{keep}-{dt}"] = reduction(op, shape, axes, keep, dt)
    for op in (rd.MAX, rd.MIN):
        for shape, axes in [((6, 33), (1,)), ((3, 700), (1,)), ((9, 4), (0,))]:
            CASES[f"{op.name}-nan-{shape}-{axes}-{dt}"] = reduction(op, shape, axes, False, dt,
                                                                    True)
    CASES[f"sum-empty-axis-{dt}"] = reduction(rd.SUM, (3, 0), (1,), False, dt)
    for shape, like in [((4, 3, 5), (3, 1)), ((2, 3), (2, 3)), ((7, 4), (4,)), ((2, 300), (1, 1))]:
        CASES[f"sum_to-{shape}-{like}-{dt}"] = with_like(mv.SUM_TO, shape, like, dt)
    CASES[f"size-{dt}"] = unary(lambda x, dt=dt: leaf.SIZE(x, axes=(0, 2), dtype=dt), (3, 4, 5))
    for a, b in [((3, 4), (4, 5)), ((70, 33), (33, 65)), ((2, 3, 17, 9), (9, 20)),
                 ((2, 1, 5, 6), (3, 6, 4)), ((1, 6), (6, 1)), ((3, 0), (0, 4)),
                 ((1, 2, 40, 70), (2, 1, 70, 3))]:
        CASES[f"matmul-{a}-{b}-{dt}"] = product(a, b, dt)
    CASES[f"transpose-{dt}"] = unary(lambda x: mv.TRANSPOSE(x, axes=(2, 0, 1)), (2, 3, 4), dt)
    CASES[f"reshape-{dt}"] = unary(lambda x: mv.RESHAPE(x, shape=(6, 4)), (2, 3, 4), dt)
    CASES[f"expand_dims-{dt}"] = unary(lambda x: mv.EXPAND_DIMS(x, axis=(0, 2)), (3, 4), dt)
    CASES[f"squeeze-{dt}"] = unary(lambda x: mv.SQUEEZE(x, axis=(1, 3)), (3, 1, 4, 1), dt)
    CASES[f"broadcast_to-{dt}"] = unary(lambda x: mv.BROADCAST_TO(x, shape=(2, 3, 5)), (3, 1), dt)
    CASES[f"broadcast_to-scalar-{dt}"] = unary(lambda x: mv.BROADCAST_TO(x, shape=(4,)), (), dt)
    for shape, index in SLICES:
        CASES[f"slice-{shape}-{index}-{dt}"] = unary(
            lambda x, index=index: mv.SLICE(x, index=index), shape, dt)
        sliced = mv.SLICE(gd.input("x", shape), index=index).shape
        CASES[f"unslice-{shape}-{index}-{dt}"] = with_like(
            lambda g, like, index=index: mv.UNSLICE(g, like, index=index), sliced, shape, dt)
    CASES[f"concatenate-0-{dt}"] = joined([(2, 3), (4, 3)], 0, [dt, dt])
    CASES[f"concatenate-1-{dt}"] = joined([(2, 3), (2, 1), (2, 5)], 1, [dt] * 3)
    CASES[f"zeros_like-{dt}"] = unary(leaf.ZEROS_LIKE, (3, 5), dt)
    CASES[f"take-0-{dt}"] = gather((5, 4), (7,), 0, dt)
    CASES[f"take-1-{dt}"] = gather((2, 6, 3), (2, 2), 1, dt, "int32")
    CASES[f"scatter_add-0-{dt}"] = scatter((5, 4), (7,), 0, dt)
    CASES[f"scatter_add-1-{dt}"] = scatter((2, 6, 3), (3, 2), 1, dt, "int32")
CASES.update({
    "matmul-mixed-float32-float64": product((5, 7), (7, 3), "float32", "float64"),
    "sum-int32-to-int64": reduction(rd.SUM, (4, 9), (1,), False, "int32"),
    "sum-bool": reduction(rd.SUM, (5, 40), (0, 1), False, "bool"),
    "max-int64": reduction(rd.MAX, (5, 40), (0,), False, "int64"),
    "min-uint8": reduction(rd.MIN, (5, 40), (1,), False, "uint8"),
    "transpose-int64": unary(lambda x: mv.TRANSPOSE(x, axes=(1, 0)), (5, 6), "int64"),
    "broadcast_to-bool": unary(lambda x: mv.BROADCAST_TO(x, shape=(3, 4)), (4,), "bool"),
    "concatenate-mixed-dtypes": joined([(2, 3), (1, 3)], 0, ["float32", "float64"]),
    "check_index-negative": checked((3, 4), (5, 7), 1, True),
    "check_index-labels": checked((9,), (6,), 0, False, idx_dtype="int32"),
    "cumsum-float32-middle-axis": scanned((5, 7, 9), 1, False),
    "cumsum-float64-reverse": scanned((6, 4), 0, True, "float64"),
    "cumsum-int8-to-int64": scanned((3, 4, 5), 2, True, "int8"),
    "cumsum-bool": scanned((40,), 0, False, "bool"),
    "cumsum-empty-axis": scanned((3, 0, 4), 1, False),
    "cumprod-float64-reverse": scanned((6, 4), 0, True, "float64", scan.CUMPROD),
    "cumprod-int8-to-int64": scanned((3, 4, 5), 2, False, "int8", scan.CUMPROD),
    "logcumsumexp-nans-and-infinities": scanned((5, 7, 9), 1, True, op=scan.LOGCUMSUMEXP,
                                                nans=True),
    "logcumsumexp-float64": scanned((4, 30), 1, False, "float64", scan.LOGCUMSUMEXP),
    "linear_scan-reverse": lambda rng: (
        scan.LINEAR_SCAN(gd.input("a", (4, 9, 3), "float32"), gd.input("g", (4, 9, 3), "float32"),
                         axis=1, reverse=True),
        [rng.uniform(0, 1, (4, 9, 3)).astype("float32"), _data(rng, (4, 9, 3), "float32")]),
    "cumargmax-nans": scanned((5, 7, 9), 1, False, op=scan.CUMARGMAX, nans=True),
    "cumargmin-int-ties-reverse": scanned((40, 3), 0, True, "int16", scan.CUMARGMIN),
    "cumargmax-empty-axis": scanned((3, 0, 4), 1, True, op=scan.CUMARGMAX),
    "random-uniform-float32": drawn((37, 41), "float32", -3),
    "random-uniform-float64-like": drawn((3, 2, 50), "float64", 2**62 + 5, like=True),
    "random-uniform-uint8-key": drawn((300,), "float32", 200, key_dtype="uint8"),
    "random-uniform-empty": drawn((4, 0), "float64", 1),
})
# Failing checks: (case, the positions and values planted), the first failure is reported.
FAILING = {
    "check_index-too-large": checked((3, 4), (5, 7), 1, True, bad=[(5, 7), (9, 100)]),
    "check_index-too-negative": checked((6,), (5, 7), 0, True, bad=[(4, -6)]),
    "check_index-negative-label": checked((6,), (4,), 0, False, bad=[(2, -1), (3, 9)]),
}


# ---------------------------------------------------------------- building and running
@functools.cache
def _case(key):
    """(node, input arrays, lowering) of a case, with kernel names unique across cases."""
    make = CASES.get(key) or FAILING[key]
    node, inputs = make(np.random.default_rng(abs(hash(key)) % 2**32))
    return node, inputs, node.op.impls["cuda"](node, _prefix(key))


def _prefix(key):
    return f"k{[*CASES, *FAILING].index(key)}_"


@functools.cache
def _source():
    return "".join(_case(key)[2].source for key in [*CASES, *FAILING])


@functools.cache
def _module():
    with warnings.catch_warnings():  # the prototype reads its header without closing it
        warnings.simplefilter("ignore", ResourceWarning)
        return _emulator()[0](_source())


def _poison(shape, dtype):
    """An output buffer full of garbage, so an element no launch writes shows."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.full(shape, np.nan, dtype)
    return np.full(shape, dtype != np.bool_ and 0x5A, dtype)


def launch(node, inputs, lowering, order):
    """What the renderer's driver does: allocate, zero when asked, launch in order. Returns
    (output, flag): the check's flag after the launches (None without a check)."""
    out = (np.zeros(node.shape, node.dtype) if lowering.zero_output
           else _poison(node.shape, node.dtype))
    scratch = [np.zeros(count, dtype) for count, dtype in lowering.scratch]
    buffers = {"in": lambda k: inputs[k], "out": lambda: out, "scratch": lambda k: scratch[k]}
    for step in lowering.launches:
        args = tuple(buffers[arg[0]](*arg[1:]) for arg in step.args)
        _run_kernel(_module().get_function(step.kernel), step, args, order)
    flag = int(scratch[lowering.check.scratch][0]) if lowering.check else None
    return out, flag


def _tolerance(node, inputs):
    """Accumulating ops sum in the output dtype in another order than NumPy: allow a few ulps
    per term of the longest sum."""
    dtype = np.dtype(node.dtype)
    if dtype.kind != "f" or node.op not in (rd.SUM, mv.SUM_TO, mm.MATMUL, mv.SCATTER_ADD,
                                            scan.LOGCUMSUMEXP, scan.LINEAR_SCAN):
        return 0.0
    terms = (inputs[0].shape[-1] if node.op is mm.MATMUL
             else inputs[0].size // max(math.prod(node.shape), 1))
    return 4 * np.finfo(dtype).eps * max(terms, 1)


ORDERS = ("forward", "reverse")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("key", list(CASES))
def test_kernel_equals_reference(key, order):
    node, inputs, lowering = _case(key)
    got, flag = launch(node, inputs, lowering, order)
    expected = node.op.impl(*inputs, **node.attrs)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert flag in (None, 0)
    tolerance = _tolerance(node, inputs)
    if tolerance:
        scale = np.abs(expected[np.isfinite(expected)]).max(initial=1.0)
        np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance * scale)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("key", list(FAILING))
def test_check_index_raises_the_reference_error(key):
    node, inputs, lowering = _case(key)
    _, flag = launch(node, inputs, lowering, "reverse")
    assert flag
    with pytest.raises(IndexError) as reference:
        node.op.impl(*inputs, **node.attrs)
    check = lowering.check
    with pytest.raises(IndexError) as driver:  # what the driver runs when the flag is set
        runtime._check_index(inputs[0], check.high, check.negative, check.what)
    assert str(driver.value) == str(reference.value)


def test_every_op_of_the_brief_has_a_lowering():
    ops = {rd.SUM, rd.MAX, rd.MIN, mm.MATMUL, mv.TRANSPOSE, mv.RESHAPE, mv.EXPAND_DIMS,
           mv.SQUEEZE, mv.BROADCAST_TO, mv.SUM_TO, mv.SLICE, mv.UNSLICE, mv.CONCATENATE, mv.TAKE,
           mv.SCATTER_ADD, mv.CHECK_INDEX, leaf.ZEROS_LIKE, leaf.SIZE}
    assert all("cuda" in op.impls for op in ops)
    assert ops <= {CASES[key](np.random.default_rng(0))[0].op for key in CASES}


def test_float16_is_refused_naming_the_node():
    x = gd.input("x16", (4, 5), "float16")
    with pytest.raises(gd.GraphError, match="x16.*float16"):
        BACKEND.generate([rd.SUM(x, axes=(1,), keepdims=False)], [x])


def test_kernel_names_start_with_the_given_name():
    names = re.findall(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+)", _source())
    assert len(names) == len(set(names))
    for key in [*CASES, *FAILING]:
        assert all(step.kernel.startswith(_prefix(key)) for step in _case(key)[2].launches)


# ---------------------------------------------------------------- nvcc
PTXAS_USAGE = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


@functools.cache
def _ptxas_log(arch):
    """ptxas's report on the whole source (cached on disk by the source's hash: nvcc takes
    seconds)."""
    source = f"// for {arch}\n{_source()}"
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), "gdl_nvcc_cache")
    os.makedirs(cache, exist_ok=True)
    log = os.path.join(cache, f"{key}.log")
    if not os.path.exists(log):
        cu = os.path.join(cache, f"{key}.cu")
        with open(cu, "w") as f:
            f.write(source)
        result = subprocess.run(
            ["nvcc", "-cubin", f"-arch={arch}", "-Xptxas", "-v,-warn-spills", "-o",
             os.path.join(cache, f"{key}.cubin"), cu], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr[-4000:]
        with open(log, "w") as f:
            f.write(result.stderr)
    with open(log) as f:
        return f.read()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed: the kernels "
                    "were not compiled for the GPU")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvcc_compiles_every_kernel_without_spills(arch):
    log = _ptxas_log(arch)
    spills = PTXAS_USAGE.findall(log)
    names = re.findall(r"Compiling entry function '(\w+)'", log)
    launched = {step.kernel for key in [*CASES, *FAILING] for step in _case(key)[2].launches}
    assert launched <= set(names)
    assert spills and all(stores == loads == "0" for stores, loads in spills), log
    assert "warning" not in log.lower(), log
