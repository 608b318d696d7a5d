"""The runtime helpers a generated NumPy module may call, name -> source. The generator emits
each one a module's code calls (and those it calls in turn), so a saved module needs only NumPy.

Most are functions of `graphdl.runtime`, which the reference interpreter runs too: the source
emitted is theirs (`inspect.getsource`), so compiled code and the interpreter run one text.
Convolution and pooling kernels come from `conv_kernels`, the accumulated updates from
`update_kernels`.
"""

from __future__ import annotations

import ast
import inspect

import numpy

from graphdl import runtime
from graphdl.codegen.numpy_backend import conv_kernels, update_kernels
from graphdl.facets import fallback_warning


def _check(value, where, shape, dtype):
    """`value`, if it has the declared shape and dtype and (floats) holds no NaN or Inf: what
    `debug=True` wraps every statement in."""
    if numpy.shape(value) != shape or numpy.result_type(value) != dtype:
        raise AssertionError(f"{where} computed {numpy.shape(value)} {numpy.result_type(value)}, "
                             f"declared {shape} {numpy.dtype(dtype)}")
    if numpy.result_type(value).kind in "fc" and not numpy.all(numpy.isfinite(value)):
        raise FloatingPointError(where + " produced NaN or Inf")
    return value


def _reference(op, *args, **attrs):
    """Built-in op `op`'s reference implementation, for a backend with no kernel for it: a
    fresh array (a reference may return its input)."""
    from graphdl.opdef import REGISTRY

    return numpy.array(REGISTRY[op].impl(*args, **attrs))


def reference_call(node, args, backend, how):
    """The text of a call of node's reference implementation on the texts `args` (a fallback,
    announced by one warning), converted to the node's dtype."""
    from graphdl.opdef import REGISTRY

    if REGISTRY.get(node.op.name) is not node.op:
        raise NotImplementedError(f"the {backend} backend has no kernel for op {node.op.name!r}, "
                                  f"which is no registered op: no reference to fall back to")
    attrs = node.attrs
    for key, value in attrs.items():
        try:
            readable = ast.literal_eval(repr(value)) == value
        except (ValueError, SyntaxError):
            readable = False
        if not readable:
            raise NotImplementedError(
                f"the {backend} backend has no kernel for op {node.op.name!r}, and its attribute "
                f"{key}={value!r} cannot be written into generated code for the reference")
    fallback_warning(node.op, backend, how)
    keywords = "".join(f", {k}={v!r}" for k, v in attrs.items())
    return (f"numpy.asarray(_reference({node.op.name!r}, {', '.join(args)}{keywords}), "
            f"dtype=numpy.{node.dtype.name})")


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
