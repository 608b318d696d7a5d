"""Conv/pool windows (`window_steps`) written out: as text, as the stepper's frames (HTML
tables) and as a PNG/SVG strip (one Graphviz node of HTML-like tables).

A frame is a list of grids and lines of text. Each grid is a caption and rows of `Cell`s whose
role says how it is drawn: the window over the input, the arg-max, the padding, the output cell
being filled, the input cells a gradient flows back to. The two table dialects (the browser's,
Graphviz's) only map roles to style.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from graphdl.views.numbers import fmt

# role -> (background, text colour, bold)
STYLE = {
    "plain": ("#ffffff", "#1f2328", False),
    "pad": ("#eaeef2", "#8c959f", False),
    "window": ("#fff1b8", "#1f2328", True),
    "winner": ("#ffd33d", "#1f2328", True),
    "current": ("#ffe3f4", "#d1008f", True),
    "grad": ("#ffffff", "#cf222e", False),
    "routed": ("#ffe3f4", "#cf222e", True),
}
CELL_PT = 14  # the strip's numbers: legible at the PNG's natural size
CELL_W, CELL_H = 42, 26  # points


@dataclass
class Cell:
    text: str
    role: str = "plain"


def num(v):
    """A grid's number: three significant digits, a true minus."""
    return fmt(v + 0.0, 3, significant=True).replace("-", "−").replace("inf", "∞")  # no −0


# -- the frames as grids and lines ---------------------------------------------------------------
def forward_frame(ws, k):
    """(heading, grids, lines) of output cell k: the window over the input, the kernel, the sum
    or maximum, the output filled up to k."""
    pos = ws.positions[k]
    n, c, r, q = pos.index
    shown = {cell: ("winner" if ws.kind == "max" and i == pos.winner else "window")
             for i, cell in enumerate(pos.cells)}
    grids = [(f"{ws.x_handle}[{n},{p}]", rows) for p, rows in _input_planes(ws, n, pos, shown)]
    if ws.kind == "conv":
        grids += [(f"{ws.w_handle}[{c},{p}]", _plane(ws.w[c, j], lambda *_: "window"))
                  for j, p in enumerate(_planes(pos))]
    grids.append((f"{ws.handle}[{n},{c}]", _output(ws, k)))
    out = f"{ws.handle}[{n},{c},{r},{q}]"
    if ws.kind == "conv":
        lines = _rows_of(ws, [f"{_paren(a)}×{_paren(b)}" for a, b in zip(pos.inputs, pos.weights)],
                         " + ")
        lines[0] = f"{out} = Σ {ws.x_handle}·{ws.w_handle} = {lines[0]}"
    elif ws.kind == "avg":
        lines = [f"{out} = ({' + '.join(num(a) for a in pos.inputs)}) / {num(pos.divisor)}"]
    else:
        lines = [f"{out} = max({', '.join(num(a) for a in pos.inputs)})"]
    lines[-1] += f" = {num(pos.output)}"
    return f"window at {out}", grids, lines


def backward_frame(ws, k):
    """(heading, grids, lines) of output cell k's gradient flowing back to the input cells."""
    pos = ws.positions[k]
    n, c, r, q = pos.index
    g = f"∂{ws.ex.out}/∂{ws.handle}[{n},{c},{r},{q}]"
    dx = f"∂{ws.ex.out}/∂{ws.x_handle}"
    grids = [(f"∂{ws.ex.out}/∂{ws.handle}[{n},{c}]",
              _output(ws, k, gradient=True))]
    if ws.kind == "conv":
        grids += [(f"{ws.w_handle}[{c},{p}]", _plane(ws.w[c, j], lambda *_: "plain"))
                  for j, p in enumerate(_planes(pos))]
    routed = {cell for cell, _ in pos.routes}
    acc = ws.accumulated(k + 1)
    grids += [(f"{dx}[{n},{p}] so far", rows) for p, rows in
              _grad_planes(ws, n, _planes(pos), acc, routed)]
    if ws.kind == "conv":
        lines = _rows_of(ws, [f"{_paren(w)}×{_paren(pos.upstream)} = {num(w * pos.upstream)}"
                              for w in pos.weights], ", ")
        lines.insert(0, f"{g} = {num(pos.upstream)} flows back through each weight "
                        f"{ws.w_handle}: window cell += weight × {num(pos.upstream)}")
        lines.append("(padding cells get nothing)" if len(routed) < len(pos.cells) else "")
    elif ws.kind == "avg":
        share = num(pos.upstream / pos.divisor)
        lines = [f"{g} = {num(pos.upstream)}, shared evenly:",
                 (f"each of the {len(routed)} cells += {num(pos.upstream)} / "
                  f"{num(pos.divisor)} = {share}")]
    elif pos.winner is None:
        lines = [f"{g}: the window lies in the padding, nothing flows back"]
    else:
        (cell, v), = pos.routes
        biggest = num(pos.inputs[pos.winner])
        lines = [f"{g} = {num(v)}: all of it to the maximum, {biggest}",
                 f"{dx}[{n},{cell[0]},{cell[1]},{cell[2]}] += {num(v)}; the other cells += 0"]
    return f"gradient of {ws.handle}[{n},{c},{r},{q}]", grids, [t for t in lines if t]


