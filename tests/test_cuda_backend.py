"""The CUDA backend end to end, on the CPU (`device="cpu"`: the generated kernels compiled with
g++ against the emulator): training steps, user ops, random programs, saved modules, and the
nvcc compile gate of every test model's source. GPU runs skip cleanly without CuPy and a GPU."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import sympy
from hypothesis import assume, given, settings

import graphdl as gd
from graphdl.errors import GraphError

from .helpers import moderate
from .strategies import compiled_vs_interpreter_outputs, random_graph

pytestmark = pytest.mark.skipif(shutil.which("g++") is None,
                                reason="device='cpu' compiles CUDA kernels with g++")


def cuda(outs, **options):
    return gd.compile(outs, backend="cuda", device="cpu", **options)


def assert_close(got, want, dtype):
    rtol = 2e-5 if np.dtype(dtype) == np.float32 else 1e-10
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = max(1.0, float(np.max(np.abs(w), initial=0.0)))
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale)


def mlp(batch=8, d_in=12, hidden=16, classes=5, dtype="float32"):
    x, y = gd.input("x", (batch, d_in), dtype), gd.input("y", (batch,), "int64")
    W1, b1 = gd.input("W1", (d_in, hidden), dtype), gd.input("b1", (hidden,), dtype)
    W2, b2 = gd.input("W2", (hidden, classes), dtype), gd.input("b2", (classes,), dtype)
    loss = gd.softmax_cross_entropy(gd.relu(x @ W1 + b1) @ W2 + b2, y)
    return loss, [W1, b1, W2, b2]


def mlp_feeds(rng, batch=8, d_in=12, hidden=16, classes=5, dtype=np.float32):
    return {"x": rng.standard_normal((batch, d_in)).astype(dtype),
            "y": rng.integers(0, classes, batch),
            "W1": (rng.standard_normal((d_in, hidden)) * 0.3).astype(dtype),
            "b1": rng.standard_normal(hidden).astype(dtype) * 0.1,
            "W2": (rng.standard_normal((hidden, classes)) * 0.3).astype(dtype),
            "b2": np.zeros(classes, dtype)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_training_step_matches_numpy_backend(dtype, rng):
    loss, params = mlp(dtype=dtype)
    updates = {p: p - 0.1 * g for p, g in zip(params, gd.grad(loss, params))}
    feeds = mlp_feeds(rng, dtype=np.dtype(dtype))
    mine = {k: v.copy() for k, v in feeds.items()}
    theirs = {k: v.copy() for k, v in feeds.items()}
    for _ in range(3):  # buffers allocated once are reused across calls
        got = cuda(loss, updates=updates)(mine)
        want = gd.compile(loss, updates=updates)(theirs)
        assert_close([got], [want], dtype)
    assert_close([mine[k] for k in ("W1", "b1", "W2", "b2")],
                 [theirs[k] for k in ("W1", "b1", "W2", "b2")], dtype)


def test_convolution_network_values_and_gradients(rng):
    x = gd.input("x", (2, 3, 9, 9), "float32")
    w1, b1 = gd.input("w1", (4, 3, 3, 3), "float32"), gd.input("b1", (4,), "float32")
    w2 = gd.input("w2", (6, 2, 3, 3), "float32")
    h = gd.max_pool2d(gd.relu(gd.conv2d(x, w1, b1, padding=1)), 2, ceil_mode=True)
    h = gd.avg_pool2d(gd.tanh(gd.conv2d(h, w2, stride=1, padding="same", groups=2)), 2)
    loss = gd.sum(h * h) + gd.mean(gd.sigmoid(h))
    outs = [loss, h, *gd.grad(loss, [x, w1, b1, w2])]
    feeds = {"x": rng.standard_normal((2, 3, 9, 9)).astype(np.float32),
             "w1": rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
             "b1": rng.standard_normal(4).astype(np.float32),
             "w2": rng.standard_normal((6, 2, 3, 3)).astype(np.float32) * 0.3}
    assert_close(cuda(outs)(feeds), gd.compile(outs)(feeds), "float32")


def test_user_op_from_a_formula_needs_no_extra_work(rng):
    softsign = gd.elementwise_op("softsign", lambda a: a / (1 + sympy.Abs(a)))
    bump = gd.elementwise_op("bump", lambda a, b: sympy.erf(a) * sympy.Max(a, b, 0))
    x, y = gd.input("x", (7,), "float64"), gd.input("y", (7,), "float64")
    out = gd.sum(softsign(x) * bump(x, y))
    outs = [out, *gd.grad(out, [x, y])]
    feeds = {"x": rng.standard_normal(7), "y": rng.standard_normal(7)}
    assert_close(cuda(outs)(feeds), gd.evaluate(outs, feeds), "float64")


@settings(max_examples=8)
@given(random_graph())
def test_random_programs_match_the_interpreter(case):
    outs = compiled_vs_interpreter_outputs(case)
    with np.errstate(all="ignore"):
        want = gd.evaluate(outs, case.feeds)
    assume(moderate(want))
    assert_close(cuda(outs)(case.feeds), want, "float64")


def test_source_is_cuda_c_with_provenance_and_float32_functions():
    x = gd.input("x", (5,), "float32")
    y = gd.exp(x) * gd.sqrt(x * x + 1.0)
    y.name = "y"
    source = cuda(y).source
    assert 'extern "C" __global__ void k_y(' in source and "int main" not in source
    body = source[source.index("void k_y("):]
    code = "\n".join(line.split("//")[0] for line in body.splitlines())
    assert "expf(" in code and "sqrtf(" in code
    assert "exp(" not in code.replace("expf(", "") and "sqrt(" not in code.replace("sqrtf(", "")
    lines = [line for line in body.splitlines() if line.strip().startswith("const float v")]
    assert lines and all("// " in line for line in lines)  # every line names its graph node


def test_saved_module_holds_the_cu_source_and_a_driver(tmp_path):
    x = gd.input("x", (3,), "float64")
    fn = cuda(gd.tanh(x) + 1.0)
    fn.save(tmp_path / "model.py")
    assert (tmp_path / "model.cu").read_text() == fn.source
    driver = (tmp_path / "model.py").read_text()
    assert "import cupy" in driver and "def run(x)" in driver


def test_without_a_gpu_the_error_says_what_is_missing():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount():
            pytest.skip("a GPU is here")
    except (ImportError, RuntimeError):
        pass
    x = gd.input("x", (3,))
    with pytest.raises(GraphError, match=r"device='cpu' runs the same kernels"):
        gd.compile(x * 2.0, backend="cuda")


# ---------------------------------------------------------------- nvcc compile gate
def _models():
    """The test models, (name, outputs, updates): the MLP and LeNet training steps with their
    gradients, the lecture's sigmoid neuron, AlexNet's forward and backward
    pass at batch 1, a skip-gram step with its sparse updates."""
    from .test_sparse_updates import skipgram

    loss, params = mlp(batch=64, d_in=784, hidden=256, classes=10)
    yield "mlp", [loss, *gd.grad(loss, params)], {}
    x, y = gd.input("x", (8, 1, 28, 28)), gd.input("y", (8,), "int64")
    p = {"c1": gd.input("c1", (6, 1, 5, 5)), "c2": gd.input("c2", (16, 6, 5, 5)),
         "f1": gd.input("f1", (400, 10))}
    h = gd.max_pool2d(gd.relu(gd.conv2d(x, p["c1"], padding=2)), 2)
    h = gd.max_pool2d(gd.relu(gd.conv2d(h, p["c2"])), 2)
    loss = gd.softmax_cross_entropy(gd.reshape(h, (8, 400)) @ p["f1"], y)
    yield "lenet", [loss, *gd.grad(loss, list(p.values()))], {}
    w = [gd.input(f"w{k}", (), "float32") for k in range(3)]
    xs = [gd.input(f"x{k}", (), "float32") for k in range(2)]
    f = gd.sigmoid(w[0] * xs[0] + w[1] * xs[1] + w[2])
    yield "neuron", [f, *gd.grad(f, w + xs)], {}
    a = gd.input("image", (1, 3, 227, 227))
    k1, k2 = gd.input("k1", (96, 3, 11, 11)), gd.input("k2", (256, 48, 5, 5))
    h = gd.max_pool2d(gd.relu(gd.conv2d(a, k1, stride=4)), 3, stride=2)
    h = gd.max_pool2d(gd.relu(gd.conv2d(h, k2, padding=2, groups=2)), 3, stride=2)
    out = gd.sum(h * h)
    yield "alexnet", [out, *gd.grad(out, [k1, k2])], {}
    loss, updates = skipgram(1000, 64, 256, 5)
    yield "skipgram", [loss], updates


NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed: the compile gate needs it")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_test_model_compiles_with_nvcc_without_spills(arch, tmp_path):
    cache = os.path.join(os.path.expanduser("~"), ".cache", "graphdl", "nvcc")
    os.makedirs(cache, exist_ok=True)
    for name, outs, updates in _models():
        source = gd.compile(outs, backend="cuda", device="cpu", updates=updates).source
        key = hashlib.sha256(f"{arch}\n{source}".encode()).hexdigest()[:20]
        done = os.path.join(cache, key + ".ok")
        if os.path.exists(done):
            continue
        cu = tmp_path / f"{name}.cu"
        cu.write_text(source)
        result = subprocess.run(
            [NVCC, "-cubin", f"-arch={arch}", "-std=c++17", "-Xptxas", "-v,-warn-spills",
             "-o", str(tmp_path / f"{name}.cubin"), str(cu)],
            capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name} ({arch}):\n{result.stderr[-3000:]}"
        spills = [int(n) for n in re.findall(r"(\d+) bytes spill stores", result.stderr)]
        assert not any(spills), f"{name} ({arch}) spills registers:\n{result.stderr[-3000:]}"
        open(done, "w").close()


@pytest.mark.parametrize("order", ["reverse", "random:7"])
def test_kernels_do_not_depend_on_thread_order(order, monkeypatch, rng):
    """Threads run in another order on the CPU: a missing barrier would change the results."""
    monkeypatch.setenv("GRAPHDL_CUDA_CPU_ORDER", order)
    x = gd.input("x", (2, 3, 8, 8), "float32")
    w = gd.input("w", (4, 3, 3, 3), "float32")
    W = gd.input("W", (36, 5), "float32")
    h = gd.max_pool2d(gd.relu(gd.conv2d(x, w, padding=1)), 2)
    loss = gd.mean(gd.logsumexp(gd.reshape(gd.avg_pool2d(h, 2), (2, 4 * 2 * 2)) @ W[:16], -1))
    outs = [loss, *gd.grad(loss, [x, w, W])]
    feeds = {"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32),
             "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "W": rng.standard_normal((36, 5)).astype(np.float32)}
    assert_close(cuda(outs)(feeds), gd.compile(outs)(feeds), "float32")


def test_empty_batches_scalars_and_empty_constants(rng):
    """Found by `python -m tests.fuzz --cuda`: an empty batch through a convolution's weight
    gradient (no K to sum), a 0-d input returned as it is, an empty constant of rank 4."""
    x, w = gd.input("x", (0, 1, 6, 5), "float64"), gd.input("w", (2, 1, 3, 3), "float64")
    s = gd.input("s", (), "float64")
    y = gd.conv2d(x, w, padding=1)
    loss = gd.sum(y * gd.constant(np.zeros((0, 2, 6, 5)))) + s * s
    outs = [loss, y, s, *gd.grad(loss, [x, w, s])]
    feeds = {"x": np.zeros((0, 1, 6, 5)), "w": rng.standard_normal((2, 1, 3, 3)),
             "s": np.array(0.5)}
    assert_close(cuda(outs)(feeds), gd.evaluate(outs, feeds), "float64")


def test_debug_names_the_first_node_that_overflows():
    x = gd.input("x", (3,), "float32")
    h = gd.exp(x * 100.0)
    h.name = "blowup"
    fn = cuda(gd.sum(h), debug=True)
    assert float(fn(x=np.array([0.1, 0.2, 0.3], np.float32))) > 0
    with pytest.raises(FloatingPointError, match="blowup"):
        fn(x=np.array([0.1, 2.0, 0.3], np.float32))


def test_float16_elementwise_graph_is_refused_naming_the_node():
    """NVRTC has no __half without cuda_fp16.h: the emulator compiled what a GPU rejects."""
    x = gd.input("half_x", (3,), "float16")
    feeds = {"half_x": np.ones(3, np.float16)}
    with pytest.raises(GraphError, match="no float16 kernel for .*half_x"):
        cuda(gd.exp(x) * 2.0)(feeds)
    with pytest.raises(GraphError, match="no float16 kernel for .*half_x"):  # cast fused inside
        cuda(gd.cast(x, "float32") * 2.0)(feeds)


def test_outputs_on_device_are_copies_of_their_own(rng):
    x = gd.input("x", (4,), "float32")
    fn = cuda([x * 2.0, gd.sum(x)], outputs_on_device=True)
    first = fn(x=np.ones(4, np.float32))
    second = fn(x=np.full(4, 3.0, np.float32))
    np.testing.assert_array_equal(first[0], np.full(4, 2.0))  # not overwritten by the 2nd call
    np.testing.assert_array_equal(second[0], np.full(4, 6.0))
    with pytest.raises(GraphError, match="outputs_on_device is for backend='cuda'"):
        gd.compile(x * 2.0, outputs_on_device=True)


def test_outputs_on_device_hold_call_time_values_beside_updates():
    W = gd.input("W", (3,), "float32")
    fn = cuda([W, W * 2.0], updates={W: W * 10.0}, outputs_on_device=True)
    w = np.ones(3, np.float32)
    got, doubled = fn(W=w)
    np.testing.assert_array_equal(got, np.ones(3))  # W as called, not W after the update
    np.testing.assert_array_equal(doubled, np.full(3, 2.0))
    np.testing.assert_array_equal(w, np.full(3, 10.0))


def test_constants_in_another_memory_order_reach_kernels_c_contiguous(rng):
    """A constant keeps its array's memory order (a transposed array is Fortran-ordered);
    kernels index C order (found by the fuzzer: a folded gradient constant)."""
    table = rng.standard_normal((30, 20)).T  # large: handed to the module as an array
    assert not table.flags.c_contiguous
    assert gd.constant(table).attrs["value"].array.flags.f_contiguous
    x = gd.input("x", (20, 30), "float64")
    y = x / gd.constant(table)
    xv = rng.standard_normal((20, 30))
    assert_close([cuda(y)(x=xv)], [xv / table], "float64")


# ---------------------------------------------------------------- constants NVRTC can compile
CONSTANT_FORMULAS = {  # SymPy's C printer spells each of these as a <math.h> macro (M_SQRT2, ...)
    "sqrt2_ln2": lambda x: sympy.sqrt(2) * x + sympy.log(2),
    "pi_e": lambda x: sympy.pi * x + sympy.E + 1 / sympy.pi + 2 / sympy.pi + sympy.pi / 4,
    "roots": lambda x: x / sympy.sqrt(2) + 2 / sympy.sqrt(sympy.pi) + sympy.sqrt(sympy.pi) * x,
    "logs": lambda x: sympy.log(10) * x + 1 / sympy.log(2) + sympy.log(sympy.E * 2) + sympy.pi / 2,
    "gelu": lambda x: x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2,
    "gelu_tanh": lambda x: x * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi) * (x + x**3 / 20))) / 2,
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(CONSTANT_FORMULAS))
def test_math_constants_print_as_literals_and_equal_the_numpy_backend(name, dtype):
    """sqrt(2), log(2), 1/pi, 2/sqrt(pi), ...: SymPy's C printer writes M_SQRT2, M_LN2, ...,
    which NVRTC does not define (nor does the emulator). Their values, in the kernel's precision,
    and the gradient's."""
    op = gd.elementwise_op(f"const_{name}", CONSTANT_FORMULAS[name])
    x = gd.input("x", (9,), dtype)
    y = op(x)
    outs = [y, gd.grad(gd.sum(y * y), x)]
    fn = cuda(outs)
    assert not re.findall(r"\bM_\w+", fn.source)
    xv = np.linspace(-3, 3, 9).astype(dtype)
    assert_close(fn({"x": xv}), gd.compile(outs)({"x": xv}), dtype)


