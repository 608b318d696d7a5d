"""PyTorch's activation functions (graphdl/ops/activations.py; gelu and softplus with their
PyTorch parameters in graphdl/ops/composite.py) against torch.nn.functional: value, first and
second derivative in float64 and float32 on a grid holding every kink, the saturated tails,
±inf and NaN, on the interpreter, compiled NumPy and the CUDA backend's kernels on the CPU;
finite differences away from the kinks; one gate each in a drawing; ONNX export; refusals."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.ops import elementwise as ew
from graphdl.ops.composite import COMPOSITES
from tests.helpers import run_on, runner_params

torch = pytest.importorskip("torch")
F = torch.nn.functional

# The kinks of the cases below (0, ±3, 6; -2 and 0.5 of hardtanh(-2, 0.5); βx = threshold at
# 5 and 20), points beside them, the saturated tails, ±inf and NaN.
GRID = np.array([np.nan, -np.inf, -1e4, -30, -6, -3.5, -3, -2.5, -2, -1, -0.5, -1e-3, -1e-9, 0,
                 1e-9, 1e-3, 0.5, 1, 2, 2.5, 3, 3.5, 5, 6, 6.5, 10, 20, 30, 1e4, np.inf])
SMOOTH = np.array([-4.2, -2.2, -0.7, 0.4, 1.3, 2.2, 4.1, 7.3])  # no kink of any case


def _pairs(axis):
    """glu's input: the grid beside the reversed grid, along `axis`."""
    return lambda v: np.stack([v, v[::-1]], axis)


def _glu(t, dim):
    """F.glu with σ'(b) as σ(b)σ(−b): F.glu's σ(1 − σ) loses digits once σ(b) rounds near 1
    (b = 30: 1e-3 of them; test_glu_takes_axis_or_dim_and_is_pytorchs compares with F.glu)."""
    a, b = t.chunk(2, dim)
    return a * torch.exp(-F.softplus(-b, 1, 40))


# name -> (graphdl, PyTorch, input layout)
CASES = {
    "silu": (gd.silu, F.silu, None),
    "elu": (gd.elu, F.elu, None),
    "elu(alpha=0.5)": (lambda x: gd.elu(x, 0.5), lambda t: F.elu(t, 0.5), None),
    "selu": (gd.selu, F.selu, None),
    "celu": (gd.celu, F.celu, None),
    "celu(alpha=2)": (lambda x: gd.celu(x, 2.0), lambda t: F.celu(t, 2.0), None),
    "leaky_relu": (gd.leaky_relu, F.leaky_relu, None),
    "leaky_relu(-0.5)": (lambda x: gd.leaky_relu(x, -0.5), lambda t: F.leaky_relu(t, -0.5),
                         None),
    "prelu(0.25)": (lambda x: gd.prelu(x, 0.25),
                    lambda t: F.prelu(t, torch.tensor(0.25, dtype=t.dtype)), None),
    "relu6": (gd.relu6, F.relu6, None),
    "hardtanh": (gd.hardtanh, F.hardtanh, None),
    "hardtanh(-2, 0.5)": (lambda x: gd.hardtanh(x, -2, 0.5), lambda t: F.hardtanh(t, -2, 0.5),
                          None),
    # F.hardsigmoid has no double backward, and its float64 gradient is 1/6 rounded to float32
    # (test_hardsigmoid_is_pytorchs): its definition, whose derivatives PyTorch has exactly
    "hardsigmoid": (gd.hardsigmoid, lambda t: F.relu6(t + 3) / 6, None),
    "hardswish": (gd.hardswish, F.hardswish, None),
    "mish": (gd.mish, F.mish, None),
    "softsign": (gd.softsign, F.softsign, None),
    "softplus": (gd.softplus, lambda t: F.softplus(t, 1, 40), None),  # exact beyond 20 too
    "softplus(beta=0.5)": (lambda x: gd.softplus(x, 0.5), lambda t: F.softplus(t, 0.5, 40), None),
    "softplus(threshold=20)": (lambda x: gd.softplus(x, threshold=20), F.softplus, None),
    "softplus(beta=2, threshold=10)": (lambda x: gd.softplus(x, 2, 10),
                                       lambda t: F.softplus(t, 2, 10), None),
    "gelu": (gd.gelu, F.gelu, None),
    "gelu(approximate='tanh')": (lambda x: gd.gelu(x, approximate="tanh"),
                                 lambda t: F.gelu(t, approximate="tanh"), None),
    "glu": (gd.glu, lambda t: _glu(t, -1), _pairs(-1)),
    "glu(dim=0)": (lambda x: gd.glu(x, dim=0), lambda t: _glu(t, 0), _pairs(0)),
}
# PyTorch's double backward of mish overflows at 1e4 (NaN); the second derivative there is 0
PYTORCH_NAN = {"mish": 1e4}

