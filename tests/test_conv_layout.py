"""The NumPy backend's convolution kernels: activations kept batch-innermost ((C, H, W, N)
memory behind (N, C, H, W) views) and one pooled work buffer per dtype, shared by every
convolution statement of a module."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.codegen.numpy_backend import helpers


@pytest.fixture
def kernels():
    """A fresh namespace holding the emitted helpers, as a generated module does."""
    namespace = {}
    exec("import numpy\n" + "\n".join(helpers.HELPERS.values()), namespace)  # noqa: S102
    return namespace


GEOMETRY = ((3, 3), (1, 1), (1, 0, 2, 1), (1, 1))  # kernel, stride, padding, dilation


def test_conv_output_and_input_gradient_keep_the_batch_innermost(kernels, rng):
    """The next kernel reads them as whole rows of the batch: a slow layout would not show
    in values, only in time."""
    x = rng.standard_normal((4, 2, 6, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    y = kernels["_conv2d"](kernels["_im2col"](x, *GEOMETRY), w, 1, (4, 3, 5, 6))
    assert y.strides[0] == y.itemsize and y.transpose(1, 2, 3, 0).flags.c_contiguous
    dx = kernels["_col2im"](kernels["_conv2d_cols"](y, w, 1), x.shape, *GEOMETRY)
    assert dx.strides[0] == dx.itemsize


def test_chwn_reads_a_batch_innermost_input_without_copying(kernels, rng):
    xt = rng.standard_normal((2, 5, 6, 4))
    assert np.shares_memory(kernels["_chwn"](xt.transpose(3, 0, 1, 2), (0, 0, 0, 0)), xt)


def test_chwn_transposes_and_pads_an_nchw_batch_of_any_size(kernels, rng):
    """The copy goes 8 images at a time: 11 leaves a partial group."""
    x = rng.standard_normal((11, 2, 3, 4))
    got = kernels["_chwn"](x, (1, 0, 2, 1))
    want = np.pad(x, ((0, 0), (0, 0), (1, 0), (2, 1))).transpose(1, 2, 3, 0)
    np.testing.assert_array_equal(got, want)


def test_scratch_pool_keeps_one_buffer_per_dtype_the_largest(kernels):
    scratch = kernels["_scratch"]
    small, large = scratch(10, np.float32), scratch(100, np.float32)
    scratch(0, None, done=small)
    scratch(0, None, done=large[:40])  # a view gives back the buffer it views
    assert [b.size for b in scratch.pool.values()] == [100]
    again = scratch(50, np.float32)
    assert again.size == 50 and np.shares_memory(again, large)
    assert not np.shares_memory(scratch(50, np.float32), large)  # taken: a fresh one
    assert scratch(5, np.float64).dtype == np.float64


def test_convolution_of_a_batch_innermost_feed_matches_the_interpreter(rng):
    """A feed laid out as the kernels lay out their outputs takes the no-copy path."""
    x, w = gd.input("x", (3, 2, 7, 6), "float64"), gd.input("w", (4, 2, 3, 2), "float64")
    y = gd.conv2d(x, w, stride=(2, 1), padding=1)
    dx, dw = gd.grad(gd.sum(y * y), [x, w])
    fn = gd.compile([y, dx, dw])
    feeds = {"x": np.ascontiguousarray(rng.standard_normal((2, 7, 6, 3))).transpose(3, 0, 1, 2),
             "w": rng.standard_normal((4, 2, 3, 2))}
    for got, want in zip(fn(feeds), gd.evaluate([y, dx, dw], feeds), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
