"""The NumPy backend's accumulated updates (`codegen.accumulate`), emitted as source into the
generated modules that use them.

`_gemm_update(c, scale, a, b)` is an update `c -= scale * (a @ b)` (an SGD step on a weight
matrix) as one `gemm` that adds the product into c's memory (alpha = -scale, beta = 1): no
product array, no scaled copy, no separate subtraction pass. NumPy has no such call, so it goes
through SciPy's BLAS wrappers where SciPy is installed; without SciPy (a saved module needs only
NumPy) it computes the product, scales it and subtracts it, the operations the graph spells.
The two differ only in rounding (gemm's alpha/beta arithmetic).

`_scatter_update(target, scale, axis, terms)` is an update by the gradient of `take` (an
embedding lookup): the rows the indices address move, nothing else is read or written.
"""

from __future__ import annotations

import inspect

import numpy

from graphdl.runtime import _index_major, _rows_summed


def _gemm_update(c, scale, a, b):
    """c -= scale * (a @ b), in place, for 2-D float arrays of one dtype."""
    gemm = _blas_gemm(c.dtype)
    if gemm is None or not c.flags.c_contiguous or 0 in a.shape:
        product = a @ b
        numpy.multiply(scale, product, out=product)
        numpy.subtract(c, product, out=c)
        return
    # BLAS is column-major: C-ordered c is the column-major c.T = b.T @ a.T (+ c.T).
    first, trans_a = _column_major(b.T)
    second, trans_b = _column_major(a.T)
    out = gemm(-float(scale), first, second, beta=1.0, c=c.T, trans_a=trans_a, trans_b=trans_b,
               overwrite_c=1)
    if out.ctypes.data != c.ctypes.data:  # the wrapper worked on a copy: write it back
        c[...] = out.T


def _column_major(m):
    """(array, transposed) with `m` as BLAS reads it without a copy: m itself if it is
    column-major, else its transpose flagged as transposed (a copy only if neither is)."""
    if m.flags.f_contiguous:
        return m, 0
    if m.flags.c_contiguous:
        return m.T, 1
    return numpy.asfortranarray(m), 0


def _blas_gemm(dtype):
    """SciPy's gemm for `dtype` (float32 or float64), or None without SciPy; looked up once."""
    found = _blas_gemm.__dict__.setdefault("found", {})
    if dtype.char not in found:
        try:
            from scipy.linalg import blas
        except ImportError:
            blas = None
        found[dtype.char] = blas and getattr(blas, {"f": "sgemm", "d": "dgemm"}[dtype.char])
    return found[dtype.char]


def _scatter_update(target, scale, axis, terms):
    """target -= scale * (the sum of scatter-adds of the (indices, g) pairs in `terms` along
    `axis`), in place, touching only the addressed rows: an embedding's SGD step costs what
    its batch touches, not what the table holds. Each row's slices are summed first
    (`_rows_summed`), so a row addressed twice moves once, by the sum."""
    indices = numpy.concatenate([i.reshape(-1) for i, _ in terms])
    slices = numpy.concatenate([_index_major(g, i.ndim, axis) for i, g in terms])
    rows, sums = _rows_summed(indices, slices, target.shape[axis])
    numpy.moveaxis(target, axis, 0)[rows] -= scale * sums


HELPERS = {f.__name__: inspect.getsource(f)
           for f in (_gemm_update, _column_major, _blas_gemm, _scatter_update)}
