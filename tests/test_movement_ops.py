"""PyTorch's rearranging functions (graphdl/ops/rearrange.py: flip, roll, stack, tile, repeat,
repeat_interleave, tril, triu, pad, diagonal, meshgrid, pixel_shuffle, pixel_unshuffle) against
PyTorch: the value exactly, and the first and second derivatives of f(x)·f(x) (so that the
gradient's own gradient runs through each part's pullback of a pullback), in float64 and
float32, on the interpreter, compiled NumPy and the CUDA backend's kernels on the CPU, with no
fallback to a reference implementation. Negative pads and shifts, shifts beyond the axis and
empty axes included. Then PyTorch's spellings, the refusals, drawings and narration, ONNX export
in onnxruntime, and the import of Pad, Tile and Trilu, by hand and as PyTorch exports them."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest

import graphdl as gd
from graphdl.facets import FallbackWarning
from tests.helpers import run_on, runner_params

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _mesh(indexing):
    """Both meshgrid outputs of x's first two and last three elements, stacked."""
    return (lambda x: gd.stack(gd.meshgrid(x[:2], x[2:], indexing=indexing)),
            lambda t: torch.stack(torch.meshgrid(t[:2], t[2:], indexing=indexing)), (5,))


def _pad(pad, mode="constant", value=None, shape=(2, 3, 4)):
    return (lambda x: gd.pad(x, pad, mode, value),
            lambda t: F.pad(t, pad, mode, value), shape)


