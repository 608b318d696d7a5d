"""x[key] with NumPy's advanced indexing (graphdl/ops/getitem.py): integer lists, arrays and
graph nodes, several index arrays broadcast together, mixed with ints, slices, None and
Ellipsis, constant boolean masks. Values against NumPy; values, gradients (repeated indices
add up) and second derivatives against PyTorch's autograd on the interpreter, compiled NumPy
and the CUDA kernels on the CPU; then the refusals, at declaration and at the call."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from tests.helpers import run_on, runner_params
from tests.torch_compare import problems

torch = pytest.importorskip("torch")

SHAPE = (3, 4, 5)
MASK = np.array([[True, False, True, True], [False, False, True, False],
                 [True, True, False, False]])
ROWS = np.array([[2], [0], [2]])  # with COLS: broadcast to (3, 3), repeats in every column
COLS = np.array([1, -1, 1])

# keys of constants only, compared with NumPy's result
KEYS = [
    [0, 2, 2], ([0, -1], [1, 3]), (ROWS, COLS), (ROWS, slice(1, 3), COLS),
    (slice(None), [0, 1], [2, -3]), ([0, 1], slice(None), [2, 3]), (0, slice(None), [1, 2]),
    (Ellipsis, [1, 1, 0]), (None, [0, 2], None), ([0, 1], None, [0, 1]),
    (slice(None), [0, 1], None, [0, 1]), (slice(None), 0, None, [0, 1]), (1, Ellipsis, [0, 0]),
    (np.int64(1), slice(None, None, -1), [2]), (slice(None), [[0, 1], [2, 3]], 1), ([],),
    (MASK,), (slice(None), np.array([True, False, True, False])), (MASK, [4, 0, 4, 1, 2, -1]),
    (Ellipsis, None), (None, 1, Ellipsis), (Ellipsis, 2, slice(1, None)), (np.array(2), [0]),
]


def test_constant_keys_index_as_numpys():
    xv = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE)
    x = gd.input("x", SHAPE, "float64")
    got = gd.evaluate([x[k] for k in KEYS], {"x": xv})
    for key, g in zip(KEYS, got):
        want = xv[key]
        assert g.shape == want.shape and np.array_equal(g, want), key


def _torch_key(key):
    """The key for PyTorch, whose int beside index arrays indexes first (basic indexing) where
    NumPy's is one of the index arrays: there it is a 1-element one, which broadcasts."""
    arrays = any(isinstance(k, (list, np.ndarray, torch.Tensor)) for k in key)
    return tuple(torch.as_tensor(k) if isinstance(k, (list, np.ndarray))
                 else torch.as_tensor([k]) if arrays and isinstance(k, int) else k for k in key)


def _case(key, **ints):
    """x[key] * s, where the key's strings name the fed integer operands `ints`."""
    def pick(k, given):
        return given[k] if isinstance(k, str) else k

    def gd_f(x, s, **given):
        return x[tuple(pick(k, given) for k in key)] * s

    def torch_f(x, s, **given):
        return x[_torch_key(tuple(pick(k, given) for k in key))] * s

    want = np.zeros(SHAPE)[tuple(pick(k, ints) for k in key)]
    return gd_f, torch_f, [SHAPE, want.shape], ints


