"""Naming a node at declaration: `node.named(name)` (issue 13, item 3)."""

from __future__ import annotations

import pytest

import graphdl as gd

from .helpers import NEURON_VALUES


def inputs(dtype="float64"):
    return [gd.input(name, (), dtype) for name in NEURON_VALUES]


def test_named_returns_the_node_and_the_narration_says_df_dw0():
    w0, x0, w1, x1, w2 = inputs()
    z = w0 * x0 + w1 * x1 + w2
    f = gd.sigmoid(z).named("f")
    assert f is gd.sigmoid(z) and f.name == "f"  # the composite's own name "sigmoid" replaced
    text = str(gd.explain(f, NEURON_VALUES))
    assert "∂f/∂w0 = -0.1966" in text and "sigmoid" not in text.split("Closed forms")[0]


def test_a_user_name_shows_in_generated_code_and_messages():
    x = gd.input("x", (3,), "float64")
    h = gd.exp(x).named("hidden")
    fn = gd.compile(h)
    assert "hidden = numpy.exp(x)" in fn.source
    assert "'hidden'" in repr(h)


def test_rebuilding_a_composite_keeps_the_users_name():
    """Drawings find composites by calling them again on candidate inputs; the rebuilt node
    is the user's node, and its name stays the user's."""
    (x, *_) = inputs()
    s = gd.sigmoid(x).named("s")
    assert gd.sigmoid(x) is s and s.name == "s"


def test_naming_again_with_the_same_name_is_a_no_op():
    """A notebook cell or a model function run twice declares the same node twice."""
    (x, *_) = inputs()
    first = (x * 2).named("double")
    assert (x * 2).named("double") is first and first.name == "double"


def test_a_second_name_for_the_same_expression_is_refused():
    """Identical expressions are one node: a second name would silently rename the first."""
    (x, *_) = inputs()
    a = (x + 1).named("a")
    with pytest.raises(gd.GraphError, match=r"already named 'a'.*naming it 'b' would rename"):
        (x + 1).named("b")
    assert a.name == "a"


def test_an_input_keeps_the_name_it_is_fed_by():
    (x, *_) = inputs()
    assert x.named("w0") is x
    with pytest.raises(gd.GraphError, match=r"'w0' is an input.*gd.input\('weight'"):
        x.named("weight")


def test_a_constant_takes_no_name():
    with pytest.raises(gd.GraphError, match="constant 2.0 .* takes no name"):
        gd.constant(2.0).named("two")


@pytest.mark.parametrize("bad", ["", None, 3])
def test_a_name_must_be_a_non_empty_string(bad):
    (x, *_) = inputs()
    with pytest.raises(gd.GraphError, match="non-empty string"):
        (x * 3).named(bad)
