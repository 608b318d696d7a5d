"""The NumPy backend: compiled results, caching, saved modules, safety of generated source."""

from __future__ import annotations

import ast

import numpy as np
import pytest

import graphdl as gd
from graphdl import codegen
from graphdl.codegen.numpy_backend import helpers as numpy_helpers
from graphdl.codegen.python_module import CAST_INPUT
from graphdl.errors import GraphError, InputError
from graphdl.runtime import _sigmoid as stable_sigmoid

from .helpers import assert_saved_module_runs_alone


def mlp(batch=None):
    x = gd.input("x", (batch, 6))
    y = gd.input("y", (batch,), "int64")
    W1, b1 = gd.input("W1", (6, 5)), gd.input("b1", (5,))
    W2, b2 = gd.input("W2", (5, 3)), gd.input("b2", (3,))
    loss = gd.softmax_cross_entropy(gd.relu(x @ W1 + b1) @ W2 + b2, y)
    return loss, [W1, b1, W2, b2]


def mlp_feeds(rng, batch=4):
    return {
        "x": rng.standard_normal((batch, 6)).astype(np.float32),
        "y": rng.integers(0, 3, batch),
        "W1": rng.standard_normal((6, 5)).astype(np.float32),
        "b1": rng.standard_normal(5).astype(np.float32),
        "W2": rng.standard_normal((5, 3)).astype(np.float32),
        "b2": rng.standard_normal(3).astype(np.float32),
    }


