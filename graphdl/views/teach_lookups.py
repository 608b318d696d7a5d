"""How the narration tells an embedding lookup (a `take` along axis 0, `lookups.Lookup`): as the
one-hot rows S times the table W, y = S·W, so that the table's gradient Sᵀ·∂y adds each slice of
the upstream gradient into its row and leaves the other rows 0. The functions take the
`steps.Backprop` being built (`bp`) for its circuit and its way with numbers."""

from __future__ import annotations

import html as htmllib

import numpy as np

from graphdl.views.lookups import lookup
from graphdl.views.numbers import rows_text, shape_text
from graphdl.views.teach_printers import tex_name


def reads(bp, gate):
    """The rows an axis-0 take gate reads at the probe point (its `Lookup`), else None."""
    found = lookup(bp.circuit, gate.node) if gate.kind == "op" else None
    return None if found is None or found.writes else found


def tables(bp):
    """Handle -> what one index selects, for the inputs read only by lookups (their
    gradients are zero outside the rows read)."""
    out = {}
    for w in bp.circuit.wrt:
        uses = bp.consumers.get(id(w), [])
        found = [reads(bp, gate) for gate, k in uses if k == 0]
        if uses and len(found) == len(uses) and None not in found:
            out[bp.circuit.handle(w)] = found[0].units
    return out


def rows_read(bp, lk):
    """rows [2] of W_in (center = 2): the one-hot e_2 times W_in."""
    c = bp.circuit
    table, index = c.handle(lk.table), c.handle(lk.index)
    one_hot = _one_hot(bp, lk)
    return (f"{lk.units} {rows_text(lk.rows)} of {table} ({index} = "
            f"{_indices(c.value(lk.index))}): the one-hot {one_hot.spoken} times {table}")


def table_term(bp, t, gate, lk, upstream):
    """The table's term of a lookup: y = S·W with S the one-hot rows, so ∂W = Sᵀ·∂y, which
    adds each slice of the upstream gradient into its row; the other rows get 0."""
    table, y = t.handle, gate.handle
    one_hot = _one_hot(bp, lk)
    written = _rows_written(lk, table)
    t.rule = (f"{y} = {one_hot.text}·{table} (one-hot × matrix), so {bp.d(table)} = "
              f"{one_hot.back_text(bp.d(y))}: {written}")
    out = tex_name(bp.out)
    t.rule_latex = (rf"{tex_name(y)} = {one_hot.latex}\,{tex_name(table)} \;\Rightarrow\; "
                    rf"\frac{{\partial {out}}}{{\partial {tex_name(table)}}} = "
                    + one_hot.back_latex(rf"\frac{{\partial {out}}}{{\partial {tex_name(y)}}}")
                    + r"\quad\text{(" + written.replace("_", r"\_") + ")}")
    t.rule_mathml = htmllib.escape(t.rule)
    t.plugged = _rows_added(bp, lk, np.asarray(upstream), np.asarray(t.contribution))
    t.shown = rows_only(bp, t.contribution, lk.distinct, lk.units)


def rows_only(bp, array, rows, units):
    """(5,3), 0 outside rows [2] (‖·‖=0.364): an array that is zero but in `rows`."""
    norm = bp.num(np.linalg.norm(np.ravel(array)))
    return f"{shape_text(np.shape(array))}, 0 outside {units} {rows_text(rows)} (‖·‖={norm})"


def _one_hot(bp, lk):
    c = bp.circuit
    return _OneHot(lk, c.handle(lk.index), np.ndim(c.value(lk.index)) == 0)