# name -> (graphdl, PyTorch, input shape)
CASES = {
    "flip(0, 2)": (lambda x: gd.flip(x, (0, 2)), lambda t: torch.flip(t, (0, 2)), (2, 3, 4)),
    "flip(dims=-1)": (lambda x: gd.flip(x, dims=-1), lambda t: torch.flip(t, (-1,)), (3, 4)),
    "flip()": (gd.flip, lambda t: torch.flip(t, (0, 1)), (3, 4)),
    "flip, empty": (lambda x: gd.flip(x, 0), lambda t: torch.flip(t, (0,)), (0, 3)),
    "roll((5, -2), (1, 2))": (lambda x: gd.roll(x, (5, -2), (1, 2)),
                              lambda t: torch.roll(t, (5, -2), (1, 2)), (2, 3, 4)),
    "roll(-7), flattened": (lambda x: gd.roll(x, -7), lambda t: torch.roll(t, -7), (3, 4)),
    "roll((1, 3), dims=(0, -2))": (lambda x: gd.roll(x, (1, 3), dims=(0, -2)),
                                   lambda t: torch.roll(t, (1, 3), (0, -2)), (4, 2)),
    "roll, empty": (lambda x: gd.roll(x, 3, 1), lambda t: torch.roll(t, 3, 1), (2, 0)),
    "stack(axis=1)": (lambda x: gd.stack([x, 2 * x, gd.flip(x, 0)], 1),
                      lambda t: torch.stack([t, 2 * t, t.flip(0)], 1), (3, 4)),
    "stack(dim=-1)": (lambda x: gd.stack([x, x * x], dim=-1),
                      lambda t: torch.stack([t, t * t], -1), (2, 3)),
    "stack, empty": (lambda x: gd.stack([x, x]), lambda t: torch.stack([t, t]), (0, 3)),
    "tile((2,))": (lambda x: gd.tile(x, (2,)), lambda t: torch.tile(t, (2,)), (2, 3)),
    "tile((2, 1, 3))": (lambda x: gd.tile(x, (2, 1, 3)), lambda t: torch.tile(t, (2, 1, 3)),
                        (2, 3)),
    "tile(dims=(0, 2))": (lambda x: gd.tile(x, dims=(0, 2)), lambda t: torch.tile(t, (0, 2)),
                          (2, 3)),
    "repeat(2, 1, 3)": (lambda x: gd.repeat(x, 2, 1, 3), lambda t: t.repeat(2, 1, 3), (2, 3)),
    "repeat((3, 2))": (lambda x: gd.repeat(x, (3, 2)), lambda t: t.repeat((3, 2)), (2, 3)),
    "repeat_interleave(3, dim=1)": (lambda x: gd.repeat_interleave(x, 3, dim=1),
                                    lambda t: torch.repeat_interleave(t, 3, 1), (2, 3)),
    "repeat_interleave(2), flattened": (lambda x: gd.repeat_interleave(x, 2),
                                        lambda t: torch.repeat_interleave(t, 2), (2, 3)),
    "repeat_interleave(0)": (lambda x: gd.repeat_interleave(x, 0, 0),
                             lambda t: torch.repeat_interleave(t, 0, 0), (2, 3)),
    "tril": (gd.tril, torch.tril, (2, 3, 4)),
    "tril(-1)": (lambda x: gd.tril(x, -1), lambda t: torch.tril(t, -1), (4, 3)),
    "triu": (gd.triu, torch.triu, (3, 4)),
    "triu(2)": (lambda x: gd.triu(x, 2), lambda t: torch.triu(t, 2), (2, 3, 5)),
    "tril, empty": (gd.tril, torch.tril, (3, 0)),
    "pad constant": _pad((1, 2, -1, 0), value=-3.5),
    "pad constant, three axes": _pad((2, -1, 0, 1, 1, 1)),
    "pad constant, an empty axis": _pad((0, 0, 1, 2), shape=(2, 0, 3)),
    "pad reflect": _pad((1, 2), "reflect"),
    "pad reflect, 2-d": _pad((3, -1, -2, 2), "reflect", shape=(2, 3, 4, 5)),
    "pad replicate": _pad((4, -1), "replicate", shape=(2, 3, 2)),
    "pad replicate, 2-d": _pad((1, 0, 2, -2), "replicate", shape=(1, 2, 3, 4)),
    "pad replicate, empty batch": _pad((1, 2), "replicate", shape=(0, 3, 4)),
    "pad circular": _pad((-1, 2), "circular", shape=(2, 3, 5)),
    "pad circular, 2-d": _pad((2, 1, 1, -1), "circular", shape=(1, 2, 3, 4)),
    "diagonal": (gd.diagonal, torch.diagonal, (3, 4)),
    "diagonal(1, -1, 0)": (lambda x: gd.diagonal(x, 1, -1, 0),
                           lambda t: torch.diagonal(t, 1, -1, 0), (2, 3, 4)),
    "diagonal(-2, dim1=2, dim2=1)": (lambda x: gd.diagonal(x, -2, dim1=2, dim2=1),
                                     lambda t: torch.diagonal(t, -2, 2, 1), (2, 4, 3)),
    "diagonal(5), empty": (lambda x: gd.diagonal(x, 5), lambda t: torch.diagonal(t, 5), (3, 4)),
    "meshgrid ij": _mesh("ij"),
    "meshgrid xy": _mesh("xy"),
    "pixel_shuffle(2)": (lambda x: gd.pixel_shuffle(x, 2), lambda t: F.pixel_shuffle(t, 2),
                         (2, 8, 2, 3)),
    "pixel_shuffle(3), (C, H, W)": (lambda x: gd.pixel_shuffle(x, 3),
                                    lambda t: F.pixel_shuffle(t, 3), (9, 2, 1)),
    "pixel_unshuffle(2), two leading axes": (lambda x: gd.pixel_unshuffle(x, 2),
                                             lambda t: F.pixel_unshuffle(t, 2), (2, 1, 3, 4, 6)),
    "pixel_unshuffle(3)": (lambda x: gd.pixel_unshuffle(x, 3),
                           lambda t: F.pixel_unshuffle(t, 3), (1, 2, 3, 6)),
}

# the derivatives add up products of weights: float32 rounds them
TOLERANCE = {"float64": (1e-12, 1e-14), "float32": (1e-5, 1e-6)}


def _input(name, dtype):
    shape = CASES[name][2]
    seed = list(CASES).index(name)
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _weights(shape, seed):
    return np.round(np.random.default_rng(seed).uniform(0.5, 1.5, shape), 3)


