"""The CUDA kernels of the structured ops other than convolution and pooling: reductions,
matmul, movement, gather/scatter, index checks and shape-only leaves. Each fills a `.cu`
template from `templates/` with its node's types, sizes, strides and attributes.

One strided-copy kernel (`movement.cu`) serves every movement op: the op only decides the
iteration space and the strides through which it reads and writes (see `_copy`).
"""

from __future__ import annotations

import math
import string

import numpy as np

from graphdl import runtime
from graphdl.codegen.cuda_backend.kernels import (
    Check,
    Launch,
    OpKernels,
    ctype,
    grid_stride,
    integer,
    register,
    special_float,
    template,
)
from graphdl.codegen.naming import comment
from graphdl.ir import describe
from graphdl.ops import collective, leaf, random, scan, sorting
from graphdl.ops import indexing as ix
from graphdl.ops import matmul as mm
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd


def fill(file, node, name, **values):
    """The source of template `file` for `node`, its kernels named from `name`."""
    return template(file).substitute(NAME=name, NODE=f"{name}: {comment(describe(node))}",
                                     **values)


def _supported(node, dtype, kinds="fiub"):
    dtype = np.dtype(dtype)
    if dtype.kind not in kinds:
        raise NotImplementedError(f"the CUDA backend has no {node.op.name} kernel for "
                                  f"{describe(node)} in dtype {dtype}")
    return ctype(dtype)


def _index_type(*sizes):
    """The C type of indices and offsets: int where every size fits, else long long."""
    return "int" if max(sizes, default=0) < 2**31 else "long long"


def _list(values):
    """A C initializer list; a zero-dimensional space gets one dimension of size 1."""
    return ", ".join(str(int(v)) for v in values) or "1"


def _strides(shape):
    """C-order strides, in elements."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


def _broadcast_strides(shape, out_shape):
    """The strides (elements) through which a contiguous array of `shape` is read broadcast to
    `out_shape`: 0 on the axes it lacks or stretches."""
    own = _strides(shape)
    lead = len(out_shape) - len(shape)
    return tuple(0 if i < lead or shape[i - lead] == 1 else own[i - lead]
                 for i in range(len(out_shape)))


# ---------------------------------------------------------------- reductions
REDUCE_BLOCK = 256
WARP_ROWS = 512  # rows up to this many elements are reduced by one warp, longer by a block


def _runs(shape, axes):
    """The input's axes grouped into (kept, reduced), each a tuple of (size, stride) with
    adjacent axes of the same group merged and size-1 axes dropped."""
    groups = ([], [])
    previous = None
    for axis, (size, stride) in enumerate(zip(shape, _strides(shape))):
        if size == 1:
            continue
        reduced = axis in axes
        group = groups[reduced]
        if previous == reduced:  # contiguous input: adjacent axes merge
            group[-1] = (group[-1][0] * size, stride)
        else:
            group.append((size, stride))
        previous = reduced
    return groups


def _identity(op, acc, dtype):
    if op is rd.SUM:
        return "0"
    if op is rd.PROD:
        return "1"
    if dtype.kind == "f":  # the accumulator is the dtype's own: float or double
        return special_float(-np.inf if op is rd.MAX else np.inf, dtype)
    info = np.iinfo(np.int32 if acc == "int" else dtype)
    return f"({acc}){integer(info.min if op is rd.MAX else info.max)}"


# NaN propagates as in NumPy: x != x holds for NaN only, and a NaN accumulator never changes.
COMBINE = {rd.SUM: "return a + b;", rd.PROD: "return a * b;",
           rd.MAX: "return (b > a || b != b) ? b : a;",
           rd.MIN: "return (b < a || b != b) ? b : a;"}


def _accumulator(dtype):
    """Where the reduction accumulates: the output dtype; small integers and bools in int
    (what warp shuffles move)."""
    return ctype(dtype) if dtype.itemsize >= 4 else "int"


def _reduce(node, name, axes):
    op = rd.SUM if node.op is mv.SUM_TO else node.op
    (x,) = node.inputs[:1]
    kept, reduced = _runs(x.shape, axes)
    count, length = math.prod(s for s, _ in kept), math.prod(s for s, _ in reduced)
    acc = _accumulator(node.dtype)
    group = 32 if length <= WARP_ROWS else REDUCE_BLOCK
    source = fill(
        "reduce.cu", node, name, OP=op.name, ACC=acc, COMBINE=COMBINE[op],
        TIN=_supported(node, x.dtype), TOUT=_supported(node, node.dtype),
        IDENTITY=_identity(op, acc, node.dtype), INDEX=_index_type(math.prod(x.shape)),
        BLOCK=REDUCE_BLOCK, GROUP=group, COUNT=count, REDUCED=length,
        KEPT_NDIM=max(len(kept), 1), KEPT_SIZES=_list(s for s, _ in kept),
        KEPT_STRIDES=_list(t for _, t in kept), RED_NDIM=max(len(reduced), 1),
        RED_SIZES=_list(s for s, _ in reduced), RED_STRIDES=_list(t for _, t in reduced))
    per_block = REDUCE_BLOCK // group
    grid = (-(-count // per_block),)
    launches = (Launch(name, grid, (REDUCE_BLOCK,), (("in", 0), ("out",))),) if count else ()
    return OpKernels(source, launches)


@register(collective.ALLREDUCE)
def allreduce(node, name):
    """The collective on the device buffers themselves, no trip through the host: CuPy's
    through DLPack on a GPU (NCCL where the group has it), NumPy's in the emulator."""
    weight = "{1}" if len(node.inputs) == 2 else "None"
    return OpKernels("", (), driver=f"_allreduce({{0}}, {node.attrs['how']!r}, {weight}, _xp)",
                     calls=(runtime._allreduce,))


