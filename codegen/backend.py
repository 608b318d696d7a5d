"""A backend: what `gd.compile` asks of one, so that it treats every backend alike.

A backend package (`codegen.BACKENDS` names its module) defines `BACKEND`, a `Backend`:

- `name`: what `gd.compile(..., backend=)` calls it;
- `devices`: where its code runs, the first the default (`gd.compile(..., device=)`);
- `target`: the `lower.Target` it describes itself to the lowering with (fusion, buffers,
  the rewrites of the lowered program it makes);
- `render(program, *, debug, device, **options) -> compiled.Generated`: the code of a
  `lower.Program` lowered for `target` (rewritten, unless `debug`), for `device`;
- `options`: the keyword arguments of `gd.compile` beyond `debug` and `device` that it takes,
  passed on to `render` where the caller gives them (CUDA: `outputs_on_device`);
- `array_devices`: the devices on which its code takes the caller's device arrays as they are
  (a GPU's), rather than arrays cast on the host;
- `check_device(device)`: raises `GraphError`, before anything compiles, where `device` cannot
  run on this machine (a GPU without CuPy).

`Backend.generate` lowers, rewrites and renders: what `Compiled` calls per specialization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graphdl.codegen.lower import Target, lower, rewritten


def _runs_anywhere(device):
    """The `check_device` of a backend whose devices every machine has."""


@dataclass(frozen=True)
class Backend:
    name: str
    devices: tuple
    target: Target
    render: Callable
    options: frozenset = frozenset()
    array_devices: frozenset = frozenset()
    check_device: Callable = _runs_anywhere

    def generate(self, outputs, inputs, updates=(), *, debug=False, device=None, **options):
        """The `Generated` code computing `outputs` from `inputs` and applying `updates`
        ((input node, new value node) pairs: one simultaneous assignment) on `device` (None:
        the default). `debug`: one statement per node, unfused and not rewritten, each checked
        for its declared shape and dtype and for NaN/Inf."""
        program = rewritten(lower(outputs, inputs, updates, self.target, fuse=not debug))
        return self.render(program, debug=debug, device=device or self.devices[0], **options)
