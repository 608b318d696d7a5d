"""The NumPy renderer: a `lower.Program` -> the source of one standalone Python module whose
`run(<inputs>)` returns the outputs, in order, and which needs only NumPy. Every decision
(fusion, buffers, copies, the order of writes) is the lowering's; this module spells it."""

from __future__ import annotations

import math
import re

import numpy as np

from graphdl.codegen.accumulate import ProductUpdate, ScatterUpdate
from graphdl.codegen.compiled import Generated
from graphdl.codegen.lower import Apply, Expand, Ref, SharedWork, natural_shape
from graphdl.codegen.naming import Namer, comment
from graphdl.codegen.numpy_backend.elementwise import (
    ATOM,
    UNARY,
    Expr,
    call,
    elementwise_template,
    literals_keep_dtype,
)
from graphdl.codegen.numpy_backend.helpers import HELPER_NEEDS, HELPERS
from graphdl.codegen.numpy_backend.op_code import IN_PLACE, SHARED, contracted, contraction
from graphdl.codegen.python_module import CAST_INPUT, Constants, reference_call
from graphdl.ir import describe
from graphdl.ops import leaf


def render(program, *, debug, device="cpu", title="graphdl program"):
    """The module running `program` (its statements, outputs, updates), as `Generated`.
    `debug`: the program has one statement per node, and each result is checked for its
    declared shape and dtype and for NaN/Inf. `device`: "cpu", NumPy's only one."""
    module = NumpyModule(program, debug, title)
    source = module.source()
    return Generated(source, source, program.kernels, module.constants.env(),
                     module.constants.files())


