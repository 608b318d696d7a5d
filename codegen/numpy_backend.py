"""NumPy backend: a scheduled graph -> the source of one standalone Python module.

Elementwise code is printed by SymPy (`codegen.printers`) once per (op, attributes) pattern and
filled in by string substitution; structured ops have a template each in `STRUCTURED`. The
module needs only NumPy: `run(<inputs>)` returns the outputs, in order.
"""

from __future__ import annotations

import ast
import base64
import builtins
import keyword
import re
from dataclasses import dataclass, replace

import numpy as np
import sympy
from graphdl.codegen import conv_kernels
from graphdl.codegen.numpy_helpers import HELPER_NEEDS, HELPERS
from graphdl.codegen.printers import GraphdlNumPyPrinter
from graphdl.codegen.schedule import schedule

from graphdl.ir import describe
from graphdl.ops.elementwise import broadcast_dims

ATOM, POWER, UNARY, MUL, ADD, CMP, ANY = 100, 90, 80, 70, 60, 40, 0
_BINOP = {ast.Add: ADD, ast.Sub: ADD, ast.Mult: MUL, ast.Div: MUL, ast.MatMult: MUL,
          ast.FloorDiv: MUL, ast.Mod: MUL, ast.Pow: POWER}


@dataclass(frozen=True)
class Expr:
    text: str
    prec: int
    shape: tuple = ()  # the shape the text evaluates to (fusion may leave broadcasts to NumPy)
    weak: bool = False  # only Python literals: NumPy would not give it the IR's dtype

    def at(self, required):
        return self.text if self.prec >= required else f"({self.text})"


# ---------------------------------------------------------------- elementwise templates
@dataclass(frozen=True)
class Template:
    """Printed code with argument slots: pieces are text or (argument index, required prec)."""

    pieces: tuple
    prec: int
    passthrough: bool  # the whole template is one argument (stop_gradient)
    uses: tuple  # how often each argument appears in the text

    def fill(self, args):
        if self.passthrough:
            return args[self.pieces[0][0]]
        read = [a for a, n in zip(args, self.uses) if n]  # `x ** 0` prints as `1`: reads none
        return Expr("".join(p if isinstance(p, str) else args[p[0]].at(p[1])
                            for p in self.pieces), self.prec,
                    broadcast_dims([a.shape for a in read]) if read else (),
                    all(a.weak for a in read))


def _precedence(node):
    if isinstance(node, ast.BinOp):
        return _BINOP[type(node.op)]
    if isinstance(node, ast.UnaryOp):
        return UNARY
    if isinstance(node, ast.Compare):
        return CMP
    if isinstance(node, (ast.Call, ast.Name, ast.Attribute, ast.Subscript)):
        return ATOM
    if isinstance(node, ast.Constant):
        return UNARY if isinstance(node.value, (int, float)) and node.value < 0 else ATOM
    return ANY


def _slots(tree):
    """(column, argument index, required precedence) for every `_aN_` in the template."""
    found, stack = [], [(tree, ANY)]
    while stack:
        node, required = stack.pop()
        if isinstance(node, ast.Name) and re.fullmatch(r"_a\d+_", node.id):
            found.append((node.col_offset, len(node.id), int(node.id[2:-1]), required))
        elif isinstance(node, ast.BinOp):
            p = _BINOP[type(node.op)]
            left, right = (p + 1, UNARY) if p == POWER else (p, p + 1)
            stack += [(node.left, left), (node.right, right)]
        elif isinstance(node, ast.UnaryOp):
            stack.append((node.operand, UNARY))
        elif isinstance(node, ast.Compare):
            stack += [(c, CMP + 1) for c in [node.left, *node.comparators]]
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            stack.append((node.value, ATOM))
        else:
            stack += [(c, ANY) for c in ast.iter_child_nodes(node)]
    return sorted(found)


def make_template(text):
    tree = ast.parse(text, mode="eval").body
    pieces, pos = [], 0
    for col, length, index, required in _slots(tree):
        pieces += [text[pos:col], (index, required)]
        pos = col + length
    pieces.append(text[pos:])
    pieces = tuple(p for p in pieces if p != "")
    slots = [p[0] for p in pieces if not isinstance(p, str)]
    uses = tuple(slots.count(i) for i in range(max(slots, default=-1) + 1))
    return Template(pieces, _precedence(tree),
                    len(pieces) == 1 and not isinstance(pieces[0], str), uses)