def check_line(ws):
    """Whether the contributions add up to graphdl's gradient, in words."""
    if ws.checked is None:
        return ""
    dx = f"∂{ws.ex.out}/∂{ws.x_handle}"
    return (f"summed per cell, the contributions are {dx} as graphdl's gradient computes it "
            + ("✓" if ws.checked else "✗ (they differ)"))


def _planes(pos):
    return sorted({cell[0] for cell in pos.cells})


def _input_planes(ws, n, pos, shown):
    """[(channel, rows)]: the padded input planes the window reads, its cells marked."""
    rows_range, cols_range = _extent(ws)
    fill = "−∞" if ws.kind == "max" else "0"
    out = []
    for p in _planes(pos):
        rows = []
        for r in rows_range:
            row = []
            for q in cols_range:
                cell = (p, r, q)
                inside = ws.inside(cell)
                text = num(ws.x[n, p, r, q]) if inside else (fill if cell in shown else "")
                role = shown.get(cell, "plain" if inside else "pad")
                row.append(Cell(text, role))
            rows.append(row)
        out.append((p, rows))
    return out


def _grad_planes(ws, n, planes, acc, routed):
    h, w = ws.x.shape[2:]
    return [(p, [[Cell(num(acc[n, p, r, q]), "routed" if (p, r, q) in routed else "grad")
                  for q in range(w)] for r in range(h)]) for p in planes]


def _extent(ws):
    """The rows and columns drawn: the input, its padding and as far as any window reaches."""
    h, w = ws.x.shape[2:]
    cells = [cell for pos in ws.positions for cell in pos.cells]
    top = min([-ws.padding[0]] + [r for _, r, _ in cells])
    bottom = max([h - 1 + ws.padding[1]] + [r for _, r, _ in cells])
    left = min([-ws.padding[2]] + [q for *_, q in cells])
    right = max([w - 1 + ws.padding[3]] + [q for *_, q in cells])
    return range(top, bottom + 1), range(left, right + 1)


def _plane(values, role):
    return [[Cell(num(v), role(i, j)) for j, v in enumerate(row)] for i, row in enumerate(values)]


def _output(ws, k, gradient=False):
    """The output plane of position k, cell k marked: the values told up to k, or (`gradient`)
    the output's whole gradient."""
    n, c = ws.positions[k].index[:2]
    values = ws.g if gradient else ws.y
    order = {pos.index: i for i, pos in enumerate(ws.positions)}
    rows = []
    for r in range(values.shape[2]):
        row = []
        for q in range(values.shape[3]):
            i = order.get((n, c, r, q))
            filled = i is not None and (gradient or i <= k)
            role = "current" if i == k else ("grad" if gradient else "plain")
            row.append(Cell(num(values[n, c, r, q]) if filled else "", role))
        rows.append(row)
    return rows


def _rows_of(ws, items, sep):
    """A kernel's items, one line per kernel row."""
    kw = ws.kernel[1]
    return [sep.join(items[i:i + kw]) + (sep.rstrip() if i + kw < len(items) else "")
            for i in range(0, len(items), kw)]


def _paren(v):
    s = num(v)
    return f"({s})" if s.startswith("−") else s


# -- text ----------------------------------------------------------------------------------------
def header(ws):
    """The lines before the first window: the gate's title and its note, if any."""
    return [ws.title] + ([f"({ws.note})"] if ws.note else [])


def text(ws):
    """The windows as plain text: one paragraph per output cell, forward then backward."""
    title, *note = header(ws)
    lines = [title] + [f"  {n}" for n in note]
    for k in range(len(ws.positions)):
        heading, _, body = forward_frame(ws, k)
        lines += [f"  {heading}:"] + [f"    {t}" for t in body]
    if ws.has_grad:
        for k in range(len(ws.positions)):
            heading, _, body = backward_frame(ws, k)
            lines += [f"  {heading}:"] + [f"    {t}" for t in body]
        if check := check_line(ws):
            lines.append("  " + check)
    return "\n".join(lines)


# -- HTML (the stepper's frames) -----------------------------------------------------------------
def html_body(grids, lines):
    """A frame's body: the grids side by side, then the lines."""
    tables = "".join(_html_grid(caption, rows) for caption, rows in grids)
    text_lines = "".join(f'<div class="num">{html.escape(t)}</div>' for t in lines)
    return f'<div class="grids">{tables}</div>{text_lines}'


