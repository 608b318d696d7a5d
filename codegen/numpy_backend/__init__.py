"""The NumPy backend: renders a `lower.Program` as the source of a module that needs only
NumPy. `elementwise` prints ops' SymPy forms as templates, `op_code` holds the per-op code
registered against the OpDefs and the target's fusion choices, `render` spells the program out.
`BACKEND` is what `gd.compile` calls (`codegen.backend`)."""

from graphdl.codegen.accumulate import accumulate_products, accumulate_scatters
from graphdl.codegen.backend import Backend
from graphdl.codegen.lower import Target
from graphdl.codegen.numpy_backend import render
from graphdl.codegen.numpy_backend.op_code import IN_PLACE, fuses_into

BACKEND = Backend(
    name="numpy", devices=("cpu",), render=render.render,
    target=Target(
        fuses_into=fuses_into, writes_into=lambda node: node.op in IN_PLACE,
        max_fused=12,  # nodes per statement: beyond that a statement stops being readable
        rewrites=(accumulate_products, accumulate_scatters(outer=True))),  # `update_kernels`
)

__all__ = ["BACKEND"]
