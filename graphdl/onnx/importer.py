"""ONNX -> graphdl: one graphdl graph per ONNX graph, built node by node in the file's order.

Every value is either a graphdl node or, where it is known at import time, a NumPy array:
constants, integer initializers and anything computed from them and from static shapes only
(PyTorch's Shape -> Gather -> Concat -> Reshape subgraphs). Those are folded as they are met, so
a Reshape receives its target shape as numbers. Floating-point initializers are the model's
parameters: named inputs, so they can be differentiated and fed new values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

import graphdl as gd
from graphdl.errors import GraphError, InputError
from graphdl.ir import Node, topological_order
from graphdl.onnx import UnsupportedOperator
from graphdl.onnx.ops import OPS
from graphdl.onnx.shapes import SHAPE_OPS, has_unknown
from graphdl.ops.leaf import CONST, INPUT


@dataclass
class Model:
    """An imported ONNX model: `outputs` in the model's order, `inputs` (its real inputs),
    `params` ({initializer name: array}, fed by name like any input), `nodes` ({ONNX value
    name: graphdl node} for every value that is not a folded constant) and `read` (the names of
    the inputs the outputs depend on)."""

    outputs: list
    inputs: list
    params: dict
    nodes: dict
    opset: int
    names: list = field(default_factory=list)  # the model's output names
    read: set = field(default_factory=set)

    def feeds(self, **inputs):
        """The params and the given inputs: `gd.evaluate(model.outputs, **model.feeds(x=...))`.
        Inputs the outputs do not read (one only a Shape reads, or one whose value was fixed at
        import by `values`) are dropped; a name that is no input of the model is refused."""
        declared = {n.name for n in self.inputs}
        unknown = sorted(set(inputs) - declared)
        if unknown:
            raise InputError(f"model.feeds: {unknown} are not inputs of this model; its inputs "
                             f"are {sorted(declared)} (inputs of your own graph built on it are "
                             f"fed beside: {{**model.feeds(...), 'label': ...}})")
        return {**self.params, **{k: v for k, v in inputs.items() if k in self.read}}


@dataclass
class Call:
    """One ONNX node being imported: its inputs (nodes, arrays, or None where omitted) and its
    attributes, with the lookups a builder needs."""

    proto: onnx.NodeProto
    opset: int
    inputs: list
    attrs: dict
    known: dict  # param or input node -> its value (read where a value must be static)
    symbols: dict = field(default_factory=dict)  # value name -> its dimensions' ONNX names

    def dims(self, i):
        """The names ONNX's shape inference gives input i's dimensions (`batch`; None where
        it has none): equal names are equal sizes, known or not."""
        return self.symbols.get(self.proto.input[i], ())

    @property
    def where(self):
        return f"{self.proto.op_type} node {self.proto.name or self.proto.output[0]!r}"

    def has(self, i):
        return i < len(self.inputs) and self.inputs[i] is not None

    def node(self, i):
        self._known_sizes(i, "value")
        return _as_node(self.inputs[i])

    def static(self, i, what, unknown=False):
        """Input `i` as a NumPy array: it must be known at import time (`what` says why); with
        `unknown`, it may hold sizes known only at run time (`shapes.Unknown`)."""
        value = self.inputs[i]
        if not unknown:
            self._known_sizes(i, what)
        if isinstance(value, Node):
            if value in self.known:
                return self.known[value]
            raise UnsupportedOperator(
                f"{self.where}: its {what} (input {i}, {self.proto.input[i]!r}) must be known at "
                f"import time (a constant, an initializer, computed from static shapes only, or "
                f"a graph input given in gd.onnx.load(..., values={{name: array}}))")
        return value

    def _known_sizes(self, i, what):
        if has_unknown(self.inputs[i]):
            self.refuse(f"its {what} (input {i}, {self.proto.input[i]!r}) is computed from a "
                        f"dimension known only at run time ({self.inputs[i]}); fix it with "
                        f"gd.onnx.load(..., shapes={{name: shape}})")

    def attr(self, name, default=None):
        return self.attrs.get(name, default)

    def refuse(self, why):
        raise UnsupportedOperator(f"{self.where} (opset {self.opset}): {why}")

    def malformed(self, why):
        """The node breaks ONNX's own rules (an attribute of the wrong length, a missing one)."""
        raise GraphError(f"{self.where}: {why}")