def _reference(name, x):
    """PyTorch: f(x) in x's dtype; in float64, the gradient of Σ w1·f(x)² and the gradient of
    Σ w2·(that gradient)."""
    fn = CASES[name][1]
    value = fn(torch.from_numpy(x)).numpy()
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(t)
    w1, w2 = (torch.from_numpy(_weights(s, k)) for k, s in ((1, y.shape), (2, x.shape)))
    g = _grad((y * y * w1).sum(), t, create_graph=True)
    return [value, g.detach().numpy(), _grad((g * w2).sum(), t).numpy()]


def _grad(out, t, create_graph=False):
    """d out / d t; zeros where out does not depend on t (an empty f(x), whose gradient
    PyTorch gives as a constant)."""
    if not out.requires_grad:
        return torch.zeros_like(t)
    return torch.autograd.grad(out, t, create_graph=create_graph)[0]


def _graph(name, dtype):
    """The nodes of f(x) and of the derivatives `_reference` computes."""
    shape = CASES[name][2]
    xi = gd.input(f"x{list(CASES).index(name)}", shape, dtype)
    y = CASES[name][0](xi)
    (g,) = gd.grad(gd.sum(y * y * gd.constant(_weights(y.shape, 1).astype(dtype))), [xi])
    (h,) = gd.grad(gd.sum(g * gd.constant(_weights(shape, 2).astype(dtype))), [xi])
    return xi, [y, g, h]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("runner", runner_params())
def test_value_and_two_derivatives_equal_pytorchs(runner, dtype):
    """Every case in one graph (one compilation per backend and dtype)."""
    graphs = {name: _graph(name, dtype) for name in CASES}
    outputs = [node for _, nodes in graphs.values() for node in nodes]
    feeds = {xi.name: _input(name, dtype) for name, (xi, _) in graphs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # every part has its backend's kernel
        values = run_on(runner, outputs, feeds)
    rtol, atol = TOLERANCE[dtype]
    problems = []
    for k, name in enumerate(CASES):
        want = _reference(name, feeds[graphs[name][0].name])
        got = values[3 * k:3 * k + 3]
        for what, a, b in zip(("value", "gradient", "second derivative"), got, want):
            a = np.asarray(a)
            if a.dtype != dtype or a.shape != b.shape:
                problems.append(f"{name} {what}: {a.dtype}{a.shape}, PyTorch {b.shape}")
            elif what == "value" and not np.array_equal(a, b):
                problems.append(f"{name} value: {a} is not PyTorch's {b}")
            elif not np.allclose(a, b, rtol=rtol, atol=atol):
                problems.append(f"{name} {what}: {a} is not PyTorch's {b}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["roll((5, -2), (1, 2))", "pad reflect, 2-d", "tile((2, 1, 3))",
                                  "diagonal(1, -1, 0)", "meshgrid xy"])
def test_finite_differences_agree(name):
    x = _input(name, "float64")
    xi, (y, g, _) = _graph(name, "float64")
    for out in (y, g):
        check = gd.check_grad(gd.sum(out * gd.constant(_weights(out.shape, 3))), {xi.name: x})
        assert check.ok, (name, check.failures[:1])