@register(rd.SUM, rd.MAX, rd.MIN, rd.PROD)
def reduction(node, name):
    return _reduce(node, name, node.attrs["axes"])


@register(rd.ARGMAX, rd.ARGMIN)
def arg_extremum(node, name):
    (x,) = node.inputs
    along = _along(x.shape, node.attrs["axis"], 0)
    lines = along["OUTER"] * along["INNER"]
    source = fill("arg_extremum.cu", node, name, T=_supported(node, x.dtype),
                  INDEX=_index_type(math.prod(x.shape)), LINES=lines,
                  WHAT=node.op.name[3:], BEYOND=">" if node.op is rd.ARGMAX else "<", **along)
    return OpKernels(source, grid_stride(name, lines, (("in", 0), ("out",))))


@register(mv.SUM_TO)
def sum_to(node, name):
    return _reduce(node, name, runtime._sum_to_axes(node.inputs[0].shape, node.shape))


@register(leaf.SIZE)
def size(node, name):
    count = math.prod(node.inputs[0].shape[i] for i in node.attrs["axes"])
    source = fill("fill.cu", node, name, T=ctype(node.dtype), VALUE=f"{count}ULL")
    return OpKernels(source, (Launch(name, (1,), (32,), (("out",),)),))


@register(random.RANDOM_UNIFORM)
def random_uniform(node, name):
    count = math.prod(node.shape)
    bits = 24 if node.dtype == np.float32 else 53
    source = fill("random_uniform.cu", node, name, T=_supported(node, node.dtype, "f"),
                  TK=_supported(node, node.inputs[0].dtype, "iu"), INDEX=_index_type(count),
                  COUNT=count, BITS=bits, SCALE=f"(({ctype(node.dtype)}){2.0 ** -bits!r})")
    return OpKernels(source, grid_stride(name, count, (("in", 0), ("out",))))


# ---------------------------------------------------------------- matmul
# (M, N, K) of a block's tile; M*K and K*N are multiples of the block's threads (each loads
# the same number of elements of each slab)
TILE = {"float": (64, 64, 16), "double": (64, 64, 8)}
THREADS_XY = (16, 16)


def _batch_strides(shape, batch):
    """The strides (elements) of an operand's batch axes in the broadcast `batch` shape."""
    matrix = shape[-2] * shape[-1]
    return tuple(s * matrix for s in _broadcast_strides(shape[:-2], batch))


