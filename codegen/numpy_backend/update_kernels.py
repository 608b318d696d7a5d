"""The NumPy backend's accumulated updates (the `codegen.accumulate` rewrites its target
registers, `BACKEND.target`: products, scatters, scatter terms as outer-product factors),
emitted as source into the generated modules that use them.

`_gemm_update(c, scale, a, b)` is an update `c -= scale * (a @ b)` (an SGD step on a weight
matrix) as one `gemm` that adds the product into c's memory (alpha = -scale, beta = 1): no
product array, no scaled copy, no separate subtraction pass. NumPy has no such call, so it calls
the CBLAS gemm of the very BLAS NumPy runs (through ctypes: a saved module still needs only
NumPy); where NumPy's BLAS is not one it knows, it computes the product, scales it and
subtracts it, the operations the graph spells. The two differ only in rounding (gemm's
alpha/beta arithmetic).

`_scatter_update(target, scale, axis, terms)` is an update by the gradient of `take` (an
embedding lookup): the rows the indices address move, nothing else is read or written. Each
row's share is summed as a sparse matrix times the factor rows (g's slices, or the two factors
of an outer product, `accumulate._outer_factors`), with SciPy's CSR product where SciPy is
installed (the generated module still runs with NumPy alone: it then forms the products and
sums them).
"""

from __future__ import annotations

import inspect

import numpy

from graphdl.runtime import _index_major, _row_groups, _rows_summed


def _gemm_update(c, scale, a, b):
    """c -= scale * (a @ b), in place, for 2-D float arrays of one dtype."""
    gemm = _blas_gemm(c.dtype)
    if gemm is None or not c.flags.c_contiguous or 0 in a.shape:
        product = a @ b
        numpy.multiply(scale, product, out=product)
        numpy.subtract(c, product, out=c)
        return
    (a, trans_a, lda), (b, trans_b, ldb) = _row_major(a), _row_major(b)
    m, n = c.shape
    gemm(101, trans_a, trans_b, m, n, a.shape[1], -float(scale), a.ctypes.data, lda,
         b.ctypes.data, ldb, 1.0, c.ctypes.data, max(n, 1))


def _row_major(m):
    """(array, CBLAS transpose flag, leading dimension) to pass `m` to a row-major gemm without
    a copy: m itself if it is C-ordered, its memory as the transpose if it is Fortran-ordered
    (a copy only if neither). The array stays referenced while the gemm reads it."""
    if not m.flags.c_contiguous and m.flags.f_contiguous:
        return m, 112, max(m.shape[0], 1)  # CblasTrans: the memory holds m.T in C order
    m = numpy.ascontiguousarray(m)
    return m, 111, max(m.shape[1], 1)  # CblasNoTrans


def _blas_gemm(dtype):
    """The CBLAS gemm of the BLAS NumPy itself runs (the OpenBLAS of NumPy's wheels, its
    64-bit-integer interface), for float32 or float64, or None where NumPy is built otherwise.
    The same library and thread pool as `@`: a second BLAS (SciPy's) would bring its own
    threads, which fight NumPy's for the cores. Checked once on a small product before use:
    a library that answers wrongly is never used."""
    found = _blas_gemm.__dict__.setdefault("found", {})
    if dtype.char not in "fd":  # no other gemm: a float16 array given to dgemm is overrun
        return None
    if dtype.char not in found:
        found[dtype.char] = None
        import ctypes
        import glob
        import os

        libs = os.path.join(numpy.__path__[0], os.pardir, "numpy.libs")
        for path in glob.glob(os.path.join(libs, "libscipy_openblas64_*.so")):
            symbol = f"scipy_cblas_{'s' if dtype.char == 'f' else 'd'}gemm64_"
            gemm = getattr(ctypes.CDLL(path), symbol, None)
            if gemm is None:
                continue
            real, size, ptr = ctypes.c_float if dtype.char == "f" else ctypes.c_double, \
                ctypes.c_int64, ctypes.c_void_p
            gemm.restype = None
            gemm.argtypes = [ctypes.c_int] * 3 + [size] * 3 + [real, ptr, size, ptr, size, real,
                                                                ptr, size]
            a = numpy.arange(6, dtype=dtype).reshape(2, 3)
            b = numpy.arange(12, dtype=dtype).reshape(3, 4) - 5
            c = numpy.ones((2, 4), dtype)
            gemm(101, 111, 111, 2, 4, 3, 2.0, a.ctypes.data, 3, b.ctypes.data, 4, 1.0,
                 c.ctypes.data, 4)
            if numpy.array_equal(c, 1 + 2 * (a @ b)):
                found[dtype.char] = gemm
                break
    return found[dtype.char]


