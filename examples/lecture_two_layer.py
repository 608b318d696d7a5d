"""The lecture's 2-2-2 network: one forward pass, one backward pass, one SGD step, by graphdl.

    x1, x2 -> h1, h2 -> o1, o2 (sigmoid units, no biases), Error = ½ Σ (o - y)²
    In_h1 = w1·x1 + w3·x2    In_h2 = w2·x1 + w4·x2
    In_o1 = w5·h1 + w7·h2    In_o2 = w6·h1 + w8·h2

Every number printed comes out of the graph: the forward values, the eight gradients from a
single `gd.grad`, and the updated weights w' = w - η·∂E/∂w. They are checked against the
reference interpreter and against central finite differences, then set beside the slides'
numbers. The slides get ∂E/∂w1..∂E/∂w4 wrong (even the sign of two of them); the last section
shows where and why.

The network is also drawn as a circuit (every wire with its value and gradient, the sigmoids
collapsed into σ gates) and narrated gate by gate (build/lecture_two_layer/: SVG, text,
Markdown, an offline HTML stepper). The narration's step at h1 shows the sum the slides get
wrong: ∂E/∂h1 collects the output errors through w5 and w6.

Run from the repository root:  python examples/lecture_two_layer.py [--quiet] [--explain]
CLI:  graphdl draw examples/lecture_two_layer.py --collapse sigmoid -o net.svg
"""

from __future__ import annotations

import argparse
import os

import data
import numpy as np

import graphdl as gd

WEIGHTS = {"w1": 0.2, "w2": -0.4, "w3": 0.5, "w4": 0.6,
           "w5": 0.1, "w6": -0.5, "w7": -0.3, "w8": 0.8}
FEEDS = {**WEIGHTS, "x1": 0.5, "x2": 0.3, "y1": 0.23, "y2": -0.07, "eta": 1.0}
# Pre-activations In = Σ w·a as (weight, input) pairs; each feeds the sigmoid unit of its name.
TERMS = {
    "In_h1": (("w1", "x1"), ("w3", "x2")),
    "In_h2": (("w2", "x1"), ("w4", "x2")),
    "In_o1": (("w5", "h1"), ("w7", "h2")),
    "In_o2": (("w6", "h1"), ("w8", "h2")),
}
FORWARD = ["In_h1", "h1", "In_h2", "h2", "In_o1", "o1", "In_o2", "o2", "Error"]

# What the slides print (2 decimals), for the comparison at the end.
SLIDES = {"h1": 0.56, "h2": 0.50, "o1": 0.48, "o2": 0.53, "Error": 0.21,
          "∂E/∂w5": 0.03, "∂E/∂w7": 0.03, "∂E/∂w6": 0.08, "∂E/∂w8": 0.07,
          "∂E/∂w1": 0.01, "∂E/∂w3": 0.01, "∂E/∂w2": 0.01, "∂E/∂w4": 0.01}


def build():
    """The network as graph nodes, each lecture quantity named after the slides."""
    def named(node, name):
        node.name = name  # a naming hint: it shows up in the generated source
        return node

    v = {name: gd.input(name, (), "float64") for name in FEEDS}
    # gd.sigmoid is the lecture's gate circuit 1 / (1 + exp(-x)), so grad walks those gates.
    for pre, ((w_a, a), (w_b, b)) in TERMS.items():
        v[pre] = named(v[w_a] * v[a] + v[w_b] * v[b], pre)
        unit = pre.removeprefix("In_")
        v[unit] = named(gd.sigmoid(v[pre]), unit)
    error = 0.5 * ((v["o1"] - v["y1"]) ** 2 + (v["o2"] - v["y2"]) ** 2)
    v["Error"] = named(error, "Error")

    weights = [v[name] for name in WEIGHTS]
    grads = gd.grad(v["Error"], weights)  # all eight in one reverse sweep
    new_weights = [named(w - v["eta"] * g, w.name + "_new") for w, g in zip(weights, grads)]
    return [v[name] for name in FORWARD], grads, new_weights


