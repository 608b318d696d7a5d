"""The lecture's sigmoid neuron as a circuit, drawn and narrated by graphdl.

    f(w, x) = 1 / (1 + e^-(w0·x0 + w1·x1 + w2))   at w0 = 2, x0 = -1, w1 = -3, x1 = -2, w2 = -3

First as primitive gates (*, +, *−1, exp, +1, 1/x), walked backwards one gate per step, then
with the sigmoid collapsed into one gate whose local gradient is σ(1 − σ). The drawings (SVG,
or DOT source when Graphviz is missing), the narration (text, Markdown and an offline HTML
stepper) are written to build/sigmoid_circuit/. Output 0.73; gradients -0.20, 0.39, -0.39,
-0.59, 0.20 for w0, x0, w1, x1, w2: the slide's numbers.

Run from the repository root:  python examples/sigmoid_circuit.py [--out DIR] [--quiet]
Also usable with the CLI:       graphdl draw examples/sigmoid_circuit.py -o circuit.svg
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import graphdl as gd

values = {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0}
SLIDE = {"f": 0.73, "w0": -0.20, "x0": 0.39, "w1": -0.39, "x1": -0.59, "w2": 0.20}

w0, x0, w1, x1, w2 = (gd.input(name, (), "float64") for name in values)
# The lecture's circuit, gate by gate (gd.sigmoid builds the very same nodes).
output = 1 / (1 + gd.exp(-(w0 * x0 + w1 * x1 + w2)))
output.name = "f"


def write(drawing, explanation, out, stem):
    """Write the drawing (SVG, else DOT) and the narration (text, Markdown, HTML)."""
    os.makedirs(out, exist_ok=True)
    written = []
    try:
        drawing.render(outfile=os.path.join(out, f"{stem}.svg"), cleanup=True)
        written.append(f"{stem}.svg")
    except gd.DotNotFound as e:
        print(f"  ({e})")
        with open(os.path.join(out, f"{stem}.dot"), "w", encoding="utf-8") as f:
            f.write(drawing.source)
        written.append(f"{stem}.dot")
    for ext, text in (("txt", str(explanation)), ("md", explanation.markdown()),
                      ("html", explanation.html())):
        with open(os.path.join(out, f"{stem}.{ext}"), "w", encoding="utf-8") as f:
            f.write(text)
        written.append(f"{stem}.{ext}")
    print(f"  wrote {', '.join(os.path.join(out, w) for w in written)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/sigmoid_circuit", help="output directory")
    parser.add_argument("--quiet", action="store_true", help="do not print the narrations")
    args = parser.parse_args()

    inputs = [w0, x0, w1, x1, w2]
    grads = gd.grad(output, inputs)
    got = dict(zip(["f", *values], (float(v) for v in gd.evaluate([output, *grads], values))))
    for name, slide in SLIDE.items():
        assert f"{got[name]:.2f}" == f"{slide:.2f}", (name, got[name], slide)

    print("1. The circuit of primitive gates")
    ex = gd.explain(output, values)
    # The narration's numbers are the interpreter's, and agree with the closed form.
    assert all(np.isclose(g, got[name]) for name, _, g in ex.gradients)
    assert all(ok for *_, ok in ex.closed)
    if not args.quiet:
        print(ex)
    write(gd.draw(output, values), ex, args.out, "sigmoid_gates")

    print("\n2. The sigmoid collapsed into one gate: local gradient σ(1 - σ)")
    ex = gd.explain(output, values, collapse=["sigmoid"])
    assert len(ex.steps) == 5  # σ, +, +, *, *
    assert all(np.isclose(g, got[name]) for name, _, g in ex.gradients)
    if not args.quiet:
        print(ex)
    write(gd.draw(output, values, collapse=["sigmoid"]), ex, args.out, "sigmoid_collapsed")

    print("\nThe slide's numbers, and graphdl's (2 decimals): they agree")
    for name, slide in SLIDE.items():
        label = "f" if name == "f" else f"∂f/∂{name}"
        print(f"  {label:<7}{got[name]:>8.2f}{slide:>8.2f}")


if __name__ == "__main__":
    main()