def test_pytorch_spellings_build_the_same_nodes():
    x = gd.input("x", (3, 4, 5), "float32")
    assert gd.flip(x, dims=(0, -1)) is gd.flip(x, axis=(0, 2)) is gd.flip(x, (2, 0))
    assert gd.roll(x, 2, dims=1) is gd.roll(x, 2, axis=1) is gd.roll(x, (2,), (1,))
    assert gd.roll(x, (1, 1), (1, 1)) is gd.roll(x, 2, 1)  # an axis's shifts add up
    assert gd.roll(x, 4, 1) is x and gd.flip(gd.constant(1.0)).op.name == "const"
    assert gd.stack([x, x], dim=2) is gd.stack([x, x], axis=-2) is gd.stack([x, x], 2)
    assert gd.tile(x, dims=(2, 1)) is gd.tile(x, reps=(1, 2, 1)) is gd.repeat(x, 1, 2, 1)
    assert gd.repeat(x, (1, 2, 1)) is gd.repeat(x, [1, 2, 1])
    assert gd.repeat_interleave(x, 2, dim=0) is gd.repeat_interleave(x, 2, axis=0)
    assert gd.diagonal(x, 1, dim1=2, dim2=0) is gd.diagonal(x, 1, 2, 0)
    assert gd.diagonal(x) is gd.diagonal(x, 0, 0, 1)
    assert gd.pad(x, (1, 1), value=None) is gd.pad(x, [1, 1], "constant", 0)
    assert gd.pad(x, (1, 1), value=np.float64(2)) is gd.pad(x, (1, 1), value=np.asarray(2.0))
    assert gd.pad(x, (0, 0, 0, 0)) is x
    assert gd.flip(x, 0).name == "flip" and gd.pad(x, (1, 1)).name == "pad"
    assert gd.meshgrid([x[0, 0], x[0, 1, :2]]) == gd.meshgrid(x[0, 0], x[0, 1, :2])


def test_pixel_shuffle_binds_an_unknown_batch_at_the_call():
    x = gd.input("x", (None, 8, 2, 3), "float64")
    y = gd.pixel_unshuffle(gd.pixel_shuffle(x, 2) * 2.0, 2)
    assert y.shape == (None, 8, 2, 3)
    x0 = np.random.default_rng(0).standard_normal((3, 8, 2, 3))
    for runner in ("evaluate", "numpy"):
        (got,) = run_on(runner, [y], {"x": x0})
        np.testing.assert_array_equal(got, 2.0 * x0)


def test_pixel_shuffle_of_an_empty_batch_has_the_shuffled_shape():
    """(0, 2, 6, 6) unshuffled by 3 is (0, 18, 2, 2); torch 2.13 returns (0, 2, 6, 6) (the
    input's shape, for any empty input), which graphdl does not follow."""
    x = gd.input("x", (0, 2, 6, 6), "float64")
    y = gd.pixel_unshuffle(x, 3)
    assert y.shape == (0, 18, 2, 2) and gd.pixel_shuffle(y, 3).shape == (0, 2, 6, 6)
    assert gd.evaluate(y, {"x": np.zeros((0, 2, 6, 6))}).shape == (0, 18, 2, 2)


def test_int_and_bool_inputs_keep_their_dtype():
    i = gd.constant(np.arange(12, dtype=np.int32).reshape(3, 4))
    b = gd.constant(np.ones((3, 4), bool))
    for y in (gd.tril(i), gd.pad(i, (1, 1), value=1.7), gd.tile(i, (2, 1)), gd.roll(i, 1, 0)):
        assert y.dtype == np.int32
    assert gd.triu(b).dtype == np.bool_ and gd.pad(b, (1, 0), "reflect").dtype == np.bool_
    got = gd.evaluate([gd.pad(i, (1, 1), value=1.7), gd.triu(b, 1)])
    t = torch.from_numpy(np.arange(12, dtype=np.int32).reshape(3, 4))
    np.testing.assert_array_equal(got[0], F.pad(t, (1, 1), value=1.7).numpy())  # truncated
    np.testing.assert_array_equal(got[1], torch.triu(torch.ones(3, 4, dtype=bool), 1).numpy())


