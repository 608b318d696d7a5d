"""Elementwise code for the NumPy backend: each op's text made once per (op, attributes, input
dtypes) into a template, filled in by string substitution with Python's precedence (taken from
`ast`) deciding the parentheses. A built-in op gives its text (`OpDef.numpy_text`); a user op's
SymPy form is printed, which is the one place compiling imports SymPy."""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass

import numpy as np

from graphdl import runtime
from graphdl.ir import attrs_key

ATOM, POWER, UNARY, MUL, ADD, CMP, ANY = 100, 90, 80, 70, 60, 40, 0
_BINOP = {ast.Add: ADD, ast.Sub: ADD, ast.Mult: MUL, ast.Div: MUL, ast.MatMult: MUL,
          ast.FloorDiv: MUL, ast.Mod: MUL, ast.Pow: POWER}


@dataclass(frozen=True)
class Expr:
    text: str
    prec: int

    def at(self, required):
        return self.text if self.prec >= required else f"({self.text})"


def call(text):
    """An expression that binds tightest: a call, a name, an attribute or a subscript."""
    return Expr(text, ATOM)


# ---------------------------------------------------------------- elementwise templates
@dataclass(frozen=True)
class Template:
    """Printed code with argument slots: pieces are text or (argument index, required prec)."""

    pieces: tuple
    prec: int
    passthrough: bool  # the whole template is one argument (stop_gradient)
    uses: tuple  # how often each argument appears in the text

    def text(self):
        """The template with its arguments named `_a0_`, `_a1_`, ..."""
        return "".join(p if isinstance(p, str) else f"_a{p[0]}_" for p in self.pieces)

    def fill(self, args):
        if self.passthrough:
            return args[self.pieces[0][0]]
        return Expr("".join(p if isinstance(p, str) else args[p[0]].at(p[1])
                            for p in self.pieces), self.prec)


def _precedence(node):
    if isinstance(node, ast.BinOp):
        return _BINOP[type(node.op)]
    if isinstance(node, ast.UnaryOp):
        return UNARY
    if isinstance(node, ast.Compare):
        return CMP
    if isinstance(node, (ast.Call, ast.Name, ast.Attribute, ast.Subscript)):
        return ATOM
    if isinstance(node, ast.Constant):
        return UNARY if isinstance(node.value, (int, float)) and node.value < 0 else ATOM
    return ANY


def _slots(tree):
    """(column, argument index, required precedence) for every `_aN_` in the template."""
    found, stack = [], [(tree, ANY)]
    while stack:
        node, required = stack.pop()
        if isinstance(node, ast.Name) and re.fullmatch(r"_a\d+_", node.id):
            found.append((node.col_offset, len(node.id), int(node.id[2:-1]), required))
        elif isinstance(node, ast.BinOp):
            p = _BINOP[type(node.op)]
            left, right = (p + 1, UNARY) if p == POWER else (p, p + 1)
            stack += [(node.left, left), (node.right, right)]
        elif isinstance(node, ast.UnaryOp):
            stack.append((node.operand, UNARY))
        elif isinstance(node, ast.Compare):
            stack += [(c, CMP + 1) for c in [node.left, *node.comparators]]
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            stack.append((node.value, ATOM))
        else:
            stack += [(c, ANY) for c in ast.iter_child_nodes(node)]
    return sorted(found)


def make_template(text):
    tree = ast.parse(text, mode="eval").body
    pieces, pos = [], 0
    for col, length, index, required in _slots(tree):
        pieces += [text[pos:col], (index, required)]
        pos = col + length
    pieces.append(text[pos:])
    pieces = tuple(p for p in pieces if p != "")
    slots = [p[0] for p in pieces if not isinstance(p, str)]
    uses = tuple(slots.count(i) for i in range(max(slots, default=-1) + 1))
    return Template(pieces, _precedence(tree),
                    len(pieces) == 1 and not isinstance(pieces[0], str), uses)


# The runtime's functions (`graphdl.runtime`) the printed code calls: emitted into a generated
# module that calls them (`numpy_backend.helpers`); a user op's reference runs the same ones.
PRINTED_HELPERS = ("_erf", "_erfc", "_sigmoid", "_softplus", "_where")


@functools.cache
def namespace():
    """What printed text runs in, for a user op's reference and for probing a template's dtype:
    NumPy and the runtime functions the printer calls."""
    return {"numpy": np, **{name: getattr(runtime, name) for name in PRINTED_HELPERS}}


_templates = {}


def elementwise_template(node):
    """The op's text made once per (op, attributes, input dtypes) and reused for every
    node. Where NumPy would compute the text in another dtype than the node declares
    (a user formula `Piecewise((1, x > 0), (0, True))` prints as int64 `numpy.where`), the
    text converts its result."""
    attrs = attrs_key(node.attrs)
    key = (node.op, attrs, tuple(i.dtype for i in node.inputs))
    if key not in _templates:
        slots = [f"_a{i}_" for i in range(len(node.inputs))]
        text = (node.op.numpy_text(*slots, **node.attrs) if node.op.numpy_text is not None
                else printed(node.op, slots, node.attrs))
        if _printed_dtype(text, node.inputs) != node.dtype:
            text = f"numpy.asarray({text}, dtype=numpy.{node.dtype.name})"
        _templates[key] = make_template(text)
    return _templates[key]


def printed(op, names, attrs):
    """The text the printer gives `op`'s SymPy form over arguments called `names`."""
    import sympy  # here only: built-in ops compile without it

    from graphdl.codegen.numpy_backend.printers import GraphdlNumPyPrinter

    return GraphdlNumPyPrinter().doprint(op.sym(*map(sympy.Symbol, names), **attrs))


def _printed_dtype(text, inputs):
    """The dtype NumPy gives `text` for arrays of the inputs' dtypes. NumPy
    2's dtypes depend on dtypes alone, never on values, so ones stand in for the inputs."""
    probe = {f"_a{k}_": np.ones(1, i.dtype) for k, i in enumerate(inputs)}
    with np.errstate(all="ignore"):
        return np.result_type(eval(text, namespace(), probe))


def literals_keep_dtype(node, literals):
    """Whether `node`'s text computes its dtype with Python numbers at the argument positions
    `literals` and arrays of the input dtypes elsewhere: NumPy takes a Python number's dtype from
    the arrays it meets, so `where(c, -0.5, 0.0)` is float64 whatever the constants' dtype, while
    `x - 0.5` keeps x's."""
    return _keeps_dtype(elementwise_template(node), tuple(i.dtype for i in node.inputs),
                        literals, node.dtype)


@functools.cache
def _keeps_dtype(template, dtypes, literals, dtype):
    probe = {f"_a{k}_": d.type(1).item() if k in literals else np.ones(1, d)
             for k, d in enumerate(dtypes)}
    with np.errstate(all="ignore"):
        return np.result_type(eval(template.text(), namespace(), probe)) == dtype
