"""grid_sample and affine_grid (PyTorch's spatial transformer pair) against
torch.nn.functional: values, the first and second derivatives to the image, the grid and theta,
every mode, padding and corner alignment, 2-D and 3-D, float64 and float32, on the interpreter,
compiled NumPy and the CUDA backend's kernels on the CPU with no fallback; the grid's second
derivatives also against finite differences; the paddings at hand-computed points; the
refusals; one gate each in a drawing and a narration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import graphdl as gd
from tests.helpers import graph_numeric_grads, loss_weights, runner_params, twice_against_torch

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(0)
IMAGE, GRID = RNG.standard_normal((2, 3, 4, 5)), RNG.uniform(-1.25, 1.25, (2, 3, 2, 2))
VOLUME, GRID3 = RNG.standard_normal((1, 2, 3, 4, 3)), RNG.uniform(-1.25, 1.25, (1, 2, 2, 3, 3))
THETA, THETA3 = RNG.standard_normal((2, 2, 3)) * 0.7, RNG.standard_normal((1, 3, 4)) * 0.7

# name -> (graphdl, PyTorch, the arguments' float64 values, each differentiated)
CASES = {
    f"grid_sample {dims}-D {mode} {padding} align_corners={corners}": (
        lambda x, g, m=mode, p=padding, c=corners: gd.grid_sample(x, g, m, p, c),
        lambda x, g, m=mode, p=padding, c=corners: F.grid_sample(x, g, m, p, c),
        [IMAGE, GRID] if dims == 2 else [VOLUME, GRID3])
    for dims, mode, padding, corners in itertools.product(
        (2, 3), ("bilinear", "nearest"), ("zeros", "border", "reflection"), (False, True))
}
CASES.update({
    "affine_grid 2-D": (lambda t: gd.affine_grid(t, (2, 3, 4, 5)),
                        lambda t: F.affine_grid(t, (2, 3, 4, 5), False), [THETA]),
    "affine_grid 3-D align_corners": (lambda t: gd.affine_grid(t, (1, 2, 2, 3, 4), True),
                                      lambda t: F.affine_grid(t, (1, 2, 2, 3, 4), True),
                                      [THETA3]),
    "spatial transformer": (
        lambda x, t: gd.grid_sample(x, gd.affine_grid(t, (2, 3, 3, 6)), padding_mode="border"),
        lambda x, t: F.grid_sample(x, F.affine_grid(t, (2, 3, 3, 6), False),
                                   padding_mode="border", align_corners=False),
        [IMAGE, THETA]),
})

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("runner", runner_params())
def test_value_and_two_derivatives_equal_pytorchs(runner, dtype):
    problems = twice_against_torch(CASES, runner, dtype)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_bilinear_second_derivatives_match_finite_differences(padding):
    """d/d(image, grid) of Σ w·(dL/dgrid), L = Σ w·f², against central differences of that
    first derivative: the weights are products of the coordinates' fractions, so the grid's
    second derivatives are not zero."""
    x, g = gd.input("x", IMAGE.shape, "float64"), gd.input("g", GRID.shape, "float64")
    y = gd.grid_sample(x, g, "bilinear", padding)
    (dg,) = gd.grad(gd.sum(gd.constant(loss_weights(y.shape, 1)) * y * y), [g])
    total = gd.sum(gd.constant(loss_weights(GRID.shape, 2)) * dg)
    feeds = {"x": IMAGE, "g": GRID}
    got = gd.evaluate(gd.grad(total, [x, g]), feeds)
    want = graph_numeric_grads(total, feeds, ["x", "g"], eps=1e-6)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_points_outside_read_zeros_the_border_or_the_reflection():
    """A 1×4 image read at x = -1.5 and 1.1: pixel positions (x + 1)·4/2 − 1/2 = −1.5 (both
    taps, −2 and −1, outside) and 3.7 (taps 3 and 4, weights 0.3 and 0.7). zeros: 0, and 0.3·8
    from the tap inside; border: clipped to pixels 0 and 3; reflection: mirrored at −0.5 and
    3.5 to 0.5 (halfway between 1 and 2) and 3.3, clipped to 3."""
    image = np.array([[[[1.0, 2.0, 4.0, 8.0]]]])
    grid = np.array([[[[-1.5, 0.0], [1.1, 0.0]]]])
    x, g = gd.input("x", image.shape, "float64"), gd.input("g", grid.shape, "float64")
    for padding, want in (("zeros", [0.0, 2.4]), ("border", [1.0, 8.0]),
                          ("reflection", [1.5, 8.0])):
        got = gd.evaluate(gd.grid_sample(x, g, padding_mode=padding), x=image, g=grid)
        np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-14, err_msg=padding)
        torch_value = F.grid_sample(torch.tensor(image), torch.tensor(grid), "bilinear", padding,
                                    False)
        np.testing.assert_allclose(got, torch_value.numpy(), rtol=1e-14)


def test_grid_sample_takes_a_batch_of_unknown_size():
    x, g = gd.input("x", (None, 3, 4, 5), "float32"), gd.input("g", (None, 3, 2, 2), "float32")
    fn = gd.compile(gd.grid_sample(x, g, align_corners=True))
    for batch in (1, 2):
        image, grid = IMAGE[:batch].astype("f4"), GRID[:batch].astype("f4")
        want = F.grid_sample(torch.tensor(image), torch.tensor(grid), align_corners=True)
        np.testing.assert_allclose(fn(x=image, g=grid), want.numpy(), rtol=1e-5, atol=1e-6)


def test_refusals_name_the_arguments():
    x = gd.input("img", (2, 3, 4, 5), "float64")
    g = gd.input("pts", (2, 3, 2, 2), "float64")
    with pytest.raises(gd.GraphError, match=r"grid_sample: mode 'bicubic'.*not supported"):
        gd.grid_sample(x, g, "bicubic")
    with pytest.raises(gd.GraphError, match=r"padding_mode 'wrap'"):
        gd.grid_sample(x, g, padding_mode="wrap")
    with pytest.raises(gd.GraphError, match=r"input 'img'.*grid 'flat'.*\(N, Ho, Wo, 2\)"):
        gd.grid_sample(x, gd.input("flat", (2, 6, 2), "float64"))
    with pytest.raises(gd.GraphError, match=r"grid 'p32' has dtype float32"):
        gd.grid_sample(x, gd.input("p32", (2, 3, 2, 2), "float32"))
    with pytest.raises(gd.GraphError, match=r"grid_sample expects floating-point"):
        gd.grid_sample(gd.input("ints", (2, 3, 4, 5), "int64"), g)
    theta = gd.input("theta", (2, 2, 3), "float64")
    with pytest.raises(gd.GraphError, match=r"affine_grid: theta 'theta'.*\(2, 3, 4\)"):
        gd.affine_grid(theta, (2, 3, 4))
    with pytest.raises(gd.GraphError, match=r"theta 'theta' has 2 maps.*batch of 3"):
        gd.affine_grid(theta, (3, 1, 4, 4))


def test_each_is_one_gate_in_a_drawing_and_a_narration():
    x, t = gd.input("img", (1, 2, 3, 3), "float64"), gd.input("theta", (1, 2, 3), "float64")
    loss = gd.sum(gd.grid_sample(x, gd.affine_grid(t, (1, 2, 3, 3))) * 2.0)
    values = {"img": IMAGE[:1, :2, :3, :3], "theta": THETA[:1]}
    names = ["grid_sample", "affine_grid"]
    gates = gd.draw(loss, values, collapse=names).circuit.gates
    assert sorted(g.label for g in gates if g.kind == "region") == ["AffineGrid", "GridSample"]
    assert not [g for g in gates if g.kind == "op" and g.node.op.name in ("floor", "gather")]
    steps = [s for s in gd.explain(loss, values, collapse=names).steps
             if s.gate is not None and s.gate.kind == "region"]
    assert sorted(s.gate.label for s in steps) == ["AffineGrid", "GridSample"]
