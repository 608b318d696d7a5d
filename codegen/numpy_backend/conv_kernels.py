"""NumPy kernels for convolution and pooling, emitted as source into generated modules.

Each function here is copied (`inspect.getsource`) into a generated module that calls it, so it
may use only `numpy` and the other helpers: its own and those of the runtime it shares with the
reference interpreter (`graphdl.runtime`: output size, padding, divisors, the lowest value, the
bit-mask select). The backend emits the helpers a statement's text mentions and the helpers
those call (`helpers.HELPER_NEEDS`). The NumPy backend's templates spell out the steps,
e.g. `_conv2d(_im2col(x, ...), w, ...)`. These kernels are the fast path; the reference
(`graphdl.ops.conv`, sliding windows and einsum) stays apart, as their oracle.

Max-pooling finds each window's arg-max once: where the graph also holds the pool's gradient
(or select) on the same input, one `_max_pool2d_route` statement serves the forward node and
its gradients. Large work buffers (im2col bands, input-gradient columns) come from a pool kept
by `_scratch` for the module's lifetime, so they are not page-faulted in again on every call;
the statements run one after another, so one buffer per dtype serves them all.

Layout: activations lie batch-innermost, (C, H, W, N) memory behind (N, C, H, W) views. One
matrix product per band of output rows: `_im2col` copies the windows of x into columns
(C·kh·kw, rows·OW·N), each copy a run of whole rows of the batch (OW·N contiguous values for
stride 1, N otherwise); the product with the weights (O, C·kh·kw) writes straight into the
output's (O, OH, OW, N) memory, returned as an (N, O, OH, OW) view (no copy). Elementwise ops
and pooling keep that memory order, and the gradient kernels read it back without copies; an
input in another order (the user's NCHW images) is transposed once per kernel that reads it
(`_chwn`). Pooling loops over the kh·kw kernel positions (strided slices of the whole batch),
never over pixels.
"""

from __future__ import annotations

import inspect

import numpy

from graphdl.runtime import _conv_out, _lowest, _pad, _pool_extra, _where


def _scratch(size, dtype, done=None):
    """A flat work buffer of `size` elements from this module's pool, or `done` (a buffer it
    handed out, or a view of one) given back to it. Megabyte arrays allocated afresh on every
    call cost page faults on every call (the allocator hands such blocks back to the system);
    a pooled one is reused. The statements that use these buffers run one after another, so
    one buffer per dtype, the largest asked for, serves them all: a request takes a view of
    its front. Threads that find it taken get a new one."""
    pool = _scratch.__dict__.setdefault("pool", {})
    if done is not None:
        done = done if done.base is None else done.base
        kept = pool.get(done.dtype.str)
        if kept is None or kept.size < done.size:
            pool[done.dtype.str] = done
        return None
    key = numpy.dtype(dtype).str
    buffer = pool.pop(key, None)
    if buffer is None or buffer.size < size:
        if buffer is not None:
            pool[key] = buffer  # too small: stays for smaller requests
        return numpy.empty(size, dtype=dtype)
    return buffer[:size]


