"""Graph IR: frozen, hash-consed nodes and graph-level utilities.

A `Node` is `(op, inputs, attrs)` plus its inferred `shape` and `dtype`. Building the same node
twice returns the same object, so identical subexpressions are one node (common-subexpression
elimination is free). A consequence users should know: a gradient taken with respect to such a
node sums over every place the subexpression occurs.

Every traversal here is iterative: graphs thousands of layers deep never touch Python's
recursion limit.
"""

from __future__ import annotations

import itertools
import operator
import types
import weakref

import numpy as np

from graphdl.errors import GraphError

_intern = {}  # key -> weakref to the node: nodes no graph holds any more are forgotten
_ids = itertools.count()


class Node:
    """One operation in the graph. Immutable except for `name`, a naming hint for code and views.

    Users name a node with `named` (`f = gd.sigmoid(z).named("f")`); the library's own names
    (a composite's "sigmoid", a gradient's "dW") are hints set only where no name is, and a
    user's name replaces them.
    """

    __slots__ = ("__weakref__", "attrs", "dtype", "id", "inputs", "name", "named_by_user", "op",
                 "shape")

    def __init__(self, op, inputs, attrs, shape, dtype):
        init = object.__setattr__  # __setattr__ below refuses everything but `name`
        init(self, "op", op)
        init(self, "inputs", inputs)
        init(self, "attrs", attrs)
        init(self, "shape", shape)
        init(self, "dtype", dtype)
        init(self, "name", None)
        init(self, "named_by_user", False)
        init(self, "id", next(_ids))

    def __setattr__(self, key, value):
        if key != "name":
            raise AttributeError(f"graph nodes are immutable; cannot set {key!r}")
        object.__setattr__(self, key, value)

    def named(self, name):
        """Name this node `name` and return it: `f = gd.sigmoid(w @ x + b).named("f")`.

        The name shows in narrations (∂f/∂w), drawings, messages and generated code. It replaces
        a name the library gave (a composite's "sigmoid"). A node is named once: declaring the
        same expression twice gives one node (hash-consing), so a second, different name would
        rename the first one's every use, and is refused. Inputs keep the name they are fed by;
        constants, shared by every graph using the same value, take no name.
        """
        from graphdl.ops.leaf import CONST, INPUT  # leaf builds on this module

        if not isinstance(name, str) or not name:
            raise GraphError(f"named: a name must be a non-empty string, got {name!r} "
                             f"for {describe(self)}")
        if name == self.name and (self.named_by_user or self.op is INPUT):
            return self  # the same declaration run again (a re-run cell, a function called twice)
        if self.op is INPUT:
            raise GraphError(f"named({name!r}): {self.name!r} is an input, fed by the name it "
                             f"was declared with; declare it as gd.input({name!r}, ...) instead")
        if self.op is CONST:
            raise GraphError(f"named({name!r}): the constant {describe(self)} is one node for "
                             "every use of that value, and takes no name; declare a named "
                             "value with gd.input instead")
        if self.named_by_user:
            raise GraphError(
                f"named({name!r}): this node is already named {self.name!r}. Declaring the same "
                f"expression twice gives one node (identical expressions are shared), so naming "
                f"it {name!r} would rename every use of {self.name!r}; give the value one name")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "named_by_user", True)
        return self

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<{describe(self)}: {format_shape(self.shape)} {self.dtype}>"

    def __bool__(self):
        raise TypeError(
            f"{describe(self)} is a symbolic graph node; it has no truth value. "
            "Use gd.where for data-dependent choices."
        )

    __hash__ = object.__hash__  # identity: hash-consing makes identity structural equality


def make_node(op, inputs=(), attrs=None):
    """Return the unique node for `(op, inputs, attrs)`, inferring shape and dtype on creation."""
    attrs = attrs or {}
    inputs = tuple(inputs)
    key = (op, inputs, attrs_key(attrs) if attrs else ())
    ref = _intern.get(key)
    node = None if ref is None else ref()
    if node is None:
        # Shape rules depend only on input shapes, dtypes and attrs: remember them (not for
        # leaves, whose attrs may hold large constants).
        signature = (op, tuple([(i.shape, i.dtype) for i in inputs]), key[2]) if inputs else None
        inferred = _inferred.get(signature)
        if inferred is None:
            shape, dtype = op.infer(inputs, attrs)
            inferred = (tuple(shape), np.dtype(dtype))
            if inputs:
                _inferred[signature] = inferred
        # A read-only view of a private copy: a node's attrs are part of its hash-consing key.
        node = Node(op, inputs, types.MappingProxyType(dict(attrs)), *inferred)
        _intern[key] = weakref.ref(node, _forget(key))
    return node


