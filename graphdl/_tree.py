"""`graphdl.codegen` resolves in the tree `graphdl` came from.

The top-level `codegen/` folder is installed as `graphdl.codegen` (pyproject's package-dir). A
wheel puts it inside the package (`graphdl/codegen/`); a source checkout has it beside the package
(`<tree>/codegen/`). An editable install's finder maps the name to the installed checkout's folder
whatever `graphdl` was imported from, so another checkout on PYTHONPATH would run the first one's
codegen. This finder, first on `sys.meta_path`, answers for the one name `graphdl.codegen` from
the imported `graphdl`'s own `__path__`: `<package>/codegen`, else `<package>/../codegen`.
Submodules then follow `graphdl.codegen.__path__`, so they come from the same folder.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import PathFinder

NAME = "graphdl.codegen"


class TreeFinder:
    """The `sys.meta_path` finder for `graphdl.codegen` (a class: importlib calls find_spec)."""

    graphdl_tree_finder = True  # how install() recognizes one from an earlier import of graphdl

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != NAME or not path:
            return None  # every other name (and submodules) to the usual finders
        for entry in path:  # the importing graphdl's __path__
            entry = os.fspath(entry)
            # Installed: graphdl/codegen/. Source: codegen/ beside graphdl/, taken only if it
            # is graphdl's (an unrelated `codegen` may sit beside an installed graphdl).
            inside = os.path.join(entry, "codegen")
            beside = os.path.join(os.path.dirname(entry), "codegen")
            if os.path.isfile(os.path.join(inside, "__init__.py")):
                folder = entry
            elif os.path.isfile(os.path.join(beside, "lower.py")):
                folder = os.path.dirname(entry)
            else:
                continue
            spec = PathFinder.find_spec(fullname, [folder])
            if spec is not None:
                return spec
        return None


def install():
    """Put the finder first on `sys.meta_path`, replacing one an earlier graphdl installed."""
    sys.meta_path[:] = [TreeFinder] + [
        finder for finder in sys.meta_path if not getattr(finder, "graphdl_tree_finder", False)
    ]
