"""Layers from PyTorch's functional API: values and gradients against PyTorch on every way
graphdl runs a graph, drawn as one gate, imported from ONNX."""

from __future__ import annotations

import io

import numpy as np
import pytest

import graphdl as gd

torch = pytest.importorskip("torch")

from tests.helpers import run_on, runner_params


def _layer_norm_case(dtype, shape, normalized, affine, seed=0):
    rng = np.random.default_rng(seed)
    x0 = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    w0 = rng.uniform(0.5, 1.5, normalized).astype(dtype)
    b0 = rng.standard_normal(normalized).astype(dtype)
    probe = rng.standard_normal(shape).astype(dtype)
    x = gd.input("x", shape, dtype)
    w, b = gd.input("w", normalized, dtype), gd.input("b", normalized, dtype)
    y = gd.layer_norm(x, normalized, w if affine else None, b if affine else None, eps=1e-5)
    loss = gd.sum(y * y * probe)
    wrt = [x, w, b] if affine else [x]
    outputs = [y, *gd.grad(loss, wrt)]
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x0, w0, b0))
    yt = torch.nn.functional.layer_norm(xt, normalized, wt if affine else None,
                                        bt if affine else None, eps=1e-5)
    grads = torch.autograd.grad((yt * yt * torch.tensor(probe)).sum(),
                                [xt, wt, bt] if affine else [xt])
    want = [yt.detach().numpy(), *(g.numpy() for g in grads)]
    feeds = {"x": x0, "w": w0, "b": b0} if affine else {"x": x0}
    return outputs, feeds, want


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("normalized,affine", [((8,), True), ((3, 8), True), ((8,), False)])
def test_layer_norm_matches_pytorch(runner, dtype, normalized, affine):
    outputs, feeds, want = _layer_norm_case(dtype, (4, 3, 8), normalized, affine)
    got = run_on(runner, outputs, feeds)
    tol = 1e-11 if dtype == "float64" else 2e-4
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


def test_layer_norm_second_derivatives_match_finite_differences():
    x = gd.input("x", (2, 5), "float64")
    y = gd.sum(gd.layer_norm(x, 5) ** 3)
    (dx,) = gd.grad(y, [x])
    report = gd.check_grad(gd.sum(dx * dx), {"x": np.random.default_rng(1).normal(size=(2, 5))})
    assert report.ok, report


def test_layer_norm_is_one_gate_when_collapsed():
    x = gd.input("x", (2, 4), "float64")
    y = gd.sum(gd.layer_norm(x, 4))
    source = gd.draw(y, {"x": np.arange(8.0).reshape(2, 4)}, collapse="layer_norm").source
    assert "LayerNorm" in source and "reciprocal" not in source


