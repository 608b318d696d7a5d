"""Elementwise code for the NumPy backend: each op's SymPy form printed once per (op,
attributes, input dtypes) as a template, filled in by string substitution with Python's
precedence (taken from `ast`) deciding the parentheses."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import numpy as np
import sympy

from graphdl.codegen.numpy_backend.printers import GraphdlNumPyPrinter, namespace
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


_printer = GraphdlNumPyPrinter()
_templates = {}


def elementwise_template(node):
    """The op's SymPy form printed once per (op, attributes, input dtypes) and reused for every
    node. Where NumPy would compute the printed text in another dtype than the node declares
    (a user formula `Piecewise((1, x > 0), (0, True))` prints as int64 `numpy.where`), the
    text converts its result."""
    attrs = attrs_key(node.attrs)
    key = (node.op, attrs, tuple(i.dtype for i in node.inputs))
    if key not in _templates:
        slots = [sympy.Symbol(f"_a{i}_") for i in range(len(node.inputs))]
        text = _printer.doprint(node.op.sym(*slots, **node.attrs))
        if _printed_dtype(text, node.inputs) != node.dtype:
            text = f"numpy.asarray({text}, dtype=numpy.{node.dtype.name})"
        _templates[key] = make_template(text)
    return _templates[key]


def _printed_dtype(text, inputs):
    """The dtype NumPy gives `text` for arrays of the inputs' dtypes. NumPy
    2's dtypes depend on dtypes alone, never on values, so ones stand in for the inputs."""
    probe = {f"_a{k}_": np.ones(1, i.dtype) for k, i in enumerate(inputs)}
    with np.errstate(all="ignore"):
        return np.result_type(eval(text, namespace(), probe))
