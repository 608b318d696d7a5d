"""The NumPy backend's per-op code, registered against the OpDef objects (never by name): the
code of each structured op (its "numpy" facet, `op.impls["numpy"]`: (node, *argument Exprs) ->
Expr), of the work ops share, of ops computed into an existing buffer (`out=`), and the fusion
choices of the NumPy target (`numpy_backend.BACKEND.target`).

Templates spell out each convolution's steps (windows -> columns -> one matrix product), so
every helper a statement needs is named in it; the helpers live in
`codegen.numpy_backend.conv_kernels`.
"""

from __future__ import annotations

import math
import string

from graphdl import runtime
from graphdl.codegen.numpy_backend import conv_kernels
from graphdl.codegen.numpy_backend.elementwise import ATOM, MUL, Expr, call, elementwise_template
from graphdl.opdef import implements_each
from graphdl.ops import collective, conv, leaf, random, scan, sorting
from graphdl.ops import elementwise as ew
from graphdl.ops import indexing as ix
from graphdl.ops import matmul as mm
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd
from graphdl.ops.elementwise import broadcast_dims


def _axes(axes):
    return "None" if axes is None else repr(tuple(axes))


def _index(index):
    parts = []
    for start, stop, step in index:
        text = f"{'' if start is None else start}:{'' if stop is None else stop}"
        parts.append(text + ("" if step is None else f":{step}"))
    return ", ".join(parts)


def _reduce(function):
    return lambda n, a: call(f"numpy.{function}({a.text}, axis={_axes(n.attrs['axes'])}, "
                              f"keepdims={n.attrs['keepdims']})")


def _sum_to(n, a):
    axes = runtime._sum_to_axes(n.inputs[0].shape, n.shape)
    if not axes:
        return a
    if axes == tuple(range(n.inputs[0].ndim - n.ndim)):  # only leading axes: a plain sum
        return call(f"numpy.sum({a.text}, axis={axes})")
    return call(f"numpy.sum({a.text}, axis={axes}, keepdims=True).reshape({n.shape})")


def _reshaped(n, a, *like):
    return call(f"{a.at(ATOM)}.reshape({n.shape})")


def _transpose(n, a):
    if n.attrs["axes"] == tuple(range(n.ndim))[::-1]:
        return call(f"{a.at(ATOM)}.T")
    return call(f"{a.at(ATOM)}.transpose({n.attrs['axes']})")


def _scan(function):
    def scan(n, a):
        axis = n.attrs["axis"]
        if n.attrs["reverse"]:
            return call(f"numpy.flip({function}(numpy.flip({a.text}, {axis}), {axis}), {axis})")
        return call(f"{function}({a.text}, {axis})")
    return scan


def _running_arg(largest):
    return lambda n, a: call(
        f"_running_arg({a.text}, {n.attrs['axis']}, {n.attrs['reverse']}, {largest})")


def _dtype(n):
    return f"numpy.{n.dtype.name}"


def _argsort(n, a):
    axis = n.attrs["axis"]
    if not n.attrs["descending"]:
        return call(f"numpy.argsort({a.text}, axis={axis}, kind='stable')")
    order = f"numpy.argsort(numpy.flip({a.text}, {axis}), axis={axis}, kind='stable')"
    return call(f"numpy.flip({n.shape[axis] - 1} - {order}, {axis})")  # as sorting._argsort


def _arg_extremum(function):
    return lambda n, a: call(f"numpy.{function}({a.text}, axis={n.attrs['axis']}, "
                              f"keepdims={n.attrs['keepdims']})")


