"""gd.draw: gates, folded constants, values and gradients on the wires, collapsing, checks."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import graphdl as gd
from graphdl.views.numbers import fmt

from .helpers import NEURON_VALUES, neuron

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")
VALUES = NEURON_VALUES


def labels(dot):
    """node name -> label text, and edge id -> label lines (value, gradient, ...)."""
    return dot.node_labels, dot.edge_labels


def test_the_sigmoid_neuron_reads_like_the_lecture_figure():
    f, inputs = neuron()
    dot = gd.draw(f, VALUES)
    nodes, edges = labels(dot)
    gates = sorted(v for k, v in nodes.items() if k.startswith("n") and v not in VALUES)
    assert gates == sorted(["*", "*", "+", "+", "*−1", "exp", "+1", "1/x"])
    assert len(nodes) == 5 + 8  # inputs and gates: no constant leaves
    # Every wire: the forward value (green, first) and the gradient (red, second), 2 decimals,
    # as the interpreter and gd.grad compute them.
    grads = gd.evaluate(gd.grad(f, inputs), VALUES)
    for x, g in zip(inputs, grads):
        (edge,) = [e for k, e in edges.items() if k.startswith(f"e{x.id}_")]
        assert edge == [fmt(VALUES[x.name]), fmt(g)]
    assert edges[f"eout{f.id}"] == ["0.73", "1.00"]
    assert [fmt(g) for g in grads] == ["-0.20", "0.39", "-0.39", "-0.59", "0.20"]
    assert 'color="#1a7f37">0.73' in dot.source and 'color="#cf222e">1.00' in dot.source


def test_digits_are_configurable_and_no_values_means_no_numbers():
    f, _ = neuron()
    assert "0.731" in gd.draw(f, VALUES, digits=3).source
    plain = gd.draw(f)
    assert "0.73" not in plain.source and "1/x" in plain.source


def test_negation_and_constant_operands_are_unary_gates():
    x = gd.input("x", (), "float64")
    y = (-x) * 3.0 - 2.0 + 1 / x
    nodes, _ = labels(gd.draw(y, {"x": 0.5}))
    assert {"*−1", "*3", "−2", "1/x", "+"} <= set(nodes.values())


def test_fan_out_wires_carry_each_consumers_share():
    x = gd.input("x", (), "float64")
    y = x * x + gd.exp(x)
    c = gd.draw(y, {"x": 0.3}).circuit
    shares = [c.wire_grad(g, k) for src, g, k, _ in c.wires() if src is x]
    assert len(shares) == 3  # twice into *, once into exp
    assert np.isclose(sum(shares), gd.evaluate(gd.grad(y, x), {"x": 0.3}))
    assert np.isclose(c.grad(x), 2 * 0.3 + np.exp(0.3))


def mlp():
    x = gd.input("x", (4, 3), "float64")
    w1 = gd.input("W1", (3, 5), "float64")
    b1 = gd.input("b1", (5,), "float64")
    w2 = gd.input("W2", (5, 3), "float64")
    labels_ = gd.input("labels", (4,), "int64")
    h = gd.relu(x @ w1 + b1)
    h.name = "h"
    loss = gd.softmax_cross_entropy(h @ w2, labels_)
    rng = np.random.default_rng(0)
    values = {"x": rng.standard_normal((4, 3)), "W1": rng.standard_normal((3, 5)),
              "b1": rng.standard_normal(5), "W2": rng.standard_normal((5, 3)),
              "labels": np.array([0, 2, 1, 2])}
    return loss, (x, w1, b1, w2), values


def test_tensor_wires_show_shape_and_summaries():
    loss, (_x, w1, _b1, _w2), values = mlp()
    dot = gd.draw(loss, values, collapse=["cross_entropy"])
    _, edges = labels(dot)
    (e,) = [v for k, v in edges.items() if k.startswith(f"e{w1.id}_")]
    g = gd.evaluate(gd.grad(loss, w1), values)
    text = " ".join(e)
    assert text.startswith("(3,5) μ=") and f"‖·‖={fmt(np.linalg.norm(g))}" in text
    assert f"μ={fmt(g.mean())}" in text.split("∇")[1]
    assert "softmax" in dot.source and "cross-entropy" in dot.source
    # collapsed: the loss is one gate fed by the logits and the labels
    (gate,) = [g for g in dot.circuit.gates if g.kind == "region"]
    assert [a.name for a in gate.region.args][1] == "labels"


def test_collapse_sigmoid_even_when_the_units_are_renamed():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    import lecture_two_layer as lecture

    forward, _, _ = lecture.build()
    feeds = {k: v for k, v in lecture.FEEDS.items() if k != "eta"}
    dot = gd.draw(forward[-1], feeds, collapse=["sigmoid"])
    regions = [g for g in dot.circuit.gates if g.kind == "region"]
    assert sorted(g.node.name for g in regions) == ["h1", "h2", "o1", "o2"]
    assert dot.source.count("σ(1−σ)") == 4 and "exp" not in dot.source
    # the collapsed gate's input wire carries the same gradient as the primitive circuit's
    full = gd.draw(forward[-1], feeds).circuit
    h1 = next(g for g in regions if g.node.name == "h1")
    assert np.isclose(dot.circuit.wire_grad(h1, 0), full.grad(h1.region.args[0]))


def test_collapse_a_layer_by_name_or_by_triple():
    loss, (x, w1, b1, _w2), values = mlp()
    dot = gd.draw(loss, values, collapse=["h", "cross_entropy"])
    layer = next(g for g in dot.circuit.gates if g.kind == "region" and g.label == "h")
    assert {a.name for a in layer.region.args} == {"x", "W1", "b1"}
    h = layer.node
    dot2 = gd.draw(loss, values, collapse=[("hidden layer", h, [x, w1, b1])])
    assert "hidden layer" in dot2.source
    with pytest.raises(gd.GraphError, match="no composite or node named"):
        gd.draw(loss, values, collapse=["nothing"])


def test_gradient_graphs_can_be_drawn():
    f, inputs = neuron()
    grads = gd.grad(f, inputs)
    dot = gd.draw(grads, VALUES)
    assert "dw0" in dot.source and "dx1" in dot.source
    assert fmt(gd.evaluate(grads[0], VALUES)) in dot.source


def test_big_graphs_group_layers_and_colour_vanishing_gradients():
    x = gd.input("x", (8,), "float64")
    h = x
    for k in range(12):
        w = gd.input(f"w{k}", (8,), "float64")
        h = gd.sigmoid(h * w + 0.5)
        h.name = f"layer{k}"
    y = gd.sum(h)
    rng = np.random.default_rng(1)
    values = {"x": rng.standard_normal(8), **{f"w{k}": rng.standard_normal(8) + 2
                                              for k in range(12)}}
    dot = gd.draw(y, values, color_by_grad=True)
    assert "cluster_" in dot.source and "legend" in dot.source
    _nodes, edges = labels(dot)
    unlabelled = [k for k, v in edges.items() if not v]
    assert unlabelled  # wires between unnamed gates carry no labels in a big graph
    colours = {e: c for c, e in re.findall(r'color="(#[0-9a-f]{6})".*id=(e\d+_\d+_\d+)',
                                           dot.source)}
    assert len(set(colours.values())) > 5
    first = f"e{x.id}_"
    assert any(k.startswith(first) for k in colours)


def test_check_grad_highlights_the_first_wrong_edge():
    x = gd.input("x", (), "float64")
    w = gd.input("w", (), "float64")
    square = gd.custom_op("square", lambda a: a * a,
                          lambda inputs, out, g: [g * inputs[0]])  # wrong: forgot the 2
    inner = x * w
    y = gd.exp(square(inner) + 1)
    result = gd.check_grad(y, {"x": 0.5, "w": 1.5})
    assert not result.ok and result.first.node.op.name == "square"
    report = result.report()
    assert report.count("✗") == 1 and "square" in report.splitlines()[0]
    dot = result.draw()
    bad = next(line for line in dot.source.splitlines() if "first wrong" in line)
    sq = result.first.node
    assert f"id=e{inner.id}_{sq.id}_0" in bad and "#d1008f" in bad
    assert dot.source.count("wrong gradient rule") == 1


@needs_dot
def test_render_svg_and_jupyter(tmp_path):
    f, _ = neuron()
    dot = gd.draw(f, VALUES, collapse=["sigmoid"])
    path = dot.render(outfile=tmp_path / "c.svg", cleanup=True)
    svg = (tmp_path / "c.svg").read_text()
    assert path.endswith("c.svg") and "<svg" in svg and "0.73" in svg and "σ" in svg
    assert "<svg" in dot._repr_svg_()
    assert "image/svg+xml" in dot._repr_mimebundle_()


def test_without_dot_the_source_is_there_and_render_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on PATH
    f, _ = neuron()
    dot = gd.draw(f, VALUES)
    assert "digraph" in dot.source
    with pytest.raises(gd.DotNotFound, match="apt-get install -y graphviz"):
        dot.render(outfile=tmp_path / "c.svg")
    assert dot._repr_svg_() is None
    assert "text/plain" in dot._repr_mimebundle_()


def mlp_784_256_10():
    x, y = gd.input("x", (None, 784)), gd.input("y", (None,), "int64")
    w1, b1 = gd.input("W1", (784, 256)), gd.input("b1", (256,))
    w2, b2 = gd.input("W2", (256, 10)), gd.input("b2", (10,))
    loss = gd.softmax_cross_entropy(gd.relu(x @ w1 + b1) @ w2 + b2, y)
    rng = np.random.default_rng(0)
    values = {"x": rng.standard_normal((4, 784)), "y": np.array([0, 3, 9, 1]),
              "W1": rng.standard_normal((784, 256)) * 0.05, "b1": np.zeros(256),
              "W2": rng.standard_normal((256, 10)) * 0.1, "b2": np.zeros(10)}
    return loss, values


def test_an_mlp_with_its_loss_draws_the_loss_as_one_gate_by_default():
    loss, values = mlp_784_256_10()
    dot = gd.draw(loss, values)
    gates = [g.label for g in dot.circuit.gates if g.kind != "input"]
    assert gates == ["@", "+", "relu", "@", "+", "softmax\ncross-entropy"]
    assert "rankdir=LR" in dot.source
    everything = gd.draw(loss, values, collapse=())
    assert len(everything.circuit.gates) >= len(dot.circuit.gates) + 10  # the loss inside


def test_deep_tensor_graphs_go_top_to_bottom_and_scalar_circuits_stay_left_to_right():
    h = gd.input("x", (2, 3), "float64")
    for k in range(6):
        h = gd.relu(h @ gd.input(f"W{k}", (3, 3), "float64"))
    assert "rankdir=TB" in gd.draw(gd.sum(h)).source
    f, _ = neuron()
    assert "rankdir=LR" in gd.draw(f, VALUES).source
    assert "rankdir=LR" in gd.draw(gd.sum(h), rankdir="LR").source


def test_the_legend_says_green_is_the_value_and_red_the_gradient():
    f, _ = neuron()
    source = gd.draw(f, VALUES).source
    assert '<font color="#1a7f37">green: the value on the wire</font>' in source
    assert "red: the gradient ∂f/∂wire flowing back" in source
    assert "green:" not in gd.draw(f).source  # no values, no numbers to explain
    loss, values = mlp_784_256_10()
    assert "μ=mean ‖·‖=norm" in gd.draw(loss, values).source


def test_labels_are_joined_to_their_own_wire():
    f, _ = neuron()
    dot = gd.draw(f, VALUES)
    labelled = [line for line in dot.source.splitlines() if "->" in line and "label=" in line]
    assert labelled and all("decorate=true" in line for line in labelled)


def test_a_kink_is_drawn_as_such_not_as_a_wrong_rule():
    x, w = gd.input("x", (1, 1, 4, 4), "float64"), gd.input("w", (1, 1, 2, 2), "float64")
    pooled = gd.max_pool2d(gd.relu(x), 2)
    xv = -np.ones((1, 1, 4, 4))
    xv[0, 0, 0, 0] = 1.0
    result = gd.check_grad(gd.sum(pooled * w), {"x": xv, "w": np.ones((1, 1, 2, 2))})
    source = result.draw().source
    (line,) = [s for s in source.splitlines() if "not differentiable here" in s]
    assert f"id=e{pooled.inputs[0].id}_{pooled.id}_0" in line and "tied maxima" in line
    assert "wrong gradient rule" not in source


def test_a_mean_over_an_unknown_batch_divides_by_n_not_nan():
    """The divisor of a mean whose size is known only at call time (batch None) drew as /nan."""
    dot = gd.draw(gd.mean(gd.input("x", (None, 3))))
    labels = [g.label for g in dot.circuit.gates if g.kind == "op"]
    assert "/N" in labels and not any("nan" in label for label in labels)