def _rows_written(lk, table):
    """added into row 2 of W_in only; the other 4 rows get 0; row 3 twice: its two
    gradients add."""
    distinct = lk.distinct
    counts = [int(np.count_nonzero(lk.rows == r)) for r in distinct]
    which = (f"{lk.unit} {distinct[0]}" if len(distinct) == 1
             else f"{lk.units} {rows_text(distinct)}")
    text = f"added into {which} of {table} only"
    others = lk.size - len(distinct)
    if others:
        text += (f"; the other {others} {lk.units} get 0" if others > 1
                 else f"; the other {lk.unit} gets 0")
    repeated = [(r, n) for r, n in zip(distinct, counts) if n > 1]
    if len(repeated) == 1:
        (r, n), = repeated
        text += f"; {lk.unit} {r} {_times(n)}: its {_count(n)} gradients add"
    elif repeated:
        listed = ", ".join(f"{lk.unit} {r} {_times(n)}" for r, n in repeated[:4])
        more = ", …" if len(repeated) > 4 else ""
        text += f"; {listed}{more}: the gradients of a repeated {lk.unit} add"
    return text


def _rows_added(bp, lk, upstream, total, limit=4):
    """row 2 ← [...]; row 3 ← [a] + [b] = [a + b]: the upstream slices each row receives and
    their sum, the table's gradient in that row."""
    slices = upstream.reshape(lk.rows.size, *total.shape[1:])
    shown = []
    for r in lk.distinct[:limit]:
        parts = [bp.num(slices[j]) for j in np.flatnonzero(lk.rows == r)]
        text = f"{lk.unit} {r} ← " + " + ".join(parts)
        if len(parts) > 1:
            text += f" = {bp.num(total[r])}"
        shown.append(text)
    more = len(lk.distinct) - limit
    return "; ".join(shown) + (f"; … ({more} more {lk.units})" if more > 0 else "")


class _OneHot:
    """The one-hot rows S of a lookup y = S·W: e_2ᵀ for one index, [e_3 e_0]ᵀ for a few,
    one_hot(words) for many; in text and LaTeX, and the table's gradient Sᵀ·∂y."""

    FEW = 4

    def __init__(self, lk, index, scalar):
        self.rows, self.index = [int(r) for r in lk.rows], index
        self.single = scalar  # one index: y is one row, S one one-hot vector
        self.few = len(self.rows) <= self.FEW

    @property
    def spoken(self):
        if self.single:
            return f"e_{self.rows[0]}"
        if self.few:
            return "rows " + ", ".join(f"e_{r}ᵀ" for r in self.rows)
        return f"matrix one_hot({self.index})"

    @property
    def text(self):
        if self.single:
            return f"e_{self.rows[0]}ᵀ"
        if self.few:
            return "[" + " ".join(f"e_{r}" for r in self.rows) + "]ᵀ"
        return f"one_hot({self.index})"

    @property
    def latex(self):
        if self.single:
            return rf"e_{{{self.rows[0]}}}^{{\top}}"
        if self.few:
            return (r"\begin{bmatrix}" + " & ".join(f"e_{{{r}}}" for r in self.rows)
                    + r"\end{bmatrix}^{\top}")
        return rf"\operatorname{{one\_hot}}\left({tex_name(self.index)}\right)"

    def back_text(self, dy):
        if self.single:
            return f"e_{self.rows[0]}·({dy})ᵀ"
        return f"{self.text[:-1]}·{dy}" if self.few else f"{self.text}ᵀ·{dy}"

    def back_latex(self, dy):
        if self.single:
            return rf"e_{{{self.rows[0]}}}\left({dy}\right)^{{\top}}"
        if self.few:
            return self.latex.removesuffix(r"^{\top}") + dy
        return rf"{self.latex}^{{\top}} {dy}"


_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _count(n):
    return _NUMBERS[n] if n < len(_NUMBERS) else str(n)


def _times(n):
    return "twice" if n == 2 else f"{_count(n)} times"


def _indices(value):
    """Index values as fed: 2, [3, 0], [4, 0, 7, …] (512 in all) (8,64)."""
    a = np.asarray(value)
    if a.ndim == 0:
        return str(int(a))
    return rows_text(a) + (f" {shape_text(a.shape)}" if a.ndim > 1 else "")