def output():
    """The Error node (for `graphdl draw/explain examples/lecture_two_layer.py`)."""
    return build()[0][-1]


values = {k: v for k, v in FEEDS.items() if k != "eta"}  # the Error graph's inputs


def draw_and_explain(error, out="build/lecture_two_layer", narrate=False):
    """Write the circuit drawings and the narration; print the step the slides get wrong."""
    os.makedirs(out, exist_ok=True)
    written = []
    for stem, collapse in (("network_gates", ()), ("network", ["sigmoid"])):
        drawing = gd.draw(error, values, collapse=collapse)
        try:
            drawing.render(outfile=os.path.join(out, f"{stem}.svg"), cleanup=True)
            written.append(f"{stem}.svg")
        except gd.DotNotFound:  # no Graphviz: keep the DOT source
            with open(os.path.join(out, f"{stem}.dot"), "w", encoding="utf-8") as f:
                f.write(drawing.source)
            written.append(f"{stem}.dot")
    ex = gd.explain(error, values, collapse=["sigmoid"])
    for ext, text in (("txt", str(ex)), ("md", ex.markdown()), ("html", ex.html())):
        with open(os.path.join(out, f"backprop.{ext}"), "w", encoding="utf-8") as f:
            f.write(text)
        written.append(f"backprop.{ext}")
    # The narration's numbers are the graph's (gd.grad) and the closed form's.
    grads = dict(zip(WEIGHTS, gd.evaluate(gd.grad(error, [error_input(error, w)
                                                             for w in WEIGHTS]), values)))
    for name, _, g in ex.gradients:
        if name in grads:
            assert abs(g - grads[name]) < 1e-12, (name, g, grads[name])
    assert ex.closed and all(ok for *_, ok in ex.closed)
    print(f"\nDrawings and narration (sigmoids as σ gates): "
          f"{', '.join(os.path.join(out, w) for w in written)}")
    if narrate:
        print(ex)
        return
    step = next(k for k, s in enumerate(ex.steps, 1) if s.gate.handle == "h1")
    print("The narration's step at h1, where the slides go wrong (∂E/∂h1 is a fan-out sum of\n"
          "the errors arriving through w5 and w6, not δ5 + δ6):\n")
    print("\n".join(ex._step_text(step, ex.steps[step - 1])))


def error_input(error, name):
    return next(n for n in gd.topological_order([error]) if n.name == name)


def finite_difference(error, name, eps=1e-5):
    """Central difference (E(w + eps) - E(w - eps)) / 2eps, each E by the reference interpreter."""
    feeds = {k: v for k, v in FEEDS.items() if k != "eta"}  # unknown inputs are refused

    def at(delta):
        return float(gd.evaluate(error, {**feeds, name: feeds[name] + delta}))

    return (at(eps) - at(-eps)) / (2 * eps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="do not print the generated source")
    parser.add_argument("--explain", action="store_true", help="print the whole narration")
    parser.add_argument("--out", default="build/lecture_two_layer", help="drawings' directory")
    args = parser.parse_args()

    forward, grads, new_weights = build()
    outputs = forward + grads + new_weights
    fn = gd.compile(outputs)
    exact = [float(v) for v in fn(FEEDS)]

    # The compiled program (stabilized, fused NumPy) must agree with the node-by-node oracle,
    reference = [float(v) for v in gd.evaluate(outputs, FEEDS)]
    assert np.allclose(exact, reference, rtol=1e-12, atol=1e-15), (exact, reference)
    # and the symbolic gradients with numerical ones.
    for name, g in zip(WEIGHTS, exact[len(forward):]):
        fd = finite_difference(forward[-1], name)
        assert abs(g - fd) < 1e-6, f"∂E/∂{name}: graph {g!r} vs finite difference {fd!r}"

    labels = FORWARD + [f"∂E/∂{w}" for w in WEIGHTS] + [f"{w}′" for w in WEIGHTS]
    exact = dict(zip(labels, exact))

    print("Forward pass (x1 = 0.5, x2 = 0.3, y1 = 0.23, y2 = -0.07)")
    print(f"  {'value':<7}{'graphdl':>18}{'2 dp':>8}{'slide':>8}")
    for name in FORWARD:
        print(f"  {name:<7}{exact[name]:>18.12f}{exact[name]:>8.2f}{slide(name):>8}")

    print(f"\nBackward pass and update w′ = w - η·∂E/∂w (η = {FEEDS['eta']:g})")
    print(f"  {'w':<4}{'value':>7}{'∂E/∂w':>18}{'2 dp':>7}{'slide':>7}{'w′':>17}{'2 dp':>7}")
    for w, value in WEIGHTS.items():
        g, new = f"∂E/∂{w}", f"{w}′"
        print(f"  {w:<4}{value:>7.2f}{exact[g]:>18.12f}{exact[g]:>7.2f}{slide(g):>7}"
              f"{exact[new]:>17.12f}{exact[new]:>7.2f}")
    print("  checks passed: compiled == gd.evaluate; every ∂E/∂w == central difference (1e-6)")

    explain_differences(exact)
    draw_and_explain(forward[-1], args.out, args.explain)

    if not args.quiet and not data.is_smoke():
        print("\nGenerated NumPy source (fn.source):\n")
        print(fn.source)


