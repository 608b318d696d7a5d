"""graphdl: declare a model as a static graph of primitive ops, differentiate it symbolically,
draw and explain it, and compile it to NumPy source.

    import graphdl as gd
    a = gd.input("a", shape=(), dtype="float64")
    y = gd.reciprocal(1 + gd.exp(-(a * 2.0 + 1)))
    fn = gd.compile([y, *gd.grad(y, [a])])
    fn(a=0.5)
"""

from graphdl import _tree

_tree.install()  # graphdl.codegen from this tree's codegen/, installed or not (graphdl/_tree.py)

from graphdl import (
    frontend,  # noqa: F401  (installs the operators on Node)
    optim,
)
from graphdl.autodiff import grad
from graphdl.errors import GraphError, InputError
from graphdl.interpret import evaluate
from graphdl.ir import Node, to_networkx, topological_order
from graphdl.opdef import REGISTRY, OpDef
from graphdl.ops.activations import (
    celu,
    elu,
    glu,
    hardsigmoid,
    hardswish,
    hardtanh,
    leaky_relu,
    mish,
    relu6,
    selu,
    silu,
    softsign,
)
from graphdl.ops.composite import (
    binary_cross_entropy_with_logits,
    clip,
    gelu,
    hinge_loss,
    l2,
    log_sigmoid,
    log_softmax,
    logsumexp,
    mse,
    one_hot,
    sigmoid,
    smooth_l1,
    softmax,
    softmax_cross_entropy,
    softplus,
    tanh,
)
from graphdl.ops.conv import avg_pool2d, conv2d, max_pool2d
from graphdl.ops.elementwise import ABS as abs  # gd.abs, as gd.max and gd.sum: not builtins
from graphdl.ops.elementwise import (
    acos,
    acosh,
    asin,
    asinh,
    atan,
    atan2,
    atanh,
    cast,
    ceil,
    copysign,
    cos,
    cosh,
    equal,
    erf,
    exp,
    exp2,
    expm1,
    floor,
    floor_divide,
    fmod,
    greater,
    greater_equal,
    isclose,
    isfinite,
    isinf,
    isnan,
    less,
    less_equal,
    log,
    log1p,
    log2,
    log10,
    maximum,
    minimum,
    not_equal,
    pow,
    reciprocal,
    relu,
    remainder,
    round,
    rsqrt,
    sign,
    sin,
    sinh,
    sqrt,
    square,
    stop_gradient,
    tan,
    trunc,
    where,
)
from graphdl.ops.indexing import (
    gather,
    index_add,
    index_select,
    scatter,
    scatter_add,
    scatter_reduce,
    take_along_axis,
)
from graphdl.ops.layers import layer_norm
from graphdl.ops.leaf import constant, input, zeros_like
from graphdl.ops.matmul import matmul
from graphdl.ops.movement import (
    broadcast_to,
    concatenate,
    expand_dims,
    reshape,
    squeeze,
    sum_to,
    take,
    transpose,
)
from graphdl.ops.rearrange import (
    diagonal,
    flip,
    meshgrid,
    pad,
    repeat,
    repeat_interleave,
    roll,
    stack,
    tile,
    tril,
    triu,
)
from graphdl.ops.reduce import (
    all,
    amax,
    amin,
    any,
    argmax,
    argmin,
    max,
    mean,
    min,
    norm,
    prod,
    std,
    sum,
    var,
)
from graphdl.ops.scan import cumsum
from graphdl.ops.sorting import argsort, sort, topk

# Imported on first use: they need SymPy (or graphviz), which declaring a graph does not.
_LAZY = {
    "CustomOp": "graphdl.extend", "custom_op": "graphdl.extend", "elementwise_op": "graphdl.extend",
    "check_grad": "graphdl.views.check", "check_op": "graphdl.views.check",
    "symbolic": "graphdl.views.symbolic", "symbolic_grad": "graphdl.views.symbolic",
    "Explanation": "graphdl.views.teach", "explain": "graphdl.views.teach",
    "DotNotFound": "graphdl.views.viz", "Drawing": "graphdl.views.viz", "draw": "graphdl.views.viz",
    "onnx": "graphdl.onnx",  # a subpackage: gd.onnx.load / gd.onnx.save (the onnx package on use)
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'graphdl' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__ == f"graphdl.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def compile(outputs, backend="numpy", **options):
    """Compile `outputs` (a node or a list) to a callable; see `codegen.compile`."""
    from graphdl import codegen

    return codegen.compile(outputs, backend=backend, **options)


__all__ = [
    "REGISTRY",
    "CustomOp",
    "DotNotFound",
    "Drawing",
    "Explanation",
    "GraphError",
    "InputError",
    "Node",
    "OpDef",
    "abs",
    "acos",
    "acosh",
    "all",
    "amax",
    "amin",
    "any",
    "argmax",
    "argmin",
    "argsort",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "avg_pool2d",
    "binary_cross_entropy_with_logits",
    "broadcast_to",
    "cast",
    "ceil",
    "celu",
    "check_grad",
    "check_op",
    "clip",
    "compile",
    "concatenate",
    "constant",
    "conv2d",
    "copysign",
    "cos",
    "cosh",
    "cumsum",
    "custom_op",
    "diagonal",
    "draw",
    "elementwise_op",
    "elu",
    "equal",
    "erf",
    "evaluate",
    "exp",
    "exp2",
    "expand_dims",
    "explain",
    "expm1",
    "flip",
    "floor",
    "floor_divide",
    "fmod",
    "gather",
    "gelu",
    "glu",
    "grad",
    "greater",
    "greater_equal",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "hinge_loss",
    "index_add",
    "index_select",
    "input",
    "isclose",
    "isfinite",
    "isinf",
    "isnan",
    "l2",
    "layer_norm",
    "leaky_relu",
    "less",
    "less_equal",
    "log",
    "log1p",
    "log2",
    "log10",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max",
    "max_pool2d",
    "maximum",
    "mean",
    "meshgrid",
    "min",
    "minimum",
    "mish",
    "mse",
    "norm",
    "not_equal",
    "one_hot",
    "onnx",
    "optim",
    "pad",
    "pow",
    "prod",
    "reciprocal",
    "relu",
    "relu6",
    "remainder",
    "repeat",
    "repeat_interleave",
    "reshape",
    "roll",
    "round",
    "rsqrt",
    "scatter",
    "scatter_add",
    "scatter_reduce",
    "selu",
    "sigmoid",
    "sign",
    "silu",
    "sin",
    "sinh",
    "smooth_l1",
    "softmax",
    "softmax_cross_entropy",
    "softplus",
    "softsign",
    "sort",
    "sqrt",
    "square",
    "squeeze",
    "stack",
    "std",
    "stop_gradient",
    "sum",
    "sum_to",
    "symbolic",
    "symbolic_grad",
    "take",
    "take_along_axis",
    "tan",
    "tanh",
    "tile",
    "to_networkx",
    "topk",
    "topological_order",
    "transpose",
    "tril",
    "triu",
    "trunc",
    "var",
    "where",
    "zeros_like",
]
