"""gd.optim: a compiled training step (one `gd.compile(loss, updates=opt.updates)`) updates the
parameters and the optimizer's state in place, step for step as torch.optim on the same MLP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphdl as gd

SHAPES = {"W1": (6, 8), "b1": (8,), "W2": (8, 3), "b2": (3,)}
BATCHES = 5


def mlp(dtype):
    params = {name: gd.input(name, shape, dtype) for name, shape in SHAPES.items()}
    x, y = gd.input("x", (10, 6), dtype), gd.input("y", (10,), "int64")
    h = gd.relu(x @ params["W1"] + params["b1"])
    return gd.softmax_cross_entropy(h @ params["W2"] + params["b2"], y), params


def torch_mlp(params, x, y):
    h = torch.relu(torch.from_numpy(x) @ params["W1"] + params["b1"])
    return torch.nn.functional.cross_entropy(h @ params["W2"] + params["b2"],
                                             torch.from_numpy(y))


def data(rng, dtype):
    start = {name: (rng.standard_normal(shape) * 0.5).astype(dtype)
             for name, shape in SHAPES.items()}
    batches = [(rng.standard_normal((10, 6)).astype(dtype), rng.integers(0, 3, 10))
               for _ in range(BATCHES)]
    return start, batches


SGD = {"plain": {"lr": 0.1}, "momentum": {"lr": 0.1, "momentum": 0.9},
       "weight-decay": {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.01},
       "dampening": {"lr": 0.1, "momentum": 0.9, "dampening": 0.3},
       "nesterov": {"lr": 0.05, "momentum": 0.9, "nesterov": True}}
ADAM = {"default": {"lr": 1e-2}, "betas": {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-6},
        "weight-decay": {"lr": 1e-2, "weight_decay": 0.1}}
CASES = [("sgd", k, v) for k, v in SGD.items()] + [("adam", k, v) for k, v in ADAM.items()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("kind", "options"), [c[::2] for c in CASES],
                         ids=[f"{k}-{name}" for k, name, _ in CASES])
def test_compiled_steps_follow_torch_optim(kind, options, dtype, rng):
    start, batches = data(rng, dtype)
    loss, nodes = mlp(dtype)
    opt = getattr(gd.optim, kind)(loss, list(nodes.values()), **options)
    step = gd.compile(loss, updates=opt.updates)
    params = {name: value.copy() for name, value in start.items()}
    state = opt.init()

    reference = {name: torch.tensor(v, requires_grad=True) for name, v in start.items()}
    torch_opt = getattr(torch.optim, {"sgd": "SGD", "adam": "Adam"}[kind])(
        reference.values(), **options)
    tolerance = {"float32": 2e-5, "float64": 1e-12}[dtype]
    for k, (x, y) in enumerate(batches):
        got = step(x=x, y=y, **params, **state)
        torch_opt.zero_grad()
        want = torch_mlp(reference, x, y)
        want.backward()
        torch_opt.step()
        np.testing.assert_allclose(got, want.item(), rtol=tolerance, err_msg=f"loss, step {k}")
        for name, value in params.items():
            np.testing.assert_allclose(value, reference[name].detach().numpy(), rtol=tolerance,
                                       atol=tolerance, err_msg=f"{name} after step {k + 1}")
    assert set(state) == set(opt.state)
    if kind == "adam":
        assert state["adam.step"] == BATCHES
        np.testing.assert_allclose(state["W1.m"], torch_opt.state[reference["W1"]]["exp_avg"],
                                   rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_a_learning_rate_fed_each_step_follows_torchs_schedule(kind, rng):
    """lr as a 0-d input: one compiled step for the whole schedule, as torch's param_groups."""
    start, batches = data(rng, "float32")
    loss, nodes = mlp("float32")
    lr = gd.input("lr", ())
    options = {"momentum": 0.9} if kind == "sgd" else {}
    opt = getattr(gd.optim, kind)(loss, list(nodes.values()), lr=lr, **options)
    step = gd.compile(loss, updates=opt.updates)
    params, state = {name: value.copy() for name, value in start.items()}, opt.init()
    reference = {name: torch.tensor(v, requires_grad=True) for name, v in start.items()}
    torch_opt = getattr(torch.optim, {"sgd": "SGD", "adam": "Adam"}[kind])(
        reference.values(), lr=1.0, **options)
    for rate, (x, y) in zip([0.1, 0.05, 0.02, 0.01, 0.005], batches, strict=True):
        step(x=x, y=y, lr=np.float32(rate), **params, **state)
        for group in torch_opt.param_groups:
            group["lr"] = rate
        torch_opt.zero_grad()
        torch_mlp(reference, x, y).backward()
        torch_opt.step()
    for name, value in params.items():
        np.testing.assert_allclose(value, reference[name].detach().numpy(), rtol=2e-5, atol=2e-5)


