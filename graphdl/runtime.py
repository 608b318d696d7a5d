"""The NumPy runtime: kernels written once, run by the reference interpreter (the ops' `impl`s
call them) and copied, as source, into every generated NumPy module that calls them.

The NumPy backend emits each function with `inspect.getsource` into modules that need only
NumPy, so a function here reads nothing but `numpy`, builtins and the other functions of
`__all__`. Their names are the ones generated code calls: the leading underscore keeps them
apart from the names generated code gives the user's values (never one with a leading
underscore); it does not make them private. This module imports neither graphdl nor codegen.

The einsum and sliding-window references of convolution and pooling (`graphdl.ops.conv`) and
the im2col kernels of generated code (`graphdl.codegen.numpy_backend.conv_kernels`) stay apart,
one the other's oracle in the tests; the small pieces they agree on by definition (output size,
padding, divisors, the value max-pooling pads with) are here.
"""

from __future__ import annotations

import numpy

__all__ = ["_allreduce", "_avg_divisor", "_check_index", "_conv_out", "_erf", "_erfc",
           "_index_major", "_linear_scan", "_logcumsumexp", "_lowest", "_mix64", "_pad",
           "_per_element", "_pool_extra", "_random_uniform", "_row_groups", "_rows_summed",
           "_running_arg", "_scatter_add", "_sigmoid", "_softplus", "_stable_order", "_sum_to",
           "_sum_to_axes", "_swap32", "_unslice", "_where"]


# ---------------------------------------------------------------- communication
def _allreduce(x, op, weight=None, xp=numpy):
    """gd.allreduce: the identity without a torch.distributed process group, so a saved module
    still needs only NumPy with one worker; with a group, graphdl.distributed's collective on
    an array of `xp` (NumPy; CuPy in the CUDA backend's driver: on the GPU's own buffers)."""
    import sys

    dist = sys.modules.get("torch.distributed")  # never imported here: no group without it
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return x
    from graphdl import distributed
    weight = None if weight is None else float(weight)  # a device scalar is read here
    return distributed.allreduce_array(xp.asarray(x), op, weight, xp=xp)


# ---------------------------------------------------------------- elementwise
def _sigmoid(a):
    """σ from e = e^-|a| ≤ 1: nothing overflows, and both tails keep full relative precision."""
    e = numpy.exp(-numpy.abs(a))
    return numpy.where(a >= 0, 1, e) / (1 + e)


def _softplus(a):
    """log(1 + e^a) = max(a, 0) + log1p(e^-|a|): nothing overflows, both tails keep full
    relative precision. NumPy's logaddexp(0, a) uses the same formula, five times slower (and
    rounds it a little differently: within 3 ulp of it in float32)."""
    return numpy.maximum(a, 0) + numpy.log1p(numpy.exp(-numpy.abs(a)))


def _where(c, a, b, out=None):
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


# ---------------------------------------------------------------- random numbers
# Counter-based: element i of a draw is a function of (key, i) alone, in uint64 arithmetic
# (modulo 2^64) of additions, multiplications and shifts only, so that the CUDA kernel
# (`random_uniform.cu`) and ONNX opset 17 (which has no bitwise XOR) spell the same steps.
def _mix64(z):
    """SplitMix64's finalizer with additions where it has XORs: scatters a key's bits."""
    z = (z + (z >> numpy.uint64(30))) * numpy.uint64(0xBF58476D1CE4E5B9)
    z = (z + (z >> numpy.uint64(27))) * numpy.uint64(0x94D049BB133111EB)
    return z + (z >> numpy.uint64(31))


def _swap32(z):
    """z's two 32-bit halves exchanged (a rotation by 32; the halves do not overlap)."""
    return (z >> numpy.uint64(32)) + (z << numpy.uint64(32))


def _random_uniform(key, shape, dtype):
    """Numbers in [0, 1) of `shape` and `dtype` (float32 or float64) from the integer `key`:
    Widynski's "Squares" counter-based generator (five rounds of square, add, swap halves, its
    last XOR an addition) keyed by k = 2·mix(key + γ) + 1 (odd, bits scattered; γ = 2^64/φ)
    and counted by the flat C-order index i; the top 24 (float32) or 53 (float64) bits of
    the result, times 2^-24 or 2^-53 (exact)."""
    bits = 24 if numpy.dtype(dtype) == numpy.float32 else 53
    count = int(numpy.prod(shape, dtype=numpy.int64))
    with numpy.errstate(over="ignore"):
        k = numpy.asarray(key).astype(numpy.uint64).reshape(1) + numpy.uint64(0x9E3779B97F4A7C15)
        k = _mix64(k) * numpy.uint64(2) + numpy.uint64(1)
        y = numpy.arange(count, dtype=numpy.uint64) * k
        z = y + k
        x = _swap32(y * y + y)
        x = _swap32(x * x + z)
        x = _swap32(x * x + y)
        t = x * x + z
        x = _swap32(t)
        out = t + ((x * x + y) >> numpy.uint64(32))
    top = (out >> numpy.uint64(64 - bits)).astype(dtype)
    return (top * numpy.asarray(2.0 ** -bits, dtype)).reshape(shape)


