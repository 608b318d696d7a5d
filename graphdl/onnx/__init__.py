"""ONNX models in and out of graphdl (needs `pip install graphdl[onnx]`).

    model = gd.onnx.load("lenet.onnx")      # a path, a file, its bytes or an onnx.ModelProto
    model.outputs, model.inputs, model.params, model.nodes
    gd.onnx.save(outputs, "model.onnx", params={"w": w0})

`load` builds the model's graph from graphdl's primitives (`importer`, one builder per ONNX
operator in `ops`); `save` writes any graphdl graph, gradients included, as ONNX (`exporter`).
The `onnx` package is imported on the first call, not with graphdl.
"""

from __future__ import annotations

from graphdl.errors import GraphError


class UnsupportedOperator(GraphError):
    """An ONNX operator (or a form of one) that graphdl cannot express with its primitives."""


def _require_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise ImportError("graphdl.onnx needs the onnx package: pip install graphdl[onnx]") from e


def load(model, shapes=None, values=None):
    """The ONNX model `model` (a path, a binary file, its serialized bytes or an
    `onnx.ModelProto`) as a graphdl `Model`.

    shapes: {input name: shape}, fixing dimensions the file leaves symbolic (a name that is no
        input, or a shape of another rank or size than the declared one, is a GraphError).
    values: {input name: array}, the values of graph inputs that an operator needs at import
        (Reshape's shape, Slice's starts, reduction axes, Pow's exponent, ...), used there and
        only there: wherever else the graph reads such an input, it stays an input.
    """
    _require_onnx()
    from graphdl.onnx.importer import load as _load

    return _load(model, shapes, values)


def save(outputs, path=None, params=None, opset=None):
    """Write the graph of `outputs` (a node, a list, or {name: node}) as an ONNX model to
    `path` (None: only return it); inputs named in `params` ({name: array}) become
    initializers. Returns the `onnx.ModelProto`."""
    _require_onnx()
    from graphdl.onnx.exporter import save as _save

    return _save(outputs, path, params, opset)


__all__ = ["UnsupportedOperator", "load", "save"]