@pytest.mark.parametrize(("call", "message"), [
    (lambda x: gd.pad(x, (4, 0), "reflect"),
     r"pad of 'x': the pads \(4, 0\) of axis 1, of size 4, must be smaller than the axis"),
    (lambda x: gd.pad(x, (1, 1, 1)),
     r"pad of 'x': pad must hold a \(before, after\) pair .* got 3 numbers"),
    (lambda x: gd.pad(x, (1,) * 6), "for at most its 2 axes; got 6 numbers"),
    (lambda x: gd.pad(x, (-3, -2)), r"the pads \(-3, -2\) of axis 1, of size 4, crop more"),
    (lambda x: gd.pad(x, (3, -2), "circular"), "wrap around more than once: the crops keep 2"),
    (lambda x: gd.pad(x, (1, 1), "edge"), "mode must be one of 'constant', 'reflect', "),
    (lambda x: gd.pad(x, (1, 1), "reflect", 0.0), "value must be a number, for mode 'constant'"),
    (lambda x: gd.pad(x, (1, 1), value="0"), r"value must be a number, .* got '0'"),
    (lambda x: gd.pad(x, (1.5, 1)), r"pad must be integers, got \(1.5, 1\)"),
    (lambda x: gd.roll(x, (1, 2), 0), r"roll of 'x': 2 shifts for 1 axes"),
    (lambda x: gd.roll(x, (1, 2)), "without an axis, give one shift"),
    (lambda x: gd.roll(x, 1, 2), "roll of 'x': axis 2 is out of range"),
    (lambda x: gd.roll(x, 1.5, 0), r"roll of 'x': shifts must be integers, got \(1.5,\)"),
    (lambda x: gd.flip(x, (0, 0)), r"repeated axis in \(0, 0\)"),
    (lambda x: gd.flip(x, 0, dims=0), "flip of 'x': give axis or dims, not both"),
    (lambda x: gd.stack([x, x], 0, dim=0), "stack: give axis or dim, not both"),
    (lambda x: gd.stack([x, x[:, :2]]), r"stack: .* has shape \(3, 2\), 'x' has shape \(3, 4\)"),
    (lambda x: gd.stack([]), "stack needs at least one array"),
    (lambda x: gd.stack([x], 3), "stack: axis 3 is out of range"),
    (lambda x: gd.repeat(x, 2), "repeat of 'x': 1 sizes for 2 axes"),
    (lambda x: gd.tile(x, (-1, 2)), r"tile of 'x': reps must be integers of at least 0"),
    (lambda x: gd.tile(x), "tile of 'x': give the repetitions"),
    (lambda x: gd.tile(x, (1,), dims=(1,)), "give reps or dims, not both"),
    (lambda x: gd.repeat_interleave(x, [1, 2, 3]), "repeats must be an int of at least 0"),
    (lambda x: gd.tril(x[0]), r"tril of .*: needs two or more axes"),
    (lambda x: gd.triu(x, 1.0), "triu of 'x': diagonal must be an int, got 1.0"),
    (lambda x: gd.diagonal(x, 0, 1, -1), "diagonal of 'x': axis1 and axis2 are both axis 1"),
    (lambda x: gd.diagonal(x, 0, 0, dim1=1), "give axis1 or dim1, not both"),
    (lambda x: gd.meshgrid(x), r"meshgrid: 'x' has shape \(3, 4\); each input must be 0-d"),
    (lambda x: gd.meshgrid(x[0], indexing="yx"), "indexing must be 'ij' or 'xy'"),
    (lambda x: gd.pixel_shuffle(x, 2), r"pixel_shuffle of 'x': needs \(\*, C, H, W\) input"),
    (lambda x: gd.pixel_shuffle(gd.reshape(x, (3, 2, 2)), 2),
     r"its 3 channels \(axis 0\) must be a multiple of upscale_factor² = 4"),
    (lambda x: gd.pixel_shuffle(gd.reshape(x, (1, 3, 2, 2)), 0),
     "upscale_factor must be a positive int, got 0"),
    (lambda x: gd.pixel_unshuffle(gd.reshape(x, (1, 3, 4)), 2),
     r"pixel_unshuffle of .*: its height 3 and width 4 must be multiples of downscale_factor 2"),
])
def test_bad_arguments_are_refused_naming_the_node(call, message):
    with pytest.raises(gd.GraphError, match=message):
        call(gd.input("x", (3, 4), "float32"))


