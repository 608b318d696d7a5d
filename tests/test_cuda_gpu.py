"""The CUDA backend on a GPU through CuPy: skipped cleanly where CuPy or a GPU is missing (the
same kernels run on the CPU in tests/test_cuda_backend.py). CuPy arrays are fed as they are,
updated in place on the GPU, and outputs stay there when asked."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.errors import InputError

from .test_cuda_backend import assert_close, mlp, mlp_feeds


def _cupy():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount():
            return cupy
    except (ImportError, RuntimeError):
        pass
    return None


cp = _cupy()
pytestmark = pytest.mark.skipif(cp is None, reason="needs CuPy and an NVIDIA GPU")
PARAMS = ("W1", "b1", "W2", "b2")


@pytest.mark.parametrize("on_gpu", [False, True], ids=["numpy feeds", "cupy feeds"])
def test_training_step_on_the_gpu_matches_numpy_backend(on_gpu, rng):
    loss, params = mlp()
    updates = {p: p - 0.1 * g for p, g in zip(params, gd.grad(loss, params))}
    feeds = mlp_feeds(rng)
    theirs = {k: v.copy() for k, v in feeds.items()}
    mine = {k: cp.asarray(v) if on_gpu else v.copy() for k, v in feeds.items()}
    fn = gd.compile(loss, backend="cuda", updates=updates)
    for _ in range(3):
        got = fn(mine)
        want = gd.compile(loss, updates=updates)(theirs)
        assert isinstance(got, np.ndarray)
        assert_close([got], [want], "float32")
    for k in PARAMS:  # the caller's arrays received the update, where they live
        assert isinstance(mine[k], cp.ndarray if on_gpu else np.ndarray)
        assert_close([cp.asnumpy(mine[k])], [theirs[k]], "float32")


def test_outputs_on_device_are_cupy_arrays_of_their_own(rng):
    x = gd.input("x", (4,))
    fn = gd.compile([x * 2.0], backend="cuda", outputs_on_device=True)
    first = fn(x=cp.ones(4, cp.float32))[0]
    second = fn(x=cp.full(4, 3.0, cp.float32))[0]
    assert isinstance(first, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(first), np.full(4, 2.0, np.float32))
    np.testing.assert_array_equal(cp.asnumpy(second), np.full(4, 6.0, np.float32))


def test_a_cupy_array_of_another_dtype_is_refused_naming_the_input():
    x = gd.input("x", (4,))
    fn = gd.compile(x * 2.0, backend="cuda")
    with pytest.raises(InputError, match=r"input 'x' is a GPU array of dtype float64"):
        fn(x=cp.ones(4, cp.float64))


def test_two_updated_inputs_in_one_cupy_array_are_refused():
    a, b = gd.input("a", (4,)), gd.input("b", (4,))
    fn = gd.compile([a + b], backend="cuda", updates={a: a * 2.0, b: b * 3.0})
    memory = cp.zeros(6, cp.float32)
    with pytest.raises(InputError, match="share memory"):
        fn(a=memory[:4], b=memory[2:])


@pytest.mark.parametrize("backend", ["nccl", "gloo"])
def test_allreduce_reduces_the_gpu_buffers_in_a_process_group(backend, tmp_path):
    """A group of one on the GPU: the collective runs on the driver's CuPy buffers through
    DLPack (NCCL, or gloo's CUDA allreduce), ordered on CuPy's stream; the weight, 4 rows, is
    a power of two, so the weighted mean comes back exact."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch built with CUDA")
    import torch.distributed as dist

    dist.init_process_group(backend, init_method=f"file://{tmp_path / 'rendezvous'}", rank=0,
                            world_size=1)
    try:
        x = gd.input("x", (64, 3))
        fn = gd.compile([gd.allreduce(x * 2.0, weight=4.0), gd.allreduce(x, "sum") - 1.0],
                        backend="cuda", outputs_on_device=True)
        a = cp.arange(192, dtype=cp.float32).reshape(64, 3)
        mean, summed = fn(x=a)
        np.testing.assert_array_equal(cp.asnumpy(mean), cp.asnumpy(a) * 2)
        np.testing.assert_array_equal(cp.asnumpy(summed), cp.asnumpy(a) - 1)
    finally:
        dist.destroy_process_group()
