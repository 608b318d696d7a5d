"""An `Explanation` written out: as plain text (`str(ex)`) and as Markdown with LaTeX math
(`ex.markdown()`); the HTML stepper (`ex.html()`) is `stepper`."""

from __future__ import annotations

import numpy as np
import sympy

from graphdl.views.teach_printers import as_latex, as_text, tex_name


def plain_text(ex):
    """The forward table, one paragraph per backward step, the gradients, the closed forms."""
    lines = [f"Forward pass: {len(ex.forward)} values, inputs first"]
    lines += ["  " + f for _, f in ex.forward]
    if not ex.steps:
        lines.append("(no backward pass: the output is not a floating-point scalar)")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"Backward pass: {ex.d('(each value)')}, from {ex.out} back to the "
                 "inputs, one gate at a time")
    lines.append(f"  {ex.d(ex.out)} = 1 (the output itself)")
    for i, step in enumerate(ex.steps, 1):
        lines += [""] + step_lines(ex, i, step)
    lines += ["", "Gradients"]
    for handle, parts, g in ex.gradients:
        lines.append("  " + ex.sum_text(handle, parts, g))
    if ex.closed:
        lines += ["", ("Closed forms (gd.symbolic_grad), evaluated at the same values and "
                       f"compared {ex.compared}")]
        for handle, expr, value, g, ok in ex.closed:
            text = as_text(expr)
            if len(text) > 160:
                text = f"<{sympy.count_ops(expr)} operations>"
            lines.append(f"  {ex.d(handle)} = {text}")
            lines.append(f"      = {ex.verdict(value, g, ok)}")
    return "\n".join(lines)


def step_lines(ex, i, step):
    """Backward step `i`: the gate, its upstream gradient, and per wire the rule and numbers."""
    gate = step.gate
    label = gate.label.replace("\n", " ")
    lines = [f"Step {i}. gate {label}   ({step.forward})"]
    if gate.node is ex.circuit.output:
        lines.append(f"  upstream {ex.d(gate.handle)} = 1 (the output)")
    else:
        lines.append("  upstream " + ex.sum_text(gate.handle, step.parts, step.upstream))
    for t in step.terms:
        lines.append(f"  → {t.handle}: local rule {t.rule}")
        if t.plugged:
            lines.append(f"      {t.plugged}")
        fan = len(ex.consumers.get(id(t.source), [])) > 1
        if t.local is not None and np.ndim(t.local) == 0 and np.ndim(step.upstream) == 0:
            lines.append(f"      {ex.d(t.handle)} {'+=' if fan else '='} local × upstream = "
                         f"{ex.num(t.local)} × {ex.paren(step.upstream)} = "
                         f"{ex.num(t.contribution)}")
        else:
            lines.append(f"      {ex.d(t.handle)} {'+=' if fan else '='} "
                         f"{t.shown or ex.num(t.contribution)}")
        if t.note:
            lines.append(f"      ({t.note})")
    return lines


def markdown(ex):
    """The narration in Markdown, rules as LaTeX math ($...$)."""
    md = [f"### Forward pass of ${tex_name(ex.out)}$", "", "| value | computed as |",
          "| --- | --- |"]
    for gate, f in ex.forward:
        cell = f.replace("|", "\\|")
        md.append(f"| `{gate.handle}` | {cell} |")
    if not ex.steps:
        return "\n".join(md)
    md += ["", (f"### Backward pass: $\\partial {tex_name(ex.out)}/\\partial\\,\\cdot$, one "
           "gate at a time"), ""]
    for i, step in enumerate(ex.steps, 1):
        gate = step.gate
        md.append(f"**Step {i}. gate `{gate.label.replace(chr(10), ' ')}`** "
                  f"({step.forward})  ")
        up = "1 (the output)" if gate.node is ex.circuit.output else \
            ex.sum_text(gate.handle, step.parts, step.upstream)
        md.append(f"upstream: {up}  ")
        for t in step.terms:
            md.append(f"- to `{t.handle}`: ${t.rule_latex}$" if t.rule_latex and
                      t.rule_latex != t.rule else f"- to `{t.handle}`: {t.rule}")
            if t.plugged_latex:
                md.append(f"  - plugged in: ${t.plugged_latex}$")
            elif t.plugged:
                md.append(f"  - {t.plugged}")
            if t.local is not None and np.ndim(t.local) == 0 and np.ndim(step.upstream) == 0:
                md.append(f"  - local × upstream = {ex.num(t.local)} × "
                          f"{ex.paren(step.upstream)} = **{ex.num(t.contribution)}**")
            else:
                md.append(f"  - contribution: **{t.shown or ex.num(t.contribution)}**")
            if t.note:
                md.append(f"  - ({t.note})")
        md.append("")
    md += ["### Gradients", ""]
    for handle, parts, g in ex.gradients:
        md.append(f"- {ex.sum_text(handle, parts, g)}")
    if ex.closed:
        md += ["", "### Closed forms", "", f"Compared {ex.compared}.", ""]
        for handle, expr, value, g, ok in ex.closed:
            tex = as_latex(expr) if sympy.count_ops(expr) < 80 else \
                f"\\text{{{sympy.count_ops(expr)} operations}}"
            md.append(f"- $\\frac{{\\partial {tex_name(ex.out)}}}{{\\partial "
                      f"{tex_name(handle)}}} = {tex}$ = "
                      + (f"{ex.num(value)} ✓" if ok else ex.verdict(value, g, ok)))
    return "\n".join(md)
