"""Every registered primitive's pullback, checked against finite differences and SymPy.

`CASES` holds small example inputs for every op in `gd.REGISTRY` (leaves excepted);
`test_every_registered_op_has_cases` fails as soon as an op is added without an entry here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import sympy

import graphdl as gd
from graphdl import runtime
from graphdl.ops.scalar import Cast, Relu, Sigmoid, Softplus, Where
from graphdl.views.check import check_op

from .helpers import only

R = gd.REGISTRY
LEAVES = {"input", "const", "zeros_like", "size"}


def f64(name, shape):
    return gd.input(name, shape, "float64")


def normal(shape):
    return lambda rng: rng.standard_normal(shape)


def positive(shape):
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def away_from_zero(shape):
    """Values of either sign with magnitude at least 0.2 (away from relu's kink)."""
    return lambda rng: rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


def boolean(shape):
    return lambda rng: rng.random(shape) < 0.5


def integers(shape):
    return lambda rng: rng.integers(-50, 50, shape)


def unit(shape):
    """Inside (-1, 1), away from its ends (asin, acos, atanh, tan)."""
    return lambda rng: rng.uniform(-0.9, 0.9, shape)


def above_one(shape):
    """acosh's domain, away from its end at 1."""
    return lambda rng: rng.uniform(1.2, 3.0, shape)


@dataclass
class Case:
    """One application of an op: `build(*inputs)` makes the node from the declared inputs."""

    id: str
    build: callable
    inputs: list  # (name, shape, dtype, sampler)
    grads: tuple | None = None  # input positions expected to get a gradient (None: float ones)

    def make(self, rng):
        nodes = [gd.input(name, shape, dtype) for name, shape, dtype, _ in self.inputs]
        feeds = {name: sample(rng) for name, _, _, sample in self.inputs}
        return self.build(*nodes), feeds


def C(case_id, build, *inputs, grads=None):
    """A case from (shape, sampler[, dtype]) per input; inputs are float64 unless given."""
    specs = []
    for k, spec in enumerate(inputs):
        shape, sampler, dtype = spec if len(spec) == 3 else (*spec, "float64")
        specs.append((f"{case_id.split('[')[0]}_in{k}", shape, dtype, sampler(shape)))
    return Case(case_id, build, specs, grads)


def spread_out(shape):
    """Distinct values far apart (max-pool windows without ties)."""
    def sample(rng):
        n = int(np.prod(shape))
        return (rng.permutation(n) - n / 2 + rng.uniform(-0.1, 0.1, n)).reshape(shape) / 4
    return sample


def zeros_in_rows(shape):
    """Row k holding k zeros (prod's gradient there is the product of the others)."""
    def sample(rng):
        x = rng.standard_normal(shape)
        for k, row in enumerate(x.reshape(shape[0], -1)):
            row[:k] = 0
        return x
    return sample


def ties(shape):
    """Few distinct values: equal elements to sort, arg-extrema with rivals."""
    return lambda rng: rng.integers(-2, 3, shape).astype(np.float64)


CONV = {"stride": (2, 1), "padding": (1, 0, 2, 1), "dilation": (1, 2), "groups": 2}
MAXP = {"kernel": (3, 2), "stride": (2, 1), "padding": (1, 1, 0, 1), "dilation": (1, 2),
        "ceil_mode": True}
AVGP = {"kernel": (3, 2), "stride": (2, 2), "padding": (1, 1, 1, 1), "ceil_mode": True,
        "count_include_pad": False}

IDX = np.array([0, 2, 2, 4])  # repeated indices: their gradients must add up
IDX2D = np.array([[1, 0], [2, 1]])
IDX_ALONG = np.array([[0, 2, 2, 1], [1, 1, 0, 0]])  # one per element, repeats

CASES: dict[str, list[Case]] = {
    "add": [
        C("add[bcast]", lambda a, b: a + b, ((2, 3), normal), ((3,), normal)),
        C("add[3d]", lambda a, b: a + b, ((2, 1, 3), normal), ((4, 1), normal)),
        C("add[scalar]", lambda a, b: a + b, ((), normal), ((3,), normal)),
    ],
    "sub": [
        C("sub[bcast]", lambda a, b: a - b, ((4, 1), normal), ((3,), normal)),
        C("sub[same]", lambda a, b: a - b, ((2, 3), normal), ((2, 3), normal)),
    ],
    "mul": [
        C("mul[bcast]", lambda a, b: a * b, ((2, 3), normal), ((2, 1), normal)),
        C("mul[scalar]", lambda a, b: a * b, ((), normal), ((3,), normal)),
        C("mul[self]", lambda a: a * a, ((3,), normal)),
    ],
    "div": [
        C("div[bcast]", lambda a, b: a / b, ((2, 3), normal), ((3,), away_from_zero)),
        C("div[scalar]", lambda a, b: a / b, ((), normal), ((2, 2), away_from_zero)),
    ],
    "neg": [C("neg", lambda a: -a, ((3, 2), normal))],
    "reciprocal": [C("reciprocal", lambda a: R["reciprocal"](a), ((2, 3), away_from_zero))],
    "exp": [C("exp", gd.exp, ((2, 3), normal))],
    "erf": [C("erf", gd.erf, ((2, 3), normal))],
    "erfc": [C("erfc", gd.erfc, ((2, 3), normal))],
    "cumsum": [
        C("cumsum[axis1]", lambda a: gd.cumsum(a, 1), ((2, 3), normal)),
        C("cumsum[reverse]", lambda a: gd.cumsum(a, 0, reverse=True), ((4, 2), normal)),
        C("cumsum[flat]", gd.cumsum, ((2, 3, 2), normal)),
    ],
    "cumprod": [
        C("cumprod[zeros]", lambda a: gd.cumprod(a, 1), ((4, 5), zeros_in_rows)),
        C("cumprod[zeros-reverse]", lambda a: gd.cumprod(a, 1, reverse=True),
          ((4, 5), zeros_in_rows)),
        C("cumprod[axis0]", lambda a: gd.cumprod(a, dim=0), ((3, 2), normal)),
    ],
    "logcumsumexp": [
        C("logcumsumexp[axis1]", lambda a: gd.logcumsumexp(a, 1), ((3, 4), normal)),
        C("logcumsumexp[reverse]", lambda a: gd.logcumsumexp(a, 0, reverse=True),
          ((4, 2), normal)),
    ],
    "allreduce": [  # one worker: the identity, its gradient the identity too
        C("allreduce[mean]", lambda a: gd.allreduce(a), ((2, 3), normal)),
        C("allreduce[sum]", lambda a: gd.allreduce(a, "sum"), ((3,), normal)),
        C("allreduce[weighted]", lambda a, w: gd.allreduce(a, weight=w), ((2, 2), normal),
          ((), away_from_zero), grads=(0,)),  # the weight counts rows
    ],
    "linear_scan": [
        C("linear_scan[axis1]", lambda a, g: R["linear_scan"](a, g, axis=1, reverse=False),
          ((3, 4), normal), ((3, 4), normal)),
        C("linear_scan[reverse]", lambda a, g: R["linear_scan"](a, g, axis=0, reverse=True),
          ((4, 2), normal), ((4, 2), normal)),
    ],
    **{op: [C(f"{op}[ties]", lambda a, name=name: getattr(gd, name)(a, 1).indices,
              ((3, 5), ties), grads=()),
            C(f"{op}[reverse]", lambda a, name=name: getattr(gd, name)(a, 0, reverse=True)
              .indices, ((4, 2), ties), grads=())]
       for op, name in (("cumargmax", "cummax"), ("cumargmin", "cummin"))},
    # a draw: its shape input, read for its shape only, gets no gradient
    "random_uniform": [C("random_uniform", lambda a: gd.random_uniform(5, a, "float64"),
                         ((3, 4), normal), grads=())],
    "log": [C("log", gd.log, ((2, 3), positive))],
    "sqrt": [C("sqrt", gd.sqrt, ((2, 3), positive))],
    "pow": [
        C("pow[3]", lambda a: a**3, ((2, 3), normal)),
        C("pow[2.0]", lambda a: a**2.0, ((4,), normal)),
        C("pow[0.5]", lambda a: a**0.5, ((2, 3), positive)),
        C("pow[-2]", lambda a: a**-2, ((2, 3), positive)),
        C("pow[2.5]", lambda a: a**2.5, ((3,), positive)),
    ],
    "tanh": [C("tanh", lambda a: R["tanh"](a), ((2, 3), normal))],
    "sigmoid": [C("sigmoid", lambda a: R["sigmoid"](a), ((2, 3), normal))],
    "softplus": [C("softplus", lambda a: R["softplus"](a), ((2, 3), normal))],
    "relu": [C("relu", gd.relu, ((3, 4), away_from_zero))],
    "abs": [C("abs", gd.abs, ((3, 4), away_from_zero))],
    "maximum": [
        C("maximum[bcast]", gd.maximum, ((2, 3), normal), ((3,), normal)),
        C("maximum[const]", lambda a: gd.maximum(a, 0.0), ((2, 3), away_from_zero)),
    ],
    "minimum": [
        C("minimum[bcast]", gd.minimum, ((3, 1), normal), ((2,), normal)),
        C("minimum[const]", lambda a: gd.minimum(a, 0.0), ((2, 3), away_from_zero)),
    ],
    "where": [
        C("where[bcast]", gd.where, ((2, 3), boolean, "bool"), ((2, 3), normal), ((3,), normal),
          grads=(1, 2)),
        C("where[cond-bcast]", gd.where, ((3,), boolean, "bool"), ((2, 3), normal), ((), normal),
          grads=(1, 2)),
    ],
    **{
        name: [C(name, R[name], ((2, 3), normal), ((3,), normal), grads=())]
        for name in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal")
    },
    **{name: [C(name, R[name], ((2, 3), normal), ((3,), boolean, "bool"), grads=())]
       for name in ("logical_and", "logical_or", "logical_xor")},
    "logical_not": [C("logical_not", R["logical_not"], ((2, 3), normal), grads=())],
    **{name: [C(name, R[name], ((2, 3), integers, "int64"), ((3,), integers, "int32"), grads=())]
       for name in ("bitwise_and", "bitwise_or", "bitwise_xor")},
    "bitwise_not": [C("bitwise_not", R["bitwise_not"], ((2, 3), integers, "int64"), grads=())],
    **{name: [C(name, R[name], ((2, 3), integers, "int64"), ((3,), integers, "int64"), grads=())]
       for name in ("bitwise_left_shift", "bitwise_right_shift")},
    "cast": [
        C("cast[f32->f64]", lambda a: gd.cast(a, "float64"), ((2, 3), normal, "float32")),
        C("cast[f64->f32]", lambda a: gd.cast(a, "float32"), ((2, 3), normal)),
        C("cast[f64->f64]", lambda a: gd.cast(a, "float64"), ((3,), normal)),
        C("cast[i32->f64]", lambda a: gd.cast(a, "float64"),
          ((3,), lambda s: lambda rng: rng.integers(-5, 5, s), "int32"), grads=()),
    ],
    "stop_gradient": [C("stop_gradient", gd.stop_gradient, ((2, 3), normal), grads=())],
    "sum": [
        C("sum[all]", gd.sum, ((2, 3), normal)),
        C("sum[axis1]", lambda a: gd.sum(a, 1), ((2, 3), normal)),
        C("sum[axes-keep]", lambda a: gd.sum(a, (0, 2), keepdims=True), ((2, 3, 4), normal)),
        C("sum[neg-axis]", lambda a: gd.sum(a, -1), ((2, 3, 4), normal)),
    ],
    "max": [
        C("max[all]", gd.max, ((2, 3), normal)),
        C("max[axis1-keep]", lambda a: gd.max(a, 1, keepdims=True), ((4, 3), normal)),
        C("max[axes]", lambda a: gd.max(a, (0, 2)), ((2, 3, 4), normal)),
    ],
    "min": [
        C("min[all]", gd.min, ((2, 3), normal)),
        C("min[axis0]", lambda a: gd.min(a, 0), ((4, 3), normal)),
        C("min[axes-keep]", lambda a: gd.min(a, (1, 2), keepdims=True), ((2, 3, 4), normal)),
    ],
    "prod": [
        C("prod[all]", gd.prod, ((2, 3), normal)),
        C("prod[axis1]", lambda a: gd.prod(a, 1), ((3, 4), normal)),
        C("prod[axes-keep]", lambda a: gd.prod(a, (0, 2), keepdims=True), ((2, 3, 2), normal)),
        C("prod[zeros]", lambda a: gd.prod(a, -1), ((4, 3), zeros_in_rows)),
        C("prod[zeros-axes]", lambda a: gd.prod(a, (1, 2)), ((4, 2, 2), zeros_in_rows)),
    ],
    **{name: [C(f"{name}[axis1]", lambda a, name=name: getattr(gd, name)(a, 1), ((3, 4), ties),
                grads=()),
              C(f"{name}[keep]", lambda a, name=name: getattr(gd, name)(a, 0, keepdims=True),
                ((3, 2), normal), grads=())]
       for name in ("argmax", "argmin")},
    "argsort": [
        C("argsort[last]", gd.argsort, ((3, 4), ties), grads=()),
        C("argsort[descending]", lambda a: gd.argsort(a, 0, descending=True), ((4, 3), ties),
          grads=()),
    ],
    "matmul": [
        C("matmul[2d]", lambda a, b: R["matmul"](a, b), ((3, 4), normal), ((4, 2), normal)),
        C("matmul[batched]", lambda a, b: a @ b, ((2, 3, 4), normal), ((2, 4, 5), normal)),
        C("matmul[bcast-batch]", lambda a, b: a @ b, ((2, 3, 4), normal), ((4, 5), normal)),
        C("matmul[bcast-both]", lambda a, b: a @ b, ((2, 1, 3, 4), normal),
          ((5, 4, 2), normal)),
    ],
    "reshape": [
        C("reshape[2d]", lambda a: gd.reshape(a, (3, 2)), ((2, 3), normal)),
        C("reshape[-1]", lambda a: gd.reshape(a, (-1, 4)), ((2, 3, 4), normal)),
        C("reshape[like]", lambda a, like: R["reshape"](a, like), ((2, 3), normal),
          ((6, 1), normal), grads=(0,)),
    ],
    "transpose": [
        C("transpose[default]", gd.transpose, ((2, 3, 4), normal)),
        C("transpose[axes]", lambda a: gd.transpose(a, (1, 2, 0)), ((2, 3, 4), normal)),
    ],
    "expand_dims": [
        C("expand_dims[0]", lambda a: gd.expand_dims(a, 0), ((2, 3), normal)),
        C("expand_dims[1,3]", lambda a: gd.expand_dims(a, (1, 3)), ((2, 3), normal)),
    ],
    "squeeze": [
        C("squeeze[1]", lambda a: gd.squeeze(a, 1), ((3, 1, 2), normal)),
        C("squeeze[all]", gd.squeeze, ((1, 3, 1), normal)),
    ],
    "broadcast_to": [
        C("broadcast_to[lead]", lambda a: gd.broadcast_to(a, (2, 3)), ((3,), normal)),
        C("broadcast_to[ones]", lambda a: gd.broadcast_to(a, (4, 2, 3)), ((2, 1), normal)),
        C("broadcast_to[like]", lambda a, like: R["broadcast_to"](a, like), ((1, 3), normal),
          ((2, 3), normal), grads=(0,)),
    ],
    "sum_to": [
        C("sum_to[lead]", gd.sum_to, ((2, 3), normal), ((3,), normal), grads=(0,)),
        C("sum_to[ones]", gd.sum_to, ((4, 2, 3), normal), ((1, 3), normal), grads=(0,)),
        C("sum_to[keep]", gd.sum_to, ((2, 3), normal), ((2, 1), normal), grads=(0,)),
    ],
    "slice": [
        C("slice[rows]", lambda a: a[1:3], ((4, 3), normal)),
        C("slice[steps]", lambda a: a[::-1, ::2], ((4, 5), normal)),
        C("slice[inner]", lambda a: a[:, 1:], ((2, 3, 2), normal)),
    ],
    "unslice": [
        C("unslice[rows]", lambda g, like: R["unslice"](g, like, index=((1, 3, None),)),
          ((2, 3), normal), ((4, 3), normal), grads=(0,)),
        C("unslice[steps]",
          lambda g, like: R["unslice"](g, like, index=((None, None, -1), (None, None, 2))),
          ((4, 3), normal), ((4, 5), normal), grads=(0,)),
    ],
    "concatenate": [
        C("concatenate[rows]", lambda a, b: gd.concatenate([a, b], 0), ((2, 3), normal),
          ((4, 3), normal)),
        C("concatenate[cols3]", lambda a, b, c: gd.concatenate([a, b, c], 1), ((2, 1), normal),
          ((2, 3), normal), ((2, 2), normal)),
        C("concatenate[self]", lambda a: gd.concatenate([a, a], -1), ((3, 2), normal)),
    ],
    "take": [
        C("take[axis0]", lambda a: gd.take(a, gd.constant(IDX), axis=0), ((5, 3), normal)),
        C("take[axis1-2d]", lambda a: gd.take(a, gd.constant(IDX2D), axis=1), ((2, 3), normal)),
        C("take[negative]", lambda a: gd.take(a, gd.constant(np.array([-1, 0, -1])), axis=0),
          ((3, 2), normal)),
        C("take[flat]", lambda a: gd.take(gd.reshape(a, (-1,)), gd.constant(IDX), axis=0),
          ((2, 3), normal)),
    ],
    "check_index": [
        C("check_index", lambda i, like: R["check_index"](i, like, axis=0, what="i", negative=True),
          ((6,), lambda shape: lambda rng: rng.integers(-5, 5, shape), "int64"), ((5, 3), normal),
          grads=()),
    ],
    "check_shape": [
        C("check_shape", lambda x, like: R["check_shape"](
            x, like, explain=lambda *_: "unreachable", what="x"), ((4, 3), normal),
          ((4, 3), normal), grads=(0,)),
    ],
    "conv2d": [
        C("conv2d[plain]", gd.conv2d, ((2, 3, 6, 5), normal), ((4, 3, 3, 2), normal)),
        C("conv2d[all-args]", lambda x, w: R["conv2d"](x, w, **CONV), ((2, 4, 7, 6), normal),
          ((6, 2, 2, 3), normal)),
        C("conv2d[same]", lambda x, w: gd.conv2d(x, w, padding="same"), ((1, 2, 5, 6), normal),
          ((3, 2, 2, 4), normal)),
    ],
    "conv2d_input_grad": [
        C("conv2d_input_grad", lambda g, w, like: R["conv2d_input_grad"](g, w, like, **CONV),
          ((2, 6, 4, 5), normal), ((6, 2, 2, 3), normal), ((2, 4, 7, 6), normal), grads=(0, 1)),
        C("conv2d_input_grad[conv_transpose2d]", lambda x, w: gd.conv_transpose2d(
            x, w, stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2,
            dilation=(1, 2)), ((2, 4, 3, 4), normal), ((4, 1, 2, 3), normal), grads=(0, 1)),
    ],
    "conv2d_weight_grad": [
        C("conv2d_weight_grad", lambda x, g, like: R["conv2d_weight_grad"](x, g, like, **CONV),
          ((2, 4, 7, 6), normal), ((2, 6, 4, 5), normal), ((6, 2, 2, 3), normal), grads=(0, 1)),
    ],
    "max_pool2d": [
        C("max_pool2d[2x2]", lambda x: gd.max_pool2d(x, 2), ((2, 3, 4, 6), spread_out)),
        C("max_pool2d[all-args]", lambda x: R["max_pool2d"](x, **MAXP), ((2, 2, 7, 6), spread_out)),
    ],
    "max_pool2d_grad": [
        C("max_pool2d_grad", lambda g, x: R["max_pool2d_grad"](g, x, **MAXP),
          ((2, 2, 4, 5), normal), ((2, 2, 7, 6), spread_out), grads=(0,)),
    ],
    "max_pool2d_select": [
        C("max_pool2d_select", lambda u, x: R["max_pool2d_select"](u, x, **MAXP),
          ((2, 2, 7, 6), normal), ((2, 2, 7, 6), spread_out), grads=(0,)),
    ],
    "avg_pool2d": [
        C("avg_pool2d[2x2]", lambda x: gd.avg_pool2d(x, 2), ((2, 3, 4, 6), normal)),
        C("avg_pool2d[all-args]", lambda x: R["avg_pool2d"](x, **AVGP), ((2, 2, 7, 6), normal)),
    ],
    "avg_pool2d_grad": [
        C("avg_pool2d_grad", lambda g, like: R["avg_pool2d_grad"](g, like, **AVGP),
          ((2, 2, 4, 4), normal), ((2, 2, 7, 6), normal), grads=(0,)),
    ],
    "scatter_add": [
        C("scatter_add[axis0]",
          lambda g, like: R["scatter_add"](g, gd.constant(IDX), like, axis=0),
          ((4, 3), normal), ((5, 3), normal), grads=(0,)),
        C("scatter_add[axis1-2d]",
          lambda g, like: R["scatter_add"](g, gd.constant(IDX2D), like, axis=1),
          ((2, 2, 2), normal), ((2, 3), normal), grads=(0,)),
    ],
    "gather_along": [
        C("gather_along[axis1]", lambda a: R["gather_along"](a, gd.constant(IDX_ALONG), axis=1),
          ((2, 3), normal)),
        C("gather_along[axis0-negative]",
          lambda a: R["gather_along"](a, gd.constant(IDX_ALONG.T[:3] - 2), axis=0),
          ((2, 2), normal)),
    ],
    "scatter_add_along": [
        C("scatter_add_along[axis1]",
          lambda g, like: R["scatter_add_along"](g, gd.constant(IDX_ALONG), like, axis=1),
          ((2, 4), normal), ((2, 3), normal), grads=(0,)),
    ],
    **{name: [C(name, getattr(gd, name), ((2, 3), normal))]
       for name in ("sin", "cos", "atan", "sinh", "cosh", "asinh", "expm1")},
    **{name: [C(name, getattr(gd, name), ((2, 3), unit))]
       for name in ("tan", "asin", "acos", "atanh", "log1p")},
    **{name: [C(name, getattr(gd, name), ((2, 3), positive))] for name in ("log2", "log10")},
    "acosh": [C("acosh", gd.acosh, ((2, 3), above_one))],
    **{name: [C(name, getattr(gd, name), ((2, 3), normal), grads=())]
       for name in ("floor", "ceil")},  # steps: gradient 0 (tests/test_math_ops.py)
    "atan2": [C("atan2[bcast]", gd.atan2, ((2, 3), normal), ((3,), away_from_zero))],
    "fmod": [C("fmod[bcast]", gd.fmod, ((2, 3), normal), ((3,), away_from_zero))],
    "power": [
        C("power[bcast]", lambda a, b: a ** b, ((2, 3), positive), ((3,), normal)),
        C("power[base-2]", lambda b: 2.0 ** b, ((2, 3), normal)),
    ],
}

ALL_CASES = [(name, case) for name, cases in CASES.items() for case in cases]


def test_every_registered_op_has_cases():
    assert set(CASES) == set(R) - LEAVES, (
        "ops without gradient cases: "
        f"{sorted(set(R) - LEAVES - set(CASES))}; unknown: {sorted(set(CASES) - set(R))}"
    )
    assert all(CASES.values())


def _checks(node, feeds, seeds=(0, 1, 2)):
    """check_op's edges for `node`, for several random directions."""
    values = gd.evaluate(list(node.inputs), only(feeds, node.inputs))
    bound = {id(i): v for i, v in zip(node.inputs, values, strict=True)}
    return [c for seed in seeds for c in check_op(node, bound, seed=seed)]


@pytest.mark.parametrize("name,case", ALL_CASES, ids=[c.id for _, c in ALL_CASES])
def test_pullback_matches_finite_differences(name, case, rng):
    node, feeds = case.make(rng)
    assert node.op is R[name], f"case {case.id} builds {node.op.name}, not {name}"
    expected = case.grads
    if expected is None:
        expected = tuple(k for k, i in enumerate(node.inputs) if i.dtype.kind == "f")
    checks = _checks(node, feeds)
    assert sorted({c.input_index for c in checks}) == sorted(expected)
    f32 = node.dtype == np.float32 or any(i.dtype == np.float32 for i in node.inputs)
    tolerance = 1e-5 if f32 else 1e-7
    for c in checks:
        assert c.error < tolerance, str(c)
    # No gradient flows where none is expected.
    pulled = node.op.pullback(node, gd.input("g", node.shape, node.dtype.name))
    assert len(pulled) == len(node.inputs)
    for k, gi in enumerate(pulled):
        if k not in expected:
            assert gi is None or node.inputs[k].dtype.kind != "f", (case.id, k)


@pytest.mark.parametrize("name,case", ALL_CASES, ids=[c.id for _, c in ALL_CASES])
def test_declared_shape_and_dtype_match_the_reference(name, case, rng):
    node, feeds = case.make(rng)
    value = gd.evaluate(node, only(feeds, [node]))
    assert value.shape == node.shape
    assert value.dtype == node.dtype


def test_a_wrong_pullback_is_caught(rng):
    """The harness above can fail: a deliberately wrong rule does not pass check_op."""
    from graphdl.opdef import OpDef

    wrong = OpDef("wrong_exp", infer=R["exp"].infer, impl=np.exp,
                  pullback=lambda n, g: [g * n.inputs[0]], kind="elementwise", broadcasts=True)
    x = f64("x", (3,))
    node = wrong(x)
    checks = _checks(node, {"x": rng.standard_normal(3)})
    assert checks and all(c.error > 1e-3 for c in checks)


def test_check_grad_over_a_graph_of_many_ops(rng):
    x = f64("x", (4, 3))
    w = f64("w", (3, 2))
    b = f64("b", (2,))
    h = gd.tanh(x @ w + b)
    z = gd.concatenate([h, gd.exp(h[:, :1])], axis=1)
    y = gd.sum(gd.softmax(z) * gd.log(gd.sigmoid(z))) + gd.max(z) * gd.mean(x ** 2)
    feeds = {"x": rng.standard_normal((4, 3)), "w": rng.standard_normal((3, 2)),
             "b": rng.standard_normal(2)}
    result = gd.check_grad(y, feeds)
    assert result.ok, str(result)
    assert len(result.checks) > 20
    assert max(c.error for c in result.checks) < 1e-6


def test_check_grad_handles_a_cast_to_float32(rng):
    """A cast to float32 must not make the float64 finite differences blame it."""
    x = f64("x", (4,))
    y = gd.sum(gd.cast(x, "float32") ** 2)
    result = gd.check_grad(y, {"x": rng.standard_normal(4)})
    assert result.ok, str(result)


# --- ties and kinks, matching PyTorch -----------------------------------------------------


def _grads(y, wrt, feeds):
    return gd.evaluate(gd.grad(y, wrt), feeds)


def test_maximum_and_minimum_split_ties_evenly():
    a, b = f64("a", (4,)), f64("b", (4,))
    av = np.array([1.0, 2.0, 3.0, -1.0])
    bv = np.array([1.0, 5.0, 3.0, -2.0])
    da, db = _grads(gd.sum(gd.maximum(a, b)), [a, b], {"a": av, "b": bv})
    np.testing.assert_array_equal(da, [0.5, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(db, [0.5, 1.0, 0.5, 0.0])
    da, db = _grads(gd.sum(gd.minimum(a, b)), [a, b], {"a": av, "b": bv})
    np.testing.assert_array_equal(da, [0.5, 1.0, 0.5, 0.0])
    np.testing.assert_array_equal(db, [0.5, 0.0, 0.5, 1.0])
    # maximum(x, x) is x: both halves come back to x.
    np.testing.assert_array_equal(_grads(gd.sum(gd.maximum(a, a)), a, {"a": av}), np.ones(4))
    # A tie with a broadcast constant.
    np.testing.assert_array_equal(
        _grads(gd.sum(gd.maximum(a, 0.0)), a, {"a": np.array([0.0, 1.0, -1.0, 0.0])}),
        [0.5, 1.0, 0.0, 0.5])


def test_relu_derivative_at_zero_is_zero():
    x = f64("x", (5,))
    d = _grads(gd.sum(gd.relu(x)), x, {"x": np.array([-1.0, -0.0, 0.0, 1e-300, 2.0])})
    np.testing.assert_array_equal(d, [0.0, 0.0, 0.0, 1.0, 1.0])


def test_max_and_min_reductions_split_ties_evenly():
    x = f64("x", (2, 4))
    xv = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    np.testing.assert_allclose(_grads(gd.max(x), x, {"x": xv}),
                               [[0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(_grads(gd.sum(gd.max(x, 1)), x, {"x": xv}),
                               [[0, 0.5, 0.5, 0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(_grads(gd.sum(gd.max(x, 0, keepdims=True)), x, {"x": xv}),
                               [[0, 0, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_allclose(_grads(gd.sum(gd.min(x, 1)), x, {"x": xv}),
                               [[1, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]])


def test_ties_match_torch():
    torch = pytest.importorskip("torch")
    av = np.array([1.0, 2.0, 3.0, 0.0])
    bv = np.array([1.0, 5.0, 3.0, -2.0])
    xv = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    a, b, x = f64("a", (4,)), f64("b", (4,)), f64("x", (2, 4))
    ta = torch.tensor(av, requires_grad=True)
    tb = torch.tensor(bv, requires_grad=True)
    tx = torch.tensor(xv, requires_grad=True)
    torch.maximum(ta, tb).sum().backward()
    da, db = _grads(gd.sum(gd.maximum(a, b)), [a, b], {"a": av, "b": bv})
    np.testing.assert_allclose(da, ta.grad.numpy())
    np.testing.assert_allclose(db, tb.grad.numpy())
    ta.grad = None
    torch.relu(ta).sum().backward()
    np.testing.assert_allclose(_grads(gd.sum(gd.relu(a)), a, {"a": av}), ta.grad.numpy())
    torch.amax(tx, dim=1).sum().backward()
    np.testing.assert_allclose(_grads(gd.sum(gd.max(x, 1)), x, {"x": xv}), tx.grad.numpy())
    tx.grad = None
    torch.amin(tx).backward()
    np.testing.assert_allclose(_grads(gd.min(x), x, {"x": xv}), tx.grad.numpy())


def test_no_gradient_through_stop_gradient_comparisons_and_integer_casts(rng):
    x = f64("x", (3,))
    xv = rng.standard_normal(3)
    y = gd.sum(x * gd.stop_gradient(x))  # d/dx = stop_gradient(x), not 2x
    np.testing.assert_allclose(_grads(y, x, {"x": xv}), xv)
    y = gd.sum(gd.cast(x > 0, "float64") * 3.0 + gd.cast(gd.cast(x, "int32"), "float64"))
    np.testing.assert_array_equal(_grads(y, x, {"x": xv}), np.zeros(3))


# --- pullbacks agree with sympy.diff of each op's scalar form -----------------------------

# Ops whose `sym` is only their forward semantics, not the derivative rule they follow.
SYM_EXCLUDED = {
    "stop_gradient": "the identity forward, but no gradient by design",
    **{name: "bool output: no gradient" for name in
       ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal", "logical_and",
        "logical_or", "logical_xor", "logical_not")},
    **{name: "integer output: no gradient" for name in
       ("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "bitwise_left_shift",
        "bitwise_right_shift")},
    **{name: "SymPy leaves the derivative of floor, ceiling and Mod unevaluated (0 and "
       "PyTorch's rule: tests/test_math_ops.py)" for name in ("floor", "ceil", "fmod")},
}

# name -> list of (attrs, domain per argument: "real" | "positive" | "bool")
SYM_SPECS = {
    "add": [({}, ("real", "real"))],
    "sub": [({}, ("real", "real"))],
    "mul": [({}, ("real", "real"))],
    "div": [({}, ("real", "positive"))],
    "neg": [({}, ("real",))],
    "reciprocal": [({}, ("positive",))],
    "exp": [({}, ("real",))],
    "erf": [({}, ("real",))],
    "erfc": [({}, ("real",))],
    "log": [({}, ("positive",))],
    "sqrt": [({}, ("positive",))],
    "pow": [({"exponent": 3}, ("real",)), ({"exponent": 0.5}, ("positive",)),
            ({"exponent": -2}, ("positive",)), ({"exponent": 2.5}, ("positive",)),
            ({"exponent": 1}, ("real",))],
    "tanh": [({}, ("real",))],
    "sigmoid": [({}, ("real",))],
    "softplus": [({}, ("real",))],
    "relu": [({}, ("real",))],
    "abs": [({}, ("real",))],
    "maximum": [({}, ("real", "real"))],
    "minimum": [({}, ("real", "real"))],
    "where": [({}, ("bool", "real", "real"))],
    "cast": [({"dtype": "float64"}, ("real",))],
    **{name: [({}, ("real",))]
       for name in ("sin", "cos", "atan", "sinh", "cosh", "asinh", "expm1")},
    **{name: [({}, ("unit",))] for name in ("tan", "asin", "acos", "atanh")},
    **{name: [({}, ("positive",))] for name in ("log2", "log10", "log1p")},
    "acosh": [({}, ("above_one",))],
    "atan2": [({}, ("real", "real"))],
    "power": [({}, ("positive", "real"))],
}

SYM_CASES = [(name, attrs, domains) for name, specs in SYM_SPECS.items()
             for attrs, domains in specs]


def test_every_op_with_a_sym_form_is_checked_against_sympy():
    with_sym = {name for name, op in R.items() if op.sym is not None}
    assert with_sym == set(SYM_SPECS) | set(SYM_EXCLUDED)


def _math_on_arrays(fn):
    """A `math` function of one float applied per element (NumPy has no erf, erfc, gamma)."""
    def apply(a):
        a = np.asarray(a, dtype=np.float64)
        return np.asarray(np.frompyfunc(fn, 1, 1)(a), dtype=np.float64)
    return apply


# SymPy's NumPy printer leaves erf and friends as bare names that `modules="numpy"` resolves to
# `math.erf` and the like, which raise TypeError on arrays; these names run on arrays instead
# (erf is graphdl's runtime `_erf`, the C library's erf per element, as generated code has it).
ARRAY_MATH = {"erf": runtime._erf, "erfc": _math_on_arrays(math.erfc),
              "gamma": _math_on_arrays(math.gamma), "lgamma": _math_on_arrays(math.lgamma)}


def numpy_function(symbols, expr):
    """`expr` as a NumPy function of `symbols` (SymPy's own printer, independent of graphdl's),
    evaluating erf and friends elementwise on arrays."""
    return sympy.lambdify(symbols, expr, modules=[ARRAY_MATH, "numpy"])


def test_numpy_function_evaluates_erf_and_friends_on_arrays():
    x = sympy.Symbol("x", real=True)
    a = np.linspace(-2.0, 2.0, 9)
    cases = {sympy.erf(x): [math.erf(v) for v in a], sympy.erfc(x): [math.erfc(v) for v in a],
             x * sympy.erf(x) / 2: [v * math.erf(v) / 2 for v in a],
             sympy.diff(x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2, x):
                 [(1 + math.erf(v / math.sqrt(2))) / 2 + v * math.exp(-v * v / 2)
                  / math.sqrt(2 * math.pi) for v in a],
             sympy.gamma(x + 3): [math.gamma(v + 3) for v in a],
             sympy.loggamma(x + 3): [math.lgamma(v + 3) for v in a]}
    for expr, expected in cases.items():
        np.testing.assert_allclose(numpy_function([x], expr)(a), expected, rtol=1e-14,
                                   err_msg=str(expr))


def _independent_form(expr):
    """The scalar form in elementary functions, so that sympy.diff (not the op's own `fdiff`)
    gives the derivative."""
    expr = expr.replace(lambda e: isinstance(e, (Sigmoid, Softplus, Relu)),
                        lambda e: e.rewrite(sympy.exp))
    expr = expr.replace(Cast, lambda a, dtype: a)
    return expr.replace(Where, lambda c, a, b: sympy.Piecewise((a, sympy.Eq(c, 1)), (b, True)))


@pytest.mark.parametrize("name,attrs,domains", SYM_CASES,
                         ids=[f"{n}{a or ''}" for n, a, _ in SYM_CASES])
def test_pullback_matches_sympy_diff(name, attrs, domains, rng):
    op = R[name]
    shape = (16,)
    symbols = sympy.symbols(f"s0:{len(domains)}", real=True)
    expr = _independent_form(op.sym(*symbols, **attrs))
    samplers = {"real": normal(shape), "positive": positive(shape), "bool": boolean(shape),
                "unit": unit(shape), "above_one": above_one(shape)}
    values = [samplers[d](rng) for d in domains]
    nodes = [gd.input(f"s{k}", shape, "bool" if d == "bool" else "float64")
             for k, d in enumerate(domains)]
    out = op(*nodes, **attrs)
    assert out.op is op
    y = gd.sum(out)
    wrt = [k for k, d in enumerate(domains) if d != "bool"]
    feeds = {f"s{k}": v for k, v in enumerate(values)}
    grads = gd.evaluate(gd.grad(y, [nodes[k] for k in wrt]), feeds)
    numeric = [v.astype(np.float64) for v in values]
    for k, got in zip(wrt, grads, strict=True):
        derivative = sympy.diff(expr, symbols[k])
        f = numpy_function(symbols, derivative)
        expected = np.broadcast_to(np.asarray(f(*numeric), dtype=np.float64), shape)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12,
                                   err_msg=f"d {name} / d arg{k}: sympy says {derivative}")


def test_sympy_forms_match_the_reference_implementations(rng):
    """The scalar forms describe what impl computes (so the derivative check above is
    about the same function)."""
    shape = (16,)
    for name, attrs, domains in SYM_CASES:
        op = R[name]
        symbols = sympy.symbols(f"s0:{len(domains)}", real=True)
        expr = _independent_form(op.sym(*symbols, **attrs))
        samplers = {"real": normal(shape), "positive": positive(shape), "bool": boolean(shape),
                    "unit": unit(shape), "above_one": above_one(shape)}
        values = [samplers[d](rng) for d in domains]
        f = numpy_function(symbols, expr)
        expected = np.broadcast_to(f(*[v.astype(np.float64) for v in values]), shape)
        got = op.impl(*values, **attrs)
        np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=name)
