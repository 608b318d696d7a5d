"""The graph IR: hash-consing, shape/dtype inference, immutability, traversal."""

from __future__ import annotations

import contextlib
import inspect
import sys

import numpy as np
import pytest

import graphdl as gd

from .helpers import only


def test_same_node_twice_is_the_same_object():
    x = gd.input("x", (3,), "float64")
    y = gd.input("y", (3,), "float64")
    assert gd.input("x", (3,), "float64") is x
    assert x + y is x + y
    assert gd.exp(x * y) is gd.exp(x * y)
    assert gd.sum(x, 0, keepdims=True) is gd.sum(x, axis=0, keepdims=True)
    assert gd.reshape(x, (3, 1)) is gd.reshape(x, (3, 1))
    # Different operands, op or attrs: different nodes.
    assert x + y is not y + x
    assert x - y is not x + y
    assert gd.sum(x, 0) is not gd.sum(x, 0, keepdims=True)
    assert gd.input("x", (4,), "float64") is not x
    assert gd.input("x", (3,), "float32") is not x


def test_constants_are_keyed_by_dtype_shape_and_bytes():
    one_f, one_i, one_b = gd.constant(1.0), gd.constant(1), gd.constant(True)
    assert len({id(one_f), id(one_i), id(one_b)}) == 3
    assert (one_f.dtype, one_i.dtype, one_b.dtype) == (
        np.dtype("float64"), np.dtype("int64"), np.dtype("bool"))
    assert gd.constant(0.0) is not gd.constant(-0.0)
    assert np.signbit(gd.constant(-0.0).attrs["value"].array)
    assert gd.constant(1.0) is gd.constant(1.0)
    assert gd.constant([1.0, 2.0]) is gd.constant(np.array([1.0, 2.0]))
    assert gd.constant([1.0, 2.0]) is not gd.constant([1.0, 2.0], dtype="float32")
    assert gd.constant([1.0]) is not gd.constant(1.0)  # same bytes, different shape
    assert gd.constant(np.zeros((2, 3))) is not gd.constant(np.zeros((3, 2)))


def test_constant_copies_its_value():
    a = np.array([1.0, 2.0, 3.0])
    c = gd.constant(a)
    a[0] = 100.0
    stored = c.attrs["value"].array
    np.testing.assert_array_equal(stored, [1.0, 2.0, 3.0])
    assert not stored.flags.writeable
    np.testing.assert_array_equal(gd.evaluate(c * 2.0), [2.0, 4.0, 6.0])


def test_attrs_of_different_types_are_different_nodes():
    i = gd.input("i", (3,), "int32")
    assert i ** 2 is not i ** 2.0
    assert (i ** 2).dtype == np.int32
    assert (i ** 2.0).dtype == (np.ones(3, np.int32) ** 2.0).dtype == np.float64


def test_shapes_and_dtypes_are_inferred_at_declaration():
    x = gd.input("x", (None, 3), "float32")
    w = gd.input("w", (3, 4), "float32")
    b = gd.input("b", (4,), "float32")
    h = x @ w + b
    assert (h.shape, h.dtype) == ((None, 4), np.float32)
    assert gd.sum(h, axis=1).shape == (None,)
    assert gd.sum(h, axis=0, keepdims=True).shape == (1, 4)
    assert gd.mean(h).shape == ()
    assert h.T.shape == (4, None)
    assert gd.reshape(w, (-1,)).shape == (12,)
    assert gd.reshape(w, (2, -1)).shape == (2, 6)
    assert gd.expand_dims(w, 1).shape == (3, 1, 4)
    assert gd.squeeze(gd.expand_dims(w, 0)).shape == (3, 4)
    assert w[1:, 0].shape == (2,)
    assert w[::2, 1:3].shape == (2, 2)
    assert gd.concatenate([x, x], axis=0).shape == (None, 3)
    assert gd.concatenate([w, w, w], axis=1).shape == (3, 12)
    assert gd.concatenate([w, gd.input("w5", (5, 4))], axis=0).shape == (8, 4)
    assert gd.take(w, gd.constant(np.array([[0, 2]])), axis=0).shape == (1, 2, 4)
    assert gd.broadcast_to(b, (2, 4)).shape == (2, 4)
    batched = gd.input("A", (7, 1, 2, 3), "float64") @ gd.input("B", (5, 3, 6), "float64")
    assert (batched.shape, batched.dtype) == ((7, 5, 2, 6), np.float64)
    v = gd.input("v", (3,), "float32")
    assert (v @ w).shape == (4,)
    assert (w.T @ v).shape == (4,)
    assert (v @ v).shape == ()
    assert (x > 0).dtype == np.bool_
    assert gd.cast(x, "int32").dtype == np.int32
    assert gd.one_hot(gd.input("labels", (None,), "int64"), 10).shape == (None, 10)