class NumpyModule:
    def __init__(self, program, debug, title):
        self.program, self.debug, self.title = program, debug, title
        self.namer = Namer()
        self.params = [self.namer(n.name) for n in program.inputs]
        self.names = {id(n): p for n, p in zip(program.inputs, self.params)}
        self.body, self.consts, self.helpers = [], [], set()
        self.constants = Constants()
        self.large = set()  # names of temporaries worth freeing once dead (FREED_BYTES or more)
        self.reading, self.reads = set(), []  # names the pending line reads; each body line's

    def source(self):
        low = self.program
        for c in low.constants:
            self.names[id(c)] = self.namer(f"const{len(self.consts)}")
            name = self.names[id(c)]
            array = c.attrs["value"].array
            text = self.constants.text(name, array)
            note = f"  # {array.dtype.name} {array.shape}" if name in self.constants.large else ""
            self.consts.append(f"{name} = {text}{note}")
        for s in low.statements:
            self._shared(s) if isinstance(s, SharedWork) else self._statement(s)
        computed = len(self.body)
        copies = {}  # node id -> its first copy: update sources may read it too
        returns = [self._copy(o.node, copies) if o.copy else self._ref(o.node)
                   for o in low.outputs]
        writes = [self._accumulate(u) if isinstance(u, ProductUpdate | ScatterUpdate) else
                  self._write(u, copies.get(id(u.source)) or self._copy(u.source, copies)
                              if u.copy else self._ref(u.source)) for u in low.updates]
        self.body += writes  # after every read of the old values
        self.body.append(f"    return ({''.join(r + ', ' for r in returns)})")
        self._free_dead(computed, set().union(self.reading, *self.reads[computed:]))
        return self._assemble()

    def _free_dead(self, computed, kept):
        """`del` each large temporary after the statement that reads it last (values the
        outputs and updates read are `kept`): the step's peak memory is what is alive at once,
        and a name holds its array until the function returns."""
        last = {}
        for k, names in enumerate(self.reads[:computed]):
            last.update(dict.fromkeys(names & self.large - kept, k))
        dead = {}
        for name, k in last.items():
            dead.setdefault(k, []).append(name)
        body = []
        for k, line in enumerate(self.body):
            body.append(line)
            if k in dead:
                body.append(f"    del {', '.join(sorted(dead[k]))}  # read no more")
        self.body = body

    def _write(self, update, source):
        target = self.names[id(update.target)]
        return (f"    numpy.subtract({target}, {source}, out={target})" if update.subtract
                else f"    numpy.copyto({target}, {source})")

    def _accumulate(self, update):
        """`target -= scale * (a @ b)` as one BLAS product adding into the target, or
        `target -= scale * scatter-adds` into the addressed rows only."""
        target = self.names[id(update.target)]
        scale = "1.0" if update.scale is None else self._ref(update.scale)
        if isinstance(update, ProductUpdate):
            call = f"_gemm_update({target}, {scale}, {self._ref(update.a)}, {self._ref(update.b)})"
            how = "a product added into"
        else:
            terms = "".join(f"({', '.join(self._ref(n) for n in term)}), "
                            for term in update.terms)
            call = f"_scatter_update({target}, {scale}, {update.axis}, ({terms}))"
            how = "rows updated in"
        self.helpers.update(h for h in _CALLED.findall(call) if h in HELPERS)
        return (f"    {call}  # node {update.source.id}: {comment(describe(update.source, 2))}, "
                f"{how} {comment(target)}")

    def _shared(self, work):
        make, hint = SHARED[work.work]
        text = make(work.node, self._expr(Ref(work.node.inputs[work.position])))
        self.names[id(work)] = self.namer(hint)
        self._temporary(self.names[id(work)], work.node.inputs[work.position])
        ids = ", ".join(str(n.id) for n in work.members)
        self._line(f"{self.names[id(work)]} = {text}", f"nodes {ids}: {work.work}, computed once")

    def _statement(self, s):
        node = s.node
        note = f"node {node.id}: {describe(node, 2)}"
        if s.buffer is not None:  # the last use of a temporary of node's shape: overwrite it
            weak = weak_literals(node, s.value.args)
            args = [self._expr(a, weak).text for a in s.value.args]
            out = self.names[id(s.buffer)]
            self._line(IN_PLACE[node.op](args, out), note)
            self.names[id(node)] = out
            return
        route = None if s.shared is None else self.names[id(s.shared)]
        self.reading.update([route] if route else [])
        text = self._expr(s.value, route=route).text
        if self.debug:
            text = (f"_check({text}, {describe(node, 2)!r}, {node.shape}, "
                    f"numpy.{node.dtype.name})")
        self.names[id(node)] = self.namer(node.name or node.op.name)
        self._temporary(self.names[id(node)], node)
        self._line(f"{self.names[id(node)]} = {text}", note)

    def _temporary(self, name, like):
        if math.prod(like.shape) * like.dtype.itemsize >= FREED_BYTES:
            self.large.add(name)

    def _expr(self, value, weak=False, route=None):
        """The code of an expression tree; `weak`: whether a scalar constant it is may be
        spelled as a Python number (`weak_literals`)."""
        if isinstance(value, Ref):
            node = value.node
            if _is_literal(value):
                return literal(node, weak)
            self.reading.add(self.names[id(node)])
            return Expr(self.names[id(node)], ATOM)
        node = value.node
        if isinstance(value, Expand):
            inner = self._expr(value.value, value.fill).text  # numpy.full's dtype= types it
            if value.fill:
                return call(f"numpy.full({node.shape}, {inner}, dtype=numpy.{node.dtype.name})")
            return call(f"numpy.broadcast_to({inner}, {node.shape})")
        product = value.args[0] if value.args and isinstance(value.args[0], Apply) else None
        if product is not None and (subscripts := contraction(
                node, product.node, [natural_shape(a) for a in product.args])):
            weak = weak_literals(product.node, product.args)
            factors = [self._expr(a, weak) for a in product.args]
            return contracted(node, subscripts, *factors)
        weak = weak_literals(node, value.args)
        args = [self._expr(a, weak) for a in value.args]
        if node.op.kind == "elementwise":
            expr = elementwise_template(node).fill(args)
        elif "numpy" in node.op.impls:
            shared = {} if route is None else {"route": route}
            expr = node.op.impls["numpy"](node, *args, **shared)
        else:
            expr = call(reference_call(node, [a.text for a in args], "NumPy", "calls its `impl`"))
        return expr

    def _ref(self, node):
        return self._expr(Ref(node)).text

    def _copy(self, node, copies):
        name = self.namer(f"{node.name or node.op.name}_copy")
        self._line(f"{name} = numpy.array({self._ref(node)})",
                   f"node {node.id}: a copy of its own for the caller")
        copies.setdefault(id(node), name)
        return name

    def _line(self, code, note):
        self.helpers.update(h for h in _CALLED.findall(code) if h in HELPERS)  # emitted if called
        self.body.append(f"    {code}  # {comment(note)}")
        self.reads.append(self.reading)
        self.reading = set()

    def _assemble(self):
        helpers = self.helpers | {n for h in self.helpers for n in HELPER_NEEDS[h]}
        needs = ("only NumPy, and graphdl.distributed where several workers run it"
                 if "_allreduce" in helpers else "only NumPy")
        lines = [f'"""{comment(self.title)}: generated by graphdl. Needs {needs}."""']
        lines += ["import numpy", ""]
        lines += self.constants.preamble() + self.consts + [""] * bool(self.consts)
        lines += [HELPERS[h] for h in sorted(helpers)]
        bind = self._bind_inputs()
        lines += [CAST_INPUT] * bool(bind)
        lines.append(f"INPUTS = {tuple(n.name for n in self.program.inputs)!r}")
        lines.append("")
        lines.append(f"def run({', '.join(self.params)}):")
        lines += bind
        lines += self.body
        return "\n".join(lines) + "\n"

    def _bind_inputs(self):
        """Each input as an array of its declared dtype, by `fn`'s own cast (`_cast_input`):
        Python numbers and float64 into float32 round, a finite number overflowing to inf and
        an integer outside its input's range are refused by name, floats into an integer input
        by NumPy ('same_kind'), an array of that dtype passes as it is. Updated inputs stay as
        given: a converted copy would not receive the update."""
        targets = {id(u.target) for u in self.program.updates}
        return [f"    {p} = _cast_input(numpy.asarray({p}), numpy.{n.dtype.name}, {n.name!r})"
                f"  # node {n.id}: input {comment(n.name)!r} as {n.dtype}"
                for n, p in zip(self.program.inputs, self.params) if id(n) not in targets]


