"""User errors are reported early, with messages that name the user's variables."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl import GraphError, InputError


def test_error_classes():
    assert issubclass(GraphError, ValueError) and issubclass(InputError, ValueError)


def test_matmul_inner_dimension_mismatch_names_both_inputs():
    a = gd.input("activations", (8, 3))
    w = gd.input("weights", (4, 5))
    with pytest.raises(GraphError) as err:
        a @ w
    message = str(err.value)
    assert "'activations'" in message and "'weights'" in message
    assert "(8, 3)" in message and "(4, 5)" in message
    with pytest.raises(GraphError, match="weights"):
        gd.matmul(gd.input("v", (5,)), w)
    with pytest.raises(GraphError, match="batch"):
        gd.input("A", (2, 3, 4)) @ gd.input("B", (3, 4, 5))


def test_matmul_of_a_scalar_is_refused():
    with pytest.raises(GraphError, match="'s'.*scalar"):
        gd.input("s", ()) @ gd.input("m", (2, 2))


def test_non_broadcastable_add_names_both_inputs():
    x = gd.input("features", (4, 3))
    b = gd.input("bias", (4,))
    with pytest.raises(GraphError) as err:
        x + b
    message = str(err.value)
    assert "'features'" in message and "'bias'" in message
    assert "(4, 3)" in message and "(4,)" in message
    assert "add" in message
    with pytest.raises(GraphError, match="'bias'"):
        gd.maximum(x, b)


def test_bad_reshape_names_the_input():
    x = gd.input("pixels", (4, 6))
    with pytest.raises(GraphError, match=r"'pixels'.*\(4, 6\).*24 elements"):
        gd.reshape(x, (5, 5))
    with pytest.raises(GraphError, match="'pixels'"):
        gd.reshape(x, (7, -1))
    with pytest.raises(GraphError, match="one -1"):
        gd.reshape(x, (-1, -1))


def test_other_shape_errors_name_the_input():
    x = gd.input("grid", (2, 3))
    with pytest.raises(GraphError, match="'grid'"):
        gd.squeeze(x, 0)
    with pytest.raises(GraphError, match="out of range"):
        gd.sum(x, axis=2)
    with pytest.raises(GraphError, match="'grid'"):
        gd.broadcast_to(x, (2, 4))
    with pytest.raises(GraphError, match="'grid'"):
        gd.concatenate([x, gd.input("other", (2, 2))], axis=0)
    with pytest.raises(GraphError, match="'grid'"):
        gd.transpose(x, (0, 0))
    with pytest.raises(GraphError, match="out of range"):
        gd.transpose(x, (0, 2))
    with pytest.raises(GraphError, match="out of range"):
        x[5]
    with pytest.raises(GraphError, match="must be integers"):
        gd.take(x, gd.constant([0.5]))


def test_grad_of_a_non_scalar():
    x = gd.input("x", (3,), "float64")
    with pytest.raises(GraphError, match=r"shape \(3,\).*scalar.*gd.sum or gd.mean"):
        gd.grad(x * 2.0, x)
    with pytest.raises(GraphError, match="graph node"):
        gd.grad(3.0, x)


def test_grad_of_an_integer_output():
    i = gd.input("count", (), "int32")
    with pytest.raises(GraphError, match="floating point"):
        gd.grad(i * 2, i)


def test_grad_wrt_a_non_node():
    x = gd.input("x", (), "float64")
    with pytest.raises(GraphError, match=r"wrt\[1\].*not a graph node"):
        gd.grad(x * x, [x, np.ones(3)])
    with pytest.raises(GraphError, match="not a graph node"):
        gd.grad(x * x, "x")


def test_grad_wrt_an_integer_input_names_it():
    x = gd.input("x", (3,), "float64")
    labels = gd.input("labels", (3,), "int64")
    y = gd.sum(x * labels)
    with pytest.raises(GraphError, match="'labels'.*int64"):
        gd.grad(y, [x, labels])


def test_evaluate_with_a_missing_input_names_it():
    x, w = gd.input("x", (2,), "float64"), gd.input("w", (2,), "float64")
    with pytest.raises(InputError, match="missing input 'w'"):
        gd.evaluate(x * w, x=np.ones(2))


def test_evaluate_with_an_unknown_name_names_it():
    x = gd.input("x", (2,), "float64")
    with pytest.raises(InputError, match="unknown input 'xx'.*'x'"):
        gd.evaluate(x * 2.0, x=np.ones(2), xx=np.ones(2))


def test_evaluate_with_a_wrong_shape_names_the_input():
    x = gd.input("images", (None, 3), "float64")
    with pytest.raises(InputError, match=r"'images'.*\(\?, 3\).*\(4, 2\)"):
        gd.evaluate(x * 2.0, images=np.ones((4, 2)))
    with pytest.raises(InputError, match="'images'"):
        gd.evaluate(x * 2.0, images=np.ones(3))
    # Any size fits the None dimension.
    assert gd.evaluate(x * 2.0, images=np.ones((5, 3))).shape == (5, 3)


def test_a_ragged_list_names_the_input_and_the_expected_shape():
    """NumPy's own message ('setting an array element with a sequence') named no input."""
    x = gd.input("rows", (None, 3), "float64")
    ragged = [[1.0, 2.0, 3.0], [4.0, 5.0]]
    expected = r"input 'rows' expects an array of shape \(\?, 3\), got a ragged nested sequence"
    with pytest.raises(InputError, match=expected):
        gd.evaluate(x * 2.0, rows=ragged)
    with pytest.raises(InputError, match=expected):
        gd.compile(x * 2.0)(rows=ragged)
    with pytest.raises(InputError, match="'labels'.*ragged"):
        gd.evaluate(gd.input("labels", (2,), "int64") * 2, labels=[1, [2]])


