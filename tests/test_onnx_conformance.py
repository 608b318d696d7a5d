"""ONNX's own node conformance tests (`onnx.backend.test`, shipped in the onnx wheel) run through
graphdl: every node test of an operator graphdl imports (`graphdl.onnx.ops.OPS`) is imported
with `gd.onnx.load`, run both compiled (`gd.compile`, the NumPy backend users run) and by the
reference interpreter (`gd.evaluate`), and compared with ONNX's expected outputs (values,
shapes and dtypes); the float32 ones run again in float64. A test graphdl cannot pass is
excluded by name in `EXCLUDED`, with why: it still runs, and must still fail (reported as an
expected failure with that reason), so a fix that makes it pass asks for its entry's removal.

`python tests/test_onnx_conformance.py` prints the pass/skip count per operator.
"""

from __future__ import annotations

import functools
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep
from onnx.backend.test import BackendTest
from onnx.backend.test.loader import load_model_tests

import graphdl as gd
from graphdl.onnx.ops import OPS


def _lacking(dtype, cast_pairs, others=()):
    """Cast and CastLike tests (plain and expanded) of a dtype graphdl's core does not have."""
    names = [f"test_{op}_{pair}{suffix}" for pair in cast_pairs for op, suffix in
             (("cast", ""), ("castlike", ""), ("castlike", "_expanded"))]
    return dict.fromkeys([*names, *others], f"graphdl's core has no {dtype} dtype")


_FLOAT8 = ["FLOAT_to_{}", "FLOAT16_to_{}", "{}_to_FLOAT", "{}_to_FLOAT16"]
_SMALL_INT = ["FLOAT_to_{}", "FLOAT16_to_{}", "{}_to_FLOAT", "{}_to_FLOAT16", "{}_to_{}8"]

