"""PyTorch's functional losses (graphdl/ops/losses.py) against PyTorch: values and gradients
(and second derivatives where smooth) for every reduction and option, in float64 and float32, on
gd.evaluate, the NumPy backend and the CUDA backend's CPU build; ONNX export in onnxruntime; the
labels and shapes each refuses at declaration, naming the user's node."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from tests.helpers import mismatches, run_cases, run_on, runner_params

torch = pytest.importorskip("torch")
F = torch.nn.functional

REDUCTIONS = ("mean", "sum", "none")
TOL = {"float64": {"rtol": 1e-9, "atol": 1e-11}, "float32": {"rtol": 2e-4, "atol": 2e-5}}
RNG = np.random.default_rng(21)
W = RNG.uniform(0.5, 2.0, 4)  # class weights
LABELS = np.array([[0, 3, -100], [1, -100, 2]])  # (N, d1) against scores (N, C, d1)
PROBS = RNG.dirichlet(np.ones(4), (2, 3)).transpose(0, 2, 1)  # (N, C, d1)


# name -> (function of graphdl-or-torch module and operands, operand arrays, differentiable
# operands (by position), whether smooth enough for a second derivative)
def _cases():
    x = RNG.standard_normal((2, 4, 3))
    a, b = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    kl_target = RNG.uniform(0.1, 1.0, (3, 4))
    kl_target[0, 0] = 0.0  # xlogy: no contribution (the target is a constant there)
    y = np.sign(RNG.standard_normal((3, 4)))
    cases = {}
    for red in REDUCTIONS:
        for opts in ({}, {"weight": W}, {"ignore_index": 1}, {"weight": W, "ignore_index": 3}):
            key = "_".join(f"{k}" for k in opts) or "plain"
            cases[f"nll_{red}_{key}"] = (
                lambda m, x, red=red, opts=opts: _call(m, "nll_loss", x, LABELS, red, opts),
                [x], True)
            for eps in (0.0, 0.2):
                cases[f"ce_{red}_{key}_{eps}"] = (
                    lambda m, x, red=red, opts=opts, eps=eps: _call(
                        m, "cross_entropy", x, LABELS, red, {**opts, "label_smoothing": eps}),
                    [x], True)
        for opts in ({}, {"weight": W}, {"label_smoothing": 0.3},
                     {"weight": W, "label_smoothing": 0.1}):
            key = "_".join(opts) or "plain"
            cases[f"ce_probs_{red}_{key}"] = (
                lambda m, x, p, red=red, opts=opts: _call(m, "cross_entropy", x, p, red, opts),
                [x, PROBS], True)
        cases[f"ce_2d_{red}"] = (
            lambda m, x, red=red: _call(m, "cross_entropy", x, np.array([2, 0, -100]), red,
                                        {"weight": W, "label_smoothing": 0.1}),
            [RNG.standard_normal((3, 4))], True)
        cases[f"ce_1d_{red}"] = (
            lambda m, x, red=red: _call(m, "cross_entropy", x, np.array(2), red, {}),
            [RNG.standard_normal(4)], True)
        cases[f"huber_{red}"] = (lambda m, a, b, red=red: m.huber_loss(a, b, red, 0.7),
                                 [a, b], False)
        cases[f"l1_{red}"] = (lambda m, a, b, red=red: m.l1_loss(a, b, reduction=red),
                              [a, b], False)
        cases[f"margin_{red}"] = (
            lambda m, a, b, y, red=red: m.margin_ranking_loss(a, b, y, 0.3, reduction=red),
            [a, b, y], False)
    for red in (*REDUCTIONS, "batchmean"):
        cases[f"kl_{red}"] = (
            lambda m, a, red=red: _kl(m, a, kl_target, red, False), [a], True)
        cases[f"kl_log_{red}"] = (
            lambda m, a, t, red=red: _kl(m, a, t, red, True), [a, b], True)
    zero = a.copy()
    zero[1] = 0.0  # a norm below eps: clamped
    # at a zero vector PyTorch's second derivative is NaN (its norm's), graphdl's finite
    cases["cosine_zero"] = (lambda m, a, b: m.cosine_similarity(a, b), [a, zero], False)
    cases["cosine"] = (lambda m, a, b: m.cosine_similarity(a, b), [a, b], True)
    cases["cosine_broadcast"] = (lambda m, a, b: m.cosine_similarity(a, b, dim=0),
                                 [a, b[:1]], True)
    return cases


def _call(m, name, x, target, reduction, opts):
    if "ignore_index" in opts and target.dtype.kind == "i":  # its own label for the ignored
        target = np.where(target == -100, opts["ignore_index"], target)
    if m is F:
        target = torch.as_tensor(target)
        if "weight" in opts:
            opts = {**opts, "weight": torch.as_tensor(opts["weight"], dtype=x.dtype)}
    return getattr(m, name)(x, target, reduction=reduction, **opts)


def _kl(m, x, t, reduction, log_target):
    if m is F and not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=x.dtype)
    elif isinstance(t, np.ndarray):  # a constant target in the input's dtype
        t = t.astype(x.dtype)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's warning about 'mean'
        return m.kl_div(x, t, reduction=reduction, log_target=log_target)


CASES = _cases()


def _torch(fn, arrays, dtype, probe, second=None):
    """PyTorch's value, gradient of Σ value·probe and, given `second` (one array per operand),
    the gradient of Σ <grad, second>."""
    ts = [torch.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    y = fn(F, *ts)
    grads = torch.autograd.grad((y * torch.as_tensor(probe.astype(dtype))).sum(), ts,
                                create_graph=second is not None)
    out = [y.detach().numpy(), [g.detach().numpy() for g in grads]]
    if second is not None:
        z = sum((g * torch.as_tensor(s.astype(dtype))).sum() for g, s in zip(grads, second))
        if not z.requires_grad:  # linear in its operands: no second derivative
            out.append([np.zeros(a.shape) for a in arrays])
        else:
            out.append([h.detach().numpy() for h in torch.autograd.grad(z, ts)])
    return out


def _graph(fn, arrays, dtype, probe, second=None, prefix="a"):
    xs = [gd.input(f"{prefix}{k}", a.shape, dtype) for k, a in enumerate(arrays)]
    y = fn(gd, *xs)
    grads = gd.grad(gd.sum(y * gd.constant(probe.astype(dtype))), xs)
    outputs = [y, *grads]
    if second is not None:
        z = gd.sum(gd.stack([gd.sum(g * gd.constant(s.astype(dtype)))
                             for g, s in zip(grads, second)]))
        outputs += gd.grad(z, xs)
    return outputs, {f"{prefix}{k}": a.astype(dtype) for k, a in enumerate(arrays)}


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_values_and_gradients_match_pytorch(dtype, runner):
    """Every case's value and gradients, all in one graph: one compilation per backend and
    dtype (one per case took 140 s of CI's kernel builds)."""
    cases = {}
    for k, case in enumerate(sorted(CASES)):
        fn, arrays, _ = CASES[case]
        shape = fn(F, *[torch.tensor(a) for a in arrays]).shape
        probe = np.random.default_rng(len(case)).uniform(0.5, 1.5, tuple(shape))
        value, grads = _torch(fn, arrays, dtype, probe)
        cases[case] = (*_graph(fn, arrays, dtype, probe, prefix=f"c{k}_a"), [value, *grads])
    problems = []
    for case, (got, want) in run_cases(runner, cases).items():
        labels = ["value", *(f"grad {k}" for k in range(len(want) - 1))]
        problems += mismatches(case, labels, got, want, dtype, TOL[dtype]["rtol"],
                               TOL[dtype]["atol"])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", sorted(c for c, (_, _, smooth) in CASES.items() if smooth))
def test_second_derivatives_match_pytorch(case):
    fn, arrays, _ = CASES[case]
    shape = fn(F, *[torch.tensor(a) for a in arrays]).shape
    rng = np.random.default_rng(len(case) + 1)
    probe = rng.uniform(0.5, 1.5, tuple(shape))
    second = [rng.uniform(-1, 1, a.shape) for a in arrays]
    expected = _torch(fn, arrays, "float64", probe, second)
    outputs, feeds = _graph(fn, arrays, "float64", probe, second)
    got = gd.evaluate(outputs, feeds)
    for k, (g, e) in enumerate(zip(got[1 + len(arrays):], expected[2])):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-11, err_msg=f"{case} second {k}")


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
def test_every_label_ignored_gives_nan_mean_and_zero_gradient_as_pytorch(name, runner):
    x = RNG.standard_normal((3, 4))
    labels = np.full(3, -100)
    for opts in ({}, {"weight": W}):
        t = torch.tensor(x, requires_grad=True)
        topts = {k: torch.as_tensor(v) for k, v in opts.items()}
        expected = getattr(F, name)(t, torch.as_tensor(labels), **topts)
        (tg,) = torch.autograd.grad(expected, [t])
        xi = gd.input("x", (3, 4), "float64")
        y = getattr(gd, name)(xi, labels, **opts)
        with np.errstate(all="ignore"):
            value, grad = run_on(runner, [y, gd.grad(y, xi)], {"x": x})
        assert np.isnan(value) and np.isnan(expected.item())
        np.testing.assert_array_equal(grad, tg.numpy())
        for red in ("sum", "none"):
            expected = getattr(F, name)(torch.tensor(x), torch.as_tensor(labels), reduction=red)
            got = run_on(runner, getattr(gd, name)(xi, labels, reduction=red, **opts), {"x": x})
            np.testing.assert_array_equal(got, expected.numpy())


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("dtype", ["uint8", "uint32", "uint64", "int8"])
@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
def test_labels_of_any_integer_dtype_as_pytorch_int64_labels(name, dtype, runner):
    """An ignore_index the labels' dtype cannot hold (-100 next to unsigned labels) ignores no
    label; one it holds ignores its own."""
    x = RNG.standard_normal((3, 4))
    labels = np.array([2, 1, 3], dtype)
    xi = gd.input("x", (3, 4), "float64")
    target = gd.input("target", (3,), dtype)
    for opts in ({}, {"ignore_index": 1, "weight": W}):
        t = torch.tensor(x, requires_grad=True)
        topts = {k: torch.as_tensor(v) if k == "weight" else v for k, v in opts.items()}
        expected = getattr(F, name)(t, torch.as_tensor(labels.astype(np.int64)), **topts)
        (tg,) = torch.autograd.grad(expected, [t])
        y = getattr(gd, name)(xi, target, **opts)
        value, grad = run_on(runner, [y, gd.grad(y, xi)], {"x": x, "target": labels})
        np.testing.assert_allclose(value, expected.item(), **TOL["float64"])
        np.testing.assert_allclose(grad, tg.numpy(), **TOL["float64"])