@pytest.mark.parametrize("call", [
    lambda x: gd.roll(x, 1, 1), lambda x: gd.pad(x, (1, 1)), lambda x: gd.tile(x, (1, 2)),
    lambda x: gd.tril(x), lambda x: gd.diagonal(x), lambda x: gd.repeat_interleave(x, 2, 0)])
def test_unknown_sizes_are_refused_at_declaration(call):
    with pytest.raises(gd.GraphError, match=r"of 'x': the sizes of axes \(.*\) must be known at "
                       r"declaration; 'x' has shape \(3, \?\)"):
        call(gd.input("x", (3, None), "float32"))


def test_flip_and_stack_take_unknown_sizes():
    x = gd.input("x", (None, 3), "float64")
    y = gd.stack([gd.flip(x, 0), x], 1)
    v = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(gd.compile(y)(x=v), np.stack([v[::-1], v], 1))


def _parts():
    x = gd.input("x", (3, 4), "float64")
    parts = {"flip": gd.flip(x, 0), "roll": gd.roll(x, 1, 1), "stack": gd.stack([x, x]),
             "tile": gd.tile(x, (2, 1)), "repeat": gd.repeat(x, 1, 2),
             "repeat_interleave": gd.repeat_interleave(x, 2, 0), "tril": gd.tril(x),
             "triu": gd.triu(x), "pad": gd.pad(x, (1, 1), "reflect"), "diagonal": gd.diagonal(x),
             "meshgrid": gd.meshgrid(x[0], x[:, 0])[1]}
    total = sum((gd.sum(p * gd.constant(_weights(p.shape, k)))
                 for k, p in enumerate(parts.values())), gd.constant(0.0))
    return x, parts, total


def test_each_gate_is_drawn_named_and_collapses_to_one():
    _, parts, total = _parts()
    source = gd.draw(total).source
    for name in parts:
        assert f"<i>{name}</i>" in source, name
    for gate in ("slice", "concat", "take", "broadcast", "where"):
        assert f"<{gate}" in source, gate
    gates = gd.draw(total, collapse=["pad", "roll"]).circuit.gates
    assert sorted(g.label for g in gates if g.kind == "region") == ["pad", "roll"]


def test_explain_narrates_the_parts():
    x = gd.input("x", (4,), "float64")
    y = gd.sum(gd.pad(gd.flip(x), (2, 1), "reflect") * gd.constant(np.arange(7.0)))
    text = str(gd.explain(y, {"x": np.array([1.0, -2.0, 0.5, 3.0])}))
    assert "the gradients of a repeated entry add" in text  # pad's take
    assert "written into the slice" in text  # flip's slice


# ---------------------------------------------------------------- ONNX
def test_onnx_export_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    outputs, feeds = {}, {}
    # onnxruntime's graph optimizer drops the Expand to (2, 0, 3) (unoptimized, it runs right)
    for name in [name for name in CASES if name != "repeat_interleave(0)"]:
        xi, (y, g, _) = _graph(name, "float32")
        outputs[f"y{xi.name}"], outputs[f"g{xi.name}"] = y, g
        feeds[xi.name] = _input(name, "float32")
    gd.onnx.save(outputs, tmp_path / "g.onnx")
    got = ort.InferenceSession(str(tmp_path / "g.onnx")).run(None, feeds)
    for name, a, b in zip(outputs, got, gd.evaluate(list(outputs.values()), **feeds)):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)