@register(mm.MATMUL)
def matmul(node, name):
    a, b = node.inputs
    (m, k), n = a.shape[-2:], b.shape[-1]
    batch = node.shape[:-2]
    keep = [i for i, d in enumerate(batch) if d != 1]
    tc = _supported(node, node.dtype)
    tile_m, tile_n, tile_k = TILE.get(tc, TILE["double"])
    tx, ty = THREADS_XY
    count = math.prod(batch)
    source = fill(
        "matmul.cu", node, name, TA=_supported(node, a.dtype), TB=_supported(node, b.dtype),
        TC=tc, INDEX=_index_type(math.prod(a.shape), math.prod(b.shape), math.prod(node.shape)),
        M=m, N=n, K=k, BATCH=count, BATCH_NDIM=max(len(keep), 1),
        BATCH_SIZES=_list(batch[i] for i in keep),
        A_STRIDES=_list(_batch_strides(a.shape, batch)[i] for i in keep),
        B_STRIDES=_list(_batch_strides(b.shape, batch)[i] for i in keep),
        TILE_M=tile_m, TILE_N=tile_n, TILE_K=tile_k, THREADS_X=tx, THREADS_Y=ty,
        ROWS=tile_m // ty, COLS=tile_n // tx)
    grid = (-(-m // tile_m), -(-n // tile_n), min(count, 65535))
    if not (m and n and count):
        return OpKernels(source, ())
    if grid[1] > 65535:
        raise NotImplementedError(f"the CUDA matmul kernel takes at most {65535 * tile_n} "
                                  f"columns; {describe(node)} has {n}")
    return OpKernels(source, (Launch(name, grid, (tx, ty), (("in", 0), ("in", 1), ("out",))),))


# ---------------------------------------------------------------- movement
def _coalesce(sizes, *strides):
    """The iteration space with size-1 axes dropped and adjacent axes merged where every
    stride list steps through them as one axis."""
    dims = [(s, *ts) for s, *ts in zip(sizes, *strides) if s != 1]
    merged = []
    for dim in dims:
        if merged and all(prev == this * dim[0] for prev, this in zip(merged[-1][1:], dim[1:])):
            merged[-1] = (merged[-1][0] * dim[0], *dim[1:])
        else:
            merged.append(dim)
    return merged


def _copy(node, name, k, sizes, in_strides, out_strides, in_base=0, out_base=0):
    """Source and launch of a strided copy of input k into the output over `sizes`."""
    dims = _coalesce(sizes, in_strides, out_strides)
    count = math.prod(sizes)
    source = fill(
        "movement.cu", node, name, TIN=_supported(node, node.inputs[k].dtype),
        TOUT=_supported(node, node.dtype),
        INDEX=_index_type(math.prod(node.inputs[k].shape), math.prod(node.shape)),
        COUNT=count, NDIM=max(len(dims), 1), SIZES=_list(d[0] for d in dims),
        IN_STRIDES=_list(d[1] for d in dims), OUT_STRIDES=_list(d[2] for d in dims),
        IN_BASE=in_base, OUT_BASE=out_base)
    return source, grid_stride(name, count, (("in", k), ("out",)))


def _copies(*copies, zero_output=False):
    source = "".join(text for text, _ in copies)
    return OpKernels(source, sum((launches for _, launches in copies), ()), zero_output)


@register(mv.RESHAPE, mv.EXPAND_DIMS, mv.SQUEEZE, mv.CHECK_SHAPE)
def plain_copy(node, name):
    count = math.prod(node.shape)
    return _copies(_copy(node, name, 0, (count,), (1,), (1,)))


@register(mv.TRANSPOSE)
def transpose(node, name):
    strides = _strides(node.inputs[0].shape)
    return _copies(_copy(node, name, 0, node.shape, [strides[a] for a in node.attrs["axes"]],
                           _strides(node.shape)))


@register(mv.BROADCAST_TO)
def broadcast_to(node, name):
    strides = _broadcast_strides(node.inputs[0].shape, node.shape)
    return _copies(_copy(node, name, 0, node.shape, strides, _strides(node.shape)))


def _sliced(shape, index):
    """(strides, base) in elements of the view `index` (a (start, stop, step) per axis) of a
    contiguous array of `shape`."""
    strides, base = [], 0
    for d, stride, part in zip(shape, _strides(shape), index):
        start, _, step = slice(*part).indices(d)
        strides.append(stride * step)
        base += start * stride
    return strides, base


@register(mv.SLICE)
def slice_(node, name):
    strides, base = _sliced(node.inputs[0].shape, node.attrs["index"])
    return _copies(_copy(node, name, 0, node.shape, strides, _strides(node.shape), in_base=base))


@register(mv.UNSLICE)
def unslice(node, name):
    g = node.inputs[0]
    strides, base = _sliced(node.shape, node.attrs["index"])
    return _copies(_copy(node, name, 0, g.shape, _strides(g.shape), strides, out_base=base),
                     zero_output=True)


@register(mv.CONCATENATE)
def concatenate(node, name):
    axis, out_strides, start, copies = node.attrs["axis"], _strides(node.shape), 0, []
    for k, x in enumerate(node.inputs):
        copies.append(_copy(node, f"{name}_{k}", k, x.shape, _strides(x.shape), out_strides,
                            out_base=start * out_strides[axis]))
        start += x.shape[axis]
    return _copies(*copies)


@register(leaf.ZEROS_LIKE)
def zeros_like(node, name):
    return OpKernels("", (), zero_output=True)


# ---------------------------------------------------------------- gather, scatter, checks
def _along(shape, axis, positions):
    """OUTER, LENGTH, INNER of an array of `shape` seen as (outer, axis, inner), and
    POSITIONS, the number of indices."""
    return {"OUTER": math.prod(shape[:axis]), "LENGTH": shape[axis],
            "INNER": math.prod(shape[axis + 1:]), "POSITIONS": positions}


def _indexed(node, name, template, moved, idx, positions, scatter=False):
    """The kernel of a gather (node's first input `moved` read at `idx` along node's axis, a
    thread per output element) or of a scatter (the gradient `moved` added at `idx` into the
    zeroed output, a thread per element of `moved`); `positions`: the indices along the axis."""
    indexed = node if scatter else moved  # the array the axis runs through
    count = math.prod(moved.shape if scatter else node.shape)
    source = fill(template, node, name, T=_supported(node, node.dtype, "f" if scatter else "fiub"),
                  TI=_supported(node, idx.dtype, "iu"), COUNT=count,
                  INDEX=_index_type(math.prod(indexed.shape), count),
                  **_along(indexed.shape, node.attrs["axis"], positions))
    launches = grid_stride(name, count, (("in", 0), ("in", 1), ("out",)))
    return OpKernels(source, launches, zero_output=scatter)


@register(mv.TAKE)
def take(node, name):
    a, idx = node.inputs
    return _indexed(node, name, "gather.cu", a, idx, math.prod(idx.shape))


@register(mv.SCATTER_ADD)
def scatter_add(node, name):
    g, idx, _ = node.inputs
    return _indexed(node, name, "scatter.cu", g, idx, math.prod(idx.shape), scatter=True)


@register(ix.GATHER_ALONG)
def gather_along(node, name):
    a, idx = node.inputs
    return _indexed(node, name, "gather_along.cu", a, idx, node.shape[node.attrs["axis"]])


@register(ix.SCATTER_ADD_ALONG)
def scatter_add_along(node, name):
    g, idx, _ = node.inputs
    return _indexed(node, name, "scatter_along.cu", g, idx, g.shape[node.attrs["axis"]],
                    scatter=True)


def scatter_update(update, indices, g, name):
    """The kernel of one (indices, g) term of an `accumulate.ScatterUpdate` and its element
    count: `target -= scale * g` scattered into the addressed rows (arguments g, indices,
    scale, target)."""
    target, axis = update.target, update.axis
    count = math.prod(g.shape)
    source = fill("scatter_update.cu", update.source, name,
                  T=_supported(update.source, target.dtype, "f"),
                  TI=_supported(update.source, indices.dtype, "iu"), COUNT=count,
                  INDEX=_index_type(math.prod(target.shape), count),
                  **_along(target.shape, axis, math.prod(indices.shape)))
    return source, count


def _scan(node, name, what, start, step, helper=""):
    """The kernel of a scan that combines `acc` with each element {x} by `step`, from `start`."""
    (x,) = node.inputs
    along = _along(x.shape, node.attrs["axis"], 0)
    lines = along["OUTER"] * along["INNER"]
    r = _supported(node, node.dtype)
    source = fill("scan.cu", node, name, T=_supported(node, x.dtype), R=r, WHAT=what,
                  INDEX=_index_type(math.prod(x.shape)), LINES=lines, HELPER=helper,
                  START=start, STEP=step.format(x=f"({r})in[at]"),
                  REVERSE=int(node.attrs["reverse"]), **along)
    return OpKernels(source, grid_stride(name, lines, (("in", 0), ("out",))))


@register(scan.CUMSUM)
def cumsum(node, name):
    return _scan(node, name, "sum", "0", "acc + {x}")


@register(scan.CUMPROD)
def cumprod(node, name):
    return _scan(node, name, "product", "1", "acc * {x}")


# log(e^a + e^b) as NumPy's logaddexp: a + log1p(e^(b - a)) from the larger one, so that nothing
# overflows; equal arguments (±inf among them) give a + log 2, a NaN gives NaN.
LOGADDEXP = """__device__ __forceinline__ $R ${NAME}_logaddexp($R a, $R b) {
  if (a == b) return a + ($R)0.693147180559945309417;
  const $R d = a - b;
  return d > 0 ? a + ${LOG1P}(${EXP}(-d)) : d <= 0 ? b + ${LOG1P}(${EXP}(d)) : d;
}"""


@register(scan.LOGCUMSUMEXP)
def logcumsumexp(node, name):
    r = _supported(node, node.dtype, "f")
    single = node.dtype == np.float32
    helper = string.Template(LOGADDEXP).substitute(
        R=r, NAME=name, LOG1P="log1pf" if single else "log1p", EXP="expf" if single else "exp")
    return _scan(node, name, "log-sum-exp", special_float(-np.inf, node.dtype),
                 f"{name}_logaddexp(acc, {{x}})", helper)


@register(scan.LINEAR_SCAN)
def linear_scan(node, name):
    a, _ = node.inputs
    along = _along(a.shape, node.attrs["axis"], 0)
    lines = along["OUTER"] * along["INNER"]
    source = fill("linear_scan.cu", node, name, T=_supported(node, a.dtype, "f"),
                  INDEX=_index_type(math.prod(a.shape)), LINES=lines,
                  REVERSE=int(node.attrs["reverse"]), **along)
    return OpKernels(source, grid_stride(name, lines, (("in", 0), ("in", 1), ("out",))))


def _running_arg(node, name, comparison):
    (x,) = node.inputs
    along = _along(x.shape, node.attrs["axis"], 0)
    lines = along["OUTER"] * along["INNER"]
    source = fill("running_arg.cu", node, name, T=_supported(node, x.dtype),
                  INDEX=_index_type(math.prod(x.shape)), LINES=lines, CMP=comparison,
                  REVERSE=int(node.attrs["reverse"]), **along)
    return OpKernels(source, grid_stride(name, lines, (("in", 0), ("out",))))


register(scan.CUMARGMAX)(lambda node, name: _running_arg(node, name, ">="))
register(scan.CUMARGMIN)(lambda node, name: _running_arg(node, name, "<="))


# argsort's strict order: NaN sorts as the largest value, as in NumPy
BEFORE = {False: "return a < b || (a == a && b != b);", True: "return a > b || (a != a && b == b);"}


@register(sorting.ARGSORT)
def argsort(node, name):
    (x,) = node.inputs
    count = math.prod(x.shape)
    source = fill("argsort.cu", node, name, T=_supported(node, x.dtype),
                  INDEX=_index_type(count), COUNT=count,
                  BEFORE=BEFORE[node.attrs["descending"]], **_along(x.shape, node.attrs["axis"], 0))
    return OpKernels(source, grid_stride(name, count, (("in", 0), ("out",))))


@register(mv.CHECK_INDEX)
def check_index(node, name):
    idx, like = node.inputs
    high = like.shape[node.attrs["axis"]]
    negative, what = node.attrs["negative"], node.attrs["what"]
    count = math.prod(idx.shape)
    low = -high if negative else 0
    source = fill("check_index.cu", node, name, TI=_supported(node, idx.dtype, "iu"),
                  INDEX=_index_type(count), COUNT=count, LOW=low, HIGH=high,
                  OUTSIDE=_outside(idx.dtype, low, high))
    launches = grid_stride(name, count, (("in", 0), ("out",), ("scratch", 0)))
    return OpKernels(source, launches, scratch=((1, "int32"),),
                    check=Check(0, high, negative, what))


def _outside(dtype, low, high):
    """The C test that `value`, an index of `dtype`, lies outside [low, high). Unsigned indices
    are compared unsigned (low <= 0 bounds none of them): a cast of a uint64 to long long
    would wrap 2**63 and above to negative numbers, which count from the end."""
    if dtype.kind == "u":
        return f"value >= {high}ULL"
    return f"(long long)value < {low}LL || (long long)value >= {high}LL"
