"""What every registered op must have, may have, or declares not applicable: the declared list
of facets, and the one check that prints, per op, everything an op still lacks.

Run `python -m graphdl.facets` (from a checkout it adds the tests' facets: a gradient case, the
fuzzer) to see each op's to-do list at once, CUDA included; `--all` shows every facet's state,
`--markdown` the table docs/OPS.md holds.
The "adding an op" recipe in `docs/ARCHITECTURE.md` is this list (`recipe()` prints it).

A facet's state for an op is one of:
- "has": the op declares it (a field of its OpDef, or registered with `opdef.implements`);
- "derived": it comes from something else the op has (an elementwise op's narration, closed
  form, kinks, NumPy and CUDA code and ONNX export come from its SymPy form `sym`);
- "n/a": the op declares why it has none (a string where a callable is expected);
- "fallback": a backend runs the op's reference implementation (slow, never wrong: see
  `fallback_warning`);
- "missing": required and absent: the to-do.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from graphdl.opdef import REGISTRY

HAS, DERIVED, NA, FALLBACK, MISSING = "has", "derived", "n/a", "fallback", "missing"


class FallbackWarning(UserWarning):
    """A backend has no kernel for an op and runs its reference implementation instead."""


def fallback_warning(op, backend, how):
    """The one warning a backend gives when it falls back for `op` (Python shows it once per
    op and backend)."""
    warnings.warn(f"the {backend} backend has no kernel for op {op.name!r}: it runs the op's "
                  f"reference implementation ({how}); `python -m graphdl.facets` lists such "
                  f"fallbacks", FallbackWarning, stacklevel=2)


@dataclass(frozen=True)
class Facet:
    name: str
    how: str  # where and how a contributor provides it: the recipe's line
    state: Callable  # OpDef -> (state, detail)
    modules: tuple = ()  # imported before asking: they register the facet (`opdef.implements`)


def _field(attr, elementwise_from="sym"):
    """A view facet: a field of the op, derived from `sym` for elementwise ops; a string in it
    says why the op has none."""
    def state(op):
        value = getattr(op, attr)
        if op.kind == "leaf":
            return NA, "a leaf"
        if callable(value):
            return HAS, ""
        if isinstance(value, str):
            return NA, value
        if op.kind == "elementwise" and getattr(op, elementwise_from) is not None:
            return DERIVED, f"from `{elementwise_from}`"
        return MISSING, ""
    return state


def _gradient(op):
    if op.kind == "leaf":
        return NA, "a leaf"
    return (HAS, "") if op.pullback is not None else (MISSING, "")


def _scalar_form(op):
    if op.kind == "elementwise":
        return (HAS, "`sym`") if op.sym is not None else (MISSING, "")
    return _field("closed_form")(op)


def _backend(facet, fallback):
    def state(op):
        if op.kind == "leaf":
            return NA, "a leaf: fed or folded"
        if facet in op.impls:
            return HAS, ""
        if op.kind == "elementwise" and op.sym is not None:
            return DERIVED, "printed from `sym`"
        return FALLBACK, fallback
    return state


def _onnx(op):
    if op.kind == "leaf":
        return NA, "a leaf: an input or an initializer"
    if "onnx" in op.impls:
        return HAS, ""
    if op.kind == "elementwise" and op.sym is not None:
        return DERIVED, "written from `sym`"
    return MISSING, ""


FACETS = (
    Facet("gradient", "pullback=(node, g) -> [gradient node or None per input] in its block",
          _gradient),
    Facet("scalar form", "sym=(*symbols) -> SymPy (elementwise), else closed_form=(node, args) "
          "-> SymPy or a string saying why it has none", _scalar_form),
    Facet("kinks", "not elementwise: kinks=(node, arrays, reach) -> why or None, or a string "
          "('linear', 'smooth')", _field("kinks")),
    Facet("narration", "not elementwise: narration=(wire) -> the backward rule in words, or a "
          "string saying why the generic rule is right", _field("narration")),
    Facet("numpy", "not elementwise: @implements('numpy', OP) in "
          "codegen/numpy_backend/op_code.py (else the reference runs)",
          _backend("numpy", "calls `impl`"), ("graphdl.codegen.numpy_backend",)),
    Facet("cuda", "not elementwise: @implements('cuda', OP) in codegen/cuda_backend/ (a .cu "
          "template; else a host round trip runs `impl`)",
          _backend("cuda", "host round trip through `impl`"), ("graphdl.codegen.cuda_backend",)),
    Facet("onnx export", "not elementwise: @implements('onnx', OP) in graphdl/onnx/exporter.py",
          _onnx, ("graphdl.onnx.exporter",)),
)


def _load(facets):
    for facet in facets:
        for module in facet.modules:
            importlib.import_module(module)


def report(ops=None, facets=None):
    """{op name: [(facet, state, detail)]} for `ops` (default: every registered op)."""
    facets = FACETS + tuple(test_facets()) if facets is None else tuple(facets)
    _load(facets)
    ops = list(REGISTRY.values()) if ops is None else list(ops)
    return {op.name: [(f, *f.state(op)) for f in facets] for op in ops}


def todo(ops=None, facets=None):
    """The text of every op's missing facets, one block per op; empty when nothing is missing."""
    blocks = []
    for name, states in report(ops, facets).items():
        missing = [f"  - {f.name}: {f.how}" for f, state, _ in states if state == MISSING]
        if missing:
            blocks.append(f"{name}:\n" + "\n".join(missing))
    return "\n".join(blocks)