_printer = GraphdlNumPyPrinter()
_templates = {}


def elementwise_template(node):
    """The op's SymPy form printed once per (op, attributes, input dtypes) and reused for every
    node. Where NumPy would compute the printed text in another dtype than the node declares
    (a user formula `Piecewise((1, x > 0), (0, True))` prints as int64 `numpy.where`), the
    text converts its result."""
    # The value's type is part of the key, as in the IR: `x ** 2` and `x ** 2.0` differ.
    attrs = tuple(sorted((k, v, type(v)) for k, v in node.attrs.items()))
    key = (node.op, attrs, tuple(i.dtype for i in node.inputs))
    if key not in _templates:
        slots = [sympy.Symbol(f"_a{i}_") for i in range(len(node.inputs))]
        text = _printer.doprint(node.op.sym(*slots, **node.attrs))
        if _printed_dtype(text, node.inputs) != node.dtype:
            text = f"numpy.asarray({text}, dtype=numpy.{node.dtype.name})"
        _templates[key] = make_template(text)
    return _templates[key]


def _printed_dtype(text, inputs):
    """The dtype NumPy gives `text` for arrays of the inputs' dtypes. NumPy
    2's dtypes depend on dtypes alone, never on values, so ones stand in for the inputs."""
    if _printed_dtype.namespace is None:
        _printed_dtype.namespace = {"numpy": np}
        for source in HELPERS.values():
            exec(source, _printed_dtype.namespace)  # noqa: S102 - our own helpers' source
    probe = {f"_a{k}_": np.ones(1, i.dtype) for k, i in enumerate(inputs)}
    with np.errstate(all="ignore"):
        return np.result_type(eval(text, _printed_dtype.namespace, probe))


_printed_dtype.namespace = None


# ---------------------------------------------------------------- structured templates
def _call(text):
    return Expr(text, ATOM)


def _axes(axes):
    return "None" if axes is None else repr(tuple(axes))


def _index(index):
    parts = []
    for start, stop, step in index:
        text = f"{'' if start is None else start}:{'' if stop is None else stop}"
        parts.append(text + ("" if step is None else f":{step}"))
    return ", ".join(parts)


def _sum_to(n, a):
    shape, target = n.inputs[0].shape, n.shape
    lead = len(shape) - len(target)
    inner = tuple(lead + i for i, t in enumerate(target) if t == 1 and shape[lead + i] != 1)
    if not inner:
        return a if lead == 0 else _call(f"numpy.sum({a.text}, axis={_axes(range(lead))})")
    axes = tuple(range(lead)) + inner
    return _call(f"numpy.sum({a.text}, axis={axes}, keepdims=True).reshape({n.shape})")


STRUCTURED = {
    "matmul": lambda n, a, b: Expr(f"{a.at(MUL)} @ {b.at(MUL + 1)}", MUL),
    "sum": lambda n, a: _call(
        f"numpy.sum({a.text}, axis={_axes(n.attrs['axes'])}, keepdims={n.attrs['keepdims']})"),
    "max": lambda n, a: _call(
        f"numpy.max({a.text}, axis={_axes(n.attrs['axes'])}, keepdims={n.attrs['keepdims']})"),
    "min": lambda n, a: _call(
        f"numpy.min({a.text}, axis={_axes(n.attrs['axes'])}, keepdims={n.attrs['keepdims']})"),
    "reshape": lambda n, a, *like: _call(f"{a.at(ATOM)}.reshape({n.shape})"),
    "expand_dims": lambda n, a: _call(f"{a.at(ATOM)}.reshape({n.shape})"),
    "squeeze": lambda n, a: _call(f"{a.at(ATOM)}.reshape({n.shape})"),
    "transpose": lambda n, a: _call(
        f"{a.at(ATOM)}.T" if n.attrs["axes"] == tuple(range(n.ndim))[::-1]
        else f"{a.at(ATOM)}.transpose({n.attrs['axes']})"),
    "broadcast_to": lambda n, a, *like: _call(f"numpy.broadcast_to({a.text}, {n.shape})"),
    "sum_to": lambda n, a, like: _sum_to(n, a),
    "slice": lambda n, a: _call(f"{a.at(ATOM)}[{_index(n.attrs['index'])}]"),
    "unslice": lambda n, g, like: _call(
        f"_unslice({g.text}, {n.shape}, numpy.{n.dtype.name}, numpy.s_[{_index(n.attrs['index'])}])"),
    "concatenate": lambda n, *xs: _call(
        f"numpy.concatenate(({', '.join(x.text for x in xs)},), axis={n.attrs['axis']})"),
    "take": lambda n, a, i: _call(f"numpy.take({a.text}, {i.text}, axis={n.attrs['axis']})"),
    "check_index": lambda n, i, like: _call(
        f"_check_index({i.text}, {n.inputs[1].shape[n.attrs['axis']]}, {n.attrs['negative']}, "
        f"{n.attrs['what']!r})"),
    "scatter_add": lambda n, g, i, like: _call(
        f"_scatter_add({g.text}, {i.text}, {n.shape}, numpy.{n.dtype.name}, {n.attrs['axis']})"),
    "zeros_like": lambda n, x: _call(f"numpy.zeros({n.shape}, dtype=numpy.{n.dtype.name})"),
    "size": lambda n, x: _call(
        f"numpy.{n.dtype.name}({int(np.prod([n.inputs[0].shape[i] for i in n.attrs['axes']]))})"),
}



