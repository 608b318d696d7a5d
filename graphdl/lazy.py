"""Modules imported on first use: SymPy takes half a second to import and is needed only when a
SymPy form is (printing code, explaining, closed forms, user ops), not to declare a graph."""

from __future__ import annotations

import importlib


class LazyModule:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)


sympy = LazyModule("sympy")
scalar = LazyModule("graphdl.ops.scalar")  # graphdl's SymPy functions (Sigmoid, Where, ...)
