"""The HTML stepper of `Explanation.html()`: one frame per backward step over one drawing.

Self-contained and offline: the drawing is inline SVG (gates and wires carry ids), rules are
MathML (rendered natively by browsers) with a text fallback, and a few lines of JavaScript show
one frame at a time and highlight the current gate and its wires. Without JavaScript every
frame is shown, one after another.
"""

from __future__ import annotations

import html
import re
import uuid

PAGE_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em; color: #1f2328; }
"""

# Every rule is scoped to the stepper's root, so a notebook can hold several beside its own page.
CSS = """
.gd-stepper { font-family: Helvetica, Arial, sans-serif; color: #1f2328; }
.gd-stepper:focus { outline: none; }
.gd-stepper h1 { font-size: 1.3em; }
.gd-stepper .drawing { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.5em;
                       overflow-x: auto; background: white; }
.gd-stepper .drawing svg { max-width: 100%; height: auto; }
.gd-stepper .frame { border-left: 4px solid #d1008f; padding: 0.3em 1em; margin: 1em 0; }
.gd-stepper .frame h2 { font-size: 1.1em; margin: 0.2em 0 0.5em; }
.gd-stepper .frame h3 { font-size: 1em; }
.gd-stepper .frame pre, .gd-stepper .frame td { font-family: Menlo, Consolas, monospace;
                                                font-size: 0.92em; }
.gd-stepper .frame table { border-collapse: collapse; }
.gd-stepper .frame td { padding: 1px 0.8em 1px 0; }
.gd-stepper .rule { margin: 0.2em 0 0.2em 1.2em; }
.gd-stepper .rule math { font-size: 1.1em; }
.gd-stepper .num { color: #57606a; margin-left: 2.4em; font-family: Menlo, Consolas, monospace; }
.gd-stepper .up { color: #cf222e; }
.gd-stepper nav { position: sticky; top: 0; background: white; padding: 0.5em 0; z-index: 2; }
.gd-stepper nav button { font-size: 1em; padding: 0.3em 1em; }
.gd-stepper .counter { margin: 0 1em; color: #57606a; }
.gd-stepper.js .frame { display: none; }
.gd-stepper.js .frame.current { display: block; }
.gd-stepper .hl > ellipse, .gd-stepper .hl > polygon, .gd-stepper .hl > path {
    stroke: #d1008f !important; stroke-width: 4px; }
.gd-stepper .hl > ellipse, .gd-stepper .hl > polygon { fill: #ffe3f4 !important; }
.gd-stepper .hl > text { fill: #d1008f !important; font-weight: bold; }  /* inputs: no outline */
.gd-stepper .hl-edge > path { stroke: #d1008f !important; stroke-width: 3px; }
.gd-stepper .hl-edge > polygon { stroke: #d1008f !important; fill: #d1008f !important; }
"""

# Looks up everything inside its root (ids of the drawing included, which repeat when a notebook
# shows one circuit twice). A page takes the arrow keys and the URL's #frame; an embedded stepper
# only the keys pressed inside it, and leaves the URL alone.
JS = """
(function (root, page) {
  root.classList.add('js');
  var frames = Array.prototype.slice.call(root.querySelectorAll('.frame'));
  var k = 0;
  function mark(ids, cls, on) {
    (ids || '').split(' ').forEach(function (id) {
      var el = id && root.querySelector('[id="' + id + '"]');
      if (el) { el.classList.toggle(cls, on); }
    });
  }
  function show(i) {
    var old = frames[k];
    mark(old.dataset.gate, 'hl', false); mark(old.dataset.edges, 'hl-edge', false);
    old.classList.remove('current');
    k = Math.max(0, Math.min(frames.length - 1, i));
    var f = frames[k];
    f.classList.add('current');
    mark(f.dataset.gate, 'hl', true); mark(f.dataset.edges, 'hl-edge', true);
    root.querySelector('.counter').textContent = (k + 1) + ' / ' + frames.length;
    if (page && history.replaceState) { history.replaceState(null, '', '#' + (k + 1)); }
  }
  root.querySelector('.prev').onclick = function () { show(k - 1); };
  root.querySelector('.next').onclick = function () { show(k + 1); };
  (page ? document : root).addEventListener('keydown', function (e) {
    if (e.key === 'ArrowRight' || e.key === ' ') { show(k + 1); e.preventDefault(); }
    if (e.key === 'ArrowLeft') { show(k - 1); }
  });
  show(page ? (parseInt(location.hash.slice(1), 10) || 1) - 1 : 0);  // steps.html#4: frame 4
})"""


def _svg(ex):
    from graphdl.views.viz import DotNotFound, draw

    try:
        svg = draw(None, circuit=ex.circuit, ids=True, **ex.drawing_options).svg()
    except DotNotFound as e:
        return f"<p>{html.escape(str(e))}</p>"
    svg = re.sub(r"^<\?xml[^>]*>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
    return re.sub(r"<!--.*?-->\s*", "", svg, flags=re.DOTALL)


def _frame(title, body, gate="", edges=""):
    return (f'<section class="frame" data-gate="{gate}" data-edges="{edges}">'
            f"<h2>{html.escape(title)}</h2>{body}</section>")


def _frames(ex):
    """The frames: the forward table, one per backward step, the gradients."""
    c = ex.circuit
    e = html.escape
    frames = []
    rows = "".join(f"<tr><td>{e(g.handle)}</td><td>{e(f)}</td></tr>" for g, f in ex.forward)
    frames.append(_frame(f"Forward pass: {len(ex.forward)} values", f"<table>{rows}</table>",
                         edges=" ".join(f"eout{y.id}" for y in c.outputs)))
    for i, step in enumerate(ex.steps, 1):
        gate = step.gate
        label = gate.label.replace("\n", " ")
        edges = " ".join(f"e{src.id}_{gate.node.id}_{k}" for k, src, so in gate.operands
                         if not so)
        if gate.node is c.output:
            up = f"{ex.d(gate.handle)} = 1 (the output)"
        else:
            up = ex.sum_text(gate.handle, step.parts, step.upstream)
        body = [f"<p><code>{e(step.forward)}</code></p>",
                f'<p class="up">upstream: {e(up)}</p>']
        for t in step.terms:
            math = t.rule_mathml if t.rule_mathml and t.rule_mathml.startswith("<math") else ""
            body.append(f'<div class="rule">→ <b>{e(t.handle)}</b>: local rule '
                        f'{math} <span title="text form">{"" if math else e(t.rule)}</span></div>')
            if math:
                body.append(f'<div class="num">{e(t.rule)}</div>')
            if t.plugged:
                body.append(f'<div class="num">{e(t.plugged)}</div>')
            if t.local is not None and not hasattr(t.local, "shape") or \
                    (t.local is not None and getattr(t.local, "ndim", 1) == 0 and
                     getattr(step.upstream, "ndim", 0) == 0):
                contrib = (f"{ex.d(t.handle)} contribution = local × upstream = "
                           f"{ex.num(t.local)} × {ex.paren(step.upstream)} = "
                           f"{ex.num(t.contribution)}")
            else:
                contrib = f"{ex.d(t.handle)} contribution = {t.shown or ex.num(t.contribution)}"
            body.append(f'<div class="num"><b>{e(contrib)}</b></div>')
            if t.note:
                body.append(f'<div class="num">({e(t.note)})</div>')
        frames.append(_frame(f"Step {i} of {len(ex.steps)}: gate {label} ({gate.handle})",
                             "".join(body), gate=f"g{gate.node.id}", edges=edges))
    if ex.gradients:
        items = "".join(f"<li><code>{e(ex.sum_text(h, parts, g))}</code></li>"
                        for h, parts, g in ex.gradients)
        closed = ""
        if ex.closed:
            closed = (f"<h3>Closed forms (gd.symbolic_grad), compared {e(ex.compared)}</h3><ul>"
                      + "".join(f"<li><code>{e(ex.d(h))} = {e(ex.verdict(v, g, ok))}</code></li>"
                                for h, _, v, g, ok in ex.closed) + "</ul>")
        frames.append(_frame("Gradients", f"<ul>{items}</ul>{closed}",
                             gate=" ".join(f"g{w.id}" for w in c.wrt)))
    return frames


def _title(ex):
    return f"Backpropagation through {html.escape(ex.out)}, step by step"


def _stepper(ex, root_id, page):
    """The stepper's root <div>: title, buttons, drawing, frames, and the script that steps."""
    js = f"{JS}(document.getElementById('{root_id}'), {'true' if page else 'false'});"
    return f"""<div class="gd-stepper" id="{root_id}" tabindex="-1">
<h1>{_title(ex)}</h1>
<p>Green: forward values. Red: gradients of {html.escape(ex.out)} flowing back along each wire.
Keys ← → step through the frames.</p>
<nav><button class="prev">◀ previous</button><span class="counter"></span>
<button class="next">next ▶</button></nav>
<div class="drawing">{_svg(ex)}</div>
{''.join(_frames(ex))}
<script>{js}</script>
</div>"""


def stepper_html(ex):
    """The stepper as a self-contained page (`Explanation.html()`)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_title(ex)}</title>
<style>{PAGE_CSS}{CSS}</style></head>
<body>
{_stepper(ex, "stepper", page=True)}
</body></html>
"""


def stepper_fragment(ex):
    """The stepper as one <div> for a notebook's output (`Explanation._repr_html_`): its style,
    ids and keys scoped to it, so several live in one notebook, and the URL left alone."""
    root_id = f"gd-stepper-{uuid.uuid4().hex[:12]}"
    return f"<style>{CSS}</style>\n{_stepper(ex, root_id, page=False)}"
