"""Drawings of graphs as the lecture draws circuits: gates, and on every wire the forward value
(green, above) and the gradient of the output flowing back (red, below).

    dot = gd.draw(f, values={"w0": 2.0, "x0": -1.0, ...})     # a graphviz.Digraph
    dot.render("circuit", format="svg")

The graph is drawn as declared (no optimization). See `graphdl.views.circuit` for how nodes become
gates. Rendering needs Graphviz's `dot` program; without it `draw` still returns the DOT source
(`dot.source`) and rendering raises `DotNotFound` saying how to install it.
"""

from __future__ import annotations

import html
import math
import re

import graphviz
import numpy as np

from graphdl.ir import Node, topological_order
from graphdl.ops import leaf
from graphdl.views.circuit import Circuit, parts_played
from graphdl.views.lookups import lookup
from graphdl.views.numbers import fmt, rows_text, shape_text, summary

LISTED = 4  # the rows a lookup's label and wires list before "…"
GREEN, RED, GREY, MAGENTA, ORANGE = "#1a7f37", "#cf222e", "#8c959f", "#d1008f", "#e36209"
INSTALL = ("Graphviz's `dot` program is not installed, so the drawing cannot be rendered "
           "(its DOT source is in `.source`). Install it with `apt-get install -y graphviz` "
           "(Debian/Ubuntu), `brew install graphviz` (macOS) or `conda install graphviz`.")


class DotNotFound(RuntimeError):
    """Rendering needs Graphviz's `dot` executable, which is not on PATH."""


class Drawing(graphviz.Digraph):
    """A `graphviz.Digraph` that knows its circuit, renders inline in Jupyter, and says how to
    install Graphviz when `dot` is missing."""

    circuit = None
    node_labels = None  # node name (n<id>) -> the label's text, lines joined by spaces
    edge_labels = None  # edge id (e<src>_<gate>_<k>) -> the label's lines (value, gradient...)

    def render(self, *args, **kwargs):
        # graphviz keeps the DOT source it renders from (`circuit` beside `circuit.png`);
        # `cleanup=False` keeps it, `dot.source` has it anyway.
        kwargs.setdefault("cleanup", True)
        try:
            return super().render(*args, **kwargs)
        except graphviz.ExecutableNotFound as e:
            raise DotNotFound(INSTALL) from e

    def pipe(self, *args, **kwargs):
        try:
            return super().pipe(*args, **kwargs)
        except graphviz.ExecutableNotFound as e:
            raise DotNotFound(INSTALL) from e

    def svg(self):
        """The drawing as SVG text."""
        return self.pipe(format="svg", encoding="utf-8")

    def _repr_svg_(self):
        try:
            return self.svg()
        except DotNotFound:
            return None

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        try:
            return {"image/svg+xml": self.svg()}
        except DotNotFound:
            return {"text/plain": self.source + "\n# " + INSTALL}


def draw(outputs, values=None, *, collapse=None, wrt=None, digits=2, color_by_grad=False,
         check=None, group=None, edge_labels="auto", rankdir="auto", ids=False, title=None,
         circuit=None):
    """Draw the graph of `outputs` as a circuit of gates.

    values: input name -> value; every wire then shows its forward value (green, above) and,
        for a scalar output, the gradient flowing back along it (red, below); a legend says so.
        Tensor wires show their shape and the norm (and mean) of value and gradient.
    collapse: composites to draw as one gate (those of `graphdl.ops.composite.COMPOSITES`:
        "sigmoid", "tanh", "softmax", "log_softmax", "cross_entropy", "hinge_loss", "mse",
        "l2"), node names or nodes (the node and the unnamed nodes only it uses: a layer), or
        (label, out, [args]) triples. Default: in a graph of tensors, the losses and softmaxes
        (`AUTO_COLLAPSE`: a loss is one gate, not its dozen numerically careful primitives); in
        a scalar circuit, nothing (the lecture's gates); `()` draws every primitive.
    rankdir: "LR" (left to right), "TB" (top to bottom) or "auto": top to bottom for a graph of
        tensors more than 8 gates deep (an MLP with its loss, a CNN), else left to right.
    digits: decimals of scalar numbers. color_by_grad: colour wires by log ‖gradient‖ (grey:
        vanishing). check: a `gd.check_grad` result; its first wrong edge is highlighted.
    group: cluster gates by the named node they feed (a layer); default: for graphs of more than
        30 gates. edge_labels: "all", "none" or "auto" (big graphs label only the wires leaving
        inputs and named nodes). ids: show each unnamed gate's handle (v1, v2...) as narrated
        by `gd.explain`.
    """
    if circuit is None:
        circuit = Circuit(outputs, values, _default_collapse(outputs, collapse), wrt)
    c = circuit
    return _Drawer(c, digits, color_by_grad, check, group, edge_labels, rankdir, ids, title).run()


