"""The runtime helpers a generated NumPy module may call, name -> source. The generator emits
each one a module's code calls (and those it calls in turn), so a saved module needs only NumPy.
"""

from __future__ import annotations

from graphdl.codegen import conv_kernels
from graphdl.codegen.printers import PRINTER_HELPERS

HELPERS = {  # emitted into a generated module only when its code calls them
    "_sigmoid": '''def _sigmoid(a):
    e = numpy.exp(-numpy.abs(a))
    return numpy.where(a >= 0, 1, e) / (1 + e)
''',
    "_where": '''def _where(c, a, b, out=None):
    """numpy.where(c, a, b), bit for bit, into `out` if given (which may be a). Where b is +0
    and a a float array of c's shape, a's bits (as unsigned integers) are multiplied by c: no
    branch per element, where numpy.where is an order of magnitude slower on unpredictable
    masks such as ReLU's."""
    if not (isinstance(c, numpy.ndarray) and c.dtype == bool and isinstance(a, numpy.ndarray)
            and a.dtype.kind == "f" and c.shape == a.shape and isinstance(b, (int, float))
            and b == 0 and not numpy.signbit(b)):
        if out is None:
            return numpy.where(c, a, b)
        numpy.copyto(out, numpy.where(c, a, b))
        return out
    out = numpy.empty_like(a) if out is None else out
    bits = out.view(f"u{a.dtype.itemsize}")
    numpy.multiply(a.view(bits.dtype), c, out=bits)  # a's bits times 1 or 0: exact, in place
    return out
''',
    "_unslice": '''def _unslice(g, shape, dtype, index):
    out = numpy.zeros(shape, dtype=dtype)
    out[index] = g
    return out
''',
    "_check_index": '''def _check_index(indices, n, negative, what):
    low = -n if negative else 0
    bad = numpy.extract((indices < low) | (indices >= n), indices)
    if bad.size:
        raise IndexError(f"{what}: index {bad[0]} is out of range [{low}, {n})")
    return indices
''',
    "_scatter_add": '''def _scatter_add(g, indices, shape, dtype, axis):
    out = numpy.zeros(shape, dtype=dtype)
    numpy.add.at(out, (slice(None),) * axis + (indices,), g)
    return out
''',
    "_check": '''def _check(value, where, shape, dtype):
    if numpy.shape(value) != shape or numpy.result_type(value) != dtype:
        raise AssertionError(f"{where} computed {numpy.shape(value)} {numpy.result_type(value)}, "
                             f"declared {shape} {numpy.dtype(dtype)}")
    if numpy.result_type(value).kind in "fc" and not numpy.all(numpy.isfinite(value)):
        raise FloatingPointError(where + " produced NaN or Inf")
    return value
''',
}
HELPERS.update(conv_kernels.HELPERS)
HELPERS.update(PRINTER_HELPERS)
# helpers that a helper calls itself, emitted along with it
HELPER_NEEDS = {h: {o for o in HELPERS if o != h and o + "(" in src} for h, src in HELPERS.items()}