# ---------------------------------------------------------------- scalar literals
def _scalar_text(array):
    if array.dtype == np.float32 and np.isfinite(array):
        return str(array)  # the shortest text that reads back as the same float32
    value = array.item()
    if isinstance(value, float) and not np.isfinite(value):
        return "numpy.nan" if np.isnan(value) else ("numpy.inf" if value > 0 else "-numpy.inf")
    return repr(value)


def _is_literal(value):
    return (isinstance(value, Ref) and value.node.op is leaf.CONST and value.node.ndim == 0)


def weak_literals(node, args):
    """Whether the scalar constants among `node`'s arguments (`args`, as lowered) may be spelled
    as Python numbers: where NumPy's weak typing of Python numbers still gives the node's dtype.
    Decided on the arguments as printed, not on the node's inputs: fusion prints a broadcast
    of a constant (or of a broadcast of one) as the bare number, so a float32 `where(c, -1/N,
    0.0)` reading two broadcast constants would be two Python floats, computed in float64."""
    if node.op.kind != "elementwise":
        return False
    literals = tuple(k for k, a in enumerate(args) if _is_literal(a))
    return bool(literals) and literals_keep_dtype(node, literals)


def literal(const, weak):
    """A scalar constant as a Python literal where `weak`, else as a typed NumPy scalar."""
    array = const.attrs["value"].array
    text = _scalar_text(array)
    if not weak:
        return call(f"numpy.{array.dtype.name}({text})")
    return Expr(text, UNARY if text.startswith("-") else ATOM)


FREED_BYTES = 1 << 16  # smaller temporaries are not worth a `del` line

_CALLED = re.compile(r"(?<![\w.])(_\w+)\(")  # helper names are `_`-led, called unqualified