# float64: as PyTorch's float64 to the last digits; float32: its rounding of every step,
# against the float64 reference
TOLERANCE = {"float64": (1e-12, 1e-14), "float32": (1e-4, 1e-5)}


def _input(name, dtype):
    layout = CASES[name][2]
    return np.asarray(GRID if layout is None else layout(GRID), dtype=dtype)


def _weights(shape, seed):
    return np.round(np.random.default_rng(seed).uniform(0.5, 1.5, shape), 3)


def _reference(name, x):
    """PyTorch float64: value, gradient of Σ w1·f and gradient of Σ w2·(that gradient)."""
    fn = CASES[name][1]
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(t)
    w1, w2 = (torch.from_numpy(_weights(s, k)) for k, s in ((1, y.shape), (2, x.shape)))
    (g,) = torch.autograd.grad((y * w1).sum(), t, create_graph=True)
    (h,) = torch.autograd.grad((g * w2).sum(), t)
    out = [a.detach().numpy().copy() for a in (y, g, h)]
    if name in PYTORCH_NAN:
        out[2][x == PYTORCH_NAN[name]] = 0.0
    return out


def _graph(name, x):
    """The nodes of value, gradient and second derivative, as `_reference` computes them."""
    xi = gd.input(f"x{list(CASES).index(name)}", x.shape, x.dtype.name)
    y = CASES[name][0](xi)
    (g,) = gd.grad(gd.sum(y * gd.constant(_weights(y.shape, 1).astype(x.dtype))), [xi])
    (h,) = gd.grad(gd.sum(g * gd.constant(_weights(x.shape, 2).astype(x.dtype))), [xi])
    return xi, [y, g, h]


def _mismatches(x, got, want, dtype):
    """Where `got` is not PyTorch's `want`: NaN and ±inf exactly, the rest within TOLERANCE."""
    rtol, atol = TOLERANCE[dtype]
    got = np.asarray(got, np.float64)
    ok = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    ok &= (np.isnan(got) == np.isnan(want)) & (~np.isinf(want) | (got == want))
    at = x[~ok] if x.shape == want.shape else [f"index {i}" for i in np.argwhere(~ok).tolist()]
    return [f"x={v}: got {a!r}, PyTorch {b!r}" for v, a, b in zip(at, got[~ok], want[~ok])]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("runner", runner_params())
def test_value_and_two_derivatives_equal_pytorchs(runner, dtype):
    """Every case in one graph (one compilation per backend and dtype)."""
    inputs = {name: _input(name, dtype) for name in CASES}
    graphs = {name: _graph(name, x) for name, x in inputs.items()}
    outputs = [node for _, nodes in graphs.values() for node in nodes]
    feeds = {xi.name: inputs[name] for name, (xi, _) in graphs.items()}
    with np.errstate(all="ignore"):  # ±inf and NaN on purpose
        values = run_on(runner, outputs, feeds)
    problems = []
    for k, name in enumerate(CASES):
        x = inputs[name]
        want = _reference(name, x.astype(np.float64))
        for what, got, ref in zip(("value", "gradient", "second derivative"),
                                  values[3 * k:3 * k + 3], want):
            assert np.asarray(got).dtype == dtype, (name, what)
            if what != "value":  # PyTorch's at NaN depends on its kernel's path: see below
                x, got, ref = (a[~np.isnan(inputs[name])] for a in (inputs[name], got, ref))
            bad = _mismatches(x, got, ref, dtype)
            if bad:
                problems.append(f"{name} {what}: " + "; ".join(bad[:4]))
    assert not problems, "\n".join(problems)


