"""The primitive op set, one module per family; importing this registers every op."""

from graphdl.ops import composite, conv, elementwise, leaf, matmul, movement, reduce  # noqa: F401
