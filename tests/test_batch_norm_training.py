"""batch_norm in training with its running statistics updated through `gd.compile(updates=)`:
step for step as torch.nn.BatchNorm1d/2d in train mode (outputs, gradients, running_mean,
running_var, num_batches_tracked), then eval mode on the running statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphdl as gd
from tests.helpers import RUNNERS, runner_params

STEPS = 4
MODULES = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}


def _model(shape, dtype, momentum):
    """y = batch_norm(x) in training, its loss's gradients and its updates."""
    c = shape[1]
    x = gd.input("x", shape, dtype)
    weight, bias = gd.input("weight", (c,), dtype), gd.input("bias", (c,), dtype)
    stats = [gd.input(name, (c,), dtype) for name in ("running_mean", "running_var")]
    count = gd.input("num_batches_tracked", (), "int64")
    y, updates = gd.batch_norm(x, *stats, weight, bias, training=True, momentum=momentum,
                               num_batches_tracked=count, return_updates=True)
    probe = gd.input("probe", shape, dtype)
    grads = gd.grad(gd.sum(y * y * probe), [x, weight, bias])
    return [y, *grads], updates


def _stepper(runner, outputs, updates):
    """A training step on feeds: the outputs' values, the update targets' arrays written."""
    if RUNNERS[runner] is not None:
        return gd.compile(outputs, updates=updates, **RUNNERS[runner])
    targets = list(updates)

    def step(**feeds):
        values = gd.evaluate(outputs + [updates[t] for t in targets], feeds)
        for t, value in zip(targets, values[len(outputs):]):
            feeds[t.name][...] = value
        return values[:len(outputs)]
    return step


CASES = {"2d": ((5, 3, 4, 3), 0.1), "1d": ((6, 4), 0.3), "1d-length": ((4, 3, 5), 0.1),
         "cumulative": ((5, 3, 2, 2), None)}


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_training_steps_follow_torch_then_eval_uses_the_running_stats(case, dtype, runner, rng):
    shape, momentum = CASES[case]
    c = shape[1]
    outputs, updates = _model(shape, dtype, momentum)
    step = _stepper(runner, outputs, updates)
    module = MODULES[len(shape)](c, momentum=momentum, dtype=getattr(torch, dtype))
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype(dtype)))
        module.bias.copy_(torch.from_numpy(rng.standard_normal(c).astype(dtype)))
    state = {"running_mean": np.zeros(c, dtype), "running_var": np.ones(c, dtype),
             "num_batches_tracked": np.zeros((), "int64")}
    params = {"weight": module.weight.detach().numpy().copy(),
              "bias": module.bias.detach().numpy().copy()}
    tolerance = {"float32": 1e-5, "float64": 1e-12}[dtype]
    module.train()
    for k in range(STEPS):
        x = (rng.standard_normal(shape) * 2 + k).astype(dtype)
        probe = rng.uniform(0.5, 1.5, shape).astype(dtype)
        got = step(x=x, probe=probe, **params, **state)
        tx = torch.tensor(x, requires_grad=True)
        module.zero_grad()
        ty = module(tx)
        (ty * ty * torch.from_numpy(probe)).sum().backward()
        want = [ty, tx.grad, module.weight.grad, module.bias.grad]
        for name, a, b in zip(["y", "dx", "dweight", "dbias"], got, want):
            np.testing.assert_allclose(np.asarray(a), b.detach().numpy(), rtol=tolerance * 10,
                                       atol=tolerance * 10, err_msg=f"{name}, step {k}")
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(state[name], getattr(module, name).numpy(),
                                       rtol=tolerance, atol=tolerance,
                                       err_msg=f"{name} after step {k + 1}")
        assert state["num_batches_tracked"] == module.num_batches_tracked.item() == k + 1

    module.eval()
    x = rng.standard_normal(shape).astype(dtype)
    evaluated = gd.batch_norm(gd.input("x", shape, dtype),
                              *(gd.input(n, (c,), dtype) for n in ("running_mean", "running_var",
                                                                   "weight", "bias")))
    got = gd.compile(evaluated)(x=x, **params, **{k: state[k] for k in ("running_mean",
                                                                         "running_var")})
    np.testing.assert_allclose(got, module(torch.from_numpy(x)).detach().numpy(),
                               rtol=tolerance * 10, atol=tolerance * 10)


def test_an_unknown_batch_counts_its_values_when_run(rng):
    """The unbiased variance's n/(n − 1) from the fed batch size."""
    x, stat = gd.input("x", (None, 3)), gd.input("var", (3,))
    _, updates = gd.batch_norm(x, None, stat, training=True, momentum=1.0, return_updates=True)
    values = rng.standard_normal((7, 3)).astype("float32")
    got = gd.compile([], updates=updates)
    var = np.ones(3, "float32")
    got(x=values, var=var)
    np.testing.assert_allclose(var, values.var(0, ddof=1), rtol=1e-5)


def test_not_training_has_no_updates():
    x, stats = gd.input("x", (2, 3)), [gd.input(n, (3,)) for n in ("m", "v")]
    y, updates = gd.batch_norm(x, *stats, return_updates=True)
    assert updates == {} and y is gd.batch_norm(x, *stats)


def test_without_return_updates_the_result_is_as_before():
    x, stats = gd.input("x", (4, 3)), [gd.input(n, (3,)) for n in ("m", "v")]
    y, _ = gd.batch_norm(x, *stats, training=True, return_updates=True)
    assert gd.batch_norm(x, *stats, training=True) is y


@pytest.mark.parametrize(("make", "match"), [
    (lambda x, m, v, t: gd.batch_norm(x, m, v, training=True, momentum=None,
                                      return_updates=True), "needs num_batches_tracked"),
    (lambda x, m, v, t: gd.batch_norm(x, gd.constant(np.zeros(3, "float32")), v, training=True,
                                      return_updates=True), "must be an input"),
    (lambda x, m, v, t: gd.batch_norm(x, m, v, training=True, num_batches_tracked=m,
                                      return_updates=True), "0-d integer input"),
    (lambda x, m, v, t: gd.batch_norm(x[:1], m, v, training=True, return_updates=True),
     "1 value"),
    (lambda x, m, v, t: gd.batch_norm(x, m, v, training=True, momentum="fast",
                                      return_updates=True), "momentum must be a number"),
])
def test_bad_arguments_are_refused_by_name(make, match):
    x, m, v = gd.input("x", (4, 3)), gd.input("m", (3,)), gd.input("v", (3,))
    with pytest.raises(gd.GraphError, match=match):
        make(x, m, v, gd.input("t", (), "int64"))
