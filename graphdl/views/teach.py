"""Step-by-step narrations of backpropagation on a graph: `gd.explain`.

    ex = gd.explain(f, values={"w0": 2.0, ...})
    print(ex)              # plain text: forward table, then one backward step per gate
    ex.markdown()          # LaTeX math in Markdown
    ex.html("steps.html")  # an offline stepper: one frame per step over the drawing

Each backward step names the gate, its local derivative rule in symbols (from the op's SymPy
scalar form through `sympy.diff` for elementwise gates; the matrix rules for `@`; the rules of
reductions and movement ops), the numbers plugged in, the upstream gradient and the result.
A value that fans out gets the sum of its consumers' contributions, shown term by term.
"""

from __future__ import annotations

import functools
import html as htmllib
import math
import re
from dataclasses import dataclass

import numpy as np
import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.mathml import MathMLPresentationPrinter
from sympy.printing.str import StrPrinter

from graphdl.errors import GraphError
from graphdl.ir import Node, topological_order
from graphdl.ops import elementwise as ew
from graphdl.ops import matmul as mm
from graphdl.ops import movement as mv
from graphdl.ops.composite import one_hot, one_hot_mask
from graphdl.ops.scalar import Sigmoid
from graphdl.views.circuit import Circuit, fmt, lookup, rows_text, shape_text, summary, unchecked

_SUP = {"2": "²", "3": "³"}


# ---------------------------------------------------------------------------------------------
# SymPy text forms


def _step_condition(e):
    """`>` or `≥` for a step function H(x, h0) that is 0 or 1 at 0 (relu's derivative is
    H(x, 0)), None for another value at 0."""
    at_zero = e.args[1] if len(e.args) > 1 else None
    return {sympy.S.Zero: ">", sympy.S.One: "≥"}.get(at_zero)


class _TextPrinter(StrPrinter):
    """SymPy's text form, in the names the narration uses: σ, relu, where, ==, ≠, and a step
    function as `1 if x > 0 else 0`."""

    def _print_Sigmoid(self, e):
        return f"σ({self._print(e.args[0])})"

    def _print_Relu(self, e):
        return f"relu({self._print(e.args[0])})"

    def _print_Where(self, e):
        return f"where({', '.join(self._print(a) for a in e.args)})"

    def _print_Heaviside(self, e):
        cond = _step_condition(e)
        if cond is None:
            return super()._print_Heaviside(e)
        return f"(1 if {self._print(e.args[0])} {cond} 0 else 0)"

    def _print_Equality(self, e):
        return f"{self._print(e.lhs)} == {self._print(e.rhs)}"

    def _print_Unequality(self, e):
        return f"{self._print(e.lhs)} ≠ {self._print(e.rhs)}"


class _LatexPrinter(LatexPrinter):
    def _print_Sigmoid(self, e, exp=None):
        return self._named(r"\sigma", e, exp)

    def _print_Relu(self, e, exp=None):
        return self._named(r"\operatorname{relu}", e, exp)

    def _print_Where(self, e, exp=None):
        return self._named(r"\operatorname{where}", e, exp)

    def _named(self, name, e, exp):
        args = ", ".join(self._print(a) for a in e.args)
        return rf"{name}\left({args}\right)" + (f"^{{{exp}}}" if exp else "")

    def _print_Heaviside(self, e, exp=None):
        cond = _step_condition(e)
        if cond is None:
            return super()._print_Heaviside(e, exp)
        rel = {">": ">", "≥": r"\geq"}[cond]
        return (rf"\left(1 \text{{ if }} {self._print(e.args[0])} {rel} 0 \text{{ else }} "
                r"0\right)")


