"""What `import graphdl` costs: SymPy (half a second) is imported only when a SymPy form is
needed (explain, symbolic, user ops), never to declare and evaluate a graph."""

from __future__ import annotations

import subprocess
import sys


def test_import_and_declaring_a_graph_do_not_import_sympy():
    script = (
        "import sys, numpy, graphdl as gd\n"
        "x = gd.input('x', (3,))\n"
        "y = gd.sum(gd.softmax(gd.sigmoid(x) * 2.0))\n"
        "g = gd.grad(y, [x])\n"
        "gd.evaluate(g, x=numpy.ones(3))\n"
        "assert 'sympy' not in sys.modules, 'sympy was imported'\n"
        "gd.compile(g)(x=numpy.ones(3))\n"  # built-in ops carry their NumPy text
        "assert 'sympy' not in sys.modules, 'compiling imported sympy'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
