"""GPU arrays as inputs: fed as they are to a function that runs on a GPU, refused with the
input's name by one that runs on the CPU, and their memory bounds for the check that two updated
inputs do not share memory. A stand-in exposes `__cuda_array_interface__` over host memory, so
these run without a GPU; tests/test_cuda_gpu.py runs CuPy arrays end to end where a GPU is."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.array_utils import byte_bounds

import graphdl as gd
from graphdl import feeds as fd
from graphdl.codegen.compiled import _bounds
from graphdl.errors import InputError


class DeviceArray:
    """What graphdl reads of a CuPy array: shape, dtype and the CUDA array interface."""

    def __init__(self, array):
        self.array = array
        self.shape, self.dtype, self.ndim, self.size = (array.shape, array.dtype, array.ndim,
                                                        array.size)

    @property
    def __cuda_array_interface__(self):
        host = self.array.__array_interface__
        return {"shape": self.shape, "typestr": host["typestr"], "data": host["data"],
                "strides": host["strides"], "version": 3}


def test_a_cpu_function_refuses_a_gpu_array_naming_the_input():
    x = gd.input("activations", (3,))
    fn = gd.compile(x * 2.0)
    with pytest.raises(InputError, match=r"input 'activations' is a GPU array.*runs on the CPU"
                                         r".*activations\.get\(\)"):
        fn(activations=DeviceArray(np.ones(3, np.float32)))


def test_a_gpu_function_takes_gpu_arrays_as_they_are():
    x, w = gd.input("x", (None, 3)), gd.input("w", (3,), "int64")
    gx, gw = DeviceArray(np.ones((5, 3), np.float32)), DeviceArray(np.zeros(3, np.int64))
    bound = fd.bind([x, w], {"x": gx, "w": gw}, in_place={"w"}, device_arrays=True)
    assert bound[0] is gx and bound[1] is gw


@pytest.mark.parametrize("value, message", [
    (np.ones(3, np.float64), (r"input 'x' is a GPU array of dtype float64.*must be float32"
                              r".*x\.astype\('float32'\)")),
    (np.ones(4, np.float32), r"input 'x' expects shape \(3,\), got \(4,\)"),
])
def test_a_gpu_array_of_another_dtype_or_shape_is_refused(value, message):
    x = gd.input("x", (3,))
    with pytest.raises(InputError, match=message):
        fd.bind([x], {"x": DeviceArray(value)}, device_arrays=True)


@pytest.mark.parametrize("view", [
    lambda a: a,  # C order: `strides` is None in the interface, as CuPy reports it
    lambda a: a[1:, ::2],
    lambda a: a[::-1, :],
    lambda a: a[:, ::-3],
    lambda a: a.T,
    lambda a: a[2, 1],
])
def test_gpu_array_bounds_are_numpys_byte_bounds(view):
    """The shared-memory check of updated inputs compares these bounds; a wrong span would let
    two updated inputs share memory silently, or refuse disjoint ones."""
    array = view(np.arange(4 * 6, dtype=np.float32).reshape(4, 6))
    array = np.asarray(array)
    space, low, high = _bounds(DeviceArray(array))
    assert space == "gpu" and (low, high) == byte_bounds(array)


def test_host_and_gpu_arrays_are_never_compared():
    array = np.zeros(8, np.float32)
    assert _bounds(array)[0] == "host" and _bounds(DeviceArray(array))[0] == "gpu"
