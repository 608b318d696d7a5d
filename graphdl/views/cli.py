"""The `graphdl` command: draw or explain the graph a Python file declares.

    graphdl draw examples/sigmoid_circuit.py -o circuit.svg
    graphdl explain examples/sigmoid_circuit.py -o steps.html     # or .md, .txt; none: stdout

FILE is run as a script (its `if __name__ == "__main__"` block is not); it must define the
output node (`output` by default, `--node NAME` for another) and the input values (`values`,
`--values NAME`). `-o FILE` names the file to write. The old spellings `--output NAME` (now
`--node`) and `--out FILE` (now `-o`) still work and print a deprecation note to stderr.
"""

from __future__ import annotations

import argparse
import os
import runpy
import signal
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
        hint = "" if output.isidentifier() else f"; to write the file {output}, use -o {output}"
        raise SystemExit(f"graphdl: {path} defines no {output!r} (name the output node's "
                         f"variable with --node NAME{hint})")
    node = scope[output]
    if callable(node) and not isinstance(node, Node):
        node = node()
    vals = scope.get(values)
    if callable(vals):
        vals = vals()
    if vals is not None and not isinstance(vals, dict):
        raise SystemExit(f"graphdl: {values!r} in {path} must be a dict of input values")
    return node, vals


class _Renamed(argparse.Action):
    """A flag's old spelling: it still works, and says on stderr what replaced it."""

    def __init__(self, option_strings, dest, new, **kwargs):
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, value, option_string=None):
        print(f"graphdl: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, value)


def main(argv=None):
    """Run the command; on a closed stdout (`graphdl explain f.py | head`), stop quietly with
    the status a process killed by SIGPIPE has, as Unix tools do."""
    try:
        status = _main(argv)
        sys.stdout.flush()  # a broken pipe surfaces here, not at interpreter exit
        return status
    except BrokenPipeError:
        # Later flushes (at exit) would fail again: point stdout at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(argv):
    parser = argparse.ArgumentParser(prog="graphdl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("draw", "draw the graph as a circuit (SVG, PNG, PDF or DOT)"),
                           ("explain", "narrate backpropagation (HTML stepper, Markdown, text)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("file", help="a Python file defining the output node and input values")
        p.add_argument("--node", default="output", metavar="NAME",
                       help="the output node's variable name (default: output)")
        p.add_argument("--output", dest="node", action=_Renamed,
                       new="--node NAME for the output node's variable, -o FILE for the file")
        p.add_argument("--values", default="values", help="the input values' variable name")
        p.add_argument("--collapse", action="append", default=None,
                       help="a composite or node name to draw as one gate (repeatable)")
        p.add_argument("--wrt", action="append", default=None, help="an input name (repeatable)")
        p.add_argument("-o", dest="file_out", metavar="FILE",
                       help="the file to write (its extension picks the format)")
        p.add_argument("--out", dest="file_out", action=_Renamed, new="-o FILE")
        p.add_argument("--digits", type=int, help="decimals (draw) or significant digits")
    d = sub.choices["draw"]
    d.add_argument("--color-by-grad", action="store_true", help="colour wires by ‖gradient‖")
    args = parser.parse_args(argv)

    try:
        node, values = _load(args.file, args.node, args.values)
        if args.command == "draw":
            return _draw(args, node, values)
        return _explain(args, node, values)
    except GraphError as e:
        print(f"graphdl: {e}", file=sys.stderr)
        return 1


def _collapse(args):
    """`--collapse` as given, else the library's own default (a tensor graph's loss collapsed)."""
    return {} if args.collapse is None else {"collapse": args.collapse}


def _draw(args, node, values):
    from graphdl.views.viz import DotNotFound, draw

    options = {"wrt": args.wrt, "color_by_grad": args.color_by_grad,
               **_collapse(args)}
    if args.digits is not None:
        options["digits"] = args.digits
    dot = draw(node, values, **options)
    out = args.file_out or os.path.splitext(os.path.basename(args.file))[0] + ".svg"
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
    options = _collapse(args)
    if args.digits is not None:
        options["digits"] = args.digits
    ex = explain(node, values, args.wrt, **options)
    if not args.file_out:
        print(ex)
        return 0
    ext = os.path.splitext(args.file_out)[1].lower()
    text = ex.html() if ext in (".html", ".htm") else ex.markdown() if ext == ".md" else str(ex)
    with open(args.file_out, "w", encoding="utf-8") as f:
        f.write(text)
    print(args.file_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