def fallbacks(ops=None):
    """[(op name, facet name, how)] of every backend fallback."""
    return [(name, f.name, detail) for name, states in report(ops, FACETS).items()
            for f, state, detail in states if state == FALLBACK]


def test_facets():
    """The facets the test suite adds (a gradient case, the fuzzer), where this is a checkout
    (`tests/facets.py` beside the package)."""
    try:
        module = importlib.import_module("tests.facets")
    except ImportError:
        return ()
    return module.FACETS


def recipe(facets=None):
    """The "adding an op" recipe: one line per facet."""
    facets = FACETS + tuple(test_facets()) if facets is None else facets
    return "\n".join(f"{k}. {f.name}: {f.how}" for k, f in enumerate(facets, 1))


def table(ops=None):
    """Every op's state of every facet, as a text table."""
    rows = report(ops)
    names = [f.name for f, _, _ in next(iter(rows.values()))]
    widths = [max([len(n)] + [len(states[k][1]) for states in rows.values()])
              for k, n in enumerate(names)]
    first = max(map(len, rows))
    lines = [" " * first + "  " + "  ".join(n.ljust(w) for n, w in zip(names, widths))]
    for name, states in rows.items():
        cells = [state.ljust(w) for (_, state, _), w in zip(states, widths)]
        lines.append(name.ljust(first) + "  " + "  ".join(cells))
    return "\n".join(line.rstrip() for line in lines)


def markdown(ops=None):
    """The facet table as Markdown (docs/OPS.md holds it; a test keeps it current)."""
    rows = report(ops, FACETS)
    names = [f.name for f, _, _ in next(iter(rows.values()))]
    lines = ["| op | kind | " + " | ".join(names) + " |",
             "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for name, states in rows.items():
        lines.append(f"| `{name}` | {REGISTRY[name].kind} | "
                     + " | ".join(state for _, state, _ in states) + " |")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--recipe" in argv:
        print(recipe())
        return 0
    if "--markdown" in argv:
        print(markdown())
        return 0
    ops = [REGISTRY[a] for a in argv if not a.startswith("--")] or None
    if "--all" in argv:
        print(table(ops))
    missing = todo(ops)
    for name, facet, how in fallbacks(ops):
        print(f"fallback: {name} on {facet} ({how})")
    print(missing or "every op has every required facet")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
