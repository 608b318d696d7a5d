"""One check for everything a registered op lacks: every facet of `graphdl.facets` (the tests'
included), in one failure that lists each op's whole to-do list."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from graphdl import facets
from graphdl.opdef import OpDef


def test_every_op_has_every_required_facet():
    missing = facets.todo()
    assert not missing, "ops with missing facets (python -m graphdl.facets):\n" + missing


def test_a_new_op_gets_its_whole_to_do_list_at_once():
    op = OpDef("frobnicate", infer=lambda inputs, attrs: ((), np.dtype("float64")),
               impl=lambda x: x)
    text = facets.todo([op])
    expected = ["gradient", "scalar form", "kinks", "narration", "onnx export", "gradient case"]
    assert text.startswith("frobnicate:\n")
    assert [line.split(":")[0].strip("- ") for line in text.splitlines()[1:]] == expected
    reported = facets.report([op])["frobnicate"]
    assert {f.name: state for f, state, _ in reported}["cuda"] == facets.FALLBACK


def test_the_command_prints_the_to_do_list():
    run = subprocess.run([sys.executable, "-m", "graphdl.facets", "--all"], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "every op has every required facet" in run.stdout
    header = run.stdout.splitlines()[0]
    assert all(f.name in header for f in facets.FACETS + facets.test_facets())
