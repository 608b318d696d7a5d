"""A checkout imports its own code: `graphdl.codegen` comes from the tree `graphdl` came from.

The top-level `codegen/` folder is installed as `graphdl.codegen` (pyproject's package-dir). An
editable install maps that name to the installed checkout's `codegen/`, so a second checkout put
first on PYTHONPATH used to get its own `graphdl` and the first one's `graphdl.codegen`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

REPORT = (
    "import sys, graphdl\n"
    "before = 'graphdl.codegen' in sys.modules\n"
    "import graphdl.codegen as c\n"
    "from graphdl.codegen.numpy_backend import render\n"
    "print(graphdl.__file__)\n"
    "print(c.__file__)\n"
    "print(render.__file__)\n"
    "print(getattr(c, 'CHECKOUT_MARKER', None))\n"
    "print(before)\n"
)


def _copy(tmp_path: Path, marker: str | None) -> Path:
    copy = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("graphdl", "codegen"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=ignore)
    if marker is not None:
        with open(copy / "codegen" / "__init__.py", "a", encoding="utf-8") as f:
            f.write(f"\nCHECKOUT_MARKER = {marker!r}\n")
    return copy


def _report(pythonpath: str | None, cwd: Path) -> list[str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    result = subprocess.run([sys.executable, "-c", REPORT], check=False, cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_a_copy_on_pythonpath_imports_its_own_codegen(tmp_path):
    copy = _copy(tmp_path, "the copy")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    package, codegen, render, marker, before = _report(str(copy), elsewhere)
    assert Path(package) == copy / "graphdl" / "__init__.py"
    assert Path(codegen) == copy / "codegen" / "__init__.py"
    assert Path(render) == copy / "codegen" / "numpy_backend" / "render.py"
    assert marker == "the copy"
    assert before == "False", "import graphdl imported graphdl.codegen"


def test_two_copies_each_import_their_own(tmp_path):
    first = _copy(tmp_path / "a", "first")
    second = _copy(tmp_path / "b", "second")
    for copy, marker in ((first, "first"), (second, "second")):
        _, codegen, _, seen, _ = _report(str(copy), tmp_path)
        assert (Path(codegen), seen) == (copy / "codegen" / "__init__.py", marker)


def test_the_source_tree_imports_its_own_codegen(tmp_path):
    # From the repository root with no PYTHONPATH: this tree's graphdl (editable install or the
    # current directory), and its codegen.
    package, codegen, _, marker, before = _report(None, ROOT)
    assert Path(package).parent.parent == Path(codegen).parent.parent
    assert marker == "None" and before == "False"


def test_an_installed_layout_imports_the_nested_codegen(tmp_path):
    # A wheel's layout: graphdl/codegen/ inside the package. A codegen/ beside the package (the
    # unrelated PyPI `codegen` in the same site-packages, say) is not taken.
    site = tmp_path / "site"
    shutil.copytree(ROOT / "graphdl", site / "graphdl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "codegen", site / "graphdl" / "codegen",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (site / "codegen").mkdir()
    (site / "codegen" / "__init__.py").write_text("raise ImportError('the wrong codegen')\n")
    package, codegen, _, _, _ = _report(str(site), tmp_path)
    assert Path(package) == site / "graphdl" / "__init__.py"
    assert Path(codegen) == site / "graphdl" / "codegen" / "__init__.py"


@pytest.mark.parametrize("name", ["graphdl.codegen.lower", "graphdl.codegen.numpy_backend"])
def test_pickled_references_resolve_in_a_fresh_interpreter(tmp_path, name):
    # What a spawn worker does: import a module by its name alone, graphdl first.
    copy = _copy(tmp_path, None)
    script = (f"import importlib; m = importlib.import_module({name!r}); print(m.__file__)")
    env = dict(os.environ, PYTHONPATH=str(copy))
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert Path(out.strip()).is_relative_to(copy / "codegen")
