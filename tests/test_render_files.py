"""The files a drawing's `render` leaves behind."""

from __future__ import annotations

import shutil

import pytest

import graphdl as gd

from .helpers import NEURON_VALUES, neuron


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_render_png_leaves_no_extensionless_dot_file_beside_it(tmp_path):
    """`render("circuit", format="png")` left the DOT source `circuit` beside `circuit.png`."""
    f, _ = neuron()
    dot = gd.draw(f, NEURON_VALUES)
    dot.render(tmp_path / "circuit", format="png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["circuit.png"]
    dot.render(tmp_path / "kept", format="png", cleanup=False)  # asked for: the source stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["circuit.png", "kept", "kept.png"]
