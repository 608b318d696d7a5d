"""The narration's model of one forward and backward pass (what `gd.explain` tells): how each
gate computed its value, and one `Step` per gate, from the output back, with a `Term` per wire
to an operand: its local rule, the numbers plugged in and the gradient sent back.

An elementwise gate's rule is `sympy.diff` of its SymPy form (`OpDef.sym`), a user op's
included; another op's is its `OpDef.narration`, called with the `Wire` narrated. An op without
one (a gradient op such as `conv2d_input_grad`, whose narration says why; a custom op) is
narrated by the generic rule: "its pullback applied to the upstream gradient". An embedding
lookup is told as the one-hot product it is (`teach_lookups`).
"""

from __future__ import annotations

import functools
import html as htmllib
import re
from dataclasses import dataclass

import numpy as np
import sympy

from graphdl.errors import GraphError
from graphdl.ir import Node
from graphdl.ops import elementwise as ew
from graphdl.ops import matmul as mm
from graphdl.ops.scalar import Sigmoid
from graphdl.views import teach_lookups as tl
from graphdl.views.circuit import parts_played, unchecked
from graphdl.views.numbers import fmt, shape_text, summary
from graphdl.views.teach_printers import (
    as_latex,
    as_text,
    numsym,
    plug,
    repeats,
    rule_mathml,
)


def natural_key(name):
    """Sorts names as a reader counts: w2 before w10, W_in before x."""
    return [int(part) if part.isdigit() else part.casefold()
            for part in re.split(r"(\d+)", name)]


def _part_rule(gate, src):
    """'; to q: ...', the rule of the part `src` plays in the collapsed composite of `gate`
    (where it names its arguments' parts), the sum of theirs where it plays several; else ''."""
    mine = parts_played(gate.region, src)
    rules = gate.region.composite.part_rules
    return f"; to {', '.join(mine)}: {' + '.join(rules[p] for p in mine)}" if mine else ""


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
    """The backward step through one gate: its `upstream` gradient, the consumers' `parts` of
    it, and a `Term` per operand it sends a gradient to."""

    def __init__(self, gate, upstream, parts):
        self.gate, self.upstream, self.parts = gate, upstream, parts  # parts: [(handle, value)]
        self.terms = []
        self.forward = ""  # how the gate computed its value


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


