"""gd.explain, closed forms (gd.symbolic, gd.symbolic_grad), the HTML stepper and the CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sympy

import graphdl as gd
from graphdl.views import cli

from .helpers import NEURON_VALUES, neuron

ROOT = Path(__file__).parents[1]
VALUES = NEURON_VALUES


def test_one_step_per_gate_with_rules_numbers_and_results():
    f, inputs = neuron()
    ex = gd.explain(f, VALUES)
    text = str(ex)
    assert [s.gate.label for s in ex.steps] == ["1/x", "+1", "exp", "*−1", "+", "+", "*", "*"]
    assert "d(1/x)/dx = -1/x²" in text and "-1/1.368² = -0.5344" in text
    assert "d(exp(x))/dx = exp(x)" in text and "d(-x)/dx = -1" in text
    assert "d(x·y)/dx = y" in text and "y = x0 = -1" in text
    grads = dict(zip(VALUES, gd.evaluate(gd.grad(f, inputs), VALUES)))
    got = {name: g for name, _, g in ex.gradients}
    for name, expected in grads.items():
        assert np.isclose(got[name], expected)
        assert f"∂f/∂{name} = {ex.num(expected)}" in text
    assert ["-0.1966", "0.3932", "-0.3932", "-0.5898", "0.1966"] == [
        ex.num(got[name]) for name in VALUES]
    assert "f = 1/v7 = 1/1.368 = 0.7311" in text  # the forward table


def test_local_rule_mathml_is_a_partial_fraction_applied_to_the_operand():
    f, _ = neuron()
    rules = {s.gate.label: s.terms[0].rule_mathml for s in gd.explain(f, VALUES).steps}
    partial = ("<mfrac><mrow><mo>&#8706;</mo></mrow>"
               "<mrow><mo>&#8706;</mo><mi>x</mi></mrow></mfrac>")
    # displayed, not inline: the fraction bar keeps the text's size
    assert all(r.startswith('<math displaystyle="true">') for r in rules.values())
    assert partial + "<mrow><mo>(</mo><mrow><mo>-</mo><mi>x</mi></mrow><mo>)</mo></mrow></mrow>" \
        "<mo>=</mo><mn>-1</mn>" in rules["*−1"]
    assert partial + "<mrow><mo>(</mo><mfrac><mn>1</mn><mi>x</mi></mfrac><mo>)</mo></mrow></mrow>" \
        in rules["1/x"]
    exp = "<msup><mi>&ExponentialE;</mi><mi>x</mi></msup>"
    assert partial + exp + "</mrow><mo>=</mo>" in rules["exp"]  # a power: no parentheses
    assert "&dd;" not in "".join(rules.values())


def test_digits_and_wrt():
    f, _ = neuron()
    ex = gd.explain(f, VALUES, wrt=["w0"], digits=6)
    assert [h for h, _, _ in ex.gradients] == ["w0"]
    assert "-0.196612" in str(ex)
    assert all("x0" != t.handle for s in ex.steps for t in s.terms)  # nothing flows to x0


def test_fan_out_is_shown_as_a_sum():
    x = gd.input("x", (), "float64")
    y = x * x + gd.exp(x)
    y.name = "y"
    ex = gd.explain(y, {"x": 0.5})
    line = str(ex).split("\nGradients\n")[1].splitlines()[0]
    # three contributions: twice from *, once from exp, then their total 2x + e^x
    assert line.count("(from") == 3 and line.endswith(ex.num(1 + np.exp(0.5)))


def test_collapsed_sigmoid_uses_its_closed_form_local_rule():
    f, _ = neuron()
    ex = gd.explain(f, VALUES, collapse=["sigmoid"])
    first = ex.steps[0]
    assert first.gate.label == "σ" and len(ex.steps) == 5
    assert "σ(x)·(1 - σ(x))" in first.terms[0].rule
    assert "0.7311·(1 - 0.7311) = 0.1966" in first.terms[0].plugged


def test_tensor_rules_matmul_reductions_broadcasting():
    x = gd.input("x", (4, 3), "float64")
    w = gd.input("W", (3, 2), "float64")
    b = gd.input("b", (2,), "float64")
    loss = gd.sum(gd.tanh(x @ w + b))
    rng = np.random.default_rng(0)
    values = {"x": rng.standard_normal((4, 3)), "W": rng.standard_normal((3, 2)),
              "b": rng.standard_normal(2)}
    ex = gd.explain(loss, values)
    text = str(ex)
    assert "∂v12/∂W" not in text
    assert re.search(r"∂\S+/∂x = ∂\S+/∂v\d+ · Wᵀ", text)
    assert re.search(r"∂\S+/∂W = xᵀ · ∂\S+/∂v\d+", text)
    assert "every element of" in text  # the sum's rule
    assert "summed over the broadcast axes to b's shape (2)" in text
    dW = gd.evaluate(gd.grad(loss, w), values)
    (_, _, g), = [t for t in ex.gradients if t[0] == "W"]
    assert np.allclose(g, dW)


def test_closed_forms_match_the_numbers():
    f, inputs = neuron()
    expr = gd.symbolic(f)
    s = {sympy.Symbol(k): v for k, v in VALUES.items()}
    assert abs(float(expr.subs(s)) - gd.evaluate(f, VALUES)) < 1e-12
    grads = gd.evaluate(gd.grad(f, inputs), VALUES)
    for x, g in zip(inputs, grads):
        assert abs(float(gd.symbolic_grad(f, x).subs(s)) - g) < 1e-12
    assert gd.symbolic(f, sigmoid=True) == gd.ops.scalar.Sigmoid(
        sympy.Symbol("w0") * sympy.Symbol("x0") + sympy.Symbol("w1") * sympy.Symbol("x1")
        + sympy.Symbol("w2"))
    ex = gd.explain(f, VALUES)
    assert len(ex.closed) == 5 and all(ok for *_, ok in ex.closed)
    assert "== the step-by-step result ✓" in str(ex)
    with pytest.raises(gd.GraphError, match="scalar"):
        gd.symbolic(gd.sum(gd.input("v", (3,), "float64")))


def test_closed_form_of_the_two_layer_network_is_cheap():
    sys.path.insert(0, str(ROOT / "examples"))
    import lecture_two_layer as lecture

    forward, grads, _ = lecture.build()
    feeds = {k: v for k, v in lecture.FEEDS.items() if k != "eta"}
    start = time.perf_counter()
    s = {sympy.Symbol(k): v for k, v in feeds.items()}
    numeric = gd.evaluate(grads, feeds)
    for w, g in zip(lecture.WEIGHTS, numeric):
        expr = gd.symbolic_grad(forward[-1], w, sigmoid=True)
        assert abs(float(expr.subs(s).rewrite(sympy.exp)) - g) < 1e-12
    assert time.perf_counter() - start < 20


def test_gradients_are_listed_by_name_in_natural_order():
    # Built after the neuron, the lecture's network gets the neuron's w1 and x1 (inputs are
    # interned), so neither the graph's order (w1, x1, w2, ...) nor the nodes' ids say w1, w2.
    _neuron = neuron()
    sys.path.insert(0, str(ROOT / "examples"))
    import lecture_two_layer as lecture

    ex = gd.explain(lecture.output(), lecture.values, collapse=["sigmoid"])
    names = [f"w{i}" for i in range(1, 9)] + ["x1", "x2", "y1", "y2"]
    assert [h for h, _, _ in ex.gradients] == names
    listed = [f"∂Error/∂{n} =" for n in names]
    text = str(ex).split("\nGradients\n")[1].splitlines()[:len(names)]
    assert [line.split()[0] + " =" for line in text] == listed
    md = ex.markdown().split("### Gradients")[1]
    assert [md.index(f"- {n}") for n in listed] == sorted(md.index(f"- {n}") for n in listed)
    page = ex.html()
    assert [page.index(f"<li><code>{n}") for n in listed] == sorted(
        page.index(f"<li><code>{n}") for n in listed)
    w10, w2, b = (gd.input(n, (), "float64") for n in ("w10", "w2", "b"))
    assert [h for h, _, _ in gd.explain(w10 * w2 + b, {"w10": 1.0, "w2": 2.0, "b": 0.0})
            .gradients] == ["b", "w2", "w10"]


def test_markdown_and_html_stepper():
    f, _ = neuron()
    ex = gd.explain(f, VALUES)
    md = ex.markdown()
    assert md == ex._repr_markdown_()
    assert r"\frac{1}{x^{2}}" in md and "**Step 8." in md
    page = ex.html()
    frames = re.findall(r'<section class="frame"[^>]* data-gate="([^"]*)"', page)
    assert len(frames) == len(ex.steps) + 2  # forward table, one per step, the gradients
    assert frames[1] == f"g{f.id}"  # step 1 highlights the output gate, 1/x
    assert '<math displaystyle="true">' in page and "<script>" in page
    assert not re.search(r"(src|href)=\"https?:", page)  # offline: nothing loaded
    if shutil.which("dot"):
        assert "<svg" in page and f'id="g{f.id}"' in page
        for edges in re.findall(r'data-edges="([^"]*)"', page):
            for e in edges.split():
                assert f'id="{e}"' in page


def test_explain_needs_values():
    f, _ = neuron()
    with pytest.raises(gd.GraphError, match="no value for input"):
        gd.explain(f, {"w0": 1.0})


@pytest.fixture
def graphdl_cli(tmp_path, monkeypatch, capsys):
    """`graphdl ARGS` run in this process from `tmp_path`: its exit status and stdout."""
    monkeypatch.chdir(tmp_path)

    def run(*args):
        status = cli.main(list(args))
        return status, capsys.readouterr().out

    return run


def test_cli_draw_and_explain(tmp_path, graphdl_cli):
    script = str(ROOT / "examples" / "sigmoid_circuit.py")
    fmt = "svg" if shutil.which("dot") else "dot"
    assert graphdl_cli("draw", script, "-o", f"c.{fmt}", "--collapse", "sigmoid")[0] == 0
    text = (tmp_path / f"c.{fmt}").read_text()
    assert "0.73" in text and "σ" in text
    for ext, marker in (("html", "<section"), ("md", "$"), ("txt", "Step 8.")):
        assert graphdl_cli("explain", script, "-o", f"s.{ext}")[0] == 0
        assert marker in (tmp_path / f"s.{ext}").read_text()
    assert "∂f/∂w0 = -0.1966" in graphdl_cli("explain", script)[1]
    other = tmp_path / "other.py"
    other.write_text("import graphdl as gd\nx = gd.input('x', (), 'float64')\n"
                     "loss = x * x\nfeeds = {'x': 3.0}\n")
    status, out = graphdl_cli("explain", str(other), "--node", "loss", "--values", "feeds")
    assert status == 0 and "= 6" in out
    with pytest.raises(SystemExit, match="--node NAME"):
        graphdl_cli("draw", str(other))


def test_installed_graphdl_command_explains_a_file(tmp_path):
    """The console script that installing graphdl puts beside the interpreter, run as a user
    would (the in-process tests above cannot see a broken entry point)."""
    command = shutil.which("graphdl", path=os.path.dirname(sys.executable))
    if command is None:
        pytest.skip("graphdl is not installed in this environment (pip install -e .)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([command, "explain", str(ROOT / "examples" / "sigmoid_circuit.py")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert "∂f/∂w0 = -0.1966" in r.stdout


SQUARE_SCRIPT = ("import graphdl as gd\nx = gd.input('x', (), 'float64')\nloss = x * x\n"
                 "feeds = {'x': 3.0}\n")


def test_cli_node_names_the_variable_and_o_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "square.py").write_text(SQUARE_SCRIPT)
    assert cli.main(["explain", "square.py", "--node", "loss", "--values", "feeds",
                     "-o", "steps.txt"]) == 0
    out, err = capsys.readouterr()
    assert out == "steps.txt\n" and err == ""
    assert "= 6" in (tmp_path / "steps.txt").read_text()


def test_cli_old_flags_output_and_out_still_work_with_a_deprecation_note(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "square.py").write_text(SQUARE_SCRIPT)
    assert cli.main(["explain", "square.py", "--output", "loss", "--values", "feeds",
                     "--out", "steps.md"]) == 0
    out, err = capsys.readouterr()
    assert out == "steps.md\n" and "= 6" in (tmp_path / "steps.md").read_text()
    assert "--output is deprecated; use --node NAME" in err
    assert "--out is deprecated; use -o FILE" in err


def test_cli_draw_output_with_a_file_name_points_to_o(tmp_path, monkeypatch):
    """`graphdl draw neuron.py --output c.svg` (the old variable flag, read as the file) used
    to answer "name the output with --output"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "square.py").write_text(SQUARE_SCRIPT)
    with pytest.raises(SystemExit, match=r"defines no 'c.svg'.*use -o c.svg"):
        cli.main(["draw", "square.py", "--output", "c.svg"])


