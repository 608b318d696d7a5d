"""Step-by-step narrations of backpropagation on a graph: `gd.explain`.

    ex = gd.explain(f, values={"w0": 2.0, ...})
    print(ex)              # plain text: forward table, then one backward step per gate
    ex.markdown()          # LaTeX math in Markdown
    ex.html("steps.html")  # an offline stepper: one frame per step over the drawing

Each backward step names the gate, its local derivative rule in symbols (from the op's SymPy
scalar form through `sympy.diff` for elementwise gates; the matrix rules for `@`; the rules of
reductions and movement ops), the numbers plugged in, the upstream gradient and the result.
A value that fans out gets the sum of its consumers' contributions, shown term by term. For a
scalar graph, each gradient is checked against its closed form (`gd.symbolic_grad`).

The steps are built in `steps` (an embedding lookup's in `teach_lookups`), printed with
`teach_printers`, written out by `teach_render` and, as HTML, by `stepper`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sympy

from graphdl.errors import GraphError
from graphdl.views import teach_render
from graphdl.views.circuit import Circuit
from graphdl.views.composites import one_hot_regions
from graphdl.views.numbers import fmt
from graphdl.views.steps import Backprop


def explain(outputs, values, wrt=None, *, collapse=(), digits=4, closed_form=True,
            draw_options=None):
    """Narrate the forward and backward pass of the scalar `outputs` at `values` (input name ->
    value). `wrt`: input names or nodes the gradient flows to (default every float input);
    `collapse`: as for `gd.draw`; `digits`: significant digits of the numbers; `closed_form`:
    compare with `gd.symbolic_grad` for scalar graphs. A one-hot encoding is narrated as the one
    gate `one_hot(labels, n)`, not as the comparison with 0..n-1 it is built from."""
    collapse = [collapse] if isinstance(collapse, str) else list(collapse)
    circuit = Circuit(outputs, values, collapse + one_hot_regions(outputs), wrt)
    return Explanation(circuit, digits, closed_form, draw_options)


class Explanation(Backprop):
    """The narration of one forward and backward pass; `str()`, `.markdown()`, `.html()`."""

    def __init__(self, circuit, digits=4, closed_form=True, drawing_options=None):
        super().__init__(circuit, digits)
        self.drawing_options = drawing_options or {}
        self.closed = self._closed_forms() if closed_form and circuit.has_grads else []

    # -- closed forms ---------------------------------------------------------------------------
    def _closed_forms(self):
        from graphdl.views.symbolic import symbolic_grad

        c = self.circuit
        if not c.scalar_output or any(n.shape != () for n in c.order) or len(c.order) > 200:
            return []
        out = []
        subs = {sympy.Symbol(n.name): float(c.value(n)) for n in c.inputs}
        for handle, _, g in self.gradients:
            try:
                w = next(n for n in c.wrt if c.handle(n) == handle)
                expr = symbolic_grad(c.output, w, sigmoid=True)
                value = float(sympy.N(expr.subs(subs).rewrite(sympy.exp)))
            except (GraphError, TypeError, ValueError):
                return []
            out.append((handle, expr, value, float(g)))
        # The step-by-step numbers are the graph's own, rounded in its dtype; the closed form is
        # exact. Both rounding and cancellation scale with the largest gradient.
        scale = max(abs(g) for *_, g in out) if out else 0.0
        return [(handle, expr, value, g,
                 math.isclose(value, g, rel_tol=self.rel_tol, abs_tol=self.rel_tol * scale))
                for handle, expr, value, g in out]

    @functools.cached_property
    def precision(self):
        """The least precise floating dtype the graph computes in: the step-by-step numbers
        carry its rounding."""
        floats = {n.dtype for n in self.circuit.order if n.dtype.kind == "f"}
        return max(floats, key=lambda t: np.finfo(t).eps, default=np.dtype(np.float64))

    @property
    def rel_tol(self):
        """Half the significant digits of `precision`: 1.5e-8 in float64, 3.5e-4 in float32,
        0.031 in float16 (a wrong rule is off by far more; rounding through a scalar graph by
        far less)."""
        return math.sqrt(float(np.finfo(self.precision).eps))

    @property
    def compared(self):
        """How closed forms are compared with the step-by-step numbers, in words."""
        return f"to {self.precision.name} precision (relative {self.rel_tol:.1e})"

    def verdict(self, value, g, ok):
        """The closed form's value against the step-by-step `g`: equal, or different with the
        digits that show the difference."""
        if ok:
            return f"{self.num(value)} == the step-by-step result ✓"
        digits = next((k for k in range(self.digits, 18) if fmt(value, k, significant=True)
                       != fmt(g, k, significant=True)), 17)
        return (f"{fmt(value, digits, significant=True)} != the step-by-step "
                f"{fmt(g, digits, significant=True)} ✗")

    @functools.cached_property
    def windows(self):
        """Each conv2d/max_pool2d/avg_pool2d gate window by window (`window_steps`): print one,
        `.strip()` draws its frames; the HTML stepper shows them among the steps."""
        from graphdl.views.window_steps import window_gates

        return window_gates(self)

    # -- renderings -----------------------------------------------------------------------------
    def __str__(self):
        return teach_render.plain_text(self)

    def _step_text(self, i, step):
        """Backward step `i` as lines of text (the lecture example prints one)."""
        return teach_render.step_lines(self, i, step)

    def markdown(self):
        """The narration in Markdown, rules as LaTeX math ($...$)."""
        return teach_render.markdown(self)

    def _repr_markdown_(self):
        return self.markdown()

    def __repr__(self):
        return f"<Explanation: {len(self.steps)} backward steps of {self.out}>"

    # -- HTML -----------------------------------------------------------------------------------
    def html(self, path=None):
        """A self-contained HTML stepper (no network): one frame per step, the current gate
        highlighted on the drawing. Writes `path` when given; returns the HTML text."""
        from graphdl.views.stepper import stepper_html

        text = stepper_html(self)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    def _repr_html_(self):
        """Jupyter's display: the stepper embedded in the notebook, scoped to its output."""
        from graphdl.views.stepper import stepper_fragment

        return stepper_fragment(self)