def test_evaluate_refuses_floats_into_an_integer_input():
    i = gd.input("labels", (3,), "int64")
    with pytest.raises(InputError, match="'labels'.*floating"):
        gd.evaluate(i * 2, labels=np.array([1.0, 2.0, 3.0]))
    with pytest.raises(InputError, match="'labels'"):
        gd.evaluate(i * 2, labels=[1.5, 2.0, 3.0])
    np.testing.assert_array_equal(gd.evaluate(i * 2, labels=[1, 2, 3]), [2, 4, 6])
    with pytest.raises(InputError, match="'labels'"):
        gd.evaluate(i * 2, labels=np.array(["a", "b", "c"]))


def test_evaluate_casts_float64_into_float32_and_accepts_python_numbers():
    x = gd.input("x", (), "float32")
    v = gd.input("v", (2,), "float32")
    out = gd.evaluate(x * 2.0, x=np.float64(1.5))
    assert out.dtype == np.float32 and out == 3.0
    assert gd.evaluate(x * 2.0, x=3).dtype == np.float32
    assert gd.evaluate(x * 2.0, {"x": 0.25}) == 0.5
    res = gd.evaluate(v + 1.0, v=np.array([1.0, 2.0], np.float64))
    assert res.dtype == np.float32
    np.testing.assert_array_equal(res, [2.0, 3.0])
    np.testing.assert_array_equal(gd.evaluate(v * 1.0, v=[True, False]), [1.0, 0.0])


def test_evaluate_refuses_two_inputs_with_one_name():
    a = gd.input("x", (2,), "float64")
    b = gd.input("x", (3,), "float64")
    with pytest.raises(GraphError, match="two different inputs are named 'x'"):
        gd.evaluate([a, b], x=np.ones(2))


def test_exp_of_an_integer_input_names_it_and_suggests_a_cast():
    i = gd.input("counts", (3,), "int32")
    with pytest.raises(GraphError, match="exp.*'counts'.*int32.*gd.cast"):
        gd.exp(i)
    R = gd.REGISTRY
    for fn in (gd.log, gd.sqrt, gd.reciprocal, R["sigmoid"], R["tanh"], R["softplus"]):
        with pytest.raises(GraphError, match="'counts'.*int32"):
            fn(i)
    for composite in (gd.sigmoid, gd.tanh, gd.softmax):  # refused at their own entry
        with pytest.raises(GraphError, match=f"{composite.__name__} expects .*'counts'.*int32"):
            composite(i)
    assert gd.exp(gd.cast(i, "float32")).dtype == np.float32


def test_declaration_errors():
    with pytest.raises(GraphError, match="non-empty string"):
        gd.input("", (3,))
    with pytest.raises(GraphError, match="'x'.*shape"):
        gd.input("x", (3, -1))
    with pytest.raises(GraphError, match="'x'.*dtype"):
        gd.input("x", (3,), "complex128")
    with pytest.raises(GraphError, match="where.*bool"):
        gd.where(gd.input("c", (3,), "float32"), 1.0, 0.0)
    with pytest.raises(GraphError, match="one_hot.*integers"):
        gd.one_hot(gd.input("x", (3,)), 4)


def test_loss_label_shape_errors_name_the_inputs():
    scores = gd.input("scores", (5, 3), "float64")
    with pytest.raises(GraphError, match="'labels'.*'scores'"):
        gd.softmax_cross_entropy(scores, gd.input("labels", (5, 3), "int64"))
    with pytest.raises(GraphError, match="hinge_loss"):
        gd.hinge_loss(scores, gd.input("onehot", (5, 4), "float64"))


def test_check_finite_blames_the_first_bad_node():
    x = gd.input("x", (2,), "float64")
    y = gd.sum(gd.log(x) * 2.0)
    with pytest.raises(FloatingPointError, match="log"), np.errstate(invalid="ignore"):
        gd.evaluate(y, x=np.array([1.0, -1.0]), check_finite=True)
    assert gd.evaluate(y, x=np.array([1.0, 1.0]), check_finite=True) == 0.0


SUB_BOOL = (r"sub: 'a' and 'b' are bool, and NumPy has no boolean sub; for exclusive or use "
            r"gd.not_equal\(a, b\)")
POW_INT64 = (r"pow: the exponent of 'x', 100000000000000000000, does not fit in its dtype int64 "
             r".* write it as a float: 1e\+20")


@pytest.mark.parametrize("build, message", [
    (lambda a, b, x: a - b, SUB_BOOL),
    (lambda a, b, x: -a, r"neg: 'a' is bool, and NumPy has no boolean neg; for logical not"),
    (lambda a, b, x: x ** 10**20, POW_INT64),
    (lambda a, b, x: gd.cast(x, "int8") ** 300, r"exponent of .*, 300, does not fit .* int8"),
])
def test_operators_numpy_lacks_are_refused_at_declaration(build, message):
    """Accepted at declaration, these failed inside the compiled code with NumPy's TypeError
    or an OverflowError."""
    a, b = gd.input("a", (2,), "bool"), gd.input("b", (2,), "bool")
    x = gd.input("x", (2,), "int64")
    with pytest.raises(GraphError, match=message):
        build(a, b, x)
