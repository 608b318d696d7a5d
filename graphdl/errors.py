"""Errors graphdl raises for bad user input, as early as it can see the problem."""


class GraphError(ValueError):
    """A graph that cannot be declared as written: shapes, dtypes or arguments that do not fit."""


class InputError(ValueError):
    """A call-time problem with the arrays fed to a compiled function or the interpreter."""