# The gradient at NaN: NaN, but where the derivative around is a constant (graphdl's relu and
# clip give 0 there too). PyTorch's depends on the path its kernel takes (vectorized or not,
# by size and memory layout): relu6'(NaN) is 1 for 3 elements and 0 for 64.
NAN_GRADIENT = {"relu6": 0.0, "hardtanh": 0.0, "hardtanh(-2, 0.5)": 0.0, "hardsigmoid": 0.0,
                "leaky_relu": 0.01, "leaky_relu(-0.5)": -0.5, "prelu(0.25)": 0.25}


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case[2] is None])
def test_nan_gives_nan_and_these_gradients(name):
    xi = gd.input("x", (3,), "float64")
    y = CASES[name][0](xi)
    with np.errstate(invalid="ignore"):
        value, grad = gd.compile([y, *gd.grad(gd.sum(y), [xi])])(x=np.full(3, np.nan))
    assert np.isnan(value).all()
    np.testing.assert_array_equal(grad, NAN_GRADIENT.get(name, np.nan))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_elu_family_keeps_every_digit_near_zero(dtype):
    """PyTorch computes expm1 there, where e^x − 1 would lose every digit."""
    x = np.array([-0.9, -1e-3, -1e-5, -1e-7, -1e-9, -1e-30], dtype)
    xi = gd.input("x", x.shape, dtype)
    for fn, reference in ((gd.elu, F.elu), (gd.selu, F.selu),
                          (lambda v: gd.celu(v, 2.0), lambda t: F.celu(t, 2.0))):
        want = reference(torch.from_numpy(x.astype(np.float64))).numpy()
        np.testing.assert_allclose(gd.evaluate(fn(xi), x=x), want, rtol=4 * np.finfo(dtype).eps)


def test_hardsigmoid_is_pytorchs():
    """F.hardsigmoid's own value and gradient, which in float64 multiplies by 1/6 rounded to
    float32 (so: to 1e-7)."""
    x = GRID[1:]
    t = torch.tensor(x, requires_grad=True)
    (g,) = torch.autograd.grad(F.hardsigmoid(t).sum(), t)
    xi = gd.input("x", x.shape, "float64")
    y = gd.hardsigmoid(xi)
    got = gd.evaluate([y, *gd.grad(gd.sum(y), [xi])], x=x)
    np.testing.assert_allclose(got[0], F.hardsigmoid(t).detach().numpy(), rtol=1e-15)
    np.testing.assert_allclose(got[1], g.numpy(), rtol=1e-7, atol=0)


@pytest.mark.parametrize("name", CASES)
def test_finite_differences_agree_away_from_the_kinks(name):
    x = np.asarray(SMOOTH if CASES[name][2] is None else CASES[name][2](SMOOTH), np.float64)
    xi, (y, g, _) = _graph(name, x)
    for out in (y, g):  # the gradient's own graph too: its rules give the second derivative
        check = gd.check_grad(gd.sum(out * gd.constant(_weights(out.shape, 3))), {xi.name: x})
        assert check.ok, (name, check.failures[:1])


ACTIVATIONS = ["silu", "elu", "selu", "celu", "leaky_relu", "relu6", "hardtanh", "hardsigmoid",
               "hardswish", "mish", "softsign", "glu"]


@pytest.mark.parametrize("name", [*ACTIVATIONS, "gelu_tanh", "softplus_threshold"])
def test_each_is_drawn_as_one_gate(name):
    fn = {"gelu_tanh": lambda x: gd.gelu(x, approximate="tanh"),
          "softplus_threshold": lambda x: gd.softplus(x, threshold=20)}.get(name)
    x = gd.input("x", (4,), "float64")
    y = gd.sum((fn or getattr(gd, name))(x))
    values = {"x": np.array([-1.5, -0.2, 0.7, 2.0])}
    gates = [g for g in gd.draw(y, values, collapse=[name]).circuit.gates if g.kind != "input"]
    regions = [g for g in gates if g.kind == "region"]
    assert [g.label for g in regions] == [COMPOSITES[name].symbol]
    assert len(gates) == 2, [g.label for g in gates]  # the activation and the sum
    step = next(s for s in gd.explain(y, values, collapse=name).steps if s.gate is not None
                and s.gate.kind == "region")
    assert step.terms