# ---------------------------------------------------------------- movement
def _unslice(g, shape, dtype, index):
    """Zeros of `shape` with g written at `index` (a tuple of slices): slice's adjoint."""
    out = numpy.zeros(shape, dtype=dtype)
    out[index] = g
    return out


def _scatter_add(g, indices, shape, dtype, axis):
    """Zeros of `shape` with g's slices added at `indices` along `axis`: take's adjoint
    (repeated indices add up)."""
    out = numpy.zeros(shape, dtype=dtype)
    rows, sums = _rows_summed(indices.reshape(-1), _index_major(g, indices.ndim, axis), shape[axis])
    numpy.moveaxis(out, axis, 0)[rows] = sums
    return out


def _index_major(g, index_ndim, axis):
    """g, the result of a `take` along `axis` with indices of `index_ndim` dimensions, as one
    slice per index: the index axes moved to the front and flattened into one."""
    front = numpy.moveaxis(g, tuple(range(axis, axis + index_ndim)), tuple(range(index_ndim)))
    return front.reshape((-1,) + front.shape[index_ndim:])


def _rows_summed(indices, slices, n):
    """(rows, sums): the distinct positions in [0, n) that the flat `indices` address
    (negative ones count from the end) and, for each, the sum of the slices sent there.
    A stable sort; each row's first slice; then one numpy.add.reduceat over the slices of the
    rows addressed more than once, gathered together (reduceat pays per segment, and most
    rows of an embedding batch come once): several times faster than numpy.add.at.
    reduceat's summation order is its own, so sums of three or more slices may differ from
    add.at's sequential ones in the last bits."""
    if indices.size == 0:
        return indices, slices
    order, rows, starts = _row_groups(indices, n)
    counts = numpy.diff(numpy.append(starts, len(order)))
    grouped = slices[order]
    sums = grouped[starts]
    repeated = counts > 1
    if repeated.any():
        together = grouped[numpy.repeat(repeated, counts)]
        bounds = numpy.concatenate(([0], numpy.cumsum(counts[repeated])[:-1]))
        sums[repeated] = numpy.add.reduceat(together, bounds, axis=0)
    return rows, sums


def _row_groups(indices, n):
    """(order, rows, starts) for flat, non-empty `indices` into [-n, n): the stable order that
    sorts them, the distinct rows they address (negative ones counted from the end), and
    where each row's run begins in the sorted order."""
    if indices.min() < 0:  # n may not fit a narrow index dtype
        indices = numpy.where(indices < 0, indices.astype(numpy.intp) + n, indices)
    order = _stable_order(indices, n)
    ordered = indices[order]
    starts = numpy.flatnonzero(numpy.concatenate(([True], ordered[1:] != ordered[:-1])))
    return order, ordered[starts], starts


def _stable_order(keys, n):
    """The stable order that sorts `keys` in [0, n): NumPy's radix sort (its stable sort of
    16-bit integers) on 16 bits at a time, least significant first, for n up to 2**32; a
    comparison sort beyond. On an embedding batch (6,144 indices into 45,666 rows) one radix
    pass takes a sixth of the time of the comparison sort of the int64 keys."""
    if keys.dtype.itemsize <= 2 or n > 2**32:  # 16-bit keys are one radix pass as they are
        return numpy.argsort(keys, kind="stable")
    order = numpy.argsort((keys & 0xFFFF).astype(numpy.uint16), kind="stable")
    if n > 2**16:
        high = (keys[order] >> 16).astype(numpy.uint16)
        order = order[numpy.argsort(high, kind="stable")]
    return order


def _check_index(indices, n, negative, what):
    """The indices, unless one falls outside [-n, n) (`negative`: counted from the end, as
    NumPy's) or [0, n): then an IndexError naming `what` and the first such index."""
    low = -n if negative else 0
    if indices.size and (indices.min() < low or indices.max() >= n):  # the first bad one, then
        bad = numpy.extract((indices < low) | (indices >= n), indices)
        raise IndexError(f"{what}: index {bad[0]} is out of range [{low}, {n})")
    return indices


def _sum_to_axes(shape, target):
    """The axes that broadcasting `target` to `shape` added or stretched: the leading ones and
    those where target has 1 and shape not."""
    lead = len(shape) - len(target)
    return tuple(range(lead)) + tuple(
        lead + i for i, t in enumerate(target) if t == 1 and shape[lead + i] != 1)


def _sum_to(x, shape):
    """x summed down to `shape`, undoing broadcasting (autodiff's unbroadcast)."""
    return numpy.sum(x, axis=_sum_to_axes(x.shape, shape), keepdims=True).reshape(shape)