# ---------------------------------------------------------------- convolution and pooling
# Templates spell out each kernel's steps (windows -> columns -> one matrix product), so every
# helper a statement needs is named in it; the helpers live in `codegen.conv_kernels`.
def _geometry(n, kernel, dilation=None):
    a = n.attrs
    dilation = a["dilation"] if dilation is None else dilation
    return f"{tuple(kernel)}, {a['stride']}, {a['padding']}, {dilation}"


def _im2col(n, x, kernel):
    return f"_im2col({x.text}, {_geometry(n, kernel)})"


def _pool_windows(n, x_text, out, fill):
    dilation = n.attrs.get("dilation", (1, 1))
    return (f"_pool_windows({x_text}, {_geometry(n, n.attrs['kernel'], dilation)}, "
            f"{tuple(out)}, {fill})")


def _max_route(n, x):
    """The call that finds the window maxima and arg-maxes of x for a max-pool family node;
    the same text for a forward node and its gradients, so one statement can serve them all."""
    pooled = n.shape[2:] if n.op.name != "max_pool2d_grad" else n.inputs[0].shape[2:]
    fill = conv_kernels.lowest_text(n.inputs[-1].dtype)  # the pooled input is the last
    return f"_max_pool2d_route({_pool_windows(n, x.text, pooled, fill)})"


def _avg_divisor(n, shape, out):
    a = n.attrs
    return (f"_avg_divisor({tuple(shape[2:])}, {a['kernel']}, {a['stride']}, {a['padding']}, "
            f"{tuple(out)}, {a['count_include_pad']})")


STRUCTURED.update({
    "conv2d": lambda n, x, w: _call(
        f"_conv2d({_im2col(n, x, n.inputs[1].shape[2:])}, {w.text}, {n.attrs['groups']}, "
        f"{n.shape})"),
    "conv2d_weight_grad": lambda n, x, g, like: _call(
        f"_conv2d_weight_grad({_im2col(n, x, n.shape[2:])}, {g.text}, {n.attrs['groups']}, "
        f"{n.shape})"),
    "conv2d_input_grad": lambda n, g, w, like: _call(
        f"_col2im(_conv2d_cols({g.text}, {w.text}, {n.attrs['groups']}), {n.shape}, "
        f"{_geometry(n, n.inputs[1].shape[2:])})"),
    "max_pool2d": lambda n, x, route=None: _call(
        f"{route}['max']" if route
        else "_max_pool2d("
             f"{_pool_windows(n, x.text, n.shape[2:], conv_kernels.lowest_text(n.dtype))})"),
    "max_pool2d_grad": lambda n, g, x, route=None: _call(
        f"_max_pool2d_grad({g.text}, {route or _max_route(n, x)})"),
    "max_pool2d_select": lambda n, u, x, route=None: _call(
        f"_max_pool2d_select({u.text}, {route or _max_route(n, x)})"),
    "avg_pool2d": lambda n, x: _call(
        f"_avg_pool2d({_pool_windows(n, x.text, n.shape[2:], 0)}, "
        f"{_avg_divisor(n, n.inputs[0].shape, n.shape[2:])})"),
    "avg_pool2d_grad": lambda n, g, like: _call(
        f"_avg_pool2d_grad({g.text}, "
        f"{_pool_windows(n, f'numpy.zeros({n.shape}, dtype=numpy.{n.dtype.name})', n.inputs[0].shape[2:], 0)}, "
        f"{_avg_divisor(n, n.shape, n.inputs[0].shape[2:])})"),
})