implements_each("numpy", {
    mm.MATMUL: lambda n, a, b: Expr(f"{a.at(MUL)} @ {b.at(MUL + 1)}", MUL),
    rd.SUM: _reduce("sum"),
    rd.MAX: _reduce("max"),
    rd.MIN: _reduce("min"),
    rd.PROD: _reduce("prod"),
    rd.ARGMAX: _arg_extremum("argmax"),
    rd.ARGMIN: _arg_extremum("argmin"),
    mv.RESHAPE: _reshaped,
    mv.EXPAND_DIMS: _reshaped,
    mv.SQUEEZE: _reshaped,
    mv.TRANSPOSE: _transpose,
    mv.BROADCAST_TO: lambda n, a, *like: call(f"numpy.broadcast_to({a.text}, {n.shape})"),
    mv.SUM_TO: lambda n, a, like: _sum_to(n, a),
    mv.SLICE: lambda n, a: call(f"{a.at(ATOM)}[{_index(n.attrs['index'])}]"),
    mv.UNSLICE: lambda n, g, like: call(
        f"_unslice({g.text}, {n.shape}, {_dtype(n)}, numpy.s_[{_index(n.attrs['index'])}])"),
    mv.CONCATENATE: lambda n, *xs: call(
        f"numpy.concatenate(({', '.join(x.text for x in xs)},), axis={n.attrs['axis']})"),
    mv.TAKE: lambda n, a, i: call(f"numpy.take({a.text}, {i.text}, axis={n.attrs['axis']})"),
    mv.CHECK_INDEX: lambda n, i, like: call(
        f"_check_index({i.text}, {n.inputs[1].shape[n.attrs['axis']]}, {n.attrs['negative']}, "
        f"{n.attrs['what']!r})"),
    mv.CHECK_SHAPE: lambda n, x, like: x,  # checked when the graph took the fed shapes
    mv.SCATTER_ADD: lambda n, g, i, like: call(
        f"_scatter_add({g.text}, {i.text}, {n.shape}, {_dtype(n)}, {n.attrs['axis']})"),
    scan.CUMSUM: _scan("numpy.cumsum"),
    scan.CUMPROD: _scan("numpy.cumprod"),
    scan.LOGCUMSUMEXP: _scan("_logcumsumexp"),
    scan.LINEAR_SCAN: lambda n, a, g: call(
        f"_linear_scan({a.text}, {g.text}, {n.attrs['axis']}, {n.attrs['reverse']})"),
    scan.CUMARGMAX: _running_arg(largest=True),
    scan.CUMARGMIN: _running_arg(largest=False),
    sorting.ARGSORT: _argsort,
    leaf.ZEROS_LIKE: lambda n, x: call(f"numpy.zeros({n.shape}, dtype={_dtype(n)})"),
    random.RANDOM_UNIFORM: lambda n, key, *like: call(
        f"_random_uniform({key.text}, {n.shape}, {_dtype(n)})"),
    collective.ALLREDUCE: lambda n, x, *weight: call(
        f"_allreduce({', '.join([x.text, repr(n.attrs['how'])] + [w.text for w in weight])})"),
    leaf.SIZE: lambda n, x: call(
        f"{_dtype(n)}({math.prod(n.inputs[0].shape[i] for i in n.attrs['axes'])})"),
})


CONTRACTED_TERMS = 4096  # a dot product's length, as BLAS adds them: in order


def contraction(n, product, shapes):
    """The numpy.einsum subscripts for `n`, a sum or sum_to of `product` = x * y fused into
    it, whose factors' code computes arrays of `shapes` (the product's shape broadcasts from
    them), or None where they do not apply. einsum multiplies and adds in one loop: no
    product array, which broadcasting often makes the largest of the step (a batch of dot
    products, word2vec's scores, a gradient summed back over broadcast axes). Floats of one
    dtype only (numpy.sum widens small integers, einsum does not), and sums of at most
    CONTRACTED_TERMS terms: einsum adds in order, numpy.sum pairwise, whose float32 error
    stays small over millions of terms."""
    if n.op not in (rd.SUM, mv.SUM_TO) or product.op is not ew.MUL or product.ndim > 26:
        return None
    if (n.dtype.kind != "f" or any(i.dtype != n.dtype for i in product.inputs)
            or broadcast_dims(shapes) != product.shape or () in shapes):
        return None
    if n.op is rd.SUM:
        axes = n.attrs["axes"]
        summed = set(range(product.ndim) if axes is None else axes)
    else:
        summed = set(runtime._sum_to_axes(product.shape, n.shape))
    if math.prod(product.shape[axis] for axis in summed) > CONTRACTED_TERMS:
        return None
    letters = string.ascii_lowercase[:product.ndim]
    x, y = (letters[product.ndim - len(shape):] for shape in shapes)
    kept = "".join(c for axis, c in enumerate(letters) if axis not in summed)
    return f"{x},{y}->{kept}"


def contracted(n, subscripts, x, y):
    """The einsum of `contraction`'s subscripts over the factors' code, shaped as `n`."""
    text = f"numpy.einsum({subscripts!r}, {x.text}, {y.text})"
    kept = subscripts.split("->")[1]
    return call(text if len(kept) == n.ndim else f"{text}.reshape({n.shape})")


# ---------------------------------------------------------------- convolution and pooling
def _geometry(a, kernel, dilation=None):
    dilation = a["dilation"] if dilation is None else dilation
    return f"{tuple(kernel)}, {a['stride']}, {a['padding']}, {dilation}"