class Backprop:
    """The forward table and the backward steps of `circuit` at its input values, with numbers
    as the narration writes them (`digits` significant digits)."""

    def __init__(self, circuit, digits):
        self.circuit = c = circuit
        self.digits = digits
        if not c.has_values:
            raise GraphError("explain needs input values: gd.explain(f, values={...})")
        self.out = c.handle(c.output)
        self._named = {}  # gate node id -> its expression in handles (v5 -> "h1·w5")
        self.forward = [(g, self._forward(g)) for g in c.gates if g.kind != "const"]
        self.steps = self._steps() if c.has_grads else []
        self.gradients = self._gradients() if c.has_grads else []

    # -- numbers --------------------------------------------------------------------------------
    def num(self, v):
        """A value as the narration prints it: a number, a short list, or a tensor's summary."""
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
        """The name of the output's gradient with respect to `handle`: ∂f/∂w0."""
        return f"∂{self.out}/∂{handle}"

    def sum_text(self, handle, parts, g):
        """∂out/∂handle as the sum of its consumers' contributions `parts` ([(who, value)])."""
        if len(parts) > 1:
            terms = " + ".join(f"{self.grad_num(handle, v, paren=k > 0)} (from {who})"
                               for k, (who, v) in enumerate(parts))
            return f"{self.d(handle)} = {terms} = {self.grad_num(handle, g)}"
        return f"{self.d(handle)} = {self.grad_num(handle, g)}"

    def grad_num(self, handle, g, paren=False):
        """A gradient as text (in parentheses when negative and `paren`); that of a table read
        only by lookups as the rows where it is not zero."""
        units = self._tables.get(handle)
        a = np.asarray(g)
        if units is None or a.ndim == 0:
            return self.paren(g) if paren else self.num(g)
        rows = np.flatnonzero(np.any(a.reshape(len(a), -1) != 0, axis=1))
        return tl.rows_only(self, a, rows, units)

    @functools.cached_property
    def _tables(self):
        return tl.tables(self)

    # -- forward --------------------------------------------------------------------------------
    def _forward(self, gate):
        c = self.circuit
        value = c.value(gate.node)
        if gate.kind == "input":
            return f"{gate.handle} = {self.num(value)}"
        rows = tl.reads(self, gate)
        if rows is not None:
            return f"{gate.handle} = {tl.rows_read(self, rows)} = {self.num(value)}"
        expr, syms = self._gate_expr(gate)
        if expr is None or expr.is_Symbol:  # no formula, or an identity (stop_gradient)
            return f"{gate.handle} = {self._call_text(gate)} = {self.num(value)}"
        named = plug(expr, {k: sympy.Symbol(c.handle(n)) for k, n in syms.items()})
        self._named[id(gate.node)] = as_text(named)
        shown = [self.num(value)]
        if all(np.ndim(c.value(s)) == 0 for s in syms.values()):
            plugged = plug(expr, {k: numsym(c.value(n), self.digits) for k, n in syms.items()})
            shown.insert(0, as_text(plugged))
        text = f"{gate.handle} = {as_text(named)}"
        for more in shown:
            if not repeats(text.rsplit(" = ", 1)[-1], more):
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
    def consumers(self):
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
        consumers = self.consumers
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
            t.rule = f"d({as_text(expr)})/d{var} = {as_text(d)}"
            t.rule_latex = (rf"\frac{{\partial}}{{\partial {var}}}\left({as_latex(expr)}\right) = "
                            rf"{as_latex(d)}")
            t.rule_mathml = rule_mathml(expr, var, d)
            scalar = all(np.ndim(c.value(n)) == 0 for n in syms.values())
            if scalar:
                mapping = {s: numsym(c.value(n), self.digits) for s, n in syms.items()}
                if own is not None:
                    mapping = {own: numsym(c.value(gate.node), self.digits)}
                plugged = plug(d, mapping)
                up = float(upstream)
                local = float(t.contribution) / up if up != 0 else self._eval(d, syms)
                t.local = local
                binds = ", ".join(f"{s} = {c.handle(n)} = {self.num(c.value(n))}"
                                  for s, n in syms.items() if s in d.free_symbols)
                if own is not None:
                    binds = f"{as_text(own)} = {gate.handle} = {self.num(c.value(gate.node))}"
                if not d.free_symbols:
                    t.plugged = ""  # a constant rule: nothing to plug in
                elif repeats(as_text(plugged), self.num(local)):
                    t.plugged = binds  # the rule is the operand itself: y = x1 = -2
                else:
                    t.plugged = f"{binds}: {as_text(plugged)} = {self.num(local)}"
                    t.plugged_latex = f"{as_latex(plugged)} = {self.num(local)}"
            else:
                t.plugged = "elementwise, at every position"
                local = self._eval(d, syms)
                if local is not None:
                    t.local = local
                    t.plugged += f": local derivative {self.num(local)}"
        elif k == 0 and (rows := tl.reads(self, gate)) is not None:
            tl.table_term(self, t, gate, rows, upstream)
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
                symbol = comp.symbol.replace(chr(10), " ")
                return f"{symbol} block: {comp.rule}{_part_rule(gate, src)}"
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
        """(handle, parts, gradient) per input, by name in natural order (w1, w2, ..., w10, x1),
        not the graph's topological order. Inputs keep no order of declaration to follow: an
        input is interned, so one declared again in another graph is the earlier node."""
        c = self.circuit
        consumers = self.consumers
        out = []
        for w in sorted(c.wrt, key=lambda n: natural_key(c.handle(n))):
            g = c.grad(w)
            if g is None:
                g = np.zeros(w.shape)
            out.append((c.handle(w), self._parts(w, consumers), g))
        return out