# test name (without the device suffix) -> why graphdl does not pass it
EXCLUDED = {
    **_lacking("bfloat16", ["BFLOAT16_to_FLOAT", "FLOAT_to_BFLOAT16"],
               ["test_range_bfloat16_type_positive_delta",
                "test_range_bfloat16_type_positive_delta_expanded"]),
    **_lacking("float4", [p.format("FLOAT4E2M1") for p in _FLOAT8]),
    **{name: why for f8 in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ")
       for name, why in _lacking("float8", [p.format(f8) for p in _FLOAT8] + [
           f"no_saturate_{src}_to_{f8}" for src in ("FLOAT", "FLOAT16")]).items()},
    **_lacking("float8", [], [f"test_cast_e8m0_{p.format('FLOAT8E8M0')}" for p in _FLOAT8]),
    **{name: why for small in ("INT2", "INT4", "UINT2", "UINT4")
       for name, why in _lacking(small.lower(), [p.format(small, small[:-1])
                                                 for p in _SMALL_INT]).items()},
    **{f"test_{op}linear_{t}": f"graphdl's core has no {why} dtype"
       for op in ("quantize", "dequantize")
       for t, why in [("e4m3fn", "float8"), ("e5m2", "float8"), ("float4e2m1", "float4"),
                      ("int4", "int4"), ("uint4", "uint4"), ("int2", "int2"), ("uint2", "uint2")]},
    **dict.fromkeys(["test_dequantizelinear_e4m3fn_float16",
                     "test_dequantizelinear_e4m3fn_zero_point"],
                    "graphdl's core has no float8 dtype"),
    **dict.fromkeys([f"test_affine_grid_{t}_expanded" for t in (
        "2d", "2d_align_corners", "3d", "3d_align_corners")],
                    "the expansion branches on the rank (If): graphdl imports no control flow"),
    **dict.fromkeys(["test_gridsample_bicubic",
                     *[f"test_gridsample_bicubic_align_corners_{c}_additional_1" for c in (0, 1)]],
                    "cubic GridSample: graphdl's grid_sample reads linear and nearest"),
    "test_col2im_5d": "3-D Col2Im: graphdl's fold is 2-D, as PyTorch's",
    "test_equal_string": "graphdl's core has no string dtype",
    "test_equal_string_broadcast": "graphdl's core has no string dtype",
    "test_identity_opt": "an optional value: graphdl imports tensors only",
    "test_identity_sequence": "a sequence value: graphdl imports tensors only",
    **dict.fromkeys([f"test_div_{t}" for t in ("int8", "int16", "int32_trunc", "uint8", "uint16",
                                                "uint32", "uint64")],
                    "integer Div truncates; graphdl's core has true division only"),
    **dict.fromkeys(["test_reduce_max_empty_set", "test_reduce_max_empty_set_bool",
                     "test_reduce_min_empty_set"],
                    "graphdl refuses a max/min over an empty axis; ONNX gives -inf/+inf/False"),
    **dict.fromkeys([f"test_range_{t}_expanded" for t in (
        "float_type_positive_delta", "float16_type_positive_delta", "int32_type_negative_delta")],
                    "the expansion loops (Loop): graphdl imports no control flow"),
    "test_averagepool_2d_dilations": "graphdl's avg_pool2d has no dilation",
    **dict.fromkeys(["test_averagepool_3d_dilations_small",
                     *[f"test_averagepool_3d_dilations_large_count_include_pad_is_{p}_ceil_mode_is_{c}"
                       for p in (0, 1) for c in (False, True)]],
                    "graphdl's avg_pool3d has no dilation (as avg_pool2d)"),
    **dict.fromkeys(["test_maxpool_with_argmax_2d_precomputed_pads",
                     "test_maxpool_with_argmax_2d_precomputed_strides"],
                    "MaxPool's Indices output: graphdl's max_pool2d returns values only"),
    **dict.fromkeys([f"test_resize_{t}" for t in (
        "upsample_scales_cubic", "upsample_scales_cubic_align_corners", "downsample_scales_cubic",
        "downsample_scales_cubic_align_corners", "upsample_sizes_cubic", "downsample_sizes_cubic",
        "upsample_scales_cubic_A_n0p5_exclude_outside",
        "downsample_scales_cubic_A_n0p5_exclude_outside", "upsample_scales_cubic_asymmetric")],
                    "cubic Resize: graphdl's resampling is nearest and linear"),
    **dict.fromkeys([f"test_resize_downsample_{t}_antialias" for t in (
        "scales_linear", "sizes_linear", "scales_cubic", "sizes_cubic")],
                    "antialiased Resize (a widened filter): graphdl reads 1 or 2 taps"),
    **dict.fromkeys(["test_resize_tf_crop_and_resize", "test_resize_tf_crop_and_resize_axes_2_3",
                     "test_resize_tf_crop_and_resize_axes_3_2",
                     "test_resize_tf_crop_and_resize_extrapolation_value"],
                    "tf_crop_and_resize (a region of interest, extrapolated outside): not "
                    "supported"),
    **dict.fromkeys(["test_training_dropout", "test_training_dropout_default",
                     "test_training_dropout_default_mask", "test_training_dropout_mask"],
                    "training-mode Dropout drops at random: inference only"),
    **dict.fromkeys([*[f"test_einsum_{t}_bfloat16" for t in ("batch_matmul", "sum", "transpose")],
                     "test_celu_bfloat16", "test_celu_bfloat16_expanded",
                     "test_onehot_with_bfloat16_values", "test_reversesequence_bfloat16"],
                    "graphdl's core has no bfloat16 dtype"),
    **dict.fromkeys([f"test_attention_{t}_bf16{form}" for t in (
        "3d_causal", "4d_attn_mask_causal", "4d_causal", "4d_causal_padded_kv", "4d_padded_kv")
        for form in ("", "_expanded")], "graphdl's core has no bfloat16 dtype"),
    **dict.fromkeys([f"test_{w}window{s}_expanded" for w in ("blackman", "hamming", "hann")
                     for s in ("", "_symmetric")],
                    "the expansion's Range limit is computed from a fed size; graphdl needs it "
                    "at import"),
    **dict.fromkeys([f"test_center_crop_pad_{t}_expanded" for t in (
        "crop", "pad", "crop_and_pad", "crop_axes_chw", "crop_axes_hwc", "crop_negative_axes_hwc")],
                    "the pads are computed at run time from a fed shape by integer Div; graphdl's "
                    "core has true division only"),
}