def _onnx_model(node, x, opset, *inputs):
    """A one-node ONNX model reading float input x (and static int64 `inputs`, initializers)."""
    from onnx import TensorProto, helper, numpy_helper

    initializers = [numpy_helper.from_array(np.asarray(v), name) for name, v in inputs]
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _agree_with_onnxruntime(model, x):
    ort = pytest.importorskip("onnxruntime")
    (want,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    (got,) = gd.evaluate(gd.onnx.load(model).outputs, x=x)
    np.testing.assert_array_equal(got, want)


X = np.random.default_rng(5).standard_normal((2, 3, 4, 5)).astype(np.float32)


@pytest.mark.parametrize(("mode", "pads", "opset"), [
    ("constant", [0, 1, -1, 2, 0, 0, 2, -2], 17),
    ("reflect", [0, 0, 2, -1, 0, 0, -1, 3], 17),
    ("edge", [1, 0, 3, -1, 0, 2, -2, 6], 17),
    ("wrap", [0, 0, 3, -1, 0, 0, -1, 4], 19),
])
def test_onnx_pad_imports_in_each_mode(mode, pads, opset):
    """Negative pads crop first, as in ONNX Runtime; the constant one pads with 1.5."""
    from onnx import helper

    inputs = [("pads", np.asarray(pads, np.int64))]
    if mode == "constant":
        inputs.append(("value", np.asarray(1.5, np.float32)))
    node = helper.make_node("Pad", ["x", *(n for n, _ in inputs)], ["y"], mode=mode)
    _agree_with_onnxruntime(_onnx_model(node, X, opset, *inputs), X)


def test_onnx_pad_imports_with_axes_and_as_an_attribute():
    from onnx import helper

    axes = [("pads", np.asarray([2, -1, 1, 3], np.int64)), ("value", np.zeros((), np.float32)),
            ("axes", np.asarray([-1, 1], np.int64))]
    node = helper.make_node("Pad", ["x", "pads", "value", "axes"], ["y"])
    _agree_with_onnxruntime(_onnx_model(node, X, 18, *axes), X)
    old = helper.make_node("Pad", ["x"], ["y"], pads=[0, 1, 0, 2, 0, 0, 1, 0], value=-2.0)
    _agree_with_onnxruntime(_onnx_model(old, X, 10), X)


@pytest.mark.parametrize(("upper", "k"), [(1, None), (1, -1), (0, None), (0, 2)])
def test_onnx_trilu_imports(upper, k):
    from onnx import helper

    inputs = [] if k is None else [("k", np.asarray(k, np.int64))]
    node = helper.make_node("Trilu", ["x", *(n for n, _ in inputs)], ["y"], upper=upper)
    _agree_with_onnxruntime(_onnx_model(node, X, 17, *inputs), X)


def test_onnx_tile_imports():
    from onnx import helper

    node = helper.make_node("Tile", ["x", "repeats"], ["y"])
    repeats = ("repeats", np.asarray([1, 3, 0, 2], np.int64))
    _agree_with_onnxruntime(_onnx_model(node, X, 17, repeats), X)


class Rearranged(torch.nn.Module):
    """PyTorch's rearrangements as its ONNX exporter writes them (Pad, Trilu, Tile, Slice,
    Concat, ...), with a causal attention mask built by triu (a Trilu)."""

    def forward(self, x):
        n = x.shape[1]
        scores = x @ x.transpose(1, 2) / math.sqrt(x.shape[2])
        causal = torch.triu(torch.ones(n, n), 1).bool()
        attended = torch.softmax(scores.masked_fill(causal, float("-inf")), -1) @ x
        parts = [F.pad(x, (1, 2), "reflect"), F.pad(x, (2, 0, 1, -1), "replicate"),
                 F.pad(x, (1, -1, 0, 2), value=0.5), torch.tril(scores, -1),
                 torch.triu(scores), x.repeat(1, 2, 1), torch.repeat_interleave(x, 2, 1),
                 torch.flip(x, (1, 2)), torch.roll(x, (2, -1), (1, 2)),
                 torch.stack([x, 2 * x], 1), attended]
        return tuple(p.flatten(1) for p in parts)


def test_pytorch_exports_import_and_agree():
    pytest.importorskip("onnx")
    x = np.random.default_rng(6).standard_normal((2, 4, 5)).astype(np.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation
        torch.onnx.export(Rearranged(), (torch.from_numpy(x),), buffer, dynamo=False,
                          do_constant_folding=False)
    model = gd.onnx.load(buffer.getvalue())
    got = gd.compile(model.outputs)(**model.feeds(**{model.inputs[0].name: x}))
    want = Rearranged()(torch.from_numpy(x))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-6)