_SWAP = ".transpose(0, 1, 3, 2)"


def _lengthwise(n, image, out, operands, shape, kernel):
    """The operands' texts, the result's shape, the kernel, the attributes and the text that
    ends the call of a convolution node whose `image` and `out` are its input and output
    images (by shape): its two spatial axes swapped where both images are one row high, as
    conv1d's are. The kernels run in bands of output rows, and one row of conv1d's columns is
    the whole length, out of cache (a third slower at a length of 1,024); swapped, the bands
    run along the length. (C, 1, L, N) memory and (C, L, 1, N) are the same."""
    a = n.attrs
    if not (image[2] == 1 and out[2] == 1 and out[3] > 1):
        return [o.text for o in operands], shape, tuple(kernel), a, ""
    swapped = dict(a, stride=a["stride"][::-1], dilation=a["dilation"][::-1],
                   padding=a["padding"][2:] + a["padding"][:2])
    return ([f"{o.at(ATOM)}{_SWAP}" for o in operands], (*shape[:2], *shape[:1:-1]),
            tuple(kernel)[::-1], swapped, _SWAP)


def _conv_forward(n, x, w):
    (x, w), shape, kernel, a, back = _lengthwise(n, n.inputs[0].shape, n.shape, [x, w], n.shape,
                                                 n.inputs[1].shape[2:])
    return f"_conv2d(_im2col({x}, {_geometry(a, kernel)}), {w}, {a['groups']}, {shape}){back}"


def _weight_grad(n, x, g):
    (x, g), shape, kernel, a, back = _lengthwise(n, n.inputs[0].shape, n.inputs[1].shape,
                                                 [x, g], n.shape, n.shape[2:])
    return (f"_conv2d_weight_grad(_im2col({x}, {_geometry(a, kernel)}), {g}, {a['groups']}, "
            f"{shape}){back}")


def _input_grad(n, g, w):
    """conv2d's input gradient (conv_transpose2d's forward): by the stride's phases where the
    stride (above 1) divides the kernel and the dilation is 1, else by col2im."""
    (g, w), shape, kernel, a, back = _lengthwise(n, n.shape, n.inputs[0].shape, [g, w], n.shape,
                                                 n.inputs[1].shape[2:])
    if a["dilation"] == (1, 1) and a["stride"] != (1, 1) and all(
            k % s == 0 for k, s in zip(kernel, a["stride"])):
        return (f"_conv2d_phases({g}, {w}, {a['groups']}, {shape}, {a['stride']}, "
                f"{a['padding']}){back}")
    return f"_col2im(_conv2d_cols({g}, {w}, {a['groups']}), {shape}, {_geometry(a, kernel)}){back}"


def _pool_windows(n, x_text, out, fill):
    dilation = n.attrs.get("dilation", (1, 1))
    return (f"_pool_windows({x_text}, {_geometry(n.attrs, n.attrs['kernel'], dilation)}, "
            f"{tuple(out)}, {fill})")


# The pooled (output) spatial shape of each op of the max-pool family.
_POOLED = {
    conv.MAX_POOL2D: lambda n: n.shape[2:],
    conv.MAX_POOL2D_GRAD: lambda n: n.inputs[0].shape[2:],
    conv.MAX_POOL2D_SELECT: lambda n: n.shape[2:],
}


def _max_route(n, x):
    """The call that finds the window maxima and arg-maxes of x (`n`'s pooled input) for a
    max-pool family node: the same text for a forward node and its gradients."""
    fill = conv_kernels.lowest_text(n.inputs[n.op.shares[1]].dtype)
    return f"_max_pool2d_route({_pool_windows(n, x.text, _POOLED[n.op](n), fill)})"


def _avg_divisor(n, shape, out):
    a = n.attrs
    return (f"_avg_divisor({tuple(shape[2:])}, {a['kernel']}, {a['stride']}, {a['padding']}, "
            f"{tuple(out)}, {a['count_include_pad']})")