class _MathMLPrinter(MathMLPresentationPrinter):
    def _print_Heaviside(self, e):
        cond = _step_condition(e)
        if cond is None:
            return self._print_Function(e)
        row = self.dom.createElement("mrow")
        parts = [("mo", "("), ("mn", "1"), ("mtext", "\u00a0if\u00a0"), e.args[0], ("mo", cond),
                 ("mn", "0"), ("mtext", "\u00a0else\u00a0"), ("mn", "0"), ("mo", ")")]
        for part in parts:
            if isinstance(part, tuple):
                element = self.dom.createElement(part[0])
                element.appendChild(self.dom.createTextNode(part[1]))
            else:
                element = self._print(part)
            row.appendChild(element)
        return row


def _text(e):
    """A compact one-line form: x·y, -1/x², σ(x)·(1 - σ(x))."""
    s = _TextPrinter({"order": "none"}).doprint(e)
    s = re.sub(r"\(\((-[0-9.e+-]+)\)\)", r"(\1)", s)  # exp((-1)) -> exp(-1)
    s = s.replace("**", "^").replace("*", "·")
    for k, v in _SUP.items():
        s = s.replace(f"^{k}", v)
    return s


def _latex(e):
    return _LatexPrinter().doprint(e)


def _mathml(e):
    return "<math>" + _MathMLPrinter().doprint(e) + "</math>"


def _tex_name(handle):
    """A handle in LaTeX: one letter with digits as a subscripted symbol (w0 -> w_{0}, as SymPy
    prints the inputs), anything longer upright (sigmoid, In_h1 -> \\mathrm{In\\_h1})."""
    m = re.fullmatch(r"([A-Za-z])(\d*)", handle)
    if m:
        return m[1] + (f"_{{{m[2]}}}" if m[2] else "")
    return r"\mathrm{" + re.sub(r"([_#$%&{}])", r"\\\1", handle) + "}"


def _is_number(text, number):
    """Whether `text` only repeats `number` ("(-2)" for -2): nothing to show."""
    return text in (number, f"({number})")


def _plug(expr, mapping):
    """`expr` with symbols replaced, keeping the printed order of the operands."""
    with sympy.evaluate(False):
        return expr.xreplace(mapping)


def _numsym(value, digits):
    """A symbol printed as the number: plugging numbers in without SymPy evaluating them."""
    s = fmt(value, digits, significant=True)
    return sympy.Symbol(f"({s})" if s.startswith("-") else s)


# ---------------------------------------------------------------------------------------------
# Steps


class Term:
    """One wire of a step: the gradient the gate sends back to one operand."""

    def __init__(self, source, handle, position):
        self.source, self.handle, self.position = source, handle, position
        self.rule = ""  # text form of the local rule
        self.rule_latex = ""
        self.rule_mathml = ""
        self.plugged = ""  # the rule with numbers in
        self.plugged_latex = ""
        self.local = None  # the local derivative's value (elementwise gates)
        self.contribution = None
        self.shown = ""  # the contribution as text, where its summary would hide it (lookups)
        self.note = ""  # e.g. summed over broadcast axes


class Step:
    def __init__(self, gate, upstream, parts):
        self.gate, self.upstream, self.parts = gate, upstream, parts  # parts: [(handle, value)]
        self.terms = []
        self.forward = ""  # how the gate computed its value