def test_declared_shapes_match_evaluated_shapes(rng):
    w = gd.input("w", (3, 4), "float64")
    a = gd.input("a", (7, 1, 2, 3), "float64")
    outs = [w[1:, 0], w[::-1, ::2], a @ w, gd.max(a, (1, 3)), gd.transpose(a, (2, 0, 3, 1)),
            gd.concatenate([w, w * 2.0], 1), gd.squeeze(a, 1), gd.take(w, gd.constant([2, 0]))]
    values = gd.evaluate(outs, w=rng.standard_normal((3, 4)), a=rng.standard_normal((7, 1, 2, 3)))
    for node, value in zip(outs, values, strict=True):
        assert value.shape == node.shape
        assert value.dtype == node.dtype


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool"])
@pytest.mark.parametrize("scalar", [2, 2.5, True])
def test_python_numbers_are_weak_like_numpy_2(dtype, scalar):
    x = gd.input("x", (3,), dtype)
    a = np.ones(3, dtype)
    cases = [(x * scalar, a * scalar), (scalar * x, scalar * a), (x + scalar, a + scalar)]
    if not (dtype == "bool" and scalar is True):  # NumPy refuses boolean subtraction
        cases.append((scalar - x, scalar - a))
    for node, expected in cases:
        assert node.dtype == expected.dtype, (node, expected.dtype)


def test_weak_scalar_examples_from_the_docs():
    x = gd.input("x", (3,), "float32")
    i = gd.input("i", (3,), "int32")
    assert (x * 2.0).dtype == np.float32
    assert (x * 2).dtype == np.float32
    assert (i * 2.5).dtype == np.float64
    assert (i * 2).dtype == np.int32
    # NumPy scalars are not weak: they promote like arrays (NumPy 2).
    assert (x + np.float64(2.0)).dtype == np.result_type(np.float32, np.float64(2.0))
    # where's bool condition does not decide the dtype of the scalar beside x.
    c = gd.input("c", (3,), "bool")
    assert gd.where(c, x, 0).dtype == np.float32
    assert gd.where(c, 0, x).dtype == np.float32


def test_reductions_of_integers_follow_numpy():
    i = gd.input("i", (2, 3), "int32")
    b = gd.input("b", (3,), "bool")
    iv = np.arange(6, dtype=np.int32).reshape(2, 3)
    bv = np.array([True, False, True])
    for node, expected in [(gd.sum(i), np.sum(iv)), (gd.max(i, 1), np.max(iv, 1)),
                           (gd.min(i), np.min(iv)), (gd.sum(b), np.sum(bv)),
                           (gd.mean(i, 0), np.mean(iv, 0))]:
        assert node.dtype == expected.dtype, node
        value = gd.evaluate(node, only({"i": iv, "b": bv}, [node]))
        np.testing.assert_array_equal(value, expected)


def test_integer_division_is_true_division():
    i = gd.input("i", (3,), "int32")
    v = np.array([1, 2, 3], np.int32)
    assert (i / 2).dtype == (v / 2).dtype == np.float64
    np.testing.assert_array_equal(gd.evaluate(i / 2, i=v), v / 2)
    assert gd.mean(i).dtype == np.float64
    assert gd.evaluate(gd.mean(i), i=np.array([1, 2, 2], np.int32)) == pytest.approx(5 / 3)