def test_constants_keep_their_float64_values_bit_for_bit():
    x = gd.input("x", (9,), "float64")
    outs = [gd.elementwise_op(f"exact_{name}", CONSTANT_FORMULAS[name])(x)
            for name in ("sqrt2_ln2", "pi_e", "gelu")]
    xv = np.linspace(-3, 3, 9)
    for got, want in zip(cuda(outs)({"x": xv}), gd.compile(outs)({"x": xv}), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_no_builtin_elementwise_formula_or_derivative_prints_a_math_h_macro(dtype):
    import inspect

    from graphdl.codegen.cuda_backend.printer import CudaPrinter
    from graphdl.opdef import REGISTRY

    printed = 0
    for op in REGISTRY.values():
        if op.kind != "elementwise" or op.sym is None:
            continue
        xs = sympy.symbols(f"x0:{len(inspect.signature(op.sym).parameters)}", real=True)
        try:
            form = op.sym(*xs)
        except (TypeError, ValueError):  # cast, pow: forms that take attributes
            continue
        printer = CudaPrinter(np.dtype(dtype), {x: f"v{k}" for k, x in enumerate(xs)})
        for f in [form, *(sympy.diff(form, x) for x in xs)]:
            if f.has(sympy.Derivative):  # where's condition: SymPy cannot differentiate it
                continue
            text = printer.doprint(f)
            assert not re.findall(r"\bM_\w+", text), (op.name, text)
            printed += 1
    sqrt2 = CudaPrinter(np.dtype(dtype), {}).doprint(sympy.sqrt(2) / sympy.pi + sympy.log(2))
    assert printed > 20 and not re.findall(r"\bM_\w+", sqrt2), sqrt2