class Explanation:
    """The narration of one forward and backward pass; `str()`, `.markdown()`, `.html()`."""

    def __init__(self, circuit, digits=4, closed_form=True, drawing_options=None):
        self.circuit = c = circuit
        self.digits = digits
        self.drawing_options = drawing_options or {}
        if not c.has_values:
            raise GraphError("explain needs input values: gd.explain(f, values={...})")
        self.out = c.handle(c.output)
        self._named = {}  # gate node id -> its expression in handles (v5 -> "h1·w5")
        self.forward = [(g, self._forward(g)) for g in c.gates if g.kind != "const"]
        self.steps = self._steps() if c.has_grads else []
        self.gradients = self._gradients() if c.has_grads else []
        self.closed = self._closed_forms() if closed_form and c.has_grads else []

    # -- numbers --------------------------------------------------------------------------------
    def num(self, v):
        a = np.asarray(v)
        if a.ndim == 0:
            return fmt(a, self.digits, significant=True) if a.dtype.kind in "fiu" else str(a)
        if a.size <= 6:
            entries = ", ".join(fmt(x, self.digits, significant=True) for x in a.ravel())
            return f"[{entries}]" + (f" {shape_text(a.shape)}" if a.ndim > 1 else "")
        return f"{shape_text(a.shape)} {summary(a, self.digits, significant=True)}"

    def paren(self, v):
        """A number, in parentheses when negative."""
        s = self.num(v)
        return f"({s})" if s.startswith("-") else s

    def d(self, handle):
        return f"∂{self.out}/∂{handle}"

    # -- forward --------------------------------------------------------------------------------
    def _forward(self, gate):
        c = self.circuit
        value = c.value(gate.node)
        if gate.kind == "input":
            return f"{gate.handle} = {self.num(value)}"
        rows = self._lookup(gate)
        if rows is not None:
            return f"{gate.handle} = {self._rows_read(rows)} = {self.num(value)}"
        expr, syms = self._gate_expr(gate)
        if expr is None or expr.is_Symbol:  # no formula, or an identity (stop_gradient)
            return f"{gate.handle} = {self._call_text(gate)} = {self.num(value)}"
        named = _plug(expr, {k: sympy.Symbol(c.handle(n)) for k, n in syms.items()})
        self._named[id(gate.node)] = _text(named)
        shown = [self.num(value)]
        if all(np.ndim(c.value(s)) == 0 for s in syms.values()):
            plugged = _plug(expr, {k: _numsym(c.value(n), self.digits) for k, n in syms.items()})
            shown.insert(0, _text(plugged))
        text = f"{gate.handle} = {_text(named)}"
        for more in shown:
            if not _is_number(text.rsplit(" = ", 1)[-1], more):
                text += " = " + more
        return text

    def _call_text(self, gate):
        """A gate as a call on its operands' handles: its label's `·` are the operands
        (`max(·, 0)` -> `max(v2, 0)`, `one_hot(·, 3)` -> `one_hot(y, 3)`), else `label(args)`."""
        args = [self.circuit.handle(src) for _, src, _ in gate.operands]
        label = gate.label.replace("\n", " ")
        if gate.kind == "op" and gate.node.op is mm.MATMUL:
            return " @ ".join(args)
        if label.count("·") == len(args) > 0:
            return re.sub("·", lambda _: args.pop(0), label)
        return f"{label}({', '.join(args)})"

    def _gate_expr(self, gate):
        """(SymPy expression of an elementwise gate, {symbol: operand node}) or (None, {})."""
        n = gate.node
        if gate.kind == "region":
            comp = gate.region.composite
            if comp is None or comp.sym is None:
                return None, {}
            x = sympy.Symbol("x", real=True)
            return comp.sym(x), {x: gate.region.args[0]}
        if n.op.sym is None or n.op.kind != "elementwise" or gate.kind != "op":
            return None, {}
        operand_names = iter(["c", "x", "y"] if n.op is ew.WHERE else ["x", "y", "z"])
        args, syms = [], {}
        for k, inp in enumerate(n.inputs):
            if k in gate.consts and isinstance(gate.consts[k], str):  # known at call time only
                args.append(sympy.Symbol(gate.consts[k], positive=True))
                continue
            if k in gate.consts:
                v = np.asarray(gate.consts[k])
                if v.ndim == 0 or v.size == 1:
                    val = float(v.reshape(()))
                    args.append(sympy.Integer(int(val)) if val.is_integer()
                                else sympy.nsimplify(val, rational=False))
                else:
                    args.append(sympy.Symbol("C"))
                continue
            # real: SymPy differentiates Abs(x) into sign(x) only for real x
            s = sympy.Symbol(next(operand_names), real=True)
            args.append(s)
            syms[s] = unchecked(inp)  # the operand as drawn, not its call-time check
        try:
            attrs = dict(n.attrs)
            return n.op.sym(*args, **attrs), syms
        except (TypeError, ValueError, AttributeError, sympy.SympifyError):
            return None, {}

    # -- backward -------------------------------------------------------------------------------
    @functools.cached_property
    def _consumers(self):
        """source node id -> [(consumer gate, position)] over the drawn wires."""
        out = {}
        for src, gate, k, shape_only in self.circuit.wires():
            if not shape_only:
                out.setdefault(id(src), []).append((gate, k))
        return out

    def _parts(self, node, consumers):
        c = self.circuit
        parts = []
        for gate, k in consumers.get(id(node), []):
            g = c.wire_grad(gate, k)
            if g is not None:
                expr = self._named.get(id(gate.node))
                who = f"{gate.handle} = {expr}" if expr and len(expr) < 30 else \
                    f"{gate.label.replace(chr(10), ' ')} gate {gate.handle}"
                parts.append((who, g))
        return parts

    def _steps(self):
        c = self.circuit
        consumers = self._consumers
        steps = []
        for gate in reversed(c.gates):
            if gate.kind not in ("op", "region"):
                continue
            up = c.grad(gate.node)
            if up is None:
                continue
            terms = [(k, src) for k, src, shape_only in gate.operands
                     if not shape_only and c.wire_grad(gate, k) is not None]
            if not terms:
                continue
            step = Step(gate, up, self._parts(gate.node, consumers))
            step.forward = self._forward(gate)
            expr, syms = self._gate_expr(gate)
            for k, src in terms:
                step.terms.append(self._term(gate, k, src, expr, syms, up))
            steps.append(step)
        return steps

    def _term(self, gate, k, src, expr, syms, upstream):
        c = self.circuit
        t = Term(src, c.handle(src), k)
        t.contribution = c.wire_grad(gate, k)
        var = next((s for s, n in syms.items() if n is src and gate.kind == "region"
                    or n is src and unchecked(gate.node.inputs[k]) is src), None)
        if expr is not None and var is not None:
            d = sympy.diff(expr, var)
            own = None  # the gate's own output inside its derivative: σ(1 - σ), 1 - tanh²
            if isinstance(expr, Sigmoid):
                d = sympy.Mul(expr, 1 - expr, evaluate=False)
                own = expr
            elif expr.func is sympy.tanh:
                d = 1 - expr ** 2
                own = expr
            lhs = sympy.Derivative(expr, var)
            t.rule = f"d({_text(expr)})/d{var} = {_text(d)}"
            t.rule_latex = (rf"\frac{{\partial}}{{\partial {var}}}\left({_latex(expr)}\right) = "
                            rf"{_latex(d)}")
            t.rule_mathml = _mathml(sympy.Eq(lhs, d, evaluate=False))
            scalar = all(np.ndim(c.value(n)) == 0 for n in syms.values())
            if scalar:
                mapping = {s: _numsym(c.value(n), self.digits) for s, n in syms.items()}
                if own is not None:
                    mapping = {own: _numsym(c.value(gate.node), self.digits)}
                plugged = _plug(d, mapping)
                up = float(upstream)
                local = float(t.contribution) / up if up != 0 else self._eval(d, syms)
                t.local = local
                binds = ", ".join(f"{s} = {c.handle(n)} = {self.num(c.value(n))}"
                                  for s, n in syms.items() if s in d.free_symbols)
                if own is not None:
                    binds = f"{_text(own)} = {gate.handle} = {self.num(c.value(gate.node))}"
                if not d.free_symbols:
                    t.plugged = ""  # a constant rule: nothing to plug in
                elif _is_number(_text(plugged), self.num(local)):
                    t.plugged = binds  # the rule is the operand itself: y = x1 = -2
                else:
                    t.plugged = f"{binds}: {_text(plugged)} = {self.num(local)}"
                    t.plugged_latex = f"{_latex(plugged)} = {self.num(local)}"
            else:
                t.plugged = "elementwise, at every position"
                local = self._eval(d, syms)
                if local is not None:
                    t.local = local
                    t.plugged += f": local derivative {self.num(local)}"
        elif k == 0 and (rows := self._lookup(gate)) is not None:
            self._lookup_term(t, gate, rows, upstream)
        else:
            t.rule = self._structured_rule(gate, k, src)
            t.rule_latex = t.rule
            t.rule_mathml = htmllib.escape(t.rule)
        out_shape = gate.node.shape
        if gate.kind == "op" and gate.node.op.broadcasts and src.shape != out_shape \
                and gate.node.op is not mm.MATMUL:
            t.note = (f"{shape_text(out_shape)} summed over the broadcast axes to "
                      f"{t.handle}'s shape {shape_text(src.shape)}")
        return t

    # -- embedding lookups: take along axis 0 ----------------------------------------------------
    def _lookup(self, gate):
        """The rows an axis-0 take gate reads at the probe point (its `Lookup`), else None."""
        found = lookup(self.circuit, gate.node) if gate.kind == "op" else None
        return None if found is None or found.writes else found

    def _rows_read(self, lk):
        """rows [2] of W_in (center = 2): the one-hot e_2 times W_in."""
        c = self.circuit
        table, index = c.handle(lk.table), c.handle(lk.index)
        one_hot = self._one_hot(lk)
        return (f"{lk.units} {rows_text(lk.rows)} of {table} ({index} = "
                f"{_indices(c.value(lk.index))}): the one-hot {one_hot.spoken} times {table}")

    def _one_hot(self, lk):
        c = self.circuit
        return _OneHot(lk, c.handle(lk.index), np.ndim(c.value(lk.index)) == 0)

    def _lookup_term(self, t, gate, lk, upstream):
        """The table's term of a lookup: y = S·W with S the one-hot rows, so ∂W = Sᵀ·∂y, which
        adds each slice of the upstream gradient into its row; the other rows get 0."""
        table, y = t.handle, gate.handle
        one_hot = self._one_hot(lk)
        written = self._rows_written(lk, table)
        t.rule = (f"{y} = {one_hot.text}·{table} (one-hot × matrix), so {self.d(table)} = "
                  f"{one_hot.back_text(self.d(y))}: {written}")
        out = _tex_name(self.out)
        t.rule_latex = (rf"{_tex_name(y)} = {one_hot.latex}\,{_tex_name(table)} \;\Rightarrow\; "
                        rf"\frac{{\partial {out}}}{{\partial {_tex_name(table)}}} = "
                        + one_hot.back_latex(rf"\frac{{\partial {out}}}{{\partial {_tex_name(y)}}}")
                        + r"\quad\text{(" + written.replace("_", r"\_") + ")}")
        t.rule_mathml = htmllib.escape(t.rule)
        t.plugged = self._rows_added(lk, np.asarray(upstream), np.asarray(t.contribution))
        t.shown = self._rows_only(t.contribution, lk.distinct, lk.units)

    def _rows_only(self, array, rows, units):
        """(5,3), 0 outside rows [2] (‖·‖=0.364): an array that is zero but in `rows`."""
        norm = self.num(np.linalg.norm(np.ravel(array)))
        return f"{shape_text(np.shape(array))}, 0 outside {units} {rows_text(rows)} (‖·‖={norm})"

    @functools.cached_property
    def _tables(self):
        """Handle -> what one index selects, for the inputs read only by lookups (their
        gradients are zero outside the rows read)."""
        out = {}
        for w in self.circuit.wrt:
            reads = self._consumers.get(id(w), [])
            found = [self._lookup(gate) for gate, k in reads if k == 0]
            if reads and len(found) == len(reads) and None not in found:
                out[self.circuit.handle(w)] = found[0].units
        return out

    def _grad_num(self, handle, g, paren=False):
        """A gradient as text (in parentheses when negative and `paren`); that of a table read
        only by lookups as the rows where it is not zero."""
        units = self._tables.get(handle)
        a = np.asarray(g)
        if units is None or a.ndim == 0:
            return self.paren(g) if paren else self.num(g)
        rows = np.flatnonzero(np.any(a.reshape(len(a), -1) != 0, axis=1))
        return self._rows_only(a, rows, units)

    def _rows_written(self, lk, table):
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

    def _rows_added(self, lk, upstream, total, limit=4):
        """row 2 ← [...]; row 3 ← [a] + [b] = [a + b]: the upstream slices each row receives and
        their sum, the table's gradient in that row."""
        slices = upstream.reshape(lk.rows.size, *total.shape[1:])
        shown = []
        for r in lk.distinct[:limit]:
            parts = [self.num(slices[j]) for j in np.flatnonzero(lk.rows == r)]
            text = f"{lk.unit} {r} ← " + " + ".join(parts)
            if len(parts) > 1:
                text += f" = {self.num(total[r])}"
            shown.append(text)
        more = len(lk.distinct) - limit
        return "; ".join(shown) + (f"; … ({more} more {lk.units})" if more > 0 else "")

    def _eval(self, d, syms):
        c = self.circuit
        try:
            f = sympy.lambdify(list(syms), d.rewrite(sympy.exp), modules="numpy")
            return np.asarray(f(*(c.value(n).astype(np.float64) for n in syms.values())),
                              dtype=np.float64)
        except (TypeError, ValueError, NameError, AttributeError, KeyError):
            return None

    def _structured_rule(self, gate, k, src):
        c = self.circuit
        n = gate.node
        dy = self.d(gate.handle)
        if gate.kind == "region":
            comp = gate.region.composite
            if comp is not None:
                return f"{comp.symbol.replace(chr(10), ' ')} block: {comp.rule}"
            return (f"{gate.label} block: the chain rule through its {gate.region.size} gates "
                    f"(collapsed), applied to {dy}")
        rule = n.op.narration
        if callable(rule):
            x = c.handle(src)
            return rule(Wire(n, k, src, gate.handle, x, dy, self.d(x),
                             [c.handle(i) for i in n.inputs]))
        if n.op.kind == "custom":
            return f"{gate.label}: its hand-written pullback applied to {dy}"
        return f"{gate.label}: the op's pullback applied to {dy}"

    def _gradients(self):
        c = self.circuit
        consumers = self._consumers
        out = []
        for w in c.wrt:
            g = c.grad(w)
            if g is None:
                g = np.zeros(w.shape)
            out.append((c.handle(w), self._parts(w, consumers), g))
        return out

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

    # -- text -----------------------------------------------------------------------------------
    def __str__(self):
        lines = [f"Forward pass: {len(self.forward)} values, inputs first"]
        lines += ["  " + f for _, f in self.forward]
        if not self.steps:
            lines.append("(no backward pass: the output is not a floating-point scalar)")
            return "\n".join(lines)
        lines.append("")
        lines.append(f"Backward pass: {self.d('(each value)')}, from {self.out} back to the "
                     "inputs, one gate at a time")
        lines.append(f"  {self.d(self.out)} = 1 (the output itself)")
        for i, step in enumerate(self.steps, 1):
            lines += [""] + self._step_text(i, step)
        lines += ["", "Gradients"]
        for handle, parts, g in self.gradients:
            lines.append("  " + self.sum_text(handle, parts, g))
        if self.closed:
            lines += ["", ("Closed forms (gd.symbolic_grad), evaluated at the same values and "
                           f"compared {self.compared}")]
            for handle, expr, value, g, ok in self.closed:
                text = _text(expr)
                if len(text) > 160:
                    text = f"<{sympy.count_ops(expr)} operations>"
                lines.append(f"  {self.d(handle)} = {text}")
                lines.append(f"      = {self.verdict(value, g, ok)}")
        return "\n".join(lines)

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

    def sum_text(self, handle, parts, g):
        """∂out/∂handle as the sum of its consumers' contributions `parts` ([(who, value)])."""
        if len(parts) > 1:
            terms = " + ".join(f"{self._grad_num(handle, v, paren=k > 0)} (from {who})"
                               for k, (who, v) in enumerate(parts))
            return f"{self.d(handle)} = {terms} = {self._grad_num(handle, g)}"
        return f"{self.d(handle)} = {self._grad_num(handle, g)}"

    def _step_text(self, i, step):
        gate = step.gate
        label = gate.label.replace("\n", " ")
        lines = [f"Step {i}. gate {label}   ({step.forward})"]
        if gate.node is self.circuit.output:
            lines.append(f"  upstream {self.d(gate.handle)} = 1 (the output)")
        else:
            lines.append("  upstream " + self.sum_text(gate.handle, step.parts, step.upstream))
        for t in step.terms:
            lines.append(f"  → {t.handle}: local rule {t.rule}")
            if t.plugged:
                lines.append(f"      {t.plugged}")
            fan = len(self._consumers.get(id(t.source), [])) > 1
            if t.local is not None and np.ndim(t.local) == 0 and np.ndim(step.upstream) == 0:
                lines.append(f"      {self.d(t.handle)} {'+=' if fan else '='} local × upstream = "
                             f"{self.num(t.local)} × {self.paren(step.upstream)} = "
                             f"{self.num(t.contribution)}")
            else:
                lines.append(f"      {self.d(t.handle)} {'+=' if fan else '='} "
                             f"{t.shown or self.num(t.contribution)}")
            if t.note:
                lines.append(f"      ({t.note})")
        return lines

    def __repr__(self):
        return f"<Explanation: {len(self.steps)} backward steps of {self.out}>"

    # -- Markdown -------------------------------------------------------------------------------
    def markdown(self):
        """The narration in Markdown, rules as LaTeX math ($...$)."""
        md = [f"### Forward pass of ${_tex_name(self.out)}$", "", "| value | computed as |",
              "| --- | --- |"]
        for gate, f in self.forward:
            cell = f.replace("|", "\\|")
            md.append(f"| `{gate.handle}` | {cell} |")
        if not self.steps:
            return "\n".join(md)
        md += ["", (f"### Backward pass: $\\partial {_tex_name(self.out)}/\\partial\\,\\cdot$, one "
               "gate at a time"), ""]
        for i, step in enumerate(self.steps, 1):
            gate = step.gate
            md.append(f"**Step {i}. gate `{gate.label.replace(chr(10), ' ')}`** "
                      f"({step.forward})  ")
            up = "1 (the output)" if gate.node is self.circuit.output else \
                self.sum_text(gate.handle, step.parts, step.upstream)
            md.append(f"upstream: {up}  ")
            for t in step.terms:
                md.append(f"- to `{t.handle}`: ${t.rule_latex}$" if t.rule_latex and
                          t.rule_latex != t.rule else f"- to `{t.handle}`: {t.rule}")
                if t.plugged_latex:
                    md.append(f"  - plugged in: ${t.plugged_latex}$")
                elif t.plugged:
                    md.append(f"  - {t.plugged}")
                if t.local is not None and np.ndim(t.local) == 0 and np.ndim(step.upstream) == 0:
                    md.append(f"  - local × upstream = {self.num(t.local)} × "
                              f"{self.paren(step.upstream)} = **{self.num(t.contribution)}**")
                else:
                    md.append(f"  - contribution: **{t.shown or self.num(t.contribution)}**")
                if t.note:
                    md.append(f"  - ({t.note})")
            md.append("")
        md += ["### Gradients", ""]
        for handle, parts, g in self.gradients:
            md.append(f"- {self.sum_text(handle, parts, g)}")
        if self.closed:
            md += ["", "### Closed forms", "", f"Compared {self.compared}.", ""]
            for handle, expr, value, g, ok in self.closed:
                tex = _latex(expr) if sympy.count_ops(expr) < 80 else \
                    f"\\text{{{sympy.count_ops(expr)} operations}}"
                md.append(f"- $\\frac{{\\partial {_tex_name(self.out)}}}{{\\partial "
                          f"{_tex_name(handle)}}} = {tex}$ = "
                          + (f"{self.num(value)} ✓" if ok else self.verdict(value, g, ok)))
        return "\n".join(md)

    def _repr_markdown_(self):
        return self.markdown()

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
        return rf"\operatorname{{one\_hot}}\left({_tex_name(self.index)}\right)"

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