def test_layer_norm_refuses_a_shape_that_does_not_end_the_input():
    x = gd.input("acts", (2, 4), "float32")
    with pytest.raises(gd.GraphError, match=r"acts.*not normalized_shape \(3,\)"):
        gd.layer_norm(x, 3)
    with pytest.raises(gd.GraphError, match=r"weight.*not normalized_shape \(4,\)"):
        gd.layer_norm(x, 4, np.ones(3, "float32"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter
def test_pytorch_layer_norm_imports_from_onnx():
    pytest.importorskip("onnx")
    module = torch.nn.LayerNorm((3, 6)).eval()
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_()
    x0 = np.random.default_rng(2).standard_normal((2, 3, 6)).astype(np.float32)
    buf = io.BytesIO()
    torch.onnx.export(module, (torch.from_numpy(x0),), buf, opset_version=17, dynamo=False,
                      input_names=["x"])
    imported = gd.onnx.load(buf.getvalue())
    (got,) = gd.evaluate(imported.outputs, **imported.feeds(x=x0))
    np.testing.assert_allclose(got, module(torch.from_numpy(x0)).detach().numpy(), rtol=1e-5,
                               atol=1e-5)


# --- linear, embedding, dropout, attention, group_norm, batch_norm ---------------------------

F = torch.nn.functional


def _check_against_torch(runner, dtype, build, torch_fn, arrays, ints=(), seed=3):
    """build(*nodes) and torch_fn(*tensors) on `arrays` (name -> array; names in `ints` are not
    differentiated): the value and the gradient of sum(y · probe) with respect to every float
    array, on `runner`."""
    rng = np.random.default_rng(seed)
    nodes = {k: gd.input(k, a.shape, a.dtype) for k, a in arrays.items()}
    y = build(**nodes)
    probe = rng.standard_normal(y.shape).astype(dtype)
    floats = [k for k in arrays if k not in ints and arrays[k].dtype.kind == "f"]
    outputs = [y, *gd.grad(gd.sum(y * probe), [nodes[k] for k in floats])]
    tensors = {k: torch.tensor(a, requires_grad=k in floats) for k, a in arrays.items()}
    yt = torch_fn(**tensors)
    grads = torch.autograd.grad((yt * torch.tensor(probe)).sum(), [tensors[k] for k in floats])
    want = [yt.detach().numpy(), *(g.numpy() for g in grads)]
    got = run_on(runner, outputs, arrays)
    tol = 1e-11 if dtype == "float64" else 2e-4
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(np.abs(b).max(initial=0), 1))


def _normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("xshape,bias", [((4, 3), True), ((2, 5, 3), False), ((3,), True)])
def test_linear_matches_pytorch(runner, dtype, xshape, bias):
    rng = np.random.default_rng(0)
    arrays = {"x": _normal(rng, xshape, dtype), "w": _normal(rng, (6, 3), dtype),
              "b": _normal(rng, (6,), dtype)}
    if not bias:
        del arrays["b"]
    _check_against_torch(runner, dtype, lambda x, w, b=None: gd.linear(x, w, b),
                         lambda x, w, b=None: F.linear(x, w, b), arrays)


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_pytorch_padding_rows_get_no_gradient(runner, dtype, padding_idx):
    rng = np.random.default_rng(1)
    arrays = {"idx": np.array([[0, 2, 4], [2, 1, 4]], dtype=np.int64),
              "w": _normal(rng, (5, 3), dtype)}
    _check_against_torch(runner, dtype,
                         lambda idx, w: gd.embedding(idx, w, padding_idx=padding_idx),
                         lambda idx, w: F.embedding(idx, w, padding_idx=padding_idx), arrays,
                         ints=("idx",))


def test_embedding_padding_row_gradient_is_zero():
    w = gd.input("w", (4, 2), "float64")
    (dw,) = gd.grad(gd.sum(gd.embedding(np.array([1, 3, 3]), w, padding_idx=3)), [w])
    (got,) = gd.evaluate([dw], {"w": np.ones((4, 2))})
    np.testing.assert_array_equal(got, [[0, 0], [1, 1], [0, 0], [0, 0]])


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_dropout_with_a_fixed_mask_scales_as_pytorch(runner, dtype, mask_kind):
    rng = np.random.default_rng(2)
    keep = gd.ops.layers.dropout_mask((3, 4), 0.3, seed=7)
    assert keep.dtype == bool and np.array_equal(keep, gd.ops.layers.dropout_mask((3, 4), 0.3, 7))
    arrays = {"x": _normal(rng, (3, 4), dtype),
              "m": keep if mask_kind == "bool" else keep.astype(dtype)}
    _check_against_torch(runner, dtype, lambda x, m: gd.dropout(x, 0.3, m),
                         lambda x, m: x * m / (1 - 0.3), arrays, ints=("m",))


def test_dropout_is_the_identity_at_p_0_or_in_eval_and_zeros_at_p_1():
    x = gd.input("x", (2, 3), "float32")
    assert gd.dropout(x, 0.0) is x and gd.dropout(x, 0.5, training=False) is x
    (y,) = gd.evaluate([gd.dropout(x, 1.0, np.ones((2, 3), bool))], {"x": np.ones((2, 3), "f4")})
    np.testing.assert_array_equal(y, torch.nn.functional.dropout(torch.ones(2, 3), 1.0).numpy())
    with pytest.raises(gd.GraphError, match="keep-mask"):
        gd.dropout(x, 0.5)
    with pytest.raises(gd.GraphError, match=r"mask.*\(4,\).*does not broadcast to 'x'"):
        gd.dropout(x, 0.5, np.ones(4, bool))
    with pytest.raises(gd.GraphError, match=r"p must lie in \[0, 1\]"):
        gd.dropout(x, 1.5, np.ones((2, 3), bool))


def _attention_arrays(dtype, L=3, S=4, E=5, Ev=2, batch=(2,)):
    rng = np.random.default_rng(4)
    return {"q": _normal(rng, (*batch, L, E), dtype), "k": _normal(rng, (*batch, S, E), dtype),
            "v": _normal(rng, (*batch, S, Ev), dtype)}


_BOOL_MASK = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 1]], dtype=bool)  # row 1: none kept


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mask", ["none", "bool", "float", "causal", "scale"])
def test_attention_matches_pytorch(runner, dtype, mask):
    arrays = _attention_arrays(dtype)
    options = {}
    if mask == "causal":
        options = {"is_causal": True}
    elif mask == "scale":
        options = {"scale": 0.7}
    elif mask != "none":
        m = _BOOL_MASK if mask == "bool" else np.where(
            _BOOL_MASK, np.random.default_rng(5).standard_normal((3, 4)), -np.inf).astype(dtype)
        arrays["m"] = m
    if "m" in arrays:
        build = lambda q, k, v, m: gd.scaled_dot_product_attention(q, k, v, m)
        ref = lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, m)
    else:
        build = lambda q, k, v: gd.scaled_dot_product_attention(q, k, v, **options)
        ref = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **options)
    _check_against_torch(runner, dtype, build, ref, arrays, ints=("m",))