def test_cli_explain_into_a_closed_pipe_exits_quietly(tmp_path):
    """`graphdl explain f.py | head` ended in a BrokenPipeError traceback. A pipe whose reading
    end is already closed is `head` having exited, without the race of `| head -1`."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        r = subprocess.run([sys.executable, "-m", "graphdl.views.cli", "explain",
                            str(ROOT / "examples" / "sigmoid_circuit.py")],
                           stdout=writer, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
                           check=False)
    finally:
        os.close(writer)
    assert r.stderr == ""
    assert r.returncode == 141  # 128 + SIGPIPE, what a shell reports for `yes | head`


# ---------------------------------------------------------------------------------------------
# The closed-form check in the graph's own precision (issue 13, item 1)


def readme_neuron(dtype):
    """The neuron of the README's picture (docs/TEACHING.md): gd.sigmoid of the weighted sum,
    named f, in `dtype`."""
    w0, x0, w1, x1, w2 = (gd.input(name, (), dtype) for name in VALUES)
    return gd.sigmoid(w0 * x0 + w1 * x1 + w2).named("f")


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_correct_gradients_are_not_marked_wrong_in_float32_or_float16(dtype):
    ex = gd.explain(readme_neuron(dtype), VALUES)
    assert [ok for *_, ok in ex.closed] == [True] * 5
    assert ex.precision == np.dtype(dtype)
    text, md, page = str(ex), ex.markdown(), ex.html()
    assert text.count("== the step-by-step result ✓") == 5 and "✗" not in text
    assert f"compared to {dtype} precision" in text
    assert md.count("✓") == 5 and "✗" not in md
    assert page.count("== the step-by-step result ✓") == 5 and "✗" not in page


def test_cli_explain_of_a_float32_neuron_marks_every_closed_form_right(tmp_path, graphdl_cli):
    script = tmp_path / "neuron.py"
    script.write_text(
        "import graphdl as gd\n"
        f"values = {VALUES!r}\n"
        "w0, x0, w1, x1, w2 = (gd.input(n, ()) for n in values)\n"
        "output = gd.sigmoid(w0 * x0 + w1 * x1 + w2).named('f')\n")
    status, out = graphdl_cli("explain", str(script))
    assert status == 0
    assert out.count("== the step-by-step result ✓") == 5 and "✗" not in out


@pytest.mark.parametrize("factor", [3.0, 2.002])  # a wrong rule, and one off by 0.1%
def test_a_wrong_pullback_is_still_marked_wrong_in_float32(factor):
    twice = gd.custom_op("twice", lambda a: a * 2, lambda inputs, out, g: [g * factor])
    x = gd.input("x", ())
    y = twice(x * x).named("y")
    ex = gd.explain(y, {"x": 1.5})
    ((_, _, value, g, ok),) = ex.closed
    assert not ok and value == pytest.approx(6.0) and g == pytest.approx(3 * factor, rel=1e-6)
    verdict = str(ex).splitlines()[-1]
    assert "✗" in verdict and "✓" not in verdict
    # the digits shown differ, however close the two numbers are
    shown = re.findall(r"-?\d+\.?\d*", verdict)
    assert shown[0] != shown[1]
    assert "✗" in ex.markdown() and "✗" in ex.html()


# ---------------------------------------------------------------------------------------------
# Narration without clutter (issue 13, item 6)


def test_a_product_rule_does_not_repeat_the_operand_it_equals():
    f, _ = neuron()
    ex = gd.explain(f, VALUES)
    text, md = str(ex), ex.markdown()
    assert "      y = x1 = -2\n" in text and "(-2) = -2" not in text
    assert "      x = w0 = 2\n" in text
    assert "$(-2) = -2$" not in md and "  - y = x1 = -2" in md
    assert "x = v7 = 1.368: -1/1.368² = -0.5344" in text  # a rule with numbers in is kept


def mlp_with_cross_entropy():
    X, y = gd.input("X", (4, 3)), gd.input("y", (4,), "int64")
    W1, b1 = gd.input("W1", (3, 5)), gd.input("b1", (5,))
    W2 = gd.input("W2", (5, 3))
    loss = gd.softmax_cross_entropy(gd.relu(X @ W1 + b1) @ W2, y)
    rng = np.random.default_rng(0)
    values = {"X": rng.standard_normal((4, 3)), "y": np.array([0, 1, 2, 1]),
              "W1": rng.standard_normal((3, 5)), "b1": rng.standard_normal(5),
              "W2": rng.standard_normal((5, 3))}
    return loss, values


def test_relu_rule_reads_as_a_condition_not_a_heaviside_function():
    loss, values = mlp_with_cross_entropy()
    ex = gd.explain(loss, values)
    text = str(ex)
    assert "d(relu(x))/dx = (1 if x > 0 else 0)" in text
    assert "H(x" not in text and "Heaviside" not in text and "Relu" not in text
    assert r"\left(1 \text{ if } x > 0 \text{ else } 0\right)" in ex.markdown()
    assert "<mtext>&#160;if&#160;</mtext><mi>x</mi><mo>></mo>" in ex.html()


def test_relu_rule_with_a_scalar_plugs_the_number_into_the_condition():
    x = gd.input("x", (), "float64")
    y = gd.relu(x * 3).named("y")
    assert "x = v1 = -1.5: (1 if (-1.5) > 0 else 0) = 0" in str(gd.explain(y, {"x": -0.5}))


def test_one_hot_labels_are_narrated_as_one_hot_not_a_comparison():
    loss, values = mlp_with_cross_entropy()
    ex = gd.explain(loss, values)
    text = str(ex)
    assert re.search(r"v\d+ = one_hot\(y, 3\) = \(4,3\)", text)
    assert "== [0, 1, 2]" not in text and "check_index" not in text
    assert "one_hot" in ex.html()


def test_tensor_gates_are_written_as_expressions_of_their_operands():
    loss, values = mlp_with_cross_entropy()
    text = str(gd.explain(loss, values))
    assert "v1 = X @ W1 = (4,5)" in text and "v2 = v1 + b1 = (4,5)" in text
    assert "v3 = relu(v2) = (4,5)" in text
    assert "@(X, W1)" not in text and "+(v1, b1)" not in text


def test_tensor_gradients_show_the_norm_and_no_mean_that_is_rounding_noise():
    loss, values = mlp_with_cross_entropy()  # float32: the logits' gradient sums to 0 per row
    ex = gd.explain(loss, values)
    (logits_grad,) = [s.upstream for s in ex.steps if s.gate.label == "@"][:1]
    assert abs(logits_grad.mean()) < 1e-6 * np.abs(logits_grad).max()
    assert ex.num(logits_grad) == f"(4,3) ‖·‖={ex.num(np.linalg.norm(logits_grad))}"
    w1 = np.asarray(values["W1"])
    assert ex.num(w1).startswith(f"(3,5) μ={ex.num(w1.mean())} ‖·‖=")  # a mean that says something


def test_markdown_typesets_names_upright_and_inputs_as_symbols():
    ex = gd.explain(readme_neuron("float64"), VALUES)
    md = ex.markdown()
    assert md.startswith("### Forward pass of $f$")
    assert r"\frac{\partial f}{\partial w_{0}}" in md
    loss, values = mlp_with_cross_entropy()
    md = gd.explain(loss, values).markdown()
    assert md.startswith(r"### Forward pass of $\mathrm{cross\_entropy}$")
    unnamed = gd.sigmoid(gd.input("a", (), "float64") * 2)
    assert r"$\mathrm{sigmoid}$" in gd.explain(unnamed, {"a": 1.0}).markdown()


def test_abs_and_smooth_l1_are_narrated_with_sign_as_the_local_rule():
    """explain crashed on any graph holding abs: SymPy differentiates Abs of a complex symbol
    into re/im derivatives that NumPy cannot print; a real symbol gives sign(x)."""
    p, t = gd.input("p", (3,)), gd.input("t", (3,))
    values = {"p": np.array([0.0, 2.0, 0.3]), "t": np.zeros(3)}
    text = str(gd.explain(gd.sum(gd.abs(p - t)), values))
    assert "d(Abs(x))/dx = sign(x)" in text
    assert "∂smooth_l1/∂p = [0, 0.3333, 0.1]" in str(gd.explain(gd.smooth_l1(p, t), values))


def test_a_mean_over_an_unknown_batch_divides_by_the_fed_size():
    """The divisor of a mean over a batch of None is the size fed at the probe point (/6 for a
    (2, 3) array), and the gradient 2x/6 follows."""
    x = gd.input("x", (None, 3))
    values = {"x": np.ones((2, 3))}
    assert "/6" in [g.label for g in gd.draw(gd.mean(x * x), values).circuit.gates]
    text = str(gd.explain(gd.mean(x * x), values))
    assert text.rstrip().endswith("= [0.3333, 0.3333, 0.3333, 0.3333, 0.3333, 0.3333] (2,3)")