# ---------------------------------------------------------------------------------------------
# Narration rules: an elementwise op's is `sympy.diff` of its SymPy form (`OpDef.sym`), a user
# op's included; another op's is its `OpDef.narration`, called with the `Wire` narrated. An op
# without one (a gradient op such as `conv2d_input_grad`, whose narration says why; a custom op)
# is narrated by the generic rule: "its pullback applied to the upstream gradient".


@dataclass
class Wire:
    """What a rule reads: the gate `node` (handle `y`) and its operand `src` (handle `x`) at
    position `k`; `dy`, `dx` the gradients' names; `args` the handles of all its inputs."""

    node: Node
    k: int
    src: Node
    y: str
    x: str
    dy: str
    dx: str
    args: list

    @property
    def shape(self):
        return shape_text(self.src.shape)

    def shape_of(self, node):
        return shape_text(node.shape)


def explain(outputs, values, wrt=None, *, collapse=(), digits=4, closed_form=True,
            draw_options=None):
    """Narrate the forward and backward pass of the scalar `outputs` at `values` (input name ->
    value). `wrt`: input names or nodes the gradient flows to (default every float input);
    `collapse`: as for `gd.draw`; `digits`: significant digits of the numbers; `closed_form`:
    compare with `gd.symbolic_grad` for scalar graphs. A one-hot encoding is narrated as the one
    gate `one_hot(labels, n)`, not as the comparison with 0..n-1 it is built from."""
    collapse = [collapse] if isinstance(collapse, str) else list(collapse)
    circuit = Circuit(outputs, values, collapse + _one_hots(outputs), wrt)
    return Explanation(circuit, digits, closed_form, draw_options)