def reads_once(consumer, position):
    if consumer.op.name == "relu":  # its input gets a statement, so that both can run in place
        return False                # (`numpy.add(y, b, out=y)`, `numpy.maximum(y, 0, out=y)`)
    if consumer.op.kind == "elementwise" and consumer.op.sym is not None:
        uses = elementwise_template(consumer).uses
        return position < len(uses) and uses[position] == 1
    return True


# ---------------------------------------------------------------- constants and names
def _scalar_text(array):
    if array.dtype == np.float32 and np.isfinite(array):
        return str(array)  # the shortest text that reads back as the same float32
    value = array.item()
    if isinstance(value, float) and not np.isfinite(value):
        return "numpy.nan" if np.isnan(value) else ("numpy.inf" if value > 0 else "-numpy.inf")
    return repr(value)


def literal(const, consumer):
    """A scalar constant as a Python literal where NumPy's weak typing gives the IR's dtype,
    else as a typed NumPy scalar."""
    array = const.attrs["value"].array
    text = _scalar_text(array)
    weak_ok = consumer is not None and any(
        i.dtype == array.dtype and i.op.name != "const" for i in consumer.inputs)
    if not weak_ok:
        return _call(f"numpy.{array.dtype.name}({text})")
    return Expr(text, UNARY if text.startswith("-") else ATOM, (), weak=True)


def array_literal(array):
    if array.size == 0:  # `tolist()` of a (0, 3) array is `[]`, which reads back as (0,)
        return f"numpy.empty({array.shape}, dtype=numpy.{array.dtype.name})"
    readable = array.dtype.kind != "f" or np.all(np.isfinite(array))  # repr(inf) is no literal
    if array.size <= 16 and readable:
        return f"numpy.array({array.tolist()!r}, dtype=numpy.{array.dtype.name})"
    data = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()
    return (f"numpy.frombuffer(base64.b64decode({data!r}), dtype=numpy.{array.dtype.name})"
            f".reshape({array.shape})")


RESERVED = set(dir(builtins)) | {"numpy", "base64", "run", "INPUTS", "OUTPUTS"}


class Namer:
    """Python identifiers from user names: only [A-Za-z0-9_], never a keyword or builtin,
    never a clash. No user string reaches the source except through this or repr()."""

    def __init__(self):
        self.taken = set(RESERVED)
        self.counts = {}

    def __call__(self, hint):
        base = re.sub(r"[^0-9A-Za-z_]", "_", hint or "")[:40] or "t"
        if base[0].isdigit() or base.startswith("_"):
            base = "v" + base
        if keyword.iskeyword(base):
            base += "_"
        name, k = base, self.counts.get(base, 1)
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.counts[base] = k
        self.taken.add(name)
        return name


def comment(text):
    """Text safe inside a `#` comment: one line, printable characters only."""
    text = text[:90]
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


