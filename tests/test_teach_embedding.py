"""Embedding lookups (take along axis 0) in gd.explain and gd.draw: the rows read and written,
named with the probe point's index values, as the lecture's one-hot × matrix."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import graphdl as gd
from graphdl.views.numbers import fmt

from .test_viz import mlp

ROOT = Path(__file__).parents[1]


def skip_gram(center=2, context=1, negative=4):
    """One skip-gram negative-sampling loss on a five-word vocabulary, dimension 3."""
    w_in, w_out = gd.input("W_in", (5, 3), "float64"), gd.input("W_out", (5, 3), "float64")
    c, o, n = (gd.input(name, (), "int64") for name in ("center", "context", "negative"))
    v_c = gd.take(w_in, c, axis=0).named("v_c")
    u_o = gd.take(w_out, o, axis=0).named("u_o")
    u_n = gd.take(w_out, n, axis=0).named("u_n")
    loss = (-(gd.log_sigmoid(gd.sum(u_o * v_c)) + gd.log_sigmoid(-gd.sum(u_n * v_c))))
    rng = np.random.default_rng(1)
    values = {"W_in": rng.standard_normal((5, 3)), "W_out": rng.standard_normal((5, 3)),
              "center": np.array(center), "context": np.array(context),
              "negative": np.array(negative)}
    return loss.named("loss"), (w_in, w_out), values


def repeated_lookup():
    """Three lookups of a (5,3) table, row 3 twice."""
    w = gd.input("W", (5, 3), "float64")
    words = gd.input("words", (3,), "int64")
    rows = gd.take(w, words, axis=0).named("rows")
    loss = gd.sum(gd.tanh(rows) * np.array([[1.0], [2.0], [3.0]])).named("loss")
    values = {"W": np.random.default_rng(2).standard_normal((5, 3)),
              "words": np.array([3, 1, 3])}
    return loss, w, values


def step_of(ex, handle):
    return next(s for s in ex.steps if s.gate.handle == handle)


def test_the_lookup_narration_names_the_rows_read_and_written_with_the_probes_indices():
    loss, _, values = skip_gram()
    ex = gd.explain(loss, values)
    text = str(ex)
    assert "v_c = rows [2] of W_in (center = 2): the one-hot e_2 times W_in" in text
    assert "u_n = rows [4] of W_out (negative = 4): the one-hot e_4 times W_out" in text
    (term,) = step_of(ex, "v_c").terms
    assert "v_c = e_2ᵀ·W_in (one-hot × matrix)" in term.rule
    assert "added into row 2 of W_in only; the other 4 rows get 0" in term.rule
    assert "0 outside rows [2]" in text
    # the one-hot product is stated once per lookup
    assert text.count("e_2ᵀ·W_in") == 1 and text.count("e_4ᵀ·W_out") == 1


def test_a_negative_index_is_narrated_as_the_row_it_reads():
    loss, _, values = skip_gram(center=-1)
    text = str(gd.explain(loss, values))
    assert "v_c = rows [4] of W_in (center = -1): the one-hot e_4 times W_in" in text
    assert "added into row 4 of W_in only" in text


def test_repeated_indices_are_summed_in_the_narration():
    loss, w, values = repeated_lookup()
    ex = gd.explain(loss, values)
    (term,) = step_of(ex, "rows").terms
    assert "rows = [e_3 e_1 e_3]ᵀ·W" in term.rule
    assert ("added into rows [3, 1] of W only; the other 3 rows get 0; row 3 twice: its two "
            "gradients add") in term.rule
    grad = gd.evaluate(gd.grad(loss, w), values)
    upstream = np.asarray(step_of(ex, "rows").upstream)
    assert term.plugged == (f"row 3 ← {ex.num(upstream[0])} + {ex.num(upstream[2])} = "
                            f"{ex.num(grad[3])}; row 1 ← {ex.num(upstream[1])}")


def test_the_narrated_numbers_are_those_of_evaluate():
    loss, (w_in, w_out), values = skip_gram()
    ex = gd.explain(loss, values)
    g_in, g_out = gd.evaluate(gd.grad(loss, [w_in, w_out]), values)
    (term,) = step_of(ex, "v_c").terms
    np.testing.assert_allclose(term.contribution, g_in)
    assert term.plugged == f"row 2 ← {ex.num(g_in[2])}"
    assert f"v_c = rows [2] of W_in (center = 2): the one-hot e_2 times W_in = " \
           f"{ex.num(values['W_in'][2])}" in str(ex)
    gradients = {handle: g for handle, _, g in ex.gradients}
    np.testing.assert_allclose(gradients["W_out"], g_out)
    norm = ex.num(np.linalg.norm(g_out))
    assert f"∂loss/∂W_out = (5,3), 0 outside rows [1] (‖·‖={ex.num(np.linalg.norm(g_out[1]))}) " \
           f"(from take gate u_o) + " in str(ex)
    assert str(ex).split("\nGradients\n")[1].splitlines()[1].endswith(
        f"= (5,3), 0 outside rows [1, 4] (‖·‖={norm})")


def test_markdown_writes_the_lookup_as_a_one_hot_product_in_latex():
    loss, _, values = skip_gram()
    md = gd.explain(loss, values).markdown()
    assert md.count(r"e_{2}^{\top}\,\mathrm{W\_in}") == 1
    assert r"\text{(added into row 2 of W\_in only; the other 4 rows get 0)}" in md
    assert "**(5,3), 0 outside rows [2]" in md


def test_take_along_another_axis_keeps_the_generic_rule():
    x = gd.input("x", (2, 4), "float64")
    cols = gd.input("cols", (2,), "int64")
    loss = gd.sum(gd.take(x, cols, axis=1) ** 2)
    text = str(gd.explain(loss, {"x": np.ones((2, 4)), "cols": np.array([0, 3])}))
    assert "scatter-added into the gathered positions of x" in text
    assert "one-hot" not in text and "rows [" not in text


def test_the_drawing_labels_the_take_with_its_rows_and_its_table_gradient_in_words():
    loss, (w_in, _), values = skip_gram()
    dot = gd.draw(loss, values)
    take = next(g for g in dot.circuit.gates if g.handle == "v_c")
    assert dot.node_labels[f"n{take.node.id}"] == "take v_c rows [2]"
    g_in = gd.evaluate(gd.grad(loss, w_in), values)
    table_wire = dot.edge_labels[f"e{w_in.id}_{take.node.id}_0"]
    assert table_wire[1] == f"gradient into row 2 only, ‖·‖={fmt(np.linalg.norm(g_in))}"
    (out_wire,) = [v for k, v in dot.edge_labels.items() if k.startswith(f"e{take.node.id}_")][:1]
    assert out_wire[0].startswith("(3) rows [2] ")
    # an index on a wire is a row number, not 2.00
    index_wires = [v for k, v in dot.edge_labels.items()
                   if k.endswith(f"_{take.node.id}_1")]
    assert index_wires == [["2"]]


def test_a_table_read_twice_gets_its_gradient_into_each_row_read_once():
    loss, w, values = repeated_lookup()
    dot = gd.draw(loss, values)
    (take,) = [g for g in dot.circuit.gates if g.handle == "rows"]
    grad = gd.evaluate(gd.grad(loss, w), values)
    assert dot.edge_labels[f"e{w.id}_{take.node.id}_0"][1] == (
        f"gradient into rows [3, 1] only, ‖·‖={fmt(np.linalg.norm(grad))}")


def test_a_drawn_gradient_graph_shows_the_scatter_add_rows():
    loss, w, values = repeated_lookup()
    dot = gd.draw(gd.grad(loss, w), values)
    (scatter,) = [g for g in dot.circuit.gates if g.label == "scatter_add"]
    assert dot.node_labels[f"n{scatter.node.id}"] == "scatter_add rows [3, 1, 3]"
    grad = gd.evaluate(gd.grad(loss, w), values)
    (out,) = [v for k, v in dot.edge_labels.items() if k == f"eout{scatter.node.id}"]
    assert out == [f"(5,3) Δ rows [3, 1, 3] ‖·‖={fmt(np.linalg.norm(grad))}"]


def test_the_mlp_narration_is_unchanged_by_the_lookup_rules():
    loss, _, values = mlp()
    text = str(gd.explain(loss, values))
    for line in [  # as narrated before the lookup rules
        "  v1 = x @ W1 = (4,5) μ=-0.1101 ‖·‖=5.147",
        "Step 11. gate relu   (h = relu(v2) = (4,5) μ=0.2389 ‖·‖=2.695)",
        ("  → W1: local rule v1 = x @ W1: ∂cross_entropy/∂W1 = xᵀ · ∂cross_entropy/∂v1  "
         "(4,3)ᵀ·(4,5) → (3,5)"),
        "  ∂cross_entropy/∂b1 = [0.0655, 0, 0.6873, 0.1423, 0.3186]",
        "  ∂cross_entropy/∂W2 = (5,3) ‖·‖=0.8856",
    ]:
        assert line in text.splitlines()
    assert "one-hot" not in text and "rows [" not in text


def test_the_toy_example_runs_and_prints_the_huffman_codes(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "word2vec_toy.py"), "--quiet",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, check=False)
    assert r.returncode == 0, r.stderr
    assert "changes rows [2] of W_in and rows [1, 4] of W_out, no other" in r.stdout
    codes = dict(re.findall(r"(\w+) \(\d+\), code ([01]+)", r.stdout))
    assert codes == {"the": "0", "cat": "10", "mat": "1100", "on": "1101", "sat": "111"}
    if shutil.which("dot"):
        assert (tmp_path / "word2vec_toy.png").exists()
    else:  # the example says that Graphviz is missing and goes on
        assert "apt-get install -y graphviz" in r.stdout
        assert not (tmp_path / "word2vec_toy.png").exists()


def test_bounds_checks_are_neither_drawn_nor_narrated():
    """`take` checks its indices at run time (a check_index node): the drawing wires the fed
    indices straight into the lookup and the narration has no check_index step."""
    loss, _, values = skip_gram()
    dot = gd.draw(loss, values)
    assert not [g for g in dot.circuit.gates if "check_index" in g.label]
    center = next(g for g in dot.circuit.gates if g.handle == "center")
    v_c = next(g for g in dot.circuit.gates if g.handle == "v_c")
    assert f"e{center.node.id}_{v_c.node.id}_1" in dot.edge_labels
    assert "check_index" not in str(gd.explain(loss, values))