class _Rep(BackendRep):
    """A node test's model, imported on each run: the test feeds axes, shapes and exponents as
    graph inputs, and graphdl needs those at import (`gd.onnx.load(values=...)`)."""

    def __init__(self, proto, run):
        initializers = {t.name for t in proto.graph.initializer}
        self.names = [i.name for i in proto.graph.input if i.name not in initializers]
        self.proto, self._run = proto, run

    def run(self, inputs, **kwargs):
        given = dict(zip(self.names, inputs))
        model = gd.onnx.load(self.proto, values=given)
        with np.errstate(all="ignore"):  # the tests compute infs on purpose (log of an empty sum)
            return self._run(model, model.feeds(**given))


def _backend(name, run):
    """A `Backend` that runs imported models with `run(model, feeds)`."""

    def prepare(cls, model, device="CPU", **kwargs):
        return _Rep(model, run)

    def supports_device(cls, device):
        return device == "CPU"

    return type(name, (Backend,), {"prepare": classmethod(prepare),
                                   "supports_device": classmethod(supports_device)})


def _compiled(model, feeds):
    return gd.compile(model.outputs)(**feeds)


def _interpreted(model, feeds):
    return gd.evaluate(model.outputs, feeds)


BACKENDS = {"Compiled": _backend("GraphdlCompiled", _compiled),
            "Interpreted": _backend("GraphdlInterpreted", _interpreted)}


def _cases():
    """{test name: onnx's TestCase} for every node test."""
    with np.errstate(all="ignore"):  # ONNX's generators make infs and NaNs on purpose
        return {case.name: case for case in load_model_tests(kind="node")}


CASES = _cases()
# the ONNX operator each test tests; an `_expanded` test (the operator's function body) tests
# the operator of its plain sibling
OPERATOR = {name: CASES[re.sub(r"_expanded.*", "", name)].model.graph.node[0].op_type
            for name in CASES}
SELECTED = sorted(name for name, op in OPERATOR.items() if op in OPS or (
    "_expanded" in name and all(n.op_type in OPS for n in CASES[name].model.graph.node)))


def _must_fail(test, why):
    """`test`, which must fail with graphdl's refusal or a wrong value: that is reported as an
    expected failure with `why`; a pass or any other error fails. (xfail is raised outside the
    `except`, so pytest does not format the refusal's deep traceback.)"""

    @functools.wraps(test)
    def run(self):
        try:
            test(self)
        except (gd.GraphError, AssertionError):
            failed = True
        else:
            failed = False
        if failed:
            pytest.xfail(why)
        pytest.fail(f"excluded ({why}), but it passes: remove it from EXCLUDED")

    return run


def _test_cases(kind, backend):
    """The unittest class of ONNX's node tests for `backend`: the selected tests only, on CPU;
    the excluded ones expected to fail, with their reason."""
    runner = BackendTest(backend, __name__)
    runner.include(rf"^({'|'.join(SELECTED)})_cpu$")
    case = runner.test_cases["OnnxBackendNodeModelTest"]
    for attr in [a for a in vars(case) if a.startswith("test_")]:
        name = attr.removesuffix("_cpu")
        if name not in SELECTED or not attr.endswith("_cpu"):
            delattr(case, attr)
        elif name in EXCLUDED:
            setattr(case, attr, _must_fail(getattr(case, attr), EXCLUDED[name]))
    case.__name__ = case.__qualname__ = f"TestOnnxNode{kind}"
    return case


TestOnnxNodeCompiled = _test_cases("Compiled", BACKENDS["Compiled"])
TestOnnxNodeInterpreted = _test_cases("Interpreted", BACKENDS["Interpreted"])