# ---------------------------------------------------------------- the module
def generate(outputs, inputs, updates=(), debug=False, title="graphdl program"):
    """Source of a module whose `run(*inputs)` returns `outputs` and applies `updates`
    ((input node, new value node) pairs): one simultaneous assignment, computed from the values
    at call time, written into the caller's arrays after everything else."""
    writes = [_write(target, value) for target, value in updates]
    roots = list(outputs) + [value for _, value, _ in writes]
    plan = schedule(roots, reads_once, fuse=not debug)
    kernels, fused, uses = plan.kernels, plan.fused, plan.uses
    fresh = set()  # ids of statements that made a new array (not a view, not a scalar)
    namer = Namer()
    params = [namer(n.name) for n in inputs]
    exprs = {id(n): Expr(p, ATOM, n.shape) for n, p in zip(inputs, params)}
    consts, body, helpers = [], [], set()
    shared, hoisted = _shared_work(kernels), {}  # node id -> text of the shared call; text -> name

    def arg(inp, consumer):
        while consumer is not None and _implicit_broadcast(inp, consumer, fused):
            inp = inp.inputs[0]
        if inp.op.name == "const":
            array = inp.attrs["value"].array
            if array.ndim == 0:
                return literal(inp, consumer)
            if id(inp) not in exprs:
                name = namer(f"const{len(consts)}")
                consts.append(f"{name} = {array_literal(array)}")
                exprs[id(inp)] = Expr(name, ATOM, array.shape)
        if consumer is None or consumer.op.kind != "elementwise":  # a fused region ends here
            return _as_declared(inp, exprs[id(inp)])
        return exprs[id(inp)]

    for node in plan.order:
        if node.op.kind == "leaf":
            continue
        args = [arg(i, node) for i in node.inputs]
        if id(node) in shared:  # one statement computes what a group of nodes reads
            ids, make = shared[id(node)]
            text = make(node, args)
            if text not in hoisted:
                hoisted[text] = namer(SHARED_NAMES[node.op.name])
                helpers.update(h for h in HELPERS if h + "(" in text)
                body.append(f"    {hoisted[text]} = {text}  # nodes {ids}: one arg-max search")
            expr = emit(node, args, hoisted[text])
        else:
            expr = emit(node, args)
        helpers.update(h for h in HELPERS if h + "(" in expr.text)
        if id(node) in fused:
            exprs[id(node)] = expr
            continue
        note = comment(f"node {node.id}: {describe(node, 2)}")
        buffer = None if debug else _reusable(node, args, fresh, uses)
        if buffer is not None:  # the last use of a temporary of the same shape: overwrite it
            call = (expr.text[:-1] if node.op.name == "relu"  # numpy.maximum(a, 0)
                    else f"{UFUNCS[node.op.name]}({', '.join(a.text for a in args)}")
            body.append(f"    {call}, out={buffer.text})  # {note}")
            exprs[id(node)] = buffer
            fresh.add(id(node))
            continue
        declared = _as_declared(node, expr)
        name = namer(node.name or node.op.name)
        text = (f"_check({declared.text}, {describe(node, 2)!r}, {node.shape}, "
                f"numpy.{node.dtype.name})" if debug else declared.text)
        body.append(f"    {name} = {text}  # {note}")
        exprs[id(node)] = Expr(name, ATOM, node.shape)
        if _fresh(node) and declared.shape == expr.shape:
            fresh.add(id(node))
    if debug:
        helpers.add("_check")
    helpers.update(*(HELPER_NEEDS[h] for h in list(helpers)))

    # Outputs and what the updates read are taken before the first write, so that updates are
    # one simultaneous assignment and outputs hold the values at call time. The caller gets
    # arrays of its own: views, inputs, constants and repeated outputs are copied.
    copies = {}  # node id -> its first copy (updates only read it: it may serve them too)

    def copied(node):
        name = namer(f"{node.name or node.op.name}_copy")
        body.append(f"    {name} = numpy.array({arg(node, None).text})  # node {node.id}: a copy "
                    f"of its own for the caller")
        copies.setdefault(id(node), name)
        return name

    returns = []
    for k, o in enumerate(outputs):
        keep = id(o) in fresh and not any(o is p for p in outputs[:k])
        returns.append(arg(o, None).text if keep else copied(o))
    sources = [(target, arg(value, None).text if id(value) in fresh or value.op.name == "const"
                else copies.get(id(value)) or copied(value), form)
               for target, value, form in writes]
    for target, source, form in sources:
        body.append(form.format(target=exprs[id(target)].text, value=source))
    body.append(f"    return ({''.join(r + ', ' for r in returns)})")
    lines = [f'"""{comment(title)}: generated by graphdl. Needs only NumPy."""']
    lines += ["import base64"] * any("base64" in c for c in consts) + ["import numpy", ""]
    lines += consts + [""] * bool(consts)
    lines += [HELPERS[h] for h in sorted(helpers)]
    lines.append(f"INPUTS = {tuple(n.name for n in inputs)!r}")
    lines.append("")
    lines.append(f"def run({', '.join(params)}):")
    lines += body
    return "\n".join(lines) + "\n", kernels


UFUNCS = {"add": "numpy.add", "sub": "numpy.subtract", "mul": "numpy.multiply",
          "div": "numpy.true_divide", "neg": "numpy.negative", "exp": "numpy.exp",
          "log": "numpy.log", "sqrt": "numpy.sqrt", "tanh": "numpy.tanh",
          "maximum": "numpy.maximum", "minimum": "numpy.minimum",
          "where": "_where",  # not a ufunc, but it takes `out=` and prints as this call
          "relu": "numpy.maximum"}  # printed as numpy.maximum(a, 0)