def _taps(kernel, stride, dilation, out):
    """For each kernel position, in scan order, the (rows, columns) slices of the padded input
    that it meets in the `out` (OH, OW) windows."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out
    return [(slice(i * dh, i * dh + (oh - 1) * sh + 1, sh),
             slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)) for i in range(kh) for j in range(kw)]


def _chwn(x, padding):
    """x (N, C, H, W) as (C, H, W, N), padded with zeros (top, bottom, left, right): the memory
    order in which every copy of the convolution kernels runs along whole rows of the batch.
    A view where x already lies in that order (the kernels' own outputs), else one copy."""
    n, c, h, w = x.shape
    (pt, pb, pl, pr), xt = padding, x.transpose(1, 2, 3, 0)
    if not (pt or pb or pl or pr) and xt.flags.c_contiguous:
        return xt
    out = numpy.zeros((c, h + pt + pb, w + pl + pr, n), dtype=x.dtype)
    for first in range(0, n, 8):  # 8 images at a time: from (N, C, H, W) memory, the lines
        out[:, pt:pt + h, pl:pl + w, first:first + 8] = xt[..., first:first + 8]  # stay in L1
    return out


def _im2col(x, kernel, stride, padding, dilation, budget=1 << 20):
    """The windows of x (N, C, H, W), padded (top, bottom, left, right), as columns
    (C*kh*kw, rows*OW*N), the batch innermost, for a band of output rows at a time: yields
    (first row, last row, columns). One buffer of about `budget` bytes is refilled, so the
    columns stay in cache for the matrix product that consumes them."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (pt, pb, pl, pr), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = _conv_out(h, kh, sh, pt, pb, dh), _conv_out(w, kw, sw, pl, pr, dw)
    xt = _chwn(x, padding)
    row = c * kh * kw * ow * n  # elements of one output row's columns
    per = max(1, min(oh, budget // max(1, row * xt.itemsize)))
    buffer = _scratch(row * per, xt.dtype)
    for first in range(0, max(oh, 1), per):  # no output rows: one (empty) band all the same
        last = min(oh, first + per)
        cols = buffer[:row * (last - first)].reshape(c, kh * kw, last - first, ow, n)
        for k, (rows, columns) in enumerate(_taps(kernel, stride, dilation, (last - first, ow))):
            shift = first * sh
            cols[:, k] = xt[:, rows.start + shift:rows.stop + shift:rows.step, columns]
        yield first, last, cols.reshape(c * kh * kw, -1)
    _scratch(0, None, done=buffer)


def _conv2d(columns, w, groups, shape):
    """w (O, C/g, kh, kw) times each band of columns: y (N, O, OH, OW), a view of memory
    (O, OH, OW, N) that the products write into directly."""
    n, o, oh, ow = shape
    wg = w.reshape(groups, o // groups, -1)
    y = None
    for first, last, cols in columns:
        if y is None:
            y = numpy.empty((groups, o // groups, oh, ow * n), numpy.result_type(cols, w))
        numpy.matmul(wg, cols.reshape(groups, wg.shape[2], -1),
                     out=y[:, :, first:last].reshape(groups, o // groups, -1))
    return y.reshape(o, oh, ow, n).transpose(3, 0, 1, 2)


def _conv2d_weight_grad(columns, g, groups, shape):
    """The correlation of x (as columns) with the output gradient g: dW of shape
    (O, C/g, kh, kw), summed over the bands of output rows."""
    o = shape[0]
    gt = _chwn(g, (0, 0, 0, 0))  # (O, OH, OW, N): a view for g in the kernels' order, else
    # one copy (each band's product gathering g from another order ran ~3x slower)
    dw = 0
    for first, last, cols in columns:
        gs = gt[:, first:last].reshape(groups, o // groups, -1)
        dw = dw + numpy.matmul(cols.reshape(groups, cols.shape[0] // groups, cols.shape[1]),
                               gs.transpose(0, 2, 1))
    return dw.transpose(0, 2, 1).reshape(shape)


def _conv2d_cols(g, w, groups, budget=1 << 20):
    """Wᵀ g: the input gradient as columns (C*kh*kw, rows*OW*N) for a band of output rows at a
    time, like `_im2col`'s: yields (first row, last row, columns) for `_col2im`. One buffer of
    about `budget` bytes is refilled."""
    n, o, oh, ow = g.shape
    k = w.size // o
    gt, wt = _chwn(g, (0, 0, 0, 0)), w.reshape(groups, o // groups, k).transpose(0, 2, 1)
    dtype = numpy.result_type(g, w)
    row = groups * k * ow * n  # elements of one output row's columns
    per = max(1, min(oh, budget // max(1, row * dtype.itemsize)))
    buffer = _scratch(row * per, dtype)
    for first in range(0, max(oh, 1), per):  # no output rows: one (empty) band all the same
        last = min(oh, first + per)
        cols = buffer[:row * (last - first)].reshape(groups, k, -1)
        numpy.matmul(wt, gt[:, first:last].reshape(groups, o // groups, -1), out=cols)
        yield first, last, cols.reshape(groups * k, -1)
    _scratch(0, None, done=buffer)


def _col2im(bands, shape, kernel, stride, padding, dilation):
    """The transpose of `_im2col`: each band of columns from `_conv2d_cols` summed back into an
    (N, C, H, W) array (a view of memory (C, H, W, N)), one strided add per kernel position."""
    n, c, h, w = shape
    (kh, kw), (sh, sw), (pt, pb, pl, pr) = kernel, stride, padding
    ow = _conv_out(w, kw, sw, pl, pr, dilation[1])
    out = None
    for first, last, cols in bands:
        if out is None:
            out = numpy.zeros((c, h + pt + pb, w + pl + pr, n), dtype=cols.dtype)
        cols = cols.reshape(c, kh * kw, last - first, ow, n)
        for k, (rows, columns) in enumerate(_taps(kernel, stride, dilation, (last - first, ow))):
            shift = first * sh
            out[:, rows.start + shift:rows.stop + shift:rows.step, columns] += cols[:, k]
    return out[:, pt:pt + h, pl:pl + w].transpose(3, 0, 1, 2)


def _conv2d_phases(g, w, groups, shape, stride, padding):
    """conv2d's input gradient (the transposed convolution of g by w) where the stride divides
    the kernel and the dilation is 1, by the stride's phases: the cells of the output that lie
    at one (row mod sh, column mod sw) all take the same (kh/sh)·(kw/sw) kernel positions, each
    from its own cell of g, so all sh·sw phases are one stride-1 convolution of g (padded) with
    their kernels stacked as output channels. One product with O·kh·kw/(sh·sw) terms a sum and
    no strided adds, in place of `_col2im`'s product with O terms and kh·kw adds of runs of N
    values: 2-3x faster for DCGAN's and U-Net's up-sampling layers. Each band of the product is
    copied into its rows of the result, (C, H, W, N) memory, while it is in cache. The product
    also multiplies each weight by the zeros padding g, which for an inf or NaN weight would be
    NaN where none of its windows reaches: such weights take `_col2im`."""
    if not numpy.isfinite(w).all():
        return _col2im(_conv2d_cols(g, w, groups), shape, w.shape[2:], stride, padding, (1, 1))
    n, c, h, width = shape
    (sh, sw), (pt, pb, pl, pr) = stride, padding
    o, cg, kh, kw = w.shape
    th, tw, (oh, ow) = kh // sh, kw // sw, g.shape[2:]
    hq = max(oh + th - 1, -(-(h + pt + pb) // sh))  # rows of a phase: the full scatter's and
    wq = max(ow + tw - 1, -(-(width + pl + pr) // sw))  # what the padding asks beyond it
    # phase (p, q) at (a, b) sums w[:, :, i·sh + p, j·sw + q] g[a - i, b - j]: the correlation
    # of g, padded by th - 1 and tw - 1 cells before, with the kernel taps reversed
    wp = w.reshape(groups, o // groups, cg, th, sh, tw, sw)[:, :, :, ::-1, :, ::-1]
    wp = wp.transpose(0, 4, 6, 2, 1, 3, 5).reshape(groups, sh * sw * cg, -1)
    y = numpy.empty((c, hq * sh, wq * sw, n), dtype=numpy.result_type(g, w))
    phases = y.reshape(groups, cg, hq, sh, wq, sw, n)
    for first, last, cols in _im2col(g, (th, tw), (1, 1), (th - 1, hq - oh, tw - 1, wq - ow),
                                     (1, 1)):
        band = numpy.matmul(wp, cols.reshape(groups, wp.shape[2], -1))
        band = band.reshape(groups, sh, sw, cg, last - first, wq, n)
        phases[:, :, first:last] = band.transpose(0, 3, 4, 1, 5, 2, 6)
    return y[:, pt:pt + h, pl:pl + width].transpose(3, 0, 1, 2)


def _pool_windows(x, kernel, stride, padding, dilation, out, fill):
    """x padded with `fill` (and as far as ceil-mode windows reach); one strided slice of the
    pooled shape per kernel position, in scan order; the index that crops the padding off."""
    (pt, _, pl, _), (h, w) = padding, x.shape[2:]
    x = _pad(x, padding, fill, _pool_extra((h, w), kernel, stride, padding, dilation, out))
    slices = [(slice(None), slice(None), rows, columns)
              for rows, columns in _taps(kernel, stride, dilation, out)]
    return x, slices, (slice(None), slice(None), slice(pt, pt + h), slice(pl, pl + w))


def lowest_text(dtype):
    """`_lowest(dtype)` as source text, for the templates (used at code generation, not emitted)."""
    value = _lowest(numpy.dtype(dtype))
    return "-numpy.inf" if value == -numpy.inf else repr(value)


def _max_pool2d(windows):
    """Window maxima: the running maximum over the kernel positions."""
    xp, slices, _ = windows
    y = xp[slices[0]].copy(order="K")
    for s in slices[1:]:
        numpy.maximum(y, xp[s], out=y)
    return y


def _max_pool2d_route(windows):
    """The window maxima and each window's arg-max: the kernel position (index into the scan
    order of `slices`) of its first maximum, a NaN winning as in the reference. A dict, so
    that a forward pass and its gradients can share one (`route["max"]`, `route["arg"]`)."""
    xp, slices, crop = windows
    y = xp[slices[0]].copy(order="K")
    arg = numpy.zeros_like(y, dtype=numpy.uint8 if len(slices) < 256 else numpy.intp)
    wins, k_wins = numpy.empty_like(y, dtype=bool), numpy.empty_like(arg)
    for k, s in enumerate(slices[1:], 1):  # a later win has a larger k: arg = max(k * win)
        v = xp[s]
        numpy.greater(v, y, out=wins)
        numpy.maximum(arg, numpy.multiply(wins, arg.dtype.type(k), out=k_wins), out=arg)
        numpy.maximum(y, v, out=y)
    stuck = y == _lowest(y.dtype)  # only lowest values: the first real one wins, not the padding
    if stuck.any() and xp.shape[2:] != (crop[2].stop - crop[2].start,
                                         crop[3].stop - crop[3].start):
        real = numpy.zeros(xp.shape[2:], dtype=bool)
        real[crop[2:]] = True
        first = numpy.argmax(numpy.stack([real[s[2:]] for s in slices]), axis=0)
        arg[stuck] = numpy.broadcast_to(first, y.shape)[stuck]
    if y.dtype.kind == "f" and numpy.isnan(y).any():  # the first NaN wins, where there is one
        arg[numpy.isnan(y)] = numpy.argmax(numpy.isnan(numpy.stack([xp[s] for s in slices])),
                                           axis=0)[numpy.isnan(y)]
    return {"like": xp, "slices": slices, "crop": crop, "max": y, "arg": arg}


def _max_pool2d_grad(g, route):
    """g routed to each window's arg-max (summed where windows overlap), in the memory order
    of the pooled input."""
    dx = numpy.zeros_like(route["like"], dtype=g.dtype)
    slices, arg = route["slices"], route["arg"]
    g = _in_order_of(g, arg)
    if _disjoint(slices) and g.dtype.kind == "f":  # each cell in one window at most
        for k, s in enumerate(slices):
            _where(arg == k, g, 0, out=dx[s])
        return dx[route["crop"]]
    for k, s in enumerate(slices):
        numpy.add(dx[s], g, out=dx[s], where=arg == k)
    return dx[route["crop"]]


def _in_order_of(a, like):
    """a, or a copy of it laid out in memory as `like` is, so that the loops over both run
    along the same rows (the gradient of LeNet's second pool arrives from a matrix product
    in (N, C, H, W) order: 0.22 -> 0.08 ms)."""
    if numpy.argsort(a.strides, kind="stable").tolist() == \
            numpy.argsort(like.strides, kind="stable").tolist():
        return a
    out = numpy.empty_like(like, dtype=a.dtype)
    out[...] = a
    return out


def _disjoint(slices):
    """Whether pooling windows never overlap: each window's extent is within one stride."""
    return all(max(s[a].start for s in slices) < slices[0][a].step for a in (2, 3))


