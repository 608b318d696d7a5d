"""The `graphdl` command: draw or explain the graph a Python file declares.

    graphdl draw examples/sigmoid_circuit.py -o circuit.svg
    graphdl explain examples/sigmoid_circuit.py -o steps.html     # or .md, .txt; none: stdout

FILE is run as a script (its `if __name__ == "__main__"` block is not); it must define the
output node (`output` by default, `--output NAME` for another) and the input values (`values`,
`--values NAME`).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

from graphdl.errors import GraphError
from graphdl.ir import Node


def _load(path, output, values):
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # the file's own imports (examples/data.py), as `python FILE`
    try:
        scope = runpy.run_path(path, run_name="__graphdl_cli__")
    finally:
        sys.path.remove(folder)
    if output not in scope:
        raise SystemExit(f"graphdl: {path} defines no {output!r} (name the output with --output)")
    node = scope[output]
    if callable(node) and not isinstance(node, Node):
        node = node()
    vals = scope.get(values)
    if callable(vals):
        vals = vals()
    if vals is not None and not isinstance(vals, dict):
        raise SystemExit(f"graphdl: {values!r} in {path} must be a dict of input values")
    return node, vals


def main(argv=None):
    parser = argparse.ArgumentParser(prog="graphdl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("draw", "draw the graph as a circuit (SVG, PNG, PDF or DOT)"),
                           ("explain", "narrate backpropagation (HTML stepper, Markdown, text)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("file", help="a Python file defining the output node and input values")
        p.add_argument("--output", default="output", help="the output node's variable name")
        p.add_argument("--values", default="values", help="the input values' variable name")
        p.add_argument("--collapse", action="append", default=[],
                       help="a composite or node name to draw as one gate (repeatable)")
        p.add_argument("--wrt", action="append", default=None, help="an input name (repeatable)")
        p.add_argument("-o", "--out", help="the file to write (its extension picks the format)")
        p.add_argument("--digits", type=int, help="decimals (draw) or significant digits")
    d = sub.choices["draw"]
    d.add_argument("--color-by-grad", action="store_true", help="colour wires by ‖gradient‖")
    args = parser.parse_args(argv)

    try:
        node, values = _load(args.file, args.output, args.values)
        if args.command == "draw":
            return _draw(args, node, values)
        return _explain(args, node, values)
    except GraphError as e:
        print(f"graphdl: {e}", file=sys.stderr)
        return 1


def _draw(args, node, values):
    from graphdl.views.viz import DotNotFound, draw

    options = {"collapse": args.collapse, "wrt": args.wrt,
               "color_by_grad": args.color_by_grad}
    if args.digits is not None:
        options["digits"] = args.digits
    dot = draw(node, values, **options)
    out = args.out or os.path.splitext(os.path.basename(args.file))[0] + ".svg"
    _stem, ext = os.path.splitext(out)
    fmt = ext.lstrip(".") or "svg"
    if fmt in ("dot", "gv"):
        with open(out, "w", encoding="utf-8") as f:
            f.write(dot.source)
    else:
        try:
            dot.render(outfile=out, format=fmt, cleanup=True)
        except DotNotFound as e:
            print(f"graphdl: {e}", file=sys.stderr)
            return 1
    print(out)
    return 0


def _explain(args, node, values):
    from graphdl.views.teach import explain

    if values is None:
        raise SystemExit("graphdl explain: the file defines no input values")
    options = {"collapse": args.collapse}
    if args.digits is not None:
        options["digits"] = args.digits
    ex = explain(node, values, args.wrt, **options)
    if not args.out:
        print(ex)
        return 0
    ext = os.path.splitext(args.out)[1].lower()
    text = ex.html() if ext in (".html", ".htm") else ex.markdown() if ext == ".md" else str(ex)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