def test_compiled_matches_interpreter_with_unknown_batch(rng):
    loss, params = mlp()
    outs = [loss, *gd.grad(loss, params)]
    fn = gd.compile(outs)
    for batch in (4, 7):
        feeds = mlp_feeds(rng, batch)
        for got, want in zip(fn(feeds), gd.evaluate(outs, feeds)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
            assert got.dtype == want.dtype and got.shape == want.shape


def test_call_forms_and_single_output():
    a = gd.input("a", (), "float64")
    y = gd.reciprocal(1 + gd.exp(-(a * 2.0 + 1)))
    single = gd.compile(y)
    assert isinstance(single(a=0.5), np.ndarray)
    assert single(a=0.5) == pytest.approx(1 / (1 + np.exp(-2.0)))
    both = gd.compile([y, *gd.grad(y, [a])])
    assert [float(v) for v in both(a=0.5)] == [float(v) for v in both({"a": 0.5})]


STRUCTURE_CASES = {
    "slice_concat": lambda x: gd.concatenate([x[:, 1:3], x[:, :1] * 2.0], axis=1),
    "take": lambda x: gd.take(x, gd.constant(np.array([2, 0, 2])), axis=1),
    "max_where": lambda x: gd.where(x > 0.1, x, gd.max(x, axis=0, keepdims=True)),
    "reshape_transpose": lambda x: gd.transpose(gd.reshape(x, (3, 4)), (1, 0)) * 1.5,
    "broadcast_mean": lambda x: x - gd.mean(x, axis=1, keepdims=True),
    "matmul_1d": lambda x: x @ gd.constant(np.arange(4, dtype=np.float32)),
    "minimum_sqrt": lambda x: gd.sqrt(gd.minimum(x * x, 2.0) + 1.0),
    "tanh_sigmoid": lambda x: gd.tanh(x) * gd.sigmoid(x),
    "softmax": lambda x: gd.softmax(x, axis=0),
}


@pytest.mark.parametrize("name", sorted(STRUCTURE_CASES))
def test_structured_ops_and_their_gradients_compile(name, rng):
    x = gd.input("x", (3, 4), "float64")
    out = STRUCTURE_CASES[name](x)
    y = gd.sum(out * gd.constant(rng.standard_normal(out.shape)))
    outs = [out, *gd.grad(y, [x])]
    feeds = {"x": rng.standard_normal((3, 4))}
    for got, want in zip(gd.compile(outs)(feeds), gd.evaluate(outs, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_optimizer_is_value_exact_with_nan_and_inf(rng):
    x = gd.input("x", (5,))
    y = gd.sum(gd.exp(x * 1.0 + 0.0) * gd.log(x) - (-x).__neg__() / 1.0) + gd.max(x ** 1)
    outs = [y, *gd.grad(y, [x])]
    feeds = {"x": np.array([0.5, -1.0, np.inf, np.nan, 0.0], dtype=np.float32)}
    with np.errstate(all="ignore"):
        fast = gd.compile(outs, optimize=True)(feeds)
        plain = gd.compile(outs, optimize=False)(feeds)
    for a, b in zip(fast, plain):
        assert np.array_equal(a, b, equal_nan=True)


def test_optimizer_passes_are_named_and_fire(rng):
    x = gd.input("x", (3,))
    fn = gd.compile(gd.sum(x * 1.0 + gd.constant(np.float32(2.0)) * 3.0))
    fn(x=np.ones(3))
    names = [r.name for r in fn.reports]
    assert names[-2:] == ["fold_constants + simplify", "eliminate_dead_code"]
    fired = {rule for r in fn.reports for rule in r.fired}
    assert {"fold", "mul_by_one"} <= fired


@pytest.mark.parametrize("build", [
    lambda x: gd.reciprocal(1 + gd.exp(-x)),  # the lecture's sigmoid circuit
    gd.sigmoid,
    gd.tanh,
    lambda x: gd.log(1 + gd.exp(x)),  # softplus
    lambda x: gd.log(gd.sigmoid(x)),
    lambda x: gd.log_softmax(gd.concatenate([x, -x]), axis=0),
])
def test_stabilize_removes_overflow_in_float32(build):
    def values_and_grads(x):
        out = build(x)
        return [out, *gd.grad(gd.sum(out), [x])]

    points = np.array([-100.0, 100.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        got = gd.compile(values_and_grads(gd.input("x", (2,))))(x=points)
    # float64 does not overflow at ±100: the interpreter there is the exact answer
    exact = gd.evaluate(values_and_grads(gd.input("x", (2,), "float64")), x=points)
    for g, e in zip(got, exact):
        assert g.dtype == np.float32 and np.all(np.isfinite(g))
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_without_stabilize_the_sigmoid_circuit_gradient_is_nan():
    x = gd.input("x", ())
    y = gd.reciprocal(1 + gd.exp(-x))
    (dx,) = gd.grad(y, [x])
    with np.errstate(all="ignore"):
        assert np.isnan(gd.compile(dx, stabilize=False)(x=-100.0))
        assert 0 < gd.compile(dx)(x=-100.0) < 1e-40  # σ'(-100) ≈ 3.7e-44, a float32 denormal


def test_stabilized_values_are_accurate():
    x = gd.input("x", (4,), "float64")
    s = gd.sigmoid(x)
    y = gd.sum(s)
    fn = gd.compile([s, *gd.grad(y, [x])])
    v = np.array([-30.0, -1.0, 0.5, 30.0])
    sig = 1 / (1 + np.exp(-v))
    got_s, got_d = fn(x=v)
    np.testing.assert_allclose(got_s, sig, rtol=1e-12, atol=1e-300)
    # σ(1-σ) keeps relative precision in the left tail; in the right one 1-σ cancels (as PyTorch)
    np.testing.assert_allclose(got_d, sig * (1 - sig), rtol=1e-9, atol=1e-15)


def test_stabilize_quotient_by_a_sigmoid_it_divides_twice():
    """The second derivative of x / σ(x) holds products with σ(x) more often in the denominator
    than in the numerator: cancelling one pair must leave the others (found by the fuzzer)."""
    x = gd.input("x", (1,), "float64")
    (g,) = gd.grad(gd.sum(x / gd.sigmoid(x)), [x])
    (h,) = gd.grad(gd.sum(g), [x])
    v = np.array([-0.46812540601037744])

    def first(t):  # d/dx x/σ(x) = (1 - x·(1 - σ)) / σ
        s = 1 / (1 + np.exp(-t))
        return (1 - t * (1 - s)) / s

    want = (first(v + 1e-6) - first(v - 1e-6)) / 2e-6
    for got in (gd.evaluate(h, x=v), gd.compile(h)(x=v), gd.compile(h, optimize=False)(x=v)):
        np.testing.assert_allclose(got, want, rtol=1e-7)


def test_compile_cache_and_specialization_per_shape(rng):
    loss, _ = mlp()
    fn = gd.compile(loss)
    assert gd.compile(loss) is fn
    fn(mlp_feeds(rng, 4))
    fn(mlp_feeds(rng, 4))
    assert len(fn._programs) == 1
    fn(mlp_feeds(rng, 9))
    assert len(fn._programs) == 2


def test_returned_arrays_are_not_overwritten_by_later_calls(rng):
    x = gd.input("x", (3,))
    fn = gd.compile([gd.exp(x) * 2.0, x + 1.0])
    first = fn(x=np.zeros(3))
    kept = [a.copy() for a in first]
    fn(x=np.ones(3))
    for a, b in zip(first, kept):
        assert np.array_equal(a, b)


def test_constant_outputs_are_copies():
    x = gd.input("x", (2,))
    fn = gd.compile([gd.constant(np.array([1.0, 2.0], dtype=np.float32)), x])
    c, _ = fn(x=np.zeros(2))
    c[0] = 99.0
    assert fn(x=np.zeros(2))[0][0] == 1.0


def test_saved_module_runs_alone_with_numpy_only(tmp_path, rng):
    loss, params = mlp(batch=4)
    outs = [loss, *gd.grad(loss, params)]
    assert_saved_module_runs_alone(gd.compile(outs), mlp_feeds(rng), tmp_path)


HOSTILE = [
    "x; import os",
    "__import__('os').system('echo pwned')",
    "a\nimport os\nb",
    "def",
    "1abc",
    "numpy",
    "run",
    "W1\u2028os.system('x')",
    "",
]


def test_hostile_names_never_become_code(rng):
    names = [n for n in HOSTILE if n]
    inputs = [gd.input(n, (2,)) for n in names]
    total = inputs[0]
    for node in inputs[1:]:
        total = total + node
    y = gd.sum(total * total)
    grads = gd.grad(y, inputs)
    fn = gd.compile([y, *grads])
    tree = ast.parse(fn.source)
    cast = [n for n in tree.body if getattr(n, "name", None) == "_cast_input"]
    assert ast.unparse(cast[0]) == ast.unparse(ast.parse(CAST_INPUT))  # graphdl's own text
    tree.body.remove(cast[0])
    imports = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imports == ["numpy"]
    identifiers = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert "os" not in identifiers and "__import__" not in identifiers
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert all(c.startswith("numpy.") or c == "_cast_input" for c in calls), calls
    feeds = {n: rng.standard_normal(2).astype(np.float32) for n in names}
    for got, want in zip(fn(feeds), gd.evaluate([y, *grads], feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    with pytest.raises(GraphError):
        gd.input("", (2,))


def test_generated_names_follow_user_names():
    loss, params = mlp(batch=4)
    fn = gd.compile([loss, *gd.grad(loss, params)])
    src = fn.source
    for name in ("dW1", "db1", "dW2", "db2", "cross_entropy"):
        assert name in src
    assert f"def run({', '.join(fn.input_names)}):" in src
    assert sorted(fn.input_names) == ["W1", "W2", "b1", "b2", "x", "y"]
    run = src[src.index("def run("):]  # the helpers above it are not statements of the graph
    body = [line for line in run.splitlines() if line.startswith("    ") and "=" in line]
    assert body and all("# node" in line for line in body)


def test_elementwise_chains_fuse_into_one_statement():
    a = gd.input("a", (8,))
    y = gd.reciprocal(1 + gd.exp(-(a * 2.0 + 1)))
    fn = gd.compile(y, stabilize=False)
    run = fn.source[fn.source.index("def run("):]
    statements = [line for line in run.splitlines()
                  if line.startswith("    ") and "input 'a' as float32" not in line]
    assert len(statements) == 2  # one fused statement and the return (after binding `a`)
    assert "numpy.exp(" in statements[0]


def test_debug_names_the_first_node_producing_nan():
    x = gd.input("x", (2,))
    bad = gd.log(x)
    bad.name = "logx"
    fn = gd.compile(gd.sum(gd.exp(bad) * 2.0), debug=True)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="logx"):
        fn(x=np.array([1.0, -1.0]))
    assert fn(x=np.array([1.0, 2.0])) == pytest.approx(6.0)


def test_call_time_input_errors():
    x = gd.input("x", (None, 3))
    n = gd.input("n", (2,), "int32")
    fn = gd.compile(gd.sum(x) + gd.cast(gd.sum(n), "float32"))
    ok = {"x": np.zeros((2, 3)), "n": np.array([1, 2])}
    assert fn(ok) == 3.0  # float64 into float32 is cast; int64 into int32 too
    with pytest.raises(InputError, match="missing input 'n'"):
        fn(x=np.zeros((2, 3)))
    with pytest.raises(InputError, match="unknown input 'z'"):
        fn(z=1, **ok)
    with pytest.raises(InputError, match=r"input 'x' expects shape \(\?, 3\)"):
        fn({**ok, "x": np.zeros((2, 4))})
    with pytest.raises(InputError, match="input 'n' is int32"):
        fn({**ok, "n": np.array([1.5, 2.0])})
    assert fn(x=[[1.0, 2.0, 3.0]], n=[0, 0]) == 6.0  # Python numbers are fine


def test_updates_apply_sgd_in_place(rng):
    loss, params = mlp()
    grads = gd.grad(loss, params)
    lr = 0.5
    step = gd.compile(loss, updates={p: p - lr * g for p, g in zip(params, grads)})
    feeds = mlp_feeds(rng)
    before = {p.name: feeds[p.name].copy() for p in params}
    expected = gd.evaluate(grads, feeds)
    step(feeds)
    for p, g in zip(params, expected):
        np.testing.assert_allclose(feeds[p.name], before[p.name] - lr * g, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="updated in place"):
        step({**feeds, "W1": feeds["W1"].astype(np.float64)})
    with pytest.raises(GraphError, match="update of 'W1'"):
        gd.compile(loss, updates={params[0]: params[1]})


def test_deep_graph_compiles_without_recursion_limit():
    x = gd.input("x", (2,), "float64")
    h = x
    for _ in range(5000):  # five times Python's default recursion limit
        h = h * 0.9 + 0.01
    (dx,) = gd.grad(gd.sum(gd.exp(h)), [x])
    h_value, dx_value = gd.compile([h, dx])(x=np.array([0.3, -0.2]))
    want_h = gd.evaluate(h, x=np.array([0.3, -0.2]))
    np.testing.assert_allclose(h_value, want_h, rtol=1e-12)
    np.testing.assert_allclose(dx_value, np.exp(want_h) * 0.9 ** 5000, rtol=1e-9)


def test_generated_sigmoid_helper_is_the_reference_implementation():
    namespace = {"numpy": np}
    exec(numpy_helpers.HELPERS["_sigmoid"], namespace)  # noqa: S102 - our own generated code
    for dtype in (np.float32, np.float64):
        v = np.linspace(-120, 120, 2001).astype(dtype)
        assert np.array_equal(namespace["_sigmoid"](v), stable_sigmoid(v))


def test_identity_user_op_never_lets_a_later_statement_overwrite_the_input():
    ident = gd.elementwise_op("ident", lambda a: a)
    x = gd.input("x", (3,), "float64")
    fn = gd.compile(gd.exp(ident(x)) * 2.0)
    fed = np.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(fn(x=fed), 2 * np.exp([0.0, 1.0, 2.0]))
    assert np.array_equal(fed, [0.0, 1.0, 2.0])


def test_where_helper_is_numpy_where_bit_for_bit(rng):
    namespace = {"numpy": np}
    exec(numpy_helpers.HELPERS["_where"], namespace)  # noqa: S102 - the backend's own helper
    where = namespace["_where"]
    for dtype in (np.float16, np.float32, np.float64):
        a = rng.standard_normal((5, 7)).astype(dtype)
        a.flat[:5] = [np.nan, np.inf, -np.inf, -0.0, 0.0]
        c = rng.random((5, 7)) < 0.5
        ints = rng.integers(-3, 3, (5, 7))
        for args in ((c, a, 0.0), (c, a, 0), (c.T, a.T, 0.0), (c, a, -0.0), (c, a, 1.5),
                     (c[:, :1], a, 0.0), (c, 2.0, a), (c.astype(int), a, 0.0),
                     (c, ints, 0.0), (c, a, np.float32(0))):
            got, want = where(*args), np.where(*args)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert got.tobytes() == want.tobytes()
            if isinstance(args[1], np.ndarray) and args[1].shape == want.shape \
                    and args[1].dtype == want.dtype:  # in place, as generated code reuses a
                inplace = args[1].copy()
                assert where(args[0], inplace, args[2], out=inplace) is inplace
                assert inplace.tobytes() == want.tobytes()


def test_relu_runs_in_place_and_its_mask_reads_the_output(rng):
    """relu's pullback masks with relu(a) > 0 (the same cells as a > 0, NaN included), so the
    pre-activation is dead after the forward pass: bias add and relu overwrite one buffer."""
    x, w, b = gd.input("x", (4, 3)), gd.input("w", (3, 5)), gd.input("b", (5,))
    h = gd.relu(x @ w + b)
    loss = gd.sum(h * h)
    grads = gd.grad(loss, [x, w, b])
    fn = gd.compile([h, *grads])
    assert "numpy.maximum(matmul, 0, out=matmul)" in fn.source
    feeds = {"x": rng.standard_normal((4, 3)).astype(np.float32),
             "w": rng.standard_normal((3, 5)).astype(np.float32),
             "b": np.array([0.0, -0.0, np.nan, 1.0, -1.0], np.float32)}
    feeds["x"][0] = 0.0  # pre-activations exactly b: zeros of both signs, NaN
    for got, want in zip(fn(feeds), gd.evaluate([h, *grads], feeds), strict=True):
        np.testing.assert_array_equal(got, want)


def test_compile_cache_is_bounded():
    x = gd.input("x", (2,))
    first = gd.compile(x * 1.5)
    for k in range(codegen.CACHE_SIZE):
        gd.compile(x + float(k))
    assert len(codegen._cache) <= codegen.CACHE_SIZE
    assert gd.compile(x * 1.5) is not first  # evicted, so compiled anew


def test_a_sum_of_a_fused_product_is_one_einsum(rng):
    """sum(x * y) and sum_to(x * y) contract in numpy.einsum, with no product array, factors
    broadcast as they come; a product whose factors are both 1 along a summed axis (each
    term counted 5 times) and integer sums (numpy.sum widens them) keep numpy.sum."""
    x, y = gd.input("x", (4, 3, 5), "float64"), gd.input("y", (4, 1, 5), "float64")
    v, k = gd.input("v", (5,), "float64"), gd.input("k", (4, 3), "int32")
    s = gd.expand_dims(gd.sum(x, axis=(1, 2)), 1)  # (4, 1)
    outputs = [
        gd.sum(x * y, axis=2),  # (4, 3): a batch of dot products
        gd.sum(x * v, axis=(0, 2), keepdims=True),  # (1, 3, 1), v of lower rank
        gd.sum(gd.broadcast_to(gd.expand_dims(v, 0), (4, 5)) * gd.broadcast_to(s, (4, 5)),
               axis=0),  # (5,): an outer product's column sums
        gd.sum(gd.broadcast_to(s * 3.0, (4, 5)) * gd.broadcast_to(s * 2.0, (4, 5)), axis=1),
        gd.sum(k * k, axis=1),
        gd.grad(gd.sum(gd.sum(x * gd.exp(y), axis=2) ** 2), [y])[0],  # a sum_to of a product
    ]
    fed = {"x": rng.standard_normal((4, 3, 5)), "y": rng.standard_normal((4, 1, 5)),
           "v": rng.standard_normal(5), "k": rng.integers(-50, 50, (4, 3)).astype(np.int32)}
    fn = gd.compile(outputs)
    run = fn.source[fn.source.index("def run("):].splitlines()
    einsums = [line.split(" = ")[1].split("  #")[0] for line in run if "numpy.einsum(" in line]
    assert einsums[:3] == ["numpy.einsum('abc,abc->ab', x, y)",
                           "numpy.einsum('abc,c->b', x, v).reshape((1, 3, 1))",
                           "numpy.einsum('ab,ab->b', v.reshape((1, 5)), expand_dims)"]
    assert len(einsums) == 5 and "numpy.einsum('abc,abc->ac', " in einsums[4]  # y's gradient
    want = gd.evaluate(outputs, fed)
    for got, expected in zip(fn(fed), want):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(fn(fed)[4], (fed["k"].astype(np.int64) ** 2).sum(axis=1))