def _one_hots(outputs):
    """A `(label, node, [labels])` region for every `one_hot(labels, n)` in the graph."""
    outputs = [outputs] if isinstance(outputs, Node) else list(outputs)
    found = []
    for node in topological_order(outputs):
        labels = _one_hot_labels(node)
        if labels is not None:
            found.append((f"one_hot(·, {node.shape[-1]})", node, [labels]))
    return found


def _one_hot_labels(node):
    """The labels `node` is the one-hot encoding (or boolean one-hot mask) of, or None. one_hot
    is cast(labels[..., None] == classes) over checked labels (checked by one_hot itself, or
    already by a loss): the checked labels three (two) inputs up (a loss's check: drawn by
    what it checks), or what they check, confirmed by rebuilding the encoding from it
    (hash-consing makes `is` exact)."""
    if node.ndim == 0 or node.shape[-1] is None or node.op not in (ew.CAST, ew.EQUAL):
        return None
    checked = node
    for _ in range(3 if node.op is ew.CAST else 2):  # the boolean mask is one step shorter
        if not checked.inputs:
            return None
        checked = checked.inputs[0]
    if checked.op is not mv.CHECK_INDEX:
        return None
    for labels in (checked, checked.inputs[0]):
        try:
            rebuilt = (one_hot(labels, node.shape[-1], node.dtype) if node.op is ew.CAST
                       else one_hot_mask(labels, node.shape[-1]))
        except GraphError:
            continue
        if rebuilt is node:
            return labels
    return None