def test_kl_div_of_a_zero_target_is_zero_and_finite():
    x = gd.input("x", (2,), "float64")
    y = gd.kl_div(x, np.array([0.0, 1.0]), reduction="sum")
    value, grad = gd.evaluate([y, gd.grad(y, x)], {"x": np.array([-3.0, -1.0])})
    assert value == 1.0 and np.array_equal(grad, [0.0, -1.0])
    expected = F.kl_div(torch.tensor([-3.0, -1.0]), torch.tensor([0.0, 1.0]), reduction="sum")
    assert expected.item() == 1.0


def test_losses_export_to_onnx_and_run_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x = gd.input("x", (2, 4, 3))
    a, b = gd.input("a", (3, 4)), gd.input("b", (3, 4))
    outputs = {
        "nll": gd.nll_loss(x, LABELS, weight=W.astype(np.float32)),
        "ce": gd.cross_entropy(x, LABELS, label_smoothing=0.1, reduction="none"),
        "ce_probs": gd.cross_entropy(x, PROBS.astype(np.float32)),
        "kl": gd.kl_div(a, gd.softmax(b), reduction="batchmean"),
        "huber": gd.huber_loss(a, b, delta=0.5),
        "l1": gd.l1_loss(a, b, reduction="sum"),
        "cos": gd.cosine_similarity(a, b),
        "margin": gd.margin_ranking_loss(a, b, gd.sign(b), margin=0.2),
    }
    (dx,) = gd.grad(outputs["ce"][0, 1] + outputs["nll"], [x])
    outputs["dx"] = dx
    feeds = {"x": RNG.standard_normal((2, 4, 3)).astype(np.float32),
             "a": RNG.standard_normal((3, 4)).astype(np.float32),
             "b": RNG.standard_normal((3, 4)).astype(np.float32)}
    model = gd.onnx.save(outputs)
    got = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    for name, g, e in zip(outputs, got, gd.evaluate(list(outputs.values()), **feeds)):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("build, message", [
    (lambda x, y: gd.nll_loss(x, gd.input("labels", (2, 3), "float64")),
     "'labels' must hold integer class indices"),
    (lambda x, y: gd.nll_loss(x, gd.input("labels", (2, 5), "int64")), "'labels'"),
    (lambda x, y: gd.cross_entropy(x, gd.input("labels", (2, 5), "int64")), "'labels'"),
    (lambda x, y: gd.cross_entropy(x, gd.input("probs", (2, 3, 4), "float64")), "'probs'"),
    (lambda x, y: gd.cross_entropy(x, LABELS, weight=np.ones(3)), "one weight per class"),
    (lambda x, y: gd.cross_entropy(x, LABELS, label_smoothing=1.5), "label_smoothing"),
    (lambda x, y: gd.nll_loss(x, LABELS, reduction="avg"), "reduction"),
    (lambda x, y: gd.kl_div(y, gd.input("t", (3,), "float64")), "'t'"),
    (lambda x, y: gd.kl_div(y, y, reduction="batch"), "batchmean"),
    (lambda x, y: gd.huber_loss(y, gd.input("t", (4, 3), "float64")), "'t'"),
    (lambda x, y: gd.huber_loss(y, y, delta=0), "delta"),
    (lambda x, y: gd.l1_loss(y, gd.input("t", (3, 3), "float64")), "'t'"),
    (lambda x, y: gd.margin_ranking_loss(y, y, gd.input("t", (4,), "float64")), "'t'"),
    (lambda x, y: gd.cosine_similarity(y, gd.input("t", (3, 2), "float64")), "'t'"),
    (lambda x, y: gd.cosine_similarity(y, y, dim=2), "dim"),
])
def test_bad_labels_and_shapes_are_refused_at_declaration_naming_the_node(build, message):
    x = gd.input("scores", (2, 4, 3), "float64")
    y = gd.input("y", (3, 4), "float64")
    with pytest.raises(gd.GraphError, match=message):
        build(x, y)


def test_fed_labels_out_of_range_are_refused_at_the_call():
    x = gd.input("scores", (3, 4), "float64")
    labels = gd.input("labels", (3,), "int64")
    f = gd.compile(gd.cross_entropy(x, labels))
    value = f(scores=np.zeros((3, 4)), labels=np.array([0, -100, 3]))
    assert value == pytest.approx(np.log(4))
    with pytest.raises(IndexError, match="class labels"):
        f(scores=np.zeros((3, 4)), labels=np.array([0, 4, 3]))
    y = gd.nll_loss(x, np.array([0, 9, 1]))  # constant labels: checked at the call as well
    with pytest.raises(IndexError, match="index 9 is out of range"):
        gd.evaluate(y, {"scores": np.zeros((3, 4))})
