"""The primitive op set, one module per family; importing this registers every op."""

from graphdl.ops import (  # noqa: F401
    composite,
    conv,
    elementwise,
    leaf,
    logic,
    matmul,
    movement,
    reduce,
)