def attrs_key(attrs):
    """Attributes as a hashable key. The value's type is part of it: 2 == 2.0 == True in Python,
    yet `x ** 2` and `x ** 2.0` differ for integer x (int32 vs float64, as in NumPy)."""
    return tuple(sorted((k, v, type(v)) for k, v in attrs.items()))


def _forget(key):
    def callback(ref):
        if _intern.get(key) is ref:
            del _intern[key]
    return callback


_inferred = {}


class ConstValue:
    """A constant's array, hashed by dtype, shape and bytes (`1 == 1.0 == True`, `0.0 == -0.0`
    in Python, yet they are different constants)."""

    __slots__ = ("_key", "_text", "array")

    def __init__(self, array):
        array = np.array(array)  # a private copy: the graph must not see later mutation
        array.flags.writeable = False
        self.array = array
        self._key = (array.dtype.str, array.shape, array.tobytes())
        self._text = None

    def __eq__(self, other):
        return isinstance(other, ConstValue) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __lt__(self, other):  # attrs are sorted by key; values never compare in practice
        return self._key < other._key

    def __repr__(self):  # formatting NumPy numbers is slow, and messages and comments repeat it
        if self._text is None:
            self._text = self._format()
        return self._text

    def _format(self):
        if self.array.ndim == 0:
            return str(self.array)
        if self.array.size <= 6:
            return np.array2string(self.array, precision=4, separator=", ").replace("\n", "")
        return f"<{self.array.dtype} array {format_shape(self.array.shape)}>"


def format_shape(shape):
    return ("(" + ", ".join("?" if d is None else str(d) for d in shape)
            + ("," if len(shape) == 1 else "") + ")")


def describe(node, depth=1):
    """A short human description of a node for messages: its name, else `op(args)`."""
    from graphdl.ops.leaf import CONST  # leaf builds on this module

    if node.name is not None:
        return repr(node.name)
    if node.op is CONST:
        return repr(node.attrs["value"])
    if depth <= 0 or not node.inputs:
        return f"{node.op.name}#{node.id}"
    args = ", ".join(describe(i, depth - 1) for i in node.inputs)
    return f"{node.op.name}({args})"


def topological_order(outputs, known=()):
    """Nodes reachable from `outputs`, every node after its inputs.

    A node is always created after its inputs, so creation order (`id`) is a topological
    order: collect the reachable nodes without recursion, then sort. Nodes whose id is in
    `known` are treated as leaves: their inputs are not visited.
    """
    seen = {}
    stack = list(outputs)
    while stack:
        node = stack.pop()
        key = id(node)
        if key not in seen:
            seen[key] = node
            if key not in known:
                stack.extend(node.inputs)
    return sorted(seen.values(), key=_creation)


_creation = operator.attrgetter("id")


def consumers(order):
    """Map each node id to the list of nodes in `order` that use it (once per use)."""
    users = {id(n): [] for n in order}
    for node in order:
        for inp in node.inputs:
            users[id(inp)].append(node)
    return users


def graph_inputs(outputs):
    """The `input` placeholders the outputs depend on, in topological order."""
    from graphdl.ops.leaf import INPUT  # leaf builds on this module

    return [n for n in topological_order(outputs) if n.op is INPUT]


def substitute(outputs, mapping, rewrite=None):
    """Rebuild the graph of `outputs` with `mapping` (old node -> new node) applied.

    Each node is re-created bottom-up through `make_node`, so shapes and dtypes are inferred
    afresh (this is how a graph with unknown dimensions is specialized to concrete shapes).
    `rewrite(node) -> node | None`, when given, may replace each rebuilt node; it is applied
    until it returns None. Returns the new outputs and the full old-id -> new-node map.
    """
    new = {id(k): v for k, v in mapping.items()}
    for node in topological_order(outputs, known=new):
        if id(node) in new:
            continue
        inputs = tuple([new[id(i)] for i in node.inputs])
        built = node if inputs == node.inputs else make_node(node.op, inputs, node.attrs)
        if built is not node and built.name is None:
            built.name = node.name
        while rewrite is not None:
            replaced = rewrite(built)
            if replaced is None or replaced is built:
                break
            if replaced.name is None:
                replaced.name = built.name
            built = replaced
        new[id(node)] = built
    return [new[id(o)] for o in outputs], new


def to_networkx(outputs):
    """A networkx DiGraph view of the graph of `outputs` (edges point from input to user)."""
    import networkx as nx

    outputs = [outputs] if isinstance(outputs, Node) else list(outputs)
    g = nx.DiGraph()
    for node in topological_order(outputs):
        g.add_node(
            node.id, op=node.op.name, shape=node.shape, dtype=str(node.dtype), name=node.name,
            node=node,
        )
        for pos, inp in enumerate(node.inputs):
            g.add_edge(inp.id, node.id, position=pos)
    return g