def test_state_names_shapes_and_initial_values():
    loss, nodes = mlp("float32")
    opt = gd.optim.adam(loss, [nodes["W1"], nodes["b1"]])
    init = opt.init()
    assert sorted(init) == ["W1.m", "W1.v", "adam.step", "b1.m", "b1.v"]
    assert init["W1.v"].shape == (6, 8) and init["W1.v"].dtype == np.float32
    assert init["adam.step"].shape == () and init["adam.step"].dtype == np.float64
    assert not any(np.any(v) for v in init.values())
    assert set(opt.updates) == {nodes["W1"], nodes["b1"], *opt.state.values()}
    plain = gd.optim.sgd(loss, [nodes["W1"]], lr=0.1)
    assert plain.init() == {} and list(plain.updates) == [nodes["W1"]]
    assert sorted(gd.optim.sgd(loss, [nodes["W1"]], lr=0.1, momentum=0.9).init()) == \
        ["W1.momentum"]


def test_two_optimizers_in_one_graph_need_their_own_names(rng):
    """Two parameter groups (different learning rates) in one step, updated together."""
    loss, nodes = mlp("float64")
    first = gd.optim.adam(loss, [nodes["W1"], nodes["b1"]], lr=1e-2)
    second = gd.optim.adam(loss, [nodes["W2"], nodes["b2"]], lr=1e-3, name="head")
    assert "head.step" in second.state and "adam.step" in first.state
    start, [(x, y), *_] = data(rng, np.float64)
    step = gd.compile(loss, updates={**first.updates, **second.updates})
    step(x=x, y=y, **start, **first.init(), **second.init())


@pytest.mark.parametrize(("call", "message"), [
    (lambda loss, p: gd.optim.sgd(loss, [p["W1"]], lr=-0.1), r"lr must be a finite number >= 0"),
    (lambda loss, p: gd.optim.adam(loss, [p["W1"]], lr=gd.input("lr", (2,))),
     r"a learning rate given as a node must be a floating-point scalar"),
    (lambda loss, p: gd.optim.sgd(loss, [p["W1"]], lr=0.1, nesterov=True),
     r"nesterov needs momentum > 0 and dampening 0"),
    (lambda loss, p: gd.optim.adam(loss, [p["W1"]], betas=(0.9, 1.0)),
     r"beta2 must be in \[0, 1\), got 1\.0"),
    (lambda loss, p: gd.optim.adam(loss, [p["W1"]], betas=0.9), r"betas must be a pair"),
    (lambda loss, p: gd.optim.adam(loss, [p["W1"] * 2]), r"parameters must be gd.input nodes"),
    (lambda loss, p: gd.optim.adam(loss, [p["W1"], p["W1"]]), r"given twice"),
    (lambda loss, p: gd.optim.adam(loss, [gd.input("unused", (2,), "float32")]),
     r"does not depend on parameter 'unused'"),
    (lambda loss, p: gd.optim.adam(p["W1"], [p["W1"]]), r"loss must be a floating-point scalar"),
    (lambda loss, p: gd.optim.sgd(loss, [gd.input("W1", (None, 8), "float32")], lr=0.1),
     r"parameter 'W1' must be floating point with a known shape"),
])
def test_bad_optimizer_arguments_are_refused_at_declaration(call, message):
    loss, nodes = mlp("float32")
    with pytest.raises(gd.GraphError, match=message):
        call(loss, nodes)