def _scatter_update(target, scale, axis, terms):
    """target -= scale * (the sum of scatter-adds of the terms along `axis`), in place,
    touching only the rows addressed: an embedding's SGD step costs what its batch touches,
    not what the table holds. A term is (indices, g), or (indices, rows, coef) for
    g = coef * rows (axis 0). Each row's contributions are summed first, so a row addressed
    twice moves once, by the sum."""
    moved = target if axis == 0 else numpy.moveaxis(target, axis, 0)
    rows, sums = _scaled_row_sums(terms, axis, moved.shape[0], scale)
    updated = numpy.take(moved, rows, axis=0)  # take, then assign: faster than `[rows] -=`
    updated -= sums.reshape(updated.shape)
    moved[rows] = updated


def _scaled_row_sums(terms, axis, n, scale):
    """(rows, sums): the distinct rows of [0, n) the terms address and, for each, scale times
    the sum of what the terms send there (flattened to one row each). A term (indices, g)
    sends each index position its slice of g; (indices, rows, coef), axis 0 only, sends
    coef[p] times the row of `rows` that position p broadcasts from. The sums are a sparse
    matrix (rows addressed x factor rows, one coefficient per position, times scale) times the
    factor rows stacked: SciPy's CSR product, one pass over the factors (a factor that two
    terms share, as skip-gram's input vectors for its target and its negatives, is stacked
    once); without SciPy, the products are formed and summed as slices (`_rows_summed`).
    The scale multiplies each coefficient before the sum, where the graph scales the sum:
    the two differ in rounding only."""
    indices, coefs, sources, stacked, offsets = [], [], [], [], {}
    for index, *factors in terms:
        if len(factors) == 1:  # (indices, g): g's slices, each with coefficient 1
            rows = _index_major(factors[0], index.ndim, axis)
            rows = rows.reshape(index.size, int(numpy.prod(rows.shape[1:])))  # -1 fails if empty
            coef, source = numpy.ones(index.size, rows.dtype), numpy.arange(index.size)
        else:
            rows, coef = factors
            lead = rows.shape[:-1]
            source = numpy.broadcast_to(numpy.arange(rows[..., 0].size).reshape(lead), index.shape)
            rows = rows.reshape(-1, rows.shape[-1])
        key = (rows.__array_interface__["data"][0], rows.shape, rows.strides, rows.dtype.str)
        if key not in offsets:
            offsets[key] = sum(len(r) for r in stacked)
            stacked.append(rows)
        indices.append(index.reshape(-1).astype(numpy.intp, copy=False))  # one dtype for all
        coefs.append(coef.reshape(-1))
        sources.append(source.reshape(-1) + offsets[key])
    indices, coefs = numpy.concatenate(indices), numpy.concatenate(coefs) * scale
    sources = numpy.concatenate(sources)
    stacked = stacked[0] if len(stacked) == 1 else numpy.concatenate(stacked)
    try:
        from scipy import sparse
    except ImportError:
        return _rows_summed(indices, coefs[:, None] * stacked[sources], n)
    if indices.size == 0:
        return indices, stacked[:0]
    order, rows, starts = _row_groups(indices, n)
    # SciPy's index dtype where it fits: int64 ones it would copy down to int32 first
    kind = numpy.int32 if max(len(order), len(stacked)) < 2**31 else numpy.int64
    pointers = numpy.append(starts, len(order)).astype(kind)
    matrix = sparse.csr_matrix((coefs[order], sources[order].astype(kind), pointers),
                               shape=(len(rows), len(stacked)))
    return rows, matrix @ stacked


HELPERS = {f.__name__: inspect.getsource(f)
           for f in (_gemm_update, _row_major, _blas_gemm, _scatter_update,
                     _scaled_row_sums)}
