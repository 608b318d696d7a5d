"""gd.einsum (graphdl/ops/einsum.py) against torch.einsum: values, gradients and second
derivatives by autograd on the interpreter, compiled NumPy and the CUDA kernels on the CPU,
for implicit and explicit outputs, '...', diagonals (a repeated subscript), size-1
broadcasting and chains of three operands; that a contraction is one matmul; the refusals,
naming the operand; ONNX export of an einsum and import of ONNX's Einsum."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from tests.helpers import onnxruntime_run, runner_params
from tests.torch_compare import data, problems

torch = pytest.importorskip("torch")

EQUATIONS = [
    ("ij,jk->ik", [(2, 3), (3, 4)]), ("ij,jk", [(2, 3), (3, 4)]), ("ii", [(3, 3)]),
    ("ii->i", [(3, 3)]), ("ij->ji", [(2, 3)]), ("ij->", [(2, 3)]), ("aB", [(2, 3)]),
    ("bij,bjk->bik", [(5, 2, 3), (5, 3, 4)]), ("...ij,...jk", [(5, 2, 3), (3, 4)]),
    ("i,i", [(3,), (3,)]), ("i,j->ij", [(3,), (4,)]), ("ij,ij->ij", [(2, 1), (2, 4)]),
    ("ij,jk", [(2, 1), (3, 4)]), ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 6)]),
    ("...i->i", [(2, 3)]), ("iij->ji", [(3, 3, 4)]), ("bhqd,bhkd->bhqk", [(2, 3, 4, 5),
                                                                          (2, 3, 6, 5)]),
    ("ijk,ikl->", [(2, 3, 4), (2, 4, 5)]), ("i...,...i", [(3, 2, 3), (3, 3)]),
    ("a,b,c->abc", [(2,), (3,), (4,)]), ("iji->j", [(3, 2, 3)]),
    ("abcd,dcba->ad", [(2, 3, 4, 5), (5, 4, 3, 2)]), ("ij,j->i", [(1, 3), (3,)]),
    ("ij->", [(0, 3)]), ("", [()]), ("i,->i", [(3,), ()]), ("...,...->...", [(2, 1), (3,)]),
    ("ab, bc -> ca", [(2, 3), (3, 2)]), ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
]


def test_values_equal_torchs_on_many_equations():
    outputs, feeds, wants = [], {}, []
    for k, (equation, shapes) in enumerate(EQUATIONS):
        xs = [gd.input(f"x{k}_{j}", s, "float64") for j, s in enumerate(shapes)]
        outputs.append(gd.einsum(equation, *xs))
        values = [data(k * 10 + j, s, "float64") for j, s in enumerate(shapes)]
        feeds.update({x.name: v for x, v in zip(xs, values)})
        wants.append(torch.einsum(equation, *map(torch.as_tensor, values)).numpy())
    for (equation, _), got, want in zip(EQUATIONS, gd.evaluate(outputs, feeds), wants):
        assert got.shape == want.shape and np.allclose(got, want), equation


def _case(equation, *shapes):
    return (lambda *xs: gd.einsum(equation, *xs), lambda *xs: torch.einsum(equation, *xs),
            list(shapes), {})


CASES = {
    "matmul": _case("ij,jk", (2, 3), (3, 4)),
    "trace": _case("ii", (3, 3)),
    "diagonal-batch": _case("...ii->...i", (2, 3, 3)),
    "attention": _case("bhqd,bhkd->bhqk", (2, 2, 3, 4), (2, 2, 5, 4)),
    "broadcast-size-1": _case("ij,jk->ik", (2, 1), (3, 4)),
    "chain": _case("ab,bc,cd->da", (2, 3), (3, 4), (4, 2)),
    "outer-sum": _case("i,j->", (3,), (4,)),
    "ellipsis-summed": _case("...i,i->i", (2, 3), (3,)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("runner", runner_params())
def test_values_and_two_derivatives_equal_pytorchs(runner, dtype):
    found = problems(CASES, runner, dtype)
    assert not found, "\n".join(found)


def test_a_contraction_is_one_matmul():
    a, b = gd.input("a", (8, 2, 3, 4), "float32"), gd.input("b", (8, 4, 3, 5), "float32")
    y = gd.einsum("bmkl,blkn->bnm", a, b)
    ops = [n.op.name for n in gd.topological_order([y])]
    assert ops.count("matmul") == 1 and "mul" not in ops and "sum" not in ops


def test_unknown_batch_size():
    a, b = gd.input("a", (None, 2, 3), "float64"), gd.input("b", (None, 3, 4), "float64")
    av, bv = data(1, (5, 2, 3), "float64"), data(2, (5, 3, 4), "float64")
    (got,) = gd.evaluate([gd.einsum("bij,bjk->bik", a, b)], {"a": av, "b": bv})
    np.testing.assert_allclose(got, np.einsum("bij,bjk->bik", av, bv))


def test_refusals_name_the_operand():
    a, b = gd.input("a", (2, 3), "float64"), gd.input("b", (4, 5), "float64")
    refused = [
        (lambda: gd.einsum("ij,jk", a, b), r"'j' has size 3 in operand 0, 'a', and 4 in operand 1"),
        (lambda: gd.einsum("ijk", a), r"'a' of shape \(2, 3\), has 2 dimensions; .*'ijk' name 3"),
        (lambda: gd.einsum("ij,jk", a), r"2 operand terms, 1 operands"),
        (lambda: gd.einsum("ij->k", a), r"the output's 'k' is in no operand"),
        (lambda: gd.einsum("ij->ii", a), r"names 'i' twice"),
        (lambda: gd.einsum("i1", a), r"term 'i1' has '1'"),
        (lambda: gd.einsum("i..", a), r"term 'i..' has '.'"),
        (lambda: gd.einsum("ij->i->j", a), r"more than one '->'"),
        (lambda: gd.einsum("ii", a), r"'i' is repeated in operand 0, 'a', over .* 2 and 3"),
        (lambda: gd.einsum(3, a), r"equation must be a string"),
    ]
    for build, message in refused:
        with pytest.raises(gd.GraphError, match=message):
            build()


def test_onnx_export_runs_in_onnxruntime():
    pytest.importorskip("onnx")
    a, b = gd.input("a", (2, 3, 3), "float32"), gd.input("b", (3, 4), "float32")
    y = gd.einsum("bii,ij->bj", a, b)
    (ga,) = gd.grad(gd.sum(y * y), [a])
    feeds = {"a": data(1, (2, 3, 3), "float32"), "b": data(2, (3, 4), "float32")}
    for got, want in zip(onnxruntime_run(gd.onnx.save([y, ga]).SerializeToString(), feeds),
                         gd.evaluate([y, ga], feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_onnx_import_of_einsum():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Einsum", ["x", "y"], ["z"], equation="bij, bjk -> bki")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3, 4)),
                      helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 4, 5))],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, (2, 5, 3))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    feeds = {"x": data(1, (2, 3, 4), "float32"), "y": data(2, (2, 4, 5), "float32")}
    want = onnxruntime_run(model.SerializeToString(), feeds)
    loaded = gd.onnx.load(model.SerializeToString())
    got = gd.evaluate(loaded.outputs, loaded.feeds(**feeds))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
