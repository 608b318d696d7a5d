"""Pooling in ceil mode with a kernel larger than the (padded) input, as PyTorch: the windows
are clipped to the input, the last must start inside the input or its left padding, and at
least one window must fit along each axis (issue 19, item 15). Values, gradients and the
gradients' own pullbacks on the interpreter, the NumPy backend and the CUDA backend's kernels
compiled for the CPU, against torch.nn.functional and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphdl as gd
from graphdl import GraphError

from .helpers import graph_numeric_grads

# (x shape, kernel, stride, padding, dilation); every kernel spans more than the padded input
# along at least one axis, and every window holds a real cell.
MAX = {
    "3_on_2": ((1, 2, 2, 5), 3, 2, 0, 1),
    "both_axes": ((2, 1, 2, 3), (3, 4), (2, 3), 0, 1),
    "padded": ((1, 2, 1, 4), (4, 3), (4, 2), 1, 1),
    "dilated": ((1, 2, 2, 4), 3, 2, 1, 2),
}
# (x shape, kernel, stride, padding), each with count_include_pad both ways
AVG = {
    "3_on_2": ((1, 2, 2, 5), 3, 2, 0),
    "both_axes": ((2, 1, 2, 3), (3, 4), (2, 3), 0),
    "padded": ((1, 2, 1, 4), (4, 3), (4, 2), 1),
}


def _pools(kind, cfg, count_include_pad):
    """(x shape, graphdl's pool, torch's pool) of one configuration."""
    if kind == "max":
        xs, k, s, p, d = cfg
        return (xs, lambda x: gd.max_pool2d(x, k, s, p, d, ceil_mode=True),
                lambda x: F.max_pool2d(x, k, s, p, d, ceil_mode=True))
    xs, k, s, p = cfg
    return (xs, lambda x: gd.avg_pool2d(x, k, s, p, True, count_include_pad),
            lambda x: F.avg_pool2d(x, k, s, p, True, count_include_pad))


CASES = ([pytest.param("max", cfg, True, id=f"max-{name}") for name, cfg in MAX.items()]
         + [pytest.param("avg", cfg, cip, id=f"avg-{name}-{'count' if cip else 'nocount'}")
            for name, cfg in AVG.items() for cip in (True, False)])


def _torch_reference(pool, xv, uv, vv):
    """y = pool(x); dx of <y, u>; du of <dx, v> (the pullback of the gradient op)."""
    tx, tu = (torch.tensor(a, requires_grad=True) for a in (xv, uv))
    ty = pool(tx)
    (tdx,) = torch.autograd.grad((ty * tu).sum(), tx, create_graph=True)
    (tdu,) = torch.autograd.grad((tdx * torch.tensor(vv)).sum(), tu)
    return [t.detach().numpy() for t in (ty, tdx, tdu)]


@pytest.mark.parametrize("kind,cfg,count_include_pad", CASES)
def test_a_kernel_larger_than_the_input_pools_the_clipped_window(kind, cfg, count_include_pad,
                                                                 rng):
    xs, pool, torch_pool = _pools(kind, cfg, count_include_pad)
    x = gd.input("x", xs, "float64")
    y = pool(x)
    u, v = gd.input("u", y.shape, "float64"), gd.input("v", xs, "float64")
    dx = gd.grad(gd.sum(y * u), x)
    du = gd.grad(gd.sum(dx * v), u)
    feeds = {"x": rng.standard_normal(xs), "u": rng.standard_normal(y.shape),
             "v": rng.standard_normal(xs)}
    want = _torch_reference(torch_pool, feeds["x"], feeds["u"], feeds["v"])
    assert y.shape == want[0].shape
    runs = {"interpreter": gd.evaluate([y, dx, du], feeds),
            "numpy": gd.compile([y, dx, du])(feeds),
            "cuda-cpu": gd.compile([y, dx, du], backend="cuda", device="cpu")(feeds)}
    for backend, got in runs.items():
        for name, g, t in zip(("y", "dx", "du"), got, want, strict=True):
            np.testing.assert_allclose(g, t, rtol=1e-12, atol=1e-14, err_msg=f"{backend} {name}")
    loss = gd.sum(gd.tanh(y) * u)
    del feeds["v"]
    (numeric,) = graph_numeric_grads(loss, feeds, ["x"])
    np.testing.assert_allclose(gd.evaluate(gd.grad(loss, x), feeds), numeric, rtol=1e-6,
                               atol=1e-9)


def test_float32_keeps_its_dtype_on_every_backend(rng):
    xs, pool, torch_pool = _pools("avg", AVG["padded"], False)
    x = gd.input("x", xs, "float32")
    y = pool(x)
    dx = gd.grad(gd.sum(y * y), x)
    xv = rng.standard_normal(xs).astype(np.float32)
    tx = torch.tensor(xv, requires_grad=True)
    ty = torch_pool(tx)
    (ty * ty).sum().backward()
    for got in (gd.evaluate([y, dx], x=xv), gd.compile([y, dx])(x=xv),
                gd.compile([y, dx], backend="cuda", device="cpu")(x=xv)):
        for g, t in zip(got, (ty.detach().numpy(), tx.grad.numpy()), strict=True):
            assert g.dtype == np.float32
            np.testing.assert_allclose(g, t, rtol=1e-6)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_no_window_fits_is_refused_as_pytorch_does(kind, ceil_mode):
    """Kernel 3 at stride 2 over 1 cell: ceil((1 - 3) / 2) + 1 = 0 windows, in both modes."""
    image = gd.input("image", (1, 1, 1, 4), "float64")
    gd_pool, torch_pool = (gd.max_pool2d, F.max_pool2d) if kind == "max" else \
        (gd.avg_pool2d, F.avg_pool2d)
    with pytest.raises(RuntimeError, match="too small"):
        torch_pool(torch.zeros(1, 1, 1, 4), 3, 2, ceil_mode=ceil_mode)
    with pytest.raises(GraphError, match=rf"{kind}_pool2d: the kernel \(3 wide.*larger than "
                                         r"'image' along axis 2 \(size 1, .*no window fits"):
        gd_pool(image, 3, 2, ceil_mode=ceil_mode)