def _html_grid(caption, rows):
    cells = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows)
    return (f'<table class="grid"><caption>{html.escape(caption)}</caption>{cells}</table>')


def _html_cell(cell):
    bg, fg, bold = STYLE[cell.role]
    weight = "font-weight: bold; " if bold else ""
    return (f'<td class="w-{cell.role}" style="background: {bg}; color: {fg}; {weight}">'
            f"{html.escape(cell.text)}</td>")


HTML_CSS = """
.gd-stepper .drawing:empty { display: none; }
.gd-stepper .grids { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.gd-stepper table.grid { border-collapse: collapse; }
.gd-stepper table.grid caption { font-size: 0.85em; color: #57606a; padding-bottom: 0.2em; }
.gd-stepper .frame table.grid td { border: 1px solid #d0d7de; min-width: 2.6em; height: 1.6em;
                                   padding: 0 0.3em; text-align: center; }
"""


# -- the strip (Graphviz HTML-like tables) -------------------------------------------------------
def strip(ws, which="both", per_row=4):
    """A `Drawing` of the frames side by side, `per_row` to a row: "forward", "backward" or
    "both" (the forward frames, then the backward ones on new rows)."""
    from graphdl.views.viz import Drawing

    rows = []
    if which in ("forward", "both"):
        rows += _chunks([forward_frame(ws, k) for k in range(len(ws.positions))], per_row)
    if which in ("backward", "both") and ws.has_grad:
        rows += _chunks([backward_frame(ws, k) for k in range(len(ws.positions))], per_row)
    body = "".join("<TR>" + "".join(f'<TD VALIGN="TOP" ALIGN="LEFT">{_dot_frame(f)}</TD>'
                                    for f in row) + "</TR>" for row in rows)
    foot = [ws.note, check_line(ws)]
    foot_rows = "".join(f'<TR><TD COLSPAN="{per_row}" ALIGN="LEFT">{_dot_text(t, 12)}</TD></TR>'
                        for t in foot if t)
    title = f'<TR><TD COLSPAN="{per_row}" ALIGN="LEFT">{_dot_text(ws.title, 16, True)}</TD></TR>'
    d = Drawing(name=f"windows_{ws.handle}")
    d.attr("graph", bgcolor="white", margin="0.2")
    d.node("strip", f'<<TABLE BORDER="0" CELLSPACING="14">{title}{body}{foot_rows}</TABLE>>',
           shape="plaintext", fontname="Helvetica")
    return d


def _chunks(items, n):
    return [items[i:i + n] for i in range(0, len(items), n)]


def _dot_frame(frame):
    heading, grids, lines = frame
    tables = "".join(f'<TD VALIGN="TOP" ALIGN="LEFT">{_dot_grid(caption, rows)}</TD>'
                     for caption, rows in grids)
    text_rows = "".join(f'<TR><TD COLSPAN="{len(grids)}" ALIGN="LEFT">{_dot_text(t, 12)}</TD>'
                        "</TR>" for t in lines)
    return (f'<TABLE BORDER="1" CELLBORDER="0" COLOR="#d0d7de" CELLSPACING="6" CELLPADDING="2">'
            f'<TR><TD COLSPAN="{len(grids)}" ALIGN="LEFT">{_dot_text(heading, 13, True)}</TD></TR>'
            f"<TR>{tables}</TR>{text_rows}</TABLE>")


def _dot_grid(caption, rows):
    # fixed to its cells' size: Graphviz would stretch it to the frame's widest line
    cols = len(rows[0]) if rows else 1
    size = f'WIDTH="{cols * CELL_W + 2}" HEIGHT="{len(rows) * CELL_H + 24}" FIXEDSIZE="TRUE"'
    cells = "".join("<TR>" + "".join(_dot_cell(c) for c in row) + "</TR>" for row in rows)
    return (f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="0" {size} '
            f'COLOR="#8c959f"><TR><TD COLSPAN="{cols}" BORDER="0" HEIGHT="22">'
            f"{_dot_text(caption, 11)}</TD></TR>{cells}</TABLE>")


def _dot_cell(cell):
    bg, fg, bold = STYLE[cell.role]
    return (f'<TD BGCOLOR="{bg}" WIDTH="{CELL_W}" HEIGHT="{CELL_H}" FIXEDSIZE="TRUE">'
            f"{_dot_text(cell.text, CELL_PT, bold, fg)}</TD>")


def _dot_text(t, size, bold=False, color="#1f2328"):
    s = html.escape(t) or " "
    if bold:
        s = f"<B>{s}</B>"
    return f'<FONT POINT-SIZE="{size}" COLOR="{color}">{s}</FONT>'