def test_nodes_are_immutable():
    x = gd.input("x", (3,), "float64")
    y = x * 2.0
    for attr, value in [("op", gd.REGISTRY["add"]), ("inputs", (x, x)), ("shape", (4,)),
                        ("dtype", np.dtype("float32")), ("attrs", {}), ("id", 0)]:
        with pytest.raises(AttributeError):
            setattr(y, attr, value)
    s = gd.sum(x, 0)
    with pytest.raises(TypeError):
        s.attrs["axes"] = (1,)
    assert s.attrs["axes"] == (0,)
    assert y.op.name == "mul" and y.shape == (3,)
    y.name = "twice"  # the one mutable field: a naming hint
    assert y.name == "twice"


def test_bool_of_a_node_raises():
    x = gd.input("x", (), "float64")
    with pytest.raises(TypeError, match="gd.where"):
        bool(x > 0)
    with pytest.raises(TypeError):
        if x:
            pass


def test_equality_keeps_identity_meaning():
    x = gd.input("x", (), "float64")
    assert (x == x) is True  # noqa: PLR0124 - identity, not an elementwise comparison
    assert (x == x * 1.0) is False
    assert {x: 1}[x] == 1


def test_to_networkx_has_nodes_and_edges():
    x = gd.input("x", (2,), "float64")
    w = gd.input("w", (2,), "float64")
    y = gd.sum(x * w + x)
    g = gd.to_networkx(y)
    order = gd.topological_order([y])
    assert set(g.nodes) == {n.id for n in order}
    assert g.number_of_nodes() == len(order) == 5
    prod, total = x * w, x * w + x
    assert g.has_edge(x.id, prod.id) and g.has_edge(w.id, prod.id)
    assert g.has_edge(x.id, total.id) and g.has_edge(prod.id, total.id)
    assert g.has_edge(total.id, y.id)
    assert g.number_of_edges() == 5
    assert g.nodes[prod.id]["op"] == "mul"
    assert g.nodes[x.id]["name"] == "x"
    assert g.nodes[y.id]["shape"] == ()
    assert g.edges[w.id, prod.id]["position"] == 1
    import networkx as nx

    assert nx.is_directed_acyclic_graph(g)
    assert list(nx.topological_sort(g))[-1] == y.id


def test_topological_order_puts_inputs_first_and_visits_shared_nodes_once():
    x = gd.input("x", (), "float64")
    a = gd.exp(x)
    y = a * a + a
    order = gd.topological_order([y])
    position = {id(n): k for k, n in enumerate(order)}
    assert len(order) == len(position)
    for node in order:
        for inp in node.inputs:
            assert position[id(inp)] < position[id(node)]
    assert sum(n is a for n in order) == 1


@contextlib.contextmanager
def low_recursion_limit(headroom=100):
    """Python's recursion limit set just above the current stack depth."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + headroom)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def test_deep_chain_needs_no_recursion():
    depth = 20_000
    x = gd.input("x", (), "float64")
    y = x
    for _ in range(depth):
        y = y * 1.00001
    with low_recursion_limit():  # far below the chain's depth: recursion would fail
        order = gd.topological_order([y])
        value = gd.evaluate(y, x=1.0)
        graph = gd.to_networkx(y)
    assert len(order) == depth + 2  # the chain, x and the shared constant
    assert order[0] is x and order[-1] is y
    assert value == pytest.approx(1.00001**depth)
    assert graph.number_of_nodes() == depth + 2


def test_grad_of_deep_chain_needs_no_recursion():
    depth = 3_000  # three times Python's default recursion limit
    x = gd.input("x", (), "float64")
    y = x
    for _ in range(depth):
        y = gd.sqrt(y * y + 1.0)  # y_k = sqrt(x² + k)
    with low_recursion_limit():
        g = gd.grad(y, x)
        value = gd.evaluate(g, x=2.0)
    assert value == pytest.approx(2.0 / np.sqrt(4.0 + depth))
