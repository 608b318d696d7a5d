"""What a generated Python module holds whichever backend writes it (the NumPy backend's module,
the CUDA backend's driver): its array constants (`Constants`), the cast of what it is fed
(`CAST_INPUT`), the check `debug=True` wraps every result in (`_check`) and the call of an op's
reference implementation where the backend has no kernel for it (`reference_call`, which calls
`_reference`). A module carries the source of each (`inspect.getsource`), so it runs alone."""

from __future__ import annotations

import ast
import inspect
import io

import numpy

from graphdl.facets import fallback_warning
from graphdl.feeds import _cast_input

CAST_INPUT = inspect.getsource(_cast_input)  # how generated modules convert what they are fed


class Constants:
    """A generated module's array constants: small ones spelled as literals; larger ones handed
    to the module in `_CONSTANTS` and saved beside it as an `.npz` (`fn.save`), never as
    kilobytes of text in the source."""

    LOAD = ('_CONSTANTS = globals().get("_CONSTANTS") or '
            'numpy.load(__file__.rsplit(".", 1)[0] + ".npz")  # fn.save wrote it beside me')

    def __init__(self):
        self.large = {}

    def text(self, name, array):
        if array.size == 0:  # `tolist()` of a (0, 3) array is `[]`, which reads back as (0,)
            return f"numpy.empty({array.shape}, dtype=numpy.{array.dtype.name})"
        # repr(inf) is no literal
        readable = array.dtype.kind != "f" or numpy.all(numpy.isfinite(array))
        if array.size <= 16 and readable:
            return f"numpy.array({array.tolist()!r}, dtype=numpy.{array.dtype.name})"
        self.large[name] = array
        return f"_CONSTANTS[{name!r}]"

    def preamble(self):
        return [self.LOAD] if self.large else []

    def env(self):
        return {"_CONSTANTS": dict(self.large)} if self.large else {}

    def files(self):
        if not self.large:
            return {}
        data = io.BytesIO()
        numpy.savez(data, **self.large)
        return {".npz": data.getvalue()}


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