def load(model, shapes=None, values=None):
    proto = _model_proto(model)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise UnsupportedOperator("the model imports no version of the default ONNX domain")
    graph = proto.graph
    scope, params, known = _leaves(graph, shapes or {}, values or {})
    unknown = any(None in v.shape for v in scope.values() if isinstance(v, Node))
    symbols = _symbols(proto) if unknown else {}
    for node in graph.node:
        _import_node(node, opset, scope, known, symbols)
    names = [o.name for o in graph.output]
    outputs = [_as_node(scope[n]) for n in names]
    reachable = set(topological_order(outputs))
    inputs = [scope[i.name] for i in graph.input if i.name not in params]
    return Model(
        outputs=outputs,
        inputs=inputs,
        params={k: v for k, v in params.items() if scope[k] in reachable},
        nodes={k: v for k, v in scope.items() if isinstance(v, Node)},
        opset=opset,
        names=names,
        read={n.name for n in inputs if n in reachable},
    )


def _model_proto(model):
    """`model` as a ModelProto: given as one, as its serialized bytes (`onnx.load_from_string`'s
    argument) or as a path or binary file; an empty or undecodable one is refused by name."""
    if isinstance(model, onnx.ModelProto):
        return model
    serialized = isinstance(model, bytes | bytearray | memoryview)
    what = f"the {len(model)} bytes given" if serialized else repr(str(model))
    try:
        proto = onnx.load_from_string(bytes(model)) if serialized else onnx.load(model)
    except DecodeError as e:
        raise GraphError(f"gd.onnx.load: {what}: not an ONNX model ({e})") from None
    if not proto.HasField("graph"):
        empty = "empty" if not proto.ByteSize() else "no graph in it"
        raise GraphError(f"gd.onnx.load: {what}: not an ONNX model ({empty})")
    return proto


def _leaves(graph, shapes, given):
    """The graph's inputs and initializers: {name: node or array}, the params, and {node: value}
    for the params and the inputs whose values are `given`."""
    values, params = {}, {}
    for t in graph.initializer:
        array = numpy_helper.to_array(t)
        if array.dtype.kind == "f":
            values[t.name] = gd.input(t.name, array.shape, array.dtype)
            params[t.name] = array
        else:  # integer initializers are shapes, axes and indices: constants
            values[t.name] = array
    inputs = [i for i in graph.input if i.name not in values]
    unknown = sorted(set(shapes) - {i.name for i in inputs})
    if unknown:
        raise GraphError(f"gd.onnx.load(shapes=...): {', '.join(map(repr, unknown))} is no input "
                         f"of the model; its inputs are {sorted(i.name for i in inputs)}")
    for i in inputs:
        values[i.name] = _input(i, shapes)
    known = {values[k]: v for k, v in params.items()}
    for name, value in given.items():
        known[_given_input(values, name)] = _given_value(values[name], value)
    return values, params, known