def test_attention_fully_masked_query_gives_zeros_as_pytorch():
    arrays = _attention_arrays("float64", batch=())
    q, k, v = (gd.input(n, a.shape, a.dtype) for n, a in arrays.items())
    y = gd.scaled_dot_product_attention(q, k, v, _BOOL_MASK)
    got, dq = gd.evaluate([y, *gd.grad(gd.sum(y), [q])], arrays)
    assert np.all(got[1] == 0) and np.all(np.isfinite(dq))


def test_attention_refuses_mismatched_shapes_naming_the_node():
    q, k = gd.input("query", (3, 5), "float32"), gd.input("key", (4, 6), "float32")
    v = gd.input("value", (4, 2), "float32")
    with pytest.raises(gd.GraphError, match=r"query.*key.*value"):
        gd.scaled_dot_product_attention(q, k, v)
    k = gd.input("key", (4, 5), "float32")
    with pytest.raises(gd.GraphError, match=r"attn_mask.*\(3, 5\).*does not broadcast"):
        gd.scaled_dot_product_attention(q, k, v, np.ones((3, 5), bool))


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape,groups,affine", [((2, 6, 5), 3, True), ((2, 4, 3, 2), 2, False),
                                                 ((3, 4), 4, True)])
def test_group_norm_matches_pytorch(runner, dtype, shape, groups, affine):
    rng = np.random.default_rng(6)
    c = shape[1]
    arrays = {"x": (_normal(rng, shape, dtype) * 2 + 1).astype(dtype)}
    if affine:
        arrays.update(w=rng.uniform(0.5, 1.5, c).astype(dtype), b=_normal(rng, (c,), dtype))
    _check_against_torch(runner, dtype,
                         lambda x, w=None, b=None: gd.group_norm(x, groups, w, b, eps=1e-5),
                         lambda x, w=None, b=None: F.group_norm(x, groups, w, b, eps=1e-5),
                         arrays)


def test_group_norm_takes_a_batch_of_unknown_size():
    """One declaration runs at every batch size (ONNX models import with a symbolic batch);
    an unknown axis after the batch is refused, naming it."""
    x = gd.input("acts", (None, 4, 3), "float64")
    w, b = np.array([0.5, 1.0, 1.5, 2.0]), np.array([0.1, -0.2, 0.3, 0.0])
    fn = gd.compile(gd.group_norm(x, 2, w, b))
    rng = np.random.default_rng(8)
    for batch in (1, 3):
        x0 = rng.normal(size=(batch, 4, 3))
        want = F.group_norm(torch.from_numpy(x0), 2, torch.from_numpy(w), torch.from_numpy(b))
        np.testing.assert_allclose(fn(acts=x0), want.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(gd.GraphError, match=r"group_norm: 'wide'.*\(2, 4, \?\).*but the batch"):
        gd.group_norm(gd.input("wide", (2, 4, None), "float64"), 2)


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5)])
def test_batch_norm_matches_pytorch(runner, dtype, training, shape):
    rng = np.random.default_rng(7)
    arrays = {"x": (_normal(rng, shape, dtype) * 2 + 1).astype(dtype),
              "rm": _normal(rng, (3,), dtype), "rv": rng.uniform(0.5, 2, 3).astype(dtype),
              "w": rng.uniform(0.5, 1.5, 3).astype(dtype), "b": _normal(rng, (3,), dtype)}

    if training:  # the batch's statistics (torch would update the running ones in place)
        del arrays["rm"], arrays["rv"]

    def build(x, w, b, rm=None, rv=None):
        return gd.batch_norm(x, rm, rv, w, b, training, eps=1e-5)

    def ref(x, w, b, rm=None, rv=None):
        return F.batch_norm(x, rm, rv, w, b, training=training, eps=1e-5)

    # the running statistics: constants, torch does not differentiate them
    _check_against_torch(runner, dtype, build, ref, arrays, ints=("rm", "rv"))