def test_every_exclusion_names_a_selected_test_and_says_why():
    for name, why in EXCLUDED.items():
        assert name in SELECTED, f"{name}: not a node test of an imported operator"
        assert why.strip(), f"{name}: no reason given"


def _as_float64(proto):
    """The model with its float32 inputs and outputs declared float64; None where float32 is
    spelled inside the graph (a Cast, a Constant, a tensor attribute, a `dtype` attribute, a
    window's output_datatype (float32 by default), LayerNormalization's stash type: float32
    statistics whatever the input's type)."""
    for node in proto.graph.node:
        if node.op_type in ("Cast", "CastLike", "Constant", "LayerNormalization", "HannWindow",
                            "HammingWindow", "BlackmanWindow") or any(
                a.type in (onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS)
                or a.name == "dtype" for a in node.attribute):
            return None
    double = onnx.ModelProto()
    double.CopyFrom(proto)
    declared = [*double.graph.input, *double.graph.output, *double.graph.value_info]
    floats = [v.type.tensor_type for v in declared
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT]
    if not floats:
        return None
    for tensor in floats:
        tensor.elem_type = onnx.TensorProto.DOUBLE
    return double


def _array(value):
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value


def _float64(array):
    return array.astype(np.float64) if array.dtype == np.float32 else array


FLOAT64 = [name for name in SELECTED
           if name not in EXCLUDED and _as_float64(CASES[name].model) is not None]


@pytest.mark.parametrize("name", FLOAT64)
def test_float32_node_test_in_float64(name):
    """The node test with float64 for float32: compiled, float64 out, ONNX's float32 numbers
    within the test's own tolerance."""
    case = CASES[name]
    rep = BACKENDS["Compiled"].prepare(_as_float64(case.model))
    for inputs, expected in case.data_sets:
        outputs = rep.run([_float64(_array(x)) for x in inputs])
        for got, want in zip(outputs, map(_array, expected), strict=True):
            assert got.dtype == _float64(want).dtype
            np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)


def test_docs_table_counts_this_suite():
    """docs/ONNX.md's per-operator table, and the counts its text gives, are `table()`'s: an op
    imported or a test excluded or fixed without the table regenerated fails here."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "ONNX.md").read_text()
    rows = re.findall(r"^\| ([^|]+?) \| (\d+) \| (\d+) \| (\d+) \|$", doc, re.MULTILINE)
    want = [(op, *map(str, counts)) for op, *counts in table()]
    assert [row for row in rows if row[0] != "total"] == want, (
        "docs/ONNX.md's table is stale: regenerate it with `python tests/test_onnx_conformance.py`")
    passed, excluded, doubled = (sum(row[i] for row in table()) for i in (1, 2, 3))
    assert ("total", str(passed), str(excluded), str(doubled)) in rows
    text = " ".join(doc.split())
    assert f"in the test suite: {passed:,} pass" in text
    assert f"other operators), {excluded} are excluded" in text


def table():
    """Rows (operator, node tests passed, excluded, float32 tests also passed in float64) for
    every operator graphdl imports, and for operators it does not import whose expanded tests
    (their function bodies) use only operators it does (marked "(expanded)"); each node test
    runs compiled and interpreted."""
    selected, excluded, doubled = (Counter(OPERATOR[name] for name in names)
                                   for names in (SELECTED, EXCLUDED, FLOAT64))
    return [(op if op in OPS else f"{op} (expanded)", selected[op] - excluded[op], excluded[op],
             doubled[op]) for op in sorted(set(OPS) | set(selected))]


if __name__ == "__main__":
    rows = table()
    sys.stdout.write("| operator | passed | skipped | passed in float64 |\n"
                     "| --- | --- | --- | --- |\n")
    for row in [*rows, ("total", *(sum(column) for column in list(zip(*rows))[1:]))]:
        sys.stdout.write("| " + " | ".join(map(str, row)) + " |\n")