def slide(name):
    return f"{SLIDES[name]:.2f}" if name in SLIDES else ""


def explain_differences(exact):
    """Where the slides and graphdl disagree at 2 decimals, and why."""
    print("\nWhere the slides and the correct computation differ")
    differ = [n for n in SLIDES if f"{exact[n]:.2f}" != f"{SLIDES[n]:.2f}"]
    print(f"  {', '.join(differ) or 'nowhere'}")
    if not differ:
        return
    v = {k: exact[k] for k in FORWARD} | FEEDS
    g = {w: exact[f"∂E/∂{w}"] for w in WEIGHTS}
    # The slides write δ1 = (δ5 + δ6)·h1(1 - h1)·x1: they send the *weight* gradients
    # δ5 = ∂E/∂w5 (which carry a factor h1) back to h1, where the chain rule sends the error
    # at each output through the weight that connects it to h1:
    #   ∂E/∂h1 = (o1 - y1)·o1(1 - o1)·w5 + (o2 - y2)·o2(1 - o2)·w6.
    e1 = (v["o1"] - v["y1"]) * v["o1"] * (1 - v["o1"])
    e2 = (v["o2"] - v["y2"]) * v["o2"] * (1 - v["o2"])
    hidden = {"h1": ("w5", "w6", "w1", "w3"), "h2": ("w7", "w8", "w2", "w4")}
    for h, (wa, wb, w_x1, w_x2) in hidden.items():
        local = v[h] * (1 - v[h])
        correct = (e1 * v[wa] + e2 * v[wb]) * local
        as_slides = (g[wa] + g[wb]) * local
        for w, x in ((w_x1, "x1"), (w_x2, "x2")):
            assert abs(correct * v[x] - g[w]) < 1e-12  # the chain rule by hand == graphdl
            print(f"  ∂E/∂{w}: slides (δ{wa[1]} + δ{wb[1]})·{h}(1-{h})·{x} = "
                  f"{as_slides * v[x]:+.4f} -> {SLIDES['∂E/∂' + w]:.2f};  chain rule "
                  f"(e_o1·{wa} + e_o2·{wb})·{h}(1-{h})·{x} = {correct * v[x]:+.4f}")
    print("  Why: the slides back-propagate the weight gradients δ5..δ8 instead of the output\n"
          "  errors e_o = (o - y)·o(1 - o) weighted by w5..w8. Since w5·e_o1 + w6·e_o2 < 0 while\n"
          "  δ5 + δ6 > 0, ∂E/∂w1 and ∂E/∂w3 even change sign. graphdl's values are the chain\n"
          "  rule's (checked above against finite differences); the slides' are not gradients.")


if __name__ == "__main__":
    main()
