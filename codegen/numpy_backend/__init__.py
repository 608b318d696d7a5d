"""The NumPy backend: renders a `Lowered` program (`codegen.lower`) as the source of a module
that needs only NumPy. `elementwise` prints ops' SymPy forms as templates, `lowerings` holds
the per-op code registered against the OpDefs and the target's choices, `render` spells the
program out."""

from graphdl.codegen.numpy_backend.render import generate

__all__ = ["generate"]