def test_layers_refuse_wrong_shapes_naming_the_node():
    x = gd.input("acts", (2, 6, 3), "float32")
    with pytest.raises(gd.GraphError, match=r"linear: weight.*\(4, 5\).*acts"):
        gd.linear(x, np.ones((4, 5), "float32"))
    with pytest.raises(gd.GraphError, match=r"linear: bias.*\(5,\), not \(4,\)"):
        gd.linear(x, np.ones((4, 3), "float32"), np.ones(5, "float32"))
    with pytest.raises(gd.GraphError, match=r"embedding: weight.*\(6,\)"):
        gd.embedding(np.array([0]), np.ones(6, "float32"))
    with pytest.raises(gd.GraphError, match=r"embedding: indices.*integers"):
        gd.embedding(x, np.ones((6, 2), "float32"))
    with pytest.raises(gd.GraphError, match=r"padding_idx 9"):
        gd.embedding(np.array([0]), np.ones((6, 2), "float32"), padding_idx=9)
    with pytest.raises(gd.GraphError, match=r"group_norm: 'acts'.*6 channels.*num_groups 4"):
        gd.group_norm(x, 4)
    with pytest.raises(gd.GraphError, match=r"group_norm: weight.*not \(6,\)"):
        gd.group_norm(x, 3, np.ones(3, "float32"))
    with pytest.raises(gd.GraphError, match=r"batch_norm: running_mean.*\(6,\).*acts"):
        gd.batch_norm(x, np.zeros(5, "float32"), np.ones(6, "float32"))
    with pytest.raises(gd.GraphError, match=r"batch_norm: bias.*not \(6,\)"):
        gd.batch_norm(x, np.zeros(6, "float32"), np.ones(6, "float32"), None, np.ones(2, "f4"))


_COLLAPSED = {
    "linear": ("Linear", lambda x: gd.linear(x, np.ones((2, 4)), np.ones(2))),
    "embedding": ("Embedding", lambda x: gd.embedding(np.array([1, 0]), x, padding_idx=0)),
    "dropout": ("Dropout", lambda x: gd.dropout(x, 0.5, np.eye(2, 4, dtype=bool))),
    "scaled_dot_product_attention": (
        "Attention", lambda x: gd.scaled_dot_product_attention(x, x, x, is_causal=True)),
    "group_norm": ("GroupNorm", lambda x: gd.group_norm(x, 2, np.ones(4), np.zeros(4))),
    "batch_norm": ("BatchNorm", lambda x: gd.batch_norm(x, np.zeros(4), np.ones(4))),
}


@pytest.mark.parametrize("name", sorted(_COLLAPSED))
def test_layer_is_one_gate_when_collapsed_and_narrated_by_its_rule(name):
    from graphdl.ops.composite import COMPOSITES

    symbol, build = _COLLAPSED[name]
    x = gd.input("x", (2, 4), "float64")
    y = gd.sum(build(x))
    values = {"x": np.arange(8.0).reshape(2, 4) / 8}
    source = gd.draw(y, values, collapse=name).source
    assert symbol in source and "reciprocal" not in source and "take" not in source
    assert COMPOSITES[name].rule in str(gd.explain(y, values, collapse=name))


def test_attention_rule_names_its_parts():
    from graphdl.ops.composite import COMPOSITES

    rule = COMPOSITES["scaled_dot_product_attention"].rule
    assert rule.startswith("scores = q·kᵀ·scale, masked, softmax over keys, weights·v")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_layers_export_to_onnx_and_run_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    rng = np.random.default_rng(8)
    arrays = {"x": _normal(rng, (2, 4, 3), "float32"), "idx": np.array([[1, 0], [3, 1]]),
              "table": _normal(rng, (4, 3), "float32"), "m": rng.random((2, 4, 3)) > 0.3}
    x, idx, table = (gd.input(k, arrays[k].shape, arrays[k].dtype) for k in ("x", "idx", "table"))
    m = gd.input("m", arrays["m"].shape, "bool")
    w, b = _normal(rng, (5, 3), "float32"), _normal(rng, (5,), "float32")
    outputs = [gd.linear(x, w, b), gd.embedding(idx, table, padding_idx=0),
               gd.dropout(x, 0.25, m), gd.scaled_dot_product_attention(x, x, x, is_causal=True),
               gd.group_norm(x, 2, np.ones(4, "f4"), np.zeros(4, "f4")),
               gd.batch_norm(x, np.zeros(4, "f4"), np.full(4, 2.0, "f4"))]
    want = gd.evaluate(outputs, arrays)
    gd.onnx.save({f"y{k}": y for k, y in enumerate(outputs)}, tmp_path / "layers.onnx")
    session = ort.InferenceSession(str(tmp_path / "layers.onnx"))
    names = {i.name for i in session.get_inputs()}
    got = session.run(None, {k: v for k, v in arrays.items() if k in names})
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)


def test_embedding_refuses_negative_indices_as_pytorch():
    w = gd.input("table", (4, 2), "float64")
    y = gd.embedding(gd.input("ids", (2,), "int64"), w)
    with pytest.raises(IndexError, match=r"embedding: indices 'ids' into 'table': index -1"):
        gd.evaluate([y], {"table": np.ones((4, 2)), "ids": np.array([0, -1])})
    with pytest.raises(IndexError):
        F.embedding(torch.tensor([0, -1]), torch.ones(4, 2))