def _max_pool2d_select(u, route):
    """u read at each window's arg-max."""
    up = numpy.zeros_like(route["like"], dtype=u.dtype)
    up[route["crop"]] = u
    y = numpy.zeros_like(route["max"], dtype=u.dtype)
    for k, s in enumerate(route["slices"]):
        numpy.copyto(y, up[s], where=route["arg"] == k)
    return y


def _avg_pool2d(windows, divisor):
    """Window sums over the kernel positions (zero padding), divided by the divisors."""
    xp, slices, _ = windows
    y = xp[slices[0]].copy(order="K")
    for s in slices[1:]:
        numpy.add(y, xp[s], out=y)
    return numpy.true_divide(y, divisor.astype(y.dtype), out=y)


def _avg_pool2d_grad(g, windows, divisor):
    """Each window's g / divisor added to every cell of the window (`windows` of zeros)."""
    dx, slices, crop = windows
    share = g / divisor.astype(g.dtype)
    for s in slices:
        dx[s] += share
    return dx[crop]


KERNELS = [_scratch, _taps, _chwn, _im2col, _conv2d, _conv2d_weight_grad, _conv2d_cols, _col2im,
           _conv2d_phases, _pool_windows, _max_pool2d, _max_pool2d_route, _max_pool2d_grad,
           _max_pool2d_select, _in_order_of, _disjoint, _avg_pool2d, _avg_pool2d_grad]
HELPERS = {f.__name__: inspect.getsource(f) for f in KERNELS}