implements_each("numpy", {
    conv.CONV2D: lambda n, x, w: call(_conv_forward(n, x, w)),
    conv.CONV2D_WEIGHT_GRAD: lambda n, x, g, like: call(_weight_grad(n, x, g)),
    conv.CONV2D_INPUT_GRAD: lambda n, g, w, like: call(_input_grad(n, g, w)),
    conv.MAX_POOL2D: lambda n, x, route=None: call(
        f"{route}['max']" if route
        else f"_max_pool2d("
             f"{_pool_windows(n, x.text, n.shape[2:], conv_kernels.lowest_text(n.dtype))})"),
    conv.MAX_POOL2D_GRAD: lambda n, g, x, route=None: call(
        f"_max_pool2d_grad({g.text}, {route or _max_route(n, x)})"),
    conv.MAX_POOL2D_SELECT: lambda n, u, x, route=None: call(
        f"_max_pool2d_select({u.text}, {route or _max_route(n, x)})"),
    conv.AVG_POOL2D: lambda n, x: call(
        f"_avg_pool2d({_pool_windows(n, x.text, n.shape[2:], 0)}, "
        f"{_avg_divisor(n, n.inputs[0].shape, n.shape[2:])})"),
    conv.AVG_POOL2D_GRAD: lambda n, g, like: call(
        f"_avg_pool2d_grad({g.text}, "
        + _pool_windows(n, f"numpy.zeros({n.shape}, dtype={_dtype(n)})", n.inputs[0].shape[2:], 0)
        + f", {_avg_divisor(n, n.shape, n.inputs[0].shape[2:])})"),
})

# Work several statements share (`OpDef.shares`): its code, from the first member and the
# expression of the input the work reads, and the name the statement gets.
SHARED = {"max_pool2d_route": (_max_route, "pool_route")}


# ---------------------------------------------------------------- computing into a buffer
def _ufunc(function):
    return lambda args, out: f"{function}({', '.join(args)}, out={out})"


# The same call as each op's printed form, so values are identical, with `out=`.
IN_PLACE = {
    ew.ADD: _ufunc("numpy.add"), ew.SUB: _ufunc("numpy.subtract"),
    ew.MUL: _ufunc("numpy.multiply"), ew.DIV: _ufunc("numpy.true_divide"),
    ew.NEG: _ufunc("numpy.negative"), ew.EXP: _ufunc("numpy.exp"), ew.LOG: _ufunc("numpy.log"),
    ew.SQRT: _ufunc("numpy.sqrt"), ew.TANH: _ufunc("numpy.tanh"),
    ew.MAXIMUM: _ufunc("numpy.maximum"), ew.MINIMUM: _ufunc("numpy.minimum"),
    ew.WHERE: _ufunc("_where"),  # not a ufunc, but it takes `out=` as one
    ew.RELU: lambda args, out: f"numpy.maximum({args[0]}, 0, out={out})",
}

# Ops whose inputs get a statement of their own rather than fusing into them: relu's input
# then runs in place and so does relu (`numpy.add(y, b, out=y)`, `numpy.maximum(y, 0, out=y)`).
OWN_STATEMENT_INPUTS = {ew.RELU}


def fuses_into(consumer, position):
    """The NumPy target's `fuses_into` (`lower.Target`)."""
    if consumer.op in OWN_STATEMENT_INPUTS:
        return False
    if consumer.op.kind == "elementwise":  # spelled twice, it would be computed twice
        uses = elementwise_template(consumer).uses
        return position < len(uses) and uses[position] == 1
    return True



# ---------------------------------------------------------------- gather/scatter along an axis
def _grid(shape, axis, idx_text):
    """The text of the index tuple that addresses each element of indices shaped `shape` with
    its axis coordinate replaced by the index (idx_text)."""
    parts = []
    for a, d in enumerate(shape):
        if a == axis:
            parts.append(idx_text)
        else:
            view = tuple(d if b == a else 1 for b in range(len(shape)))
            parts.append(f"numpy.arange({d}).reshape({view})")
    return f"({', '.join(parts)},)"


def _scatter_add_along(n, g, i, like):
    """One bincount over the flat positions (negatives wrap), summing in float64."""
    shape, axis = n.shape, n.attrs["axis"]
    flat = (f"numpy.ravel_multi_index({_grid(n.inputs[1].shape, axis, i.text)}, {shape}, "
            f"mode='wrap').reshape(-1)")
    return call(f"numpy.bincount({flat}, weights={g.at(ATOM)}.reshape(-1), "
                f"minlength={math.prod(shape)}).astype({_dtype(n)}).reshape({shape})")


implements_each("numpy", {
    ix.GATHER_ALONG: lambda n, a, i: call(
        f"numpy.take_along_axis({a.text}, {i.text}, axis={n.attrs['axis']})"),
    ix.SCATTER_ADD_ALONG: _scatter_add_along,
})