FRESH_STRUCTURED = {"matmul", "sum", "max", "min", "concatenate", "take", "unslice",
                    "scatter_add", "zeros_like",
                    # views of arrays their helpers allocate: safe to overwrite
                    "conv2d", "conv2d_input_grad", "conv2d_weight_grad", "max_pool2d",
                    "max_pool2d_grad", "max_pool2d_select", "avg_pool2d", "avg_pool2d_grad"}


def _fresh(node):
    """Whether the statement for `node` makes a new array (not a view, not a NumPy scalar)."""
    if node.op.kind == "elementwise":  # a cast may return its input; a passthrough does
        return node.op.name != "cast" and not elementwise_template(node).passthrough
    return node.op.name in FRESH_STRUCTURED


def _reusable(node, args, temps, uses):
    """The argument whose array this node may overwrite (same ufunc as its printed form, so the
    values are identical): a temporary used only here, of the result's shape and dtype."""
    if node.op.name not in UFUNCS or node.shape == () or any(a.prec < ATOM for a in args):
        return None
    for inp, a in zip(node.inputs, args):
        if (id(inp) in temps and uses[id(inp)] == 1 and inp.shape == node.shape
                and inp.dtype == node.dtype and a.text.isidentifier()):
            return a
    return None


def _implicit_broadcast(inp, consumer, fused):
    """Whether a fused `broadcast_to` may be left to its elementwise consumer's own
    broadcasting (`_as_declared` restores the statement's full shape where it must)."""
    return (inp.op.name == "broadcast_to" and id(inp) in fused
            and consumer.op.kind == "elementwise")


SHARED_NAMES = {"max_pool2d": "pool_route", "max_pool2d_grad": "pool_route",
                "max_pool2d_select": "pool_route"}


def _shared_work(kernels):
    """Statements that several kernels can share: node id -> a function of (node, args) giving
    the shared call's text. A forward max-pool and its gradient (or select) nodes on the same
    input with the same attributes share one `_max_pool2d_route`: the arg-max found while
    pooling is not searched for again."""
    groups = {}
    for k in kernels:
        n = k.node
        if n.op.name in SHARED_NAMES:
            x = n.inputs[0] if n.op.name == "max_pool2d" else n.inputs[1]
            groups.setdefault((id(x), tuple(sorted(n.attrs.items()))), []).append(n)
    shared = {}
    for members in groups.values():
        if len(members) > 1:
            ids = ", ".join(str(n.id) for n in members)
            for n in members:
                position = 0 if n.op.name == "max_pool2d" else 1
                shared[id(n)] = ids, lambda n, args, p=position: _max_route(n, args[p])
    return shared


def emit(node, args, route=None):
    if node.op.kind == "elementwise" and route is None:
        if node.op.sym is None:
            raise NotImplementedError(f"op {node.op.name} has no SymPy form to print")
        return elementwise_template(node).fill(args)
    if node.op.name not in STRUCTURED:
        raise NotImplementedError(f"the NumPy backend has no template for op {node.op.name!r}")
    extra = {} if route is None else {"route": route}
    return replace(STRUCTURED[node.op.name](node, *args, **extra), shape=node.shape)


def _as_declared(node, expr):
    """A statement's value with its node's declared shape and dtype. Fusion leaves broadcasts
    to the elementwise ops (which commute with them), so a region may compute fewer elements
    than its root declares; a formula may read no argument at all (`x ** 0` prints as `1`)."""
    if expr.weak:
        return Expr(f"numpy.full({node.shape}, {expr.text}, dtype=numpy.{node.dtype.name})",
                    ATOM, node.shape)
    if expr.shape != node.shape:
        return Expr(f"numpy.broadcast_to({expr.text}, {node.shape})", ATOM, node.shape)
    return expr


def _write(target, value):
    """How an update reaches the caller's array: `W -= X` in place when it has that form."""
    if value.op.name == "sub" and value.inputs[0] is target:
        return target, value.inputs[1], "    numpy.subtract({target}, {value}, out={target})"
    return target, value, "    numpy.copyto({target}, {value})"
