"""The runtime helpers a generated NumPy module may call, name -> source. The generator emits
each one a module's code calls (and those it calls in turn), so a saved module needs only NumPy.

Most are functions of `graphdl.runtime`, which the reference interpreter runs too: the source
emitted is theirs (`inspect.getsource`), so compiled code and the interpreter run one text.
Convolution and pooling kernels come from `conv_kernels`, the accumulated updates from
`update_kernels`, the debug check and the reference fallback from `codegen.python_module`
(the CUDA driver emits those two as well).
"""

from __future__ import annotations

import inspect

from graphdl import runtime
from graphdl.codegen.numpy_backend import conv_kernels, update_kernels
from graphdl.codegen.python_module import _check, _reference

HELPERS = {  # emitted into a generated module only when its code calls them
    f.__name__: inspect.getsource(f)
    for f in [*(getattr(runtime, name) for name in runtime.__all__), _check, _reference]
}
HELPERS.update(conv_kernels.HELPERS)
HELPERS.update(update_kernels.HELPERS)
_CALLS = {h: {o for o in HELPERS if o != h and o + "(" in src} for h, src in HELPERS.items()}


def _needs(helper):
    """The helpers `helper` calls, directly or through others."""
    found, stack = set(), [helper]
    while stack:
        for callee in _CALLS[stack.pop()] - found:
            found.add(callee)
            stack.append(callee)
    return found - {helper}


HELPER_NEEDS = {h: _needs(h) for h in HELPERS}  # emitted along with h
