"""A backend without a kernel for an op runs the op's reference implementation (the NumPy
backend calls it, the CUDA driver makes a host round trip), with one warning naming the op: a
missing kernel is slow, never broken. The facet check reports every such fallback."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphdl as gd
from graphdl import facets
from graphdl.opdef import REGISTRY, OpDef


def _flip_infer(inputs, attrs):
    return inputs[0].shape, inputs[0].dtype


# An op no backend has a kernel for: the rows of x reversed along `axis` (its own transpose).
FLIP = OpDef("test_flip", infer=_flip_infer, impl=lambda x, axis: np.flip(x, axis),
             pullback=lambda n, g: [FLIP(g, axis=n.attrs["axis"])])


@pytest.fixture
def flip(monkeypatch):
    monkeypatch.setitem(REGISTRY, FLIP.name, FLIP)
    return FLIP


@pytest.mark.parametrize("backend,device", [("numpy", None), ("cuda", "cpu")])
def test_an_op_without_a_kernel_runs_its_reference_with_one_warning(flip, backend, device):
    x = gd.input("x", (3, 4), "float64")
    y = gd.sum(flip(gd.exp(x), axis=1) * np.arange(4.0))
    (dx,) = gd.grad(y, [x])
    value = np.random.default_rng(0).normal(size=(3, 4))
    fn = gd.compile([y, dx], backend, device=device)
    with pytest.warns(facets.FallbackWarning, match="no kernel for op 'test_flip'") as caught:
        got = fn(x=value)
    assert len({str(w.message) for w in caught}) == 1
    want = gd.evaluate([y, dx], x=value)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(got[1], np.exp(value) * np.arange(4.0)[::-1], rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn(x=value + 1)  # the module is generated once: no warning per call


def test_the_facet_check_reports_the_fallbacks(flip):
    assert {(name, facet) for name, facet, _ in facets.fallbacks([flip])} == {
        ("test_flip", "numpy"), ("test_flip", "cuda")}


def test_an_unregistered_op_without_a_kernel_is_refused_by_name():
    x = gd.input("x", (2,), "float64")
    with pytest.raises(NotImplementedError, match="'test_flip', which is no registered op"):
        gd.compile(FLIP(x, axis=0))(x=np.ones(2))