def _linear_scan(a, g, axis, reverse):
    """s_k = g_k + a_k · s_(k-1) along `axis` (s_(k+1) with `reverse`); s = g at the first
    element in the scan's order. One vectorized step per position of the axis."""
    a, g = numpy.moveaxis(a, axis, 0), numpy.moveaxis(g, axis, 0)
    out = numpy.empty_like(g)
    previous = None
    with numpy.errstate(invalid="ignore", over="ignore"):  # inf and NaN carry on, as in C
        for k in (range(len(g) - 1, -1, -1) if reverse else range(len(g))):
            previous = g[k] if previous is None else g[k] + a[k] * previous
            out[k] = previous
    return numpy.moveaxis(out, 0, axis)


def _logcumsumexp(x, axis):
    """log Σ e^x cumulated along `axis`: NumPy's logaddexp, which never overflows, accumulated.
    A NaN gives NaN from there on, without the warning NumPy's logaddexp gives for it."""
    with numpy.errstate(invalid="ignore"):
        return numpy.logaddexp.accumulate(x, axis)


def _running_arg(x, axis, reverse, largest):
    """The int64 index of the running maximum (`largest`) or minimum of x along `axis`,
    PyTorch's cummax/cummin's: of equal values the one seen last; from a NaN on the extremum is
    NaN, its index the last NaN seen. `reverse` runs from the end. A position is the index from
    where its value equals the running extremum (or is NaN) until the next such position."""
    if reverse:
        flipped = _running_arg(numpy.flip(x, axis), axis, False, largest)
        return numpy.flip(x.shape[axis] - 1 - flipped, axis)
    extremum = (numpy.maximum if largest else numpy.minimum).accumulate(x, axis)
    hit = x == extremum
    if x.dtype.kind == "f":
        hit |= numpy.isnan(x)
    positions = numpy.arange(x.shape[axis]).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    return numpy.maximum.accumulate(numpy.where(hit, positions, 0), axis).astype(numpy.int64)


# ---------------------------------------------------------------- convolution and pooling
def _conv_out(size, k, s, p0, p1, d):
    """PyTorch's convolution output size along an axis of `size` cells, padded by p0 and p1,
    for a kernel of k cells at stride s and dilation d."""
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def _pad(x, padding, fill=0, extra=(0, 0)):
    """x (N, C, H, W) padded with `fill`: four sides (top, bottom, left, right), and `extra`
    more cells at the bottom and right (as far as ceil-mode windows reach)."""
    (pt, pb, pl, pr), (eh, ew) = padding, extra
    if not (pt or pb or pl or pr or eh or ew):
        return x
    return numpy.pad(x, ((0, 0), (0, 0), (pt, pb + eh), (pl, pr + ew)), constant_values=fill)


def _pool_extra(size, kernel, stride, padding, dilation, out):
    """(bottom, right): the cells past the padding of an input of spatial `size` (H, W) that
    the last of the `out` (OH, OW) windows reaches in ceil mode."""
    return tuple(max(0, (o - 1) * s + (k - 1) * d + 1 - (n + p0 + p1))
                 for n, k, s, d, p0, p1, o in zip(size, kernel, stride, dilation, padding[::2],
                                                  padding[1::2], out))


def _lowest(dtype):
    """The smallest value of `dtype`, what max-pooling pads with (a padded cell never wins):
    -inf, the integer minimum, or False."""
    if dtype.kind == "f":
        return -numpy.inf
    return False if dtype.kind == "b" else int(numpy.iinfo(dtype).min)


def _avg_divisor(size, kernel, stride, padding, out, count_include_pad):
    """(OH, OW) divisors of average pooling, as PyTorch: windows clipped to the padded input
    (ceil mode), padding counted or not; never below 1 (a window wholly in the padding
    averages to 0)."""
    sides = []
    for n, k, s, p0, p1, o in zip(size, kernel, stride, padding[::2], padding[1::2], out):
        start = numpy.arange(o) * s - p0
        end = numpy.minimum(start + k, n + p1)
        valid = numpy.minimum(end, n) - numpy.maximum(start, 0)
        sides.append(end - start if count_include_pad else numpy.maximum(valid, 0))
    return numpy.maximum(numpy.outer(*sides), 1)


def _erf(a):
    """erf elementwise: the C library's erf (math.erf, within an ulp of the exact value)."""
    return _per_element("erf", a)


def _erfc(a):
    """erfc elementwise: the C library's erfc, accurate where 1 − erf is 0 (erfc(10) ≈ 2e-45)."""
    return _per_element("erfc", a)


def _per_element(name, a):
    """The `math` function `name` applied per element, in a's floating dtype (float64 for
    integers). NumPy has no erf nor erfc; SciPy is not required."""
    import math
    a = numpy.asarray(a)
    dtype = a.dtype if a.dtype.kind == "f" else numpy.dtype("float64")
    return numpy.asarray(numpy.frompyfunc(getattr(math, name), 1, 1)(a), dtype=dtype)
