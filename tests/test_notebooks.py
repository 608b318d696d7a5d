"""The notebooks of examples/notebooks/: committed without outputs, executed top to bottom
(nbclient and a Python kernel) with no error, their drawings inline SVG and their narrations the
embedded HTML stepper; and the rich-display methods those outputs come from."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

import graphdl as gd

from .helpers import NEURON_VALUES, neuron

NOTEBOOKS = Path(__file__).parents[1] / "examples" / "notebooks"
# notebook -> what its outputs show: (MIME type, marker, how many outputs have it)
EXPECTED = {
    "lecture.ipynb": [("image/svg+xml", "<svg", 7), ("text/html", 'class="gd-stepper"', 5),
                      ("text/html", 'class="gd-descent"', 1),
                      ("text/html", 'class="gd-activation-table"', 1)],
    "inside_a_model.ipynb": [("image/svg+xml", "<svg", 1), ("text/html", 'class="gd-stepper"', 1)],
}
NEEDS = {"inside_a_model.ipynb": ["onnx", "torch"]}  # the [onnx] extra and PyTorch


def missing(*modules):
    return [m for m in modules if importlib.util.find_spec(m) is None]


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_notebooks_have_no_outputs(name):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{name}: strip the outputs before committing (jupyter nbconvert " \
                f"--clear-output --inplace {name})"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_and_displays_drawings_and_steppers(name):
    absent = missing("nbclient", "nbformat", "ipykernel")
    if absent:
        pytest.skip(f"cannot execute notebooks: {', '.join(absent)} not installed "
                    "(pip install nbclient nbformat ipykernel)")
    if missing(*NEEDS.get(name, [])):
        pytest.skip(f"{name} needs {', '.join(NEEDS[name])} (pip install graphdl[onnx] torch)")
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # Any cell that raises fails the run (CellExecutionError names the cell and the error).
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    for mime, marker, count in EXPECTED[name]:
        if mime == "image/svg+xml" and not shutil.which("dot"):
            continue  # without Graphviz a drawing displays its DOT source
        shown = [o for o in outputs if marker in o.get("data", {}).get(mime, "")]
        assert len(shown) == count, f"{name}: {len(shown)} {mime} outputs with {marker!r}"


@pytest.mark.skipif(not shutil.which("dot"), reason="Graphviz's dot is missing")
def test_explanation_displays_as_a_stepper_scoped_to_its_notebook_output():
    f, _ = neuron()
    ex = gd.explain(f, NEURON_VALUES)
    first, second = ex._repr_html_(), ex._repr_html_()
    ids = [re.search(r'class="gd-stepper" id="([^"]+)"', h).group(1) for h in (first, second)]
    assert ids[0] != ids[1]  # two outputs of one explanation step apart
    assert f"document.getElementById('{ids[0]}'), false)" in first  # no page keys, no URL
    assert "<!DOCTYPE" not in first and "body {" not in first  # leaves the notebook's page alone
    assert first.count('<section class="frame"') == len(ex.steps) + 2 and "<svg" in first
    assert "document.getElementById('stepper'), true)" in ex.html()