def _input(value_info, shapes):
    if not value_info.type.HasField("tensor_type"):
        raise UnsupportedOperator(
            f"graph input {value_info.name!r} has type {value_info.type.WhichOneof('value')}, "
            f"not a tensor; graphdl imports tensors only")
    tensor = value_info.type.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
    if not tensor.HasField("shape"):  # not even its rank: a 0-d guess would refuse every feed
        if value_info.name not in shapes:
            raise GraphError(f"graph input {value_info.name!r} declares no shape, not even its "
                             f"rank; give it with gd.onnx.load(..., shapes={{"
                             f"{value_info.name!r}: shape}})")
        return gd.input(value_info.name, tuple(shapes[value_info.name]), dtype)
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    shape = tuple(shapes.get(value_info.name, dims))
    if len(shape) != len(dims) or any(d not in (None, n) for d, n in zip(dims, shape)):
        declared = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param or None
                         for d in tensor.shape.dim)
        raise GraphError(f"gd.onnx.load(shapes=...): input {value_info.name!r} is given shape "
                         f"{shape}; the model declares {declared}: a shape fixes its symbolic "
                         f"dimensions only")
    return gd.input(value_info.name, shape, dtype)


def _given_input(values, name):
    node = values.get(name)
    if not (isinstance(node, Node) and node.op is INPUT):
        raise UnsupportedOperator(f"gd.onnx.load(values=...): {name!r} is not a graph input")
    return node


def _given_value(node, value):
    array = np.asarray(value)
    if array.dtype != node.dtype or len(array.shape) != len(node.shape) or any(
            d is not None and d != n for d, n in zip(node.shape, array.shape)):
        raise UnsupportedOperator(
            f"gd.onnx.load(values=...): input {node.name!r} is declared {node.dtype} of shape "
            f"{node.shape}; its value is {array.dtype} of shape {array.shape}")
    return array


def _symbols(proto):
    """{value name: the names of its symbolic dimensions} from ONNX's shape inference (an
    empty dict where it fails): what tells two sizes known only at run time apart."""
    try:
        graph = onnx.shape_inference.infer_shapes(proto).graph
    except Exception:  # noqa: BLE001 - only a help: without it, fewer reshapes resolve
        return {}
    return {v.name: tuple(d.dim_param or None for d in v.type.tensor_type.shape.dim)
            for v in [*graph.input, *graph.value_info, *graph.output]}


def _import_node(proto, opset, values, known, symbols):
    build = OPS.get(proto.op_type) if proto.domain in ("", "ai.onnx") else None
    if build is None:
        raise UnsupportedOperator(
            f"ONNX operator {proto.op_type!r} (domain {proto.domain or 'ai.onnx'!r}, node "
            f"{proto.name or proto.output[0]!r}, opset {opset}) has no graphdl import; "
            f"supported: {', '.join(sorted(OPS))}")
    inputs = [_defined(values, n, proto) if n else None for n in proto.input]
    attrs = {a.name: _attribute(a) for a in proto.attribute}
    call = Call(proto, opset, inputs, attrs, known, symbols)
    static = all(not isinstance(v, Node) for v in inputs)
    if static and any(has_unknown(v) for v in inputs):  # shape arithmetic on unknown sizes
        build = SHAPE_OPS.get(proto.op_type, build)
    results = build(call)
    results = results if isinstance(results, tuple) else (results,)
    for name, value in zip(proto.output, results):
        if not name:
            continue
        if static and isinstance(value, Node):  # computed from constants only: fold it
            value = np.asarray(gd.evaluate(value))
        values[name] = value
    _name(results[0], proto)


def _defined(values, name, proto):
    if name not in values:
        raise GraphError(
            f"{proto.op_type} node {proto.name or proto.output[0]!r} reads {name!r}, which is no "
            f"graph input, initializer or output of an earlier node")
    return values[name]


def _attribute(a):
    value = helper.get_attribute_value(a)
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and value and isinstance(value[0], bytes):  # strings
        return [v.decode() for v in value]
    return value


def _name(node, proto):
    """Name the node after its ONNX node ("/conv1/Conv" -> "conv1/Conv") unless it is a leaf or
    already named by the model (Identity, Dropout return their input)."""
    if not isinstance(node, Node) or node.op in (INPUT, CONST) or node.named_by_user:
        return
    name = (proto.name or proto.output[0]).lstrip("/")
    if name:
        node.named(name)


def _as_node(value):
    return value if isinstance(value, Node) else gd.constant(value)
