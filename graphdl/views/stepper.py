"""The HTML stepper of `Explanation.html()`: one frame per backward step over one drawing.

Self-contained and offline: the drawing is inline SVG (gates and wires carry ids), rules are
MathML (rendered natively by browsers) with a text fallback, and a few lines of JavaScript show
one frame at a time, highlight the current gate and its wires, and reveal the gradients on the
wires step by step. Without JavaScript every frame and every gradient is shown.
"""

from __future__ import annotations

import html
import re
import uuid

# The drawing is never scaled below one CSS pixel per point, so the wires' 11 pt numbers stay
# 11 px: a wide network scrolls inside its box, which follows the current gate.
MIN_PX_PER_PT = 1.0

PAGE_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em; color: #1f2328; }
"""

# Every rule is scoped to the stepper's root, so a notebook can hold several beside its own page.
CSS = """
.gd-stepper { font-family: Helvetica, Arial, sans-serif; color: #1f2328; }
.gd-stepper:focus { outline: none; }
.gd-stepper h1 { font-size: 1.3em; }
.gd-stepper .drawing { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.5em;
                       overflow: auto; max-height: 75vh; background: white; }
.gd-stepper .drawing svg { width: 100%; height: auto; }
.gd-stepper .grad.later { visibility: hidden; }
.gd-stepper .grad.new { fill: #d1008f; font-weight: bold; }
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
.gd-stepper nav label { margin-left: 2em; color: #57606a; }
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
# only the keys pressed inside it, and leaves the URL alone. Frame k shows the gradients of the
# frames up to k (each .grad says its frame), k's own as new; "show all" shows every one.
JS = """
(function (root, page) {
  root.classList.add('js');
  var frames = Array.prototype.slice.call(root.querySelectorAll('.frame'));
  var grads = Array.prototype.slice.call(root.querySelectorAll('.grad'));
  var drawing = root.querySelector('.drawing'), all = root.querySelector('.all');
  var k = 0;
  function mark(ids, cls, on) {
    (ids || '').split(' ').forEach(function (id) {
      var el = id && root.querySelector('[id="' + id + '"]');
      if (el) { el.classList.toggle(cls, on); }
    });
  }
  function reveal() {
    grads.forEach(function (g) {
      var at = parseInt(g.getAttribute('data-frame'), 10);
      g.classList.toggle('later', at > k && !all.checked);
      g.classList.toggle('new', at === k);
    });
  }
  function follow() {  // scroll the current gate and its new gradients into the drawing's view
    var marked = root.querySelectorAll('.hl, .grad.new');
    if (!marked.length) { return; }
    var box = drawing.getBoundingClientRect(), l = Infinity, r = -Infinity, t = Infinity,
        b = -Infinity;
    Array.prototype.forEach.call(marked, function (el) {
      var e = el.getBoundingClientRect();
      l = Math.min(l, e.left); r = Math.max(r, e.right);
      t = Math.min(t, e.top); b = Math.max(b, e.bottom);
    });
    if (l < box.left || r > box.right) { drawing.scrollLeft += (l + r - box.left - box.right) / 2; }
    if (t < box.top || b > box.bottom) { drawing.scrollTop += (t + b - box.top - box.bottom) / 2; }
  }
  function show(i) {
    var old = frames[k];
    mark(old.dataset.gate, 'hl', false); mark(old.dataset.edges, 'hl-edge', false);
    old.classList.remove('current');
    k = Math.max(0, Math.min(frames.length - 1, i));
    var f = frames[k];
    f.classList.add('current');
    mark(f.dataset.gate, 'hl', true); mark(f.dataset.edges, 'hl-edge', true);
    root.querySelector('.counter').textContent = f.dataset.label;
    reveal();
    follow();
    if (page && history.replaceState) { history.replaceState(null, '', '#' + f.dataset.name); }
  }
  root.querySelector('.prev').onclick = function () { show(k - 1); };
  root.querySelector('.next').onclick = function () { show(k + 1); };
  all.onchange = reveal;
  (page ? document : root).addEventListener('keydown', function (e) {
    if (e.target === all) { return; }  // space toggles the box
    if (e.key === 'ArrowRight' || e.key === ' ') { show(k + 1); e.preventDefault(); }
    if (e.key === 'ArrowLeft') { show(k - 1); }
  });
  var named = frames.map(function (f) { return f.dataset.name; });
  show(page ? Math.max(0, named.indexOf(location.hash.slice(1))) : 0);  // steps.html#step4
})"""


def _svg(ex, index):
    from graphdl.views.viz import DotNotFound, draw

    try:
        svg = draw(None, circuit=ex.circuit, ids=True, **ex.drawing_options).svg()
    except DotNotFound as e:
        return f"<p>{html.escape(str(e))}</p>"
    svg = re.sub(r"^<\?xml[^>]*>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.DOTALL)
    # as wide as the box, but between legible and Graphviz's own size (1 pt = 4/3 px)
    svg = re.sub(r'<svg width="([\d.]+)pt"', lambda m: (
        f'<svg style="min-width: {float(m[1]) * MIN_PX_PER_PT:.0f}px; '
        f'max-width: {float(m[1]) * 4 / 3:.0f}px" width="{m[1]}pt"'), svg, count=1)
    return _tag_gradients(svg, ex, index)


def _computed_at(ex, index):
    """Wire id -> the frame computing the gradient drawn on it: the output's seed 1 comes with
    step 1, a wire into a gate with the step through that gate (`index`: step -> its frame)."""
    at = {f"eout{y.id}": index[1] for y in ex.circuit.outputs} if ex.steps else {}
    for i, step in enumerate(ex.steps, 1):
        for t in step.terms:
            at[f"e{t.source.id}_{step.gate.node.id}_{t.position}"] = index[i]
    return at


def _tag_gradients(svg, ex, index):
    """Class each wire's gradient line (red text in the edge's group) as `grad`, with the frame
    computing it (`_computed_at`; any other comes with the last frame, the gradients')."""
    from graphdl.views.viz import RED

    at, last = _computed_at(ex, index), index["last"]
    parts = re.split(r'(<g id="[^"]*" class="[^"]*">)', svg)  # a group's opening, its content
    for j in range(1, len(parts), 2):
        edge = re.fullmatch(r'<g id="([^"]*)" class="edge">', parts[j])
        if edge:
            parts[j + 1] = re.sub(f'<text (?=[^>]*fill="{RED}")',
                                  f'<text class="grad" data-frame="{at.get(edge[1], last)}" ',
                                  parts[j + 1])
    return "".join(parts)


def _frame(name, label, detail, body, gate="", edges=""):
    """A frame: `name` in the URL (#step4), `label` in the counter and its heading ("Step 4 of
    8", one numbering), `detail` after it."""
    title = f"{label}: {detail}" if detail else label
    return (f'<section class="frame" data-name="{name}" data-label="{label}" data-gate="{gate}" '
            f'data-edges="{edges}"><h2>{html.escape(title)}</h2>{body}</section>')


def _frames(ex):
    """The frames: the forward table, each conv/pool window's forward frames, one per backward
    step (a conv/pool step followed by its windows' backward frames), the gradients; and the
    index of each step's frame (1, 2, ...; "last": the final frame's)."""
    c = ex.circuit
    e = html.escape
    frames = []
    rows = "".join(f"<tr><td>{e(g.handle)}</td><td>{e(f)}</td></tr>" for g, f in ex.forward)
    frames.append(_frame("forward", "Forward pass", f"{len(ex.forward)} values",
                         f"<table>{rows}</table>",
                         edges=" ".join(f"eout{y.id}" for y in c.outputs)))
    windows = {id(ws.node): ws for ws in ex.windows}
    for ws in windows.values():
        frames += _window_frames(ws, "Forward pass", forward=True)
    index = {}
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
        ws = windows.get(id(gate.node))
        if ws is not None and ws.note and not ws.positions:
            body.append(f'<div class="num">(no windows: {e(ws.note)})</div>')
        index[i] = len(frames)
        frames.append(_frame(f"step{i}", f"Step {i} of {len(ex.steps)}",
                             f"gate {label} ({gate.handle})", "".join(body),
                             gate=f"g{gate.node.id}", edges=edges))
        if ws is not None and ws.positions and ws.has_grad:
            frames += _window_frames(ws, f"Step {i} of {len(ex.steps)}", forward=False)
    if ex.gradients:
        items = "".join(f"<li><code>{e(ex.sum_text(h, parts, g))}</code></li>"
                        for h, parts, g in ex.gradients)
        closed = ""
        if ex.closed:
            closed = (f"<h3>Closed forms (gd.symbolic_grad), compared {e(ex.compared)}</h3><ul>"
                      + "".join(f"<li><code>{e(ex.d(h))} = {e(ex.verdict(v, g, ok))}</code></li>"
                                for h, _, v, g, ok in ex.closed) + "</ul>")
        frames.append(_frame("gradients", "Gradients", "", f"<ul>{items}</ul>{closed}",
                             gate=" ".join(f"g{w.id}" for w in c.wrt)))
    index["last"] = len(frames) - 1
    return frames, index


def _window_frames(ws, label, forward):
    """One frame per output cell of a conv/pool gate (`window_steps`): its window forward, or
    its gradient flowing back; labelled as the frame they follow ("Step 3 of 5 · window 2/9")."""
    from graphdl.views import window_render as wr

    make = wr.forward_frame if forward else wr.backward_frame
    frames = []
    count = len(ws.positions)
    for k in range(count):
        heading, grids, lines = make(ws, k)
        if k == 0:
            lines = wr.header(ws) + lines
        if k == count - 1 and not forward and (check := wr.check_line(ws)):
            lines = lines + [check]
        name = f"{ws.handle}-{'forward' if forward else 'backward'}{k + 1}"
        frames.append(_frame(name, f"{label} · window {k + 1} of {count}", heading,
                             wr.html_body(grids, lines), gate=f"g{ws.node.id}"))
    return frames


def _title(ex):
    return f"Backpropagation through {html.escape(ex.out)}, step by step"


def _stepper(ex, root_id, page):
    """The stepper's root <div>: title, buttons, drawing, frames, and the script that steps."""
    frames, index = _frames(ex)
    intro = (f"Green: forward values. Red: gradients of {html.escape(ex.out)} flowing back "
             "along each wire, each from the step that computes it (bold magenta: the current "
             "step's).")
    return _root(root_id, page, _title(ex), intro, _svg(ex, index), frames)


def _root(root_id, page, title, intro, drawing, frames):
    js = f"{JS}(document.getElementById('{root_id}'), {'true' if page else 'false'});"
    return f"""<div class="gd-stepper" id="{root_id}" tabindex="-1">
<h1>{title}</h1>
<p>{intro}
Keys ← → step through the frames.</p>
<nav><button class="prev">◀ previous</button><span class="counter"></span>
<button class="next">next ▶</button>
<label><input type="checkbox" class="all"> show all gradients</label></nav>
<div class="drawing">{drawing}</div>
{''.join(frames)}
<script>{js}</script>
</div>"""


def stepper_html(ex):
    """The stepper as a self-contained page (`Explanation.html()`)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_title(ex)}</title>
<style>{PAGE_CSS}{_css()}</style></head>
<body>
{_stepper(ex, "stepper", page=True)}
</body></html>
"""


def stepper_fragment(ex):
    """The stepper as one <div> for a notebook's output (`Explanation._repr_html_`): its style,
    ids and keys scoped to it, so several live in one notebook, and the URL left alone."""
    return f"<style>{_css()}</style>\n{_stepper(ex, _root_id(), page=False)}"


def windows_fragment(ws):
    """One conv/pool gate's window frames alone, as a notebook's stepper (`WindowSteps`)."""
    frames = _window_frames(ws, "Forward pass", forward=True)
    if ws.has_grad:
        frames += _window_frames(ws, "Backward", forward=False)
    if not frames:
        return f"<p>{html.escape(ws.title)}: {html.escape(ws.note)}</p>"
    intro = ("Each frame: the window at one output cell over the input, then its gradient "
             "flowing back to the input cells.")
    return f"<style>{_css()}</style>\n" + _root(_root_id(), False, html.escape(ws.title), intro,
                                                "", frames)


def _root_id():
    return f"gd-stepper-{uuid.uuid4().hex[:12]}"


def _css():
    from graphdl.views.window_render import HTML_CSS

    return CSS + HTML_CSS