CASES = {
    "repeats": _case(([0, 2, 2],)),
    "broadcast-pair": _case((ROWS, COLS)),
    "separated-by-slice": _case(([0, 1, 1], slice(None), [2, 3, 2])),
    "adjacent-after-slice": _case((slice(None), [0, 2, 0], [1, -1, 1])),
    "int-and-array": _case((0, slice(1, None), [1, 2, 1])),
    "none-ellipsis": _case((None, Ellipsis, [1, 0, 1])),
    "mask": _case((MASK,)),
    "mask-last-axes": _case((slice(None), np.ones((4, 5), dtype=bool) & (np.arange(5) % 2 == 0))),
    "fed": _case(("i",), i=np.array([2, -1, 2], dtype=np.int32)),
    "fed-pair": _case(("i", slice(None), "j"), i=np.array([[1], [-3]]),
                      j=np.array([4, 0, 4], dtype=np.int32)),
    "fed-and-constant": _case(("i", [0, 3, 3]), i=np.array([2, 2, -2])),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("runner", runner_params())
def test_values_and_two_derivatives_equal_pytorchs(runner, dtype):
    found = problems(CASES, runner, dtype)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("runner", runner_params())
def test_unknown_sizes_are_checked_at_the_call(runner):
    x = gd.input("x", (None, 4), "float64")
    i = gd.input("i", (2,), "int64")
    ys = [x[[0, -1]], x[i], x[i, [1, 2]], x[:, [3, 0]]]
    xv = np.arange(12.0).reshape(3, 4)
    iv = np.array([-3, 2])
    got = run_on(runner, ys, {"x": xv, "i": iv})
    for g, want in zip(got, [xv[[0, -1]], xv[iv], xv[iv, [1, 2]], xv[:, [3, 0]]]):
        np.testing.assert_array_equal(g, want)
    with pytest.raises(IndexError, match=r"indexing 'x'.*index 3 is out of range"):
        run_on(runner, [x[[0, 3]]], {"x": xv})


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("key, bad", [(("i",), 3), (("i", [0, 1]), -4), ((0, "i"), 4)])
def test_fed_indices_out_of_range_raise_at_the_call(runner, key, bad):
    x = gd.input("table", (3, 4), "float64")
    i = gd.input("i", (2,), "int64")
    y = x[tuple(i if k == "i" else k for k in key)]
    with pytest.raises(IndexError, match=rf"indexing 'table'.*index {bad} is out of range"):
        run_on(runner, [y], {"table": np.zeros((3, 4)), "i": np.array([0, bad])})


def test_refusals_at_declaration_name_the_node():
    x = gd.input("table", SHAPE, "float64")
    refused = [
        (lambda: x[x > 0], r"boolean mask .* graph node.*gd\.where"),
        (lambda: x[[0, 3]], r"indexing 'table': index 3 is out of range for axis 0 of size 3"),
        (lambda: x[:, :, [-6]], r"indexing 'table': index -6 is out of range for axis 2"),
        (lambda: x[None, 3, [0]], r"indexing 'table': index 3 is out of range for axis 0"),
        (lambda: x[MASK[:2]], r"boolean mask of shape \(2, 4\).*\(3, 4\)"),
        (lambda: x[[0, 1], [0, 1, 2]], r"shapes \(2,\), \(3,\) do not broadcast"),
        (lambda: x[[0], [0], [0], [0]], r"too many indices: 'table' has 3 dimensions, 4"),
        (lambda: x[..., [0], ...], r"single ellipsis"),
        (lambda: x[[0.5]], r"integer arrays"),
        (lambda: x[gd.constant(np.zeros(2))], r"must be integers"),
        (lambda: x[True], r"scalar boolean"),
    ]
    for build, message in refused:
        with pytest.raises(gd.GraphError, match=message):
            build()


def test_onnx_export_runs_in_onnxruntime():
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    x, i = gd.input("x", SHAPE, "float32"), gd.input("i", (2,), "int64")
    ys = [x[[0, 2, 2], :, [1, -1, 1]], x[i, 1:], x[MASK]]
    ys.append(gd.grad(sum(gd.sum(y * y) for y in ys), [x])[0])
    feeds = {"x": np.random.default_rng(0).standard_normal(SHAPE).astype("float32"),
             "i": np.array([-1, 1])}
    session = ort.InferenceSession(gd.onnx.save(ys).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    for got, want in zip(session.run(None, feeds), gd.evaluate(ys, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_several_index_arrays_need_known_sizes():
    x = gd.input("x", (None, 4, None), "float64")
    for key in [(slice(None), [0], [1]), ([0], [1])]:
        with pytest.raises(gd.GraphError, match=r"several index arrays need the sizes"):
            x[key]