def test_other_parameters_are_drawn_as_their_parts():
    """The views recognize a composite by rebuilding it with its defaults."""
    x = gd.input("x", (4,), "float64")
    circuit = gd.draw(gd.sum(gd.elu(x, 0.5)), collapse=["elu"]).circuit
    assert not [g for g in circuit.gates if g.kind == "region"]


def test_softplus_keeps_its_graph_and_its_parameters_are_pytorchs():
    x = gd.input("x", (3,), "float64")
    y = gd.softplus(x)
    assert y is gd.log(1 + gd.exp(x)) and y.name == "softplus"
    assert gd.softplus(x, beta=1) is y
    assert gd.softplus(x, threshold=20).op is ew.WHERE
    v = np.array([19.0, 20.0, 21.0])
    got = gd.evaluate([gd.softplus(x, threshold=20), gd.softplus(x)], x=v)
    assert np.array_equal(got[0][2], 21.0) and got[1][2] > 21.0  # PyTorch's cut, or none


def test_glu_takes_axis_or_dim_and_is_pytorchs():
    x = gd.input("x", (4, 6), "float64")
    assert gd.glu(x, dim=0) is gd.glu(x, axis=0) is gd.glu(x, 0) is gd.glu(x, axis=-2)
    assert gd.glu(x).shape == (4, 3) and gd.glu(x, dim=0).shape == (2, 6)
    v = np.random.default_rng(0).uniform(-3, 3, (4, 6))
    t = torch.tensor(v, requires_grad=True)
    (g,) = torch.autograd.grad(F.glu(t, 0).sum(), t)
    y = gd.glu(x, dim=0)
    got = gd.evaluate([y, *gd.grad(gd.sum(y), [x])], x=v)
    np.testing.assert_allclose(got[0], F.glu(t, 0).detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(got[1], g.numpy(), rtol=1e-13)


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    from .test_onnx import _roundtrip

    finite = GRID[np.isfinite(GRID)]
    outputs, feeds = {}, {}
    for name, (_, _, layout) in CASES.items():
        value = np.asarray(finite if layout is None else layout(finite), np.float32)
        xi, (y, g, _) = _graph(name, value)
        outputs[f"y{xi.name}"], outputs[f"g{xi.name}"] = y, g
        feeds[xi.name] = value
    _roundtrip(outputs, feeds, tmp_path, rtol=1e-4)


@pytest.mark.parametrize("name", [*ACTIVATIONS, "gelu", "softplus"])
def test_integer_input_is_refused_by_name(name):
    counts = gd.input("counts", (4,), "int32")
    with pytest.raises(gd.GraphError, match=f"{name} expects floating-point input.*'counts'"):
        getattr(gd, name)(counts)


@pytest.mark.parametrize(("call", "message"), [
    (lambda x: gd.elu(x, "1"), "elu: alpha must be a number, got '1'"),
    (lambda x: gd.leaky_relu(x, float("nan")), "leaky_relu: negative_slope must be a number"),
    (lambda x: gd.celu(x, 0), "celu: alpha must be a nonzero number"),
    (lambda x: gd.hardtanh(x, 1, -1), "hardtanh of .*: min_val 1.0 is above max_val -1.0"),
    (lambda x: gd.softplus(x, beta=0), "softplus: beta must be a nonzero number"),
    (lambda x: gd.softplus(x, threshold=True), "softplus: threshold must be a number"),
    (lambda x: gd.gelu(x, approximate="erf"), "gelu: approximate must be 'none' or 'tanh'"),
    (lambda x: gd.glu(x), "glu of .*: the size along axis 1 must be even .*got 5"),
    (lambda x: gd.glu(x, axis=0, dim=0), "glu of .*: give axis or dim, not both"),
    (lambda x: gd.glu(x, axis=(0,)), "glu of .*: axis must be an int"),
    (lambda x: gd.glu(x, axis=2), "glu of .*: axis 2 is out of range"),
])
def test_bad_parameters_are_refused(call, message):
    with pytest.raises(gd.GraphError, match=message):
        call(gd.input("x", (2, 5), "float32"))


def test_glu_needs_the_size_at_declaration():
    with pytest.raises(gd.GraphError, match="must be even and known at declaration, got None"):
        gd.glu(gd.input("x", (None,), "float32"))