def _default_collapse(outputs, collapse):
    """`collapse`, or by default every composite where the graph carries tensors."""
    if collapse is not None:
        return collapse
    nodes = topological_order([outputs] if isinstance(outputs, Node) else list(outputs))
    return AUTO_COLLAPSE if any(n.shape != () for n in nodes) else ()


# Collapsed by default in graphs of tensors: the losses and softmaxes, whose primitives are
# numerical care (the max shift, one_hot's index check); sigmoid and tanh stay the lecture's gates.
AUTO_COLLAPSE = ("cross_entropy", "hinge_loss", "mse", "softmax", "log_softmax", "l2")


def _depth(c):
    """The number of gates on the longest path of the circuit."""
    depth = {}
    for gate in c.gates:
        ins = [depth.get(id(src), 0) for _, src, _ in gate.operands]
        depth[id(gate.node)] = (gate.kind != "input") + max(ins, default=0)
    return max(depth.values(), default=0)


def _tensors(c):
    return any(g.node.shape != () for g in c.gates)


class _Drawer:
    def __init__(self, c, digits, color_by_grad, check, group, edge_labels, rankdir, ids, title):
        self.c, self.digits, self.color_by_grad, self.check = c, digits, color_by_grad, check
        if rankdir == "auto":
            rankdir = "TB" if _tensors(c) and _depth(c) > 8 else "LR"
        ngates = sum(g.kind != "input" for g in c.gates)
        self.group = ngates > 30 if group is None else group
        if edge_labels == "auto":
            edge_labels = "sparse" if ngates > 40 else "all"
        self.edge_labels = edge_labels
        self.ids = ids
        self.dot = Drawing(name="graphdl", graph_attr={
            "rankdir": rankdir, "nodesep": "0.35", "ranksep": "0.75" if ngates > 40 else "1.0",
            "fontname": "Helvetica", "bgcolor": "white", "newrank": "true", "ordering": "in",
            **self._caption(title),
        }, node_attr={"fontname": "Helvetica", "fontsize": "14"},
            edge_attr={"fontname": "Helvetica", "fontsize": "11", "arrowsize": "0.7",
                       "color": "#444444"})
        self.dot.circuit = c
        self.dot.node_labels, self.dot.edge_labels = {}, {}
        self.bad_edges, self.kink_edges = self._check_edges(), self._kink_edges()
        self.norm_range = self._norm_range() if color_by_grad else None

    def _caption(self, title):
        """The graph's label: the title, and the legend of the wires' colours (at the bottom)."""
        lines = [f'<font point-size="16">{html.escape(title)}</font>'] if title else []
        if self.c.has_values:
            legend = f'<font color="{GREEN}">green: the value on the wire</font>'
            if self.c.has_grads:
                legend += (f'    <font color="{RED}">red: the gradient '
                           f'∂{html.escape(self.c.handle(self.c.output))}/∂wire flowing back'
                           f'</font>')
            if _tensors(self.c):
                legend += "    tensors: (shape) μ=mean ‖·‖=norm"
            lines.append(f'<font point-size="11">{legend}</font>')
        if not lines:
            return {}
        return {"label": "<" + "<br/>".join(lines) + ">", "labelloc": "b", "labeljust": "l"}

    # -- checks ---------------------------------------------------------------------------------
    def _check_edges(self):
        """(gate node id, input position) -> (rank, NodeCheck) for failing checked edges."""
        bad = {}
        for rank, fail in enumerate(self.check.failures if self.check is not None else []):
            key = self._wire_of(fail)
            if key is not None:
                bad.setdefault(key, (rank, fail))
        return bad

    def _kink_edges(self):
        """(gate node id, input position) -> NodeCheck for edges whose node is at a kink."""
        kinks = self.check.kinks if self.check is not None else []
        return {key: k for k in kinks if (key := self._wire_of(k)) is not None}

    def _wire_of(self, check):
        """The drawn wire of a checked edge: (gate node id, input position), or None."""
        node, k = check.node, check.input_index
        gate = self.c.gate_of.get(id(node))
        if gate is None:  # inside a collapsed region: blame the region's gate
            for g in self.c.gates:
                if g.region is not None and id(node) in g.region.nodes:
                    arg = node.inputs[k]
                    return id(g.node), next((p for p, a, _ in g.operands if a is arg), 0)
            return None
        return id(gate.node), k

    def _norm_range(self):
        norms = [self._norm(g) for g in self._all_wire_grads()]
        norms = [n for n in norms if n > 0]
        if not norms:
            return None
        return math.log10(min(norms)), math.log10(max(norms))

    def _all_wire_grads(self):
        out = []
        for src, gate, k, shape_only in self.c.wires():
            g = None if shape_only else self.c.wire_grad(gate, k)
            if g is not None:
                out.append(g)
        return out

    @staticmethod
    def _norm(g):
        return float(np.linalg.norm(np.asarray(g, dtype=np.float64).ravel()))

    # -- drawing --------------------------------------------------------------------------------
    def run(self):
        c = self.c
        clusters = self._clusters() if self.group else {}
        bodies = {}
        for gate in c.gates:
            name, attrs = self._node(gate)
            self.dot.node_labels[name] = _plain(attrs["label"])
            key = clusters.get(id(gate.node))
            if key is None:
                self.dot.node(name, **attrs)
            else:
                bodies.setdefault(key, []).append((name, attrs))
        for k, (label, members) in enumerate(bodies.items()):
            with self.dot.subgraph(name=f"cluster_{k}") as sub:
                sub.attr(label=label, style="rounded,dashed", color="#9aa0a6", fontcolor="#57606a",
                         fontsize="12", labelloc="t", labeljust="c")  # not the caption's place
                for name, attrs in members:
                    sub.node(name, **attrs)
        for src, gate, k, shape_only in c.wires():
            self._edge(src, gate, k, shape_only)
        for y in c.outputs:
            self._output(y)
        if self.norm_range is not None:
            lo, hi = self.norm_range
            self.dot.node("legend", shape="note", fontsize="10", color="#bbbbbb", label=(
                f"wire colour: ‖∂{c.handle(c.output)}/∂wire‖ from 1e{lo:.0f} (grey, vanishing)"
                f"\nto 1e{hi:.0f} (dark red)"))
        return self.dot

    def _clusters(self):
        """Gate node id -> cluster label: each named node and the unnamed gates feeding only it."""
        c = self.c
        assigned = {}
        for gate in reversed(c.gates):
            n = gate.node
            if gate.kind == "input" or n.name is None or id(n) in assigned:
                continue
            assigned[id(n)] = n.name
            stack = [i for _, i, _ in gate.operands]
            while stack:
                m = stack.pop()
                g = c.gate_of.get(id(m))
                if g is None or g.kind == "input" or m.name is not None or id(m) in assigned:
                    continue
                if all(c.gate_of.get(id(u)) is None or id(u) in assigned or u is n
                       for u in c.users.get(id(m), [])):
                    assigned[id(m)] = n.name
                    stack.extend(i for _, i, _ in g.operands)
        # singleton clusters add boxes without grouping anything
        counts = {}
        for label in assigned.values():
            counts[label] = counts.get(label, 0) + 1
        return {k: v for k, v in assigned.items() if counts[v] > 1}

    def _node(self, gate):
        c, n = self.c, gate.node
        name = f"n{n.id}"
        attrs = {"id": f"g{n.id}"}
        failing = any(key[0] == id(n) for key in self.bad_edges)
        if gate.kind == "input":
            attrs.update(shape="plaintext", label=gate.label, fontsize="15")
            if n.shape != ():
                attrs["label"] = f"{gate.label}\n{shape_text(n.shape)}"
            return name, attrs
        if gate.kind == "const":
            attrs.update(shape="plaintext", label=gate.label)
            return name, attrs
        symbol = html.escape(gate.label).replace("\n", "<br/>")
        sub = []
        if gate.kind == "region":
            comp = gate.region.composite
            if comp is not None:
                sub.append(html.escape(comp.rule.split(",")[0]))
                local = self._local(gate)
                if local is not None:
                    sub.append(f"local = {local}")
            else:
                sub.append(f"{gate.region.size} ops")
        rows = lookup(c, n) if gate.kind == "op" else None
        if rows is not None:
            sub.append(html.escape(f"{rows.units} {rows_text(rows.rows, LISTED)}"))
        is_output = any(n is y for y in c.outputs)  # the output's name labels its wire's end
        show_name = n.name is not None and not is_output and not (
            gate.kind == "region" and gate.region.composite is not None
            and n.name == gate.region.composite.name)
        if show_name or (self.ids and n.name is None):
            sub.insert(0, f"<i>{html.escape(gate.handle)}</i>")
        label = f"<{symbol}" + "".join(
            f'<br/><font point-size="9" color="#57606a">{s}</font>' for s in sub) + ">"
        attrs["label"] = label
        if gate.kind == "region":
            attrs.update(shape="box", style="rounded,filled", fillcolor="#ddeeff", color="#4a7ab5",
                         margin="0.12,0.06")
        elif len(gate.label) <= 4 and (not sub or sub == [f"<i>{html.escape(gate.handle)}</i>"]
                                       and len(gate.handle) <= 4):
            attrs.update(shape="circle", style="filled", fillcolor="#f6f8fa", width="0.6",
                         fixedsize="true", color="#444444")
        else:
            attrs.update(shape="ellipse", style="filled", fillcolor="#f6f8fa", color="#444444",
                         margin="0.05,0.03")
        if failing:
            attrs.update(color=MAGENTA, penwidth="3")
        return name, attrs

    def _local(self, gate):
        """A collapsed scalar elementwise composite's local derivative at its input, as text."""
        comp = gate.region.composite
        if comp is None or comp.sym is None or not self.c.has_values:
            return None
        x = self.c.value(gate.region.args[0])
        if x is None or np.ndim(x) != 0:
            return None
        import sympy

        s = sympy.Symbol("x")
        d = sympy.diff(comp.sym(s), s)
        try:
            return fmt(float(d.subs(s, float(x)).rewrite(sympy.exp).evalf()), self.digits)
        except (TypeError, ValueError):
            return None

    def _wire_label(self, value, grad, sparse_ok, rows=None):
        """The value (green) and gradient (red) of a wire. `rows`: where the wire touches a
        lookup, (the rows, whether they are in the value or in the gradient)."""
        if self.edge_labels == "none" or (self.edge_labels == "sparse" and not sparse_ok):
            return None
        if value is None:
            return None
        d = self.digits
        if np.ndim(value) == 0:
            # an integer (an index: a row number) as it is, not as 2.00
            top = fmt(value, d) if np.asarray(value).dtype.kind == "f" else str(value)
            bottom = None if grad is None else fmt(grad, d)
        else:
            a = np.asarray(value)
            top = shape_text(a.shape) + (" " + summary(a, d) if a.dtype.kind in "fiu" and a.size
                                         else "")
            bottom = None if grad is None else "∇ " + summary(grad, d)
        if rows is not None:
            top, bottom = self._rows_label(value, grad, *rows, top, bottom)
        text = f'<font color="{GREEN}">{html.escape(top)}</font>'
        if bottom is not None:
            text += f'<br/><font color="{RED}">{html.escape(bottom)}</font>'
        return text

    def _rows_label(self, value, grad, rows, in_grad, top, bottom):
        """A lookup's wires: the rows beside the value it reads; a value that is zero outside
        them as "Δ rows [...]", the table's gradient in words ("gradient into row 2 only"), both
        with their norm (a mean over the zeros says nothing)."""
        listed = f"{rows.units} {rows_text(rows.rows, LISTED)}"
        if in_grad:
            if grad is not None:
                distinct = rows.distinct
                which = (f"{rows.unit} {distinct[0]}" if len(distinct) == 1
                         else f"{rows.units} {rows_text(distinct, LISTED)}")
                bottom = f"gradient into {which} only, ‖·‖={fmt(self._norm(grad), self.digits)}"
            return top, bottom
        shape = shape_text(np.shape(value))
        if rows.writes:
            return f"{shape} Δ {listed} ‖·‖={fmt(self._norm(value), self.digits)}", bottom
        return f"{shape} {listed} {summary(value, self.digits)}", bottom

    def _wire_rows(self, src, gate, k):
        """(Lookup, in the gradient?) for the wire carrying a table into its take, or one leaving
        a lookup gate; else None."""
        if gate.kind == "op" and k == 0:
            into = lookup(self.c, gate.node)
            if into is not None and not into.writes:
                return into, True
        return self._leaving_rows(src)

    def _leaving_rows(self, src):
        source = self.c.gate_of.get(id(src))
        found = lookup(self.c, src) if source is not None and source.kind == "op" else None
        return None if found is None else (found, False)

    def _edge(self, src, gate, k, shape_only):
        c = self.c
        tail, head = f"n{src.id}", f"n{gate.node.id}"
        attrs = {"id": f"e{src.id}_{gate.node.id}_{k}"}
        if gate.kind == "region" and (parts := parts_played(gate.region, src)):
            # attention's q, k, v, where the wire enters the gate
            attrs.update(headlabel=", ".join(parts), labelfontsize="13", labelfontcolor="#4a7ab5")
        if shape_only:
            attrs.update(style="dotted", color=GREY, arrowhead="none", tooltip="shape only")
            self.dot.edge(tail, head, **attrs)
            return
        value = c.value(src)
        grad = c.wire_grad(gate, k)
        sparse_ok = src.op is leaf.INPUT or src.name is not None
        label = self._wire_label(value, grad, sparse_ok, self._wire_rows(src, gate, k))
        extra = []
        if (id(gate.node), k) in self.bad_edges:
            rank, fail = self.bad_edges[(id(gate.node), k)]
            colour = MAGENTA if rank == 0 else ORANGE
            extra.append(f'<font color="{colour}"><b>✗ {"first " if rank == 0 else ""}wrong '
                         f'gradient rule</b></font><br/><font color="{colour}" point-size="9">'
                         f'random probe: pullback {fmt(fail.analytic, 3)}, finite differences '
                         f'{fmt(fail.numeric, 3)}</font>')
            attrs.update(color=colour, penwidth="3.5" if rank == 0 else "2.5",
                         style="bold" if rank == 0 else "dashed")
        elif (id(gate.node), k) in self.kink_edges:
            kink = self.kink_edges[(id(gate.node), k)]
            how = "checked beside it" if kink.moved else "not checked"
            extra.append(f'<font color="{ORANGE}" point-size="9">⋄ not differentiable here '
                         f'({html.escape(kink.kink.split(";")[0])}): {how}</font>')
        elif self.norm_range is not None and grad is not None:
            attrs.update(self._grad_colour(grad))
        if label or extra:
            # decorate: an underline joins the label to its own wire where wires converge
            attrs.update(label="<" + "<br/>".join(([label] if label else []) + extra) + ">",
                         decorate="true")
        self.dot.edge_labels[attrs["id"]] = _lines(attrs.get("label", ""))
        self.dot.edge(tail, head, **attrs)

    def _grad_colour(self, grad):
        lo, hi = self.norm_range
        n = self._norm(grad)
        t = 0.0 if n <= 0 else (1.0 if hi == lo else (math.log10(n) - lo) / (hi - lo))
        t = min(max(t, 0.0), 1.0)
        grey, red = np.array([0xcc, 0xcc, 0xcc]), np.array([0x99, 0x00, 0x00])
        rgb = (grey + t * (red - grey)).round().astype(int)
        return {"color": "#{:02x}{:02x}{:02x}".format(*tuple(rgb)),
                "penwidth": f"{0.8 + 2.7 * t:.2f}"}

    def _output(self, y):
        c = self.c
        name = f"out{y.id}"
        self.dot.node(name, shape="plaintext", label=c.handle(y), fontsize="15",
                      id=f"gout{y.id}")
        value = c.value(y)
        grad = c.grad(y) if c.scalar_output else None
        label = self._wire_label(value, grad, True, self._leaving_rows(y))
        attrs = {"id": f"eout{y.id}"}
        if label:
            attrs.update(label=f"<{label}>", decorate="true")
        self.dot.edge_labels[attrs["id"]] = _lines(attrs.get("label", ""))
        self.dot.edge(f"n{y.id}", name, **attrs)


def _lines(label):
    """The text lines of an HTML-like label."""
    if not label.startswith("<"):
        return [label] if label else []
    parts = re.split(r"<br/>", label[1:-1])
    return [html.unescape(re.sub(r"<[^>]+>", "", p)) for p in parts]


def _plain(label):
    return " ".join(_lines(label)).strip()
