"""The CUDA renderer: a `lower.Program` -> one `.cu` module (every kernel `extern "C"`, no host
code) and a Python driver that uploads the constants once, then on each call allocates its
device buffers, launches the kernels in the lowering's order and hands back NumPy arrays.

Each fused elementwise region is one grid-stride kernel whose body is one line per graph node,
printed from the op's SymPy form (`printer.CudaPrinter`), broadcasting through baked strides.
Structured ops take their kernels from the kernel functions registered as their "cuda" facet
(`op.impls["cuda"]`, by `structured` and `conv`); an op with none runs its reference
implementation on the host (a round trip, with one warning). The driver runs unchanged on a
GPU (CuPy) and on the CPU (the emulator in `cpu/`): only the loader and the array module
differ.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import sympy

from graphdl import runtime
from graphdl.codegen.accumulate import ScatterUpdate
from graphdl.codegen.compiled import Generated
from graphdl.codegen.cuda_backend.kernels import (
    C_TYPES,
    THREADS,
    blocks,
    ctype,
    special_float,
)
from graphdl.codegen.cuda_backend.printer import DEVICE_FUNCTIONS, CudaPrinter
from graphdl.codegen.cuda_backend.structured import scatter_update
from graphdl.codegen.lower import Expand, Ref, SharedWork
from graphdl.codegen.naming import Namer, comment
from graphdl.codegen.python_module import (
    CAST_INPUT,
    Constants,
    _check,
    _reference,
    reference_call,
)
from graphdl.errors import GraphError
from graphdl.ir import describe
from graphdl.ops import leaf
from graphdl.ops.elementwise import promote


def render(program, *, debug, device, outputs_on_device=False, title="graphdl program"):
    """The kernels and driver running `program` on `device` ("gpu" or "cpu"), as `Generated`.
    `debug`: the program has one statement per node, each result read back and checked for its
    declared shape and dtype and for NaN/Inf. `outputs_on_device`: the driver returns device
    arrays, not NumPy arrays."""
    module = CudaModule(program, title, debug, outputs_on_device, device)
    cu, driver = module.render()
    env = {"_DEVICE": _cpu() if device == "cpu" else _gpu(), **module.constants.env()}
    return Generated(cu, driver, program.kernels, env, {".cu": cu, **module.constants.files()},
                     comment="//")


def _cpu():
    """The emulator's loader (graphdl's, which builds with g++) and NumPy arrays as device
    memory, allocated poisoned (a value no kernel wrote reads as NaN); copies are done when
    made. Emitted into the driver too, hence its own imports."""
    import numpy

    from graphdl.codegen.cuda_backend.cpu.loader import empty, load

    return load, numpy, empty, lambda: None


def _gpu():
    """CuPy's loader (NVRTC), CuPy arrays, and a wait for the GPU's pending work (emitted into
    the driver too)."""
    import cupy

    return (lambda source: cupy.RawModule(code=source, options=("-std=c++17",)), cupy,
            cupy.empty, cupy.cuda.Device().synchronize)


class CudaModule:
    def __init__(self, program, title, debug, on_device, device):
        self.program, self.title, self.debug, self.on_device = program, title, debug, on_device
        self.device = device  # where the saved driver runs when run alone
        self.namer = Namer()
        self.kernel_names = Namer()
        self.sources, self.body = [], []
        self.setup = []  # once per specialization: constants (read-only)
        # Once per call: buffers and scratch. A call shares no memory it writes with another
        # call, so calls from several threads (or CUDA streams) are independent.
        self.allocations = []
        self.launched = set()  # names of the kernels the driver launches
        self.buffers = {}  # node id -> driver variable holding its device array
        self.constants = Constants()
        self.uses_reference = False  # an op without a kernel runs `_reference` on the host
        self.calls = set()  # graphdl.runtime functions the driver's own lines call

    def render(self):
        low = self.program
        params = [self.namer(n.name) for n in low.inputs]
        for n, p in zip(low.inputs, params):
            self.buffers[id(n)] = f"d_{p}"
            self.body.append(f"    d_{p} = _xp.asarray({_fed(n, p)}, order=\"C\")")  # 0-d stays 0-d
        for c in low.constants:
            self._constant(c)
        for s in low.statements:
            if not isinstance(s, SharedWork):  # each member computes its own
                self._statement(s)
        returns = [self._output(k, o.node) for k, o in enumerate(low.outputs)]
        self._updates(low.updates)  # after the outputs are read: they hold call-time values
        self.body.append(f"    return ({''.join(r + ', ' for r in returns)})")
        cu = self._cu()
        return cu, self._driver(params, cu)

    # ------------------------------------------------------------------ statements
    def _statement(self, s):
        node = s.node
        hint = node.name or node.op.name
        if s.buffer is not None:
            self.buffers[id(node)] = self.buffers[id(s.buffer)]
        else:
            self.buffers[id(node)] = self._buffer(hint, node)
        value = s.value.value if isinstance(s.value, Expand) else s.value
        _refuse_untyped(node, _nodes(value))
        if node.op.kind == "elementwise":
            self._elementwise(node, value, hint)
        else:
            self._structured(node, value, hint)
        if self.debug:  # each statement's result, read back: declared shape and dtype, finite
            self.body.append(f"    _check(_host({self.buffers[id(node)]}), "
                             f"{describe(node, 2)!r}, {node.shape}, numpy.{node.dtype.name})")

    def _buffer(self, hint, node):
        name = self.namer(f"b_{hint}")
        self.allocations.append(f"    {name} = _empty({node.shape}, numpy.{node.dtype.name})")
        return name

    def _structured(self, node, value, hint):
        if "cuda" not in node.op.impls:
            self._on_host(node, value)
            return
        name = self.kernel_names(f"k_{hint}")
        kernels = node.op.impls["cuda"](node, name)
        out = self.buffers[id(node)]
        note = f"  # node {node.id}: {comment(describe(node, 2))}"
        if kernels.driver:
            inputs = [self._device_value(a.node) for a in value.args]
            self.calls.update(kernels.calls)
            self.body.append(f"    {out}[...] = {kernels.driver.format(*inputs)}{note}")
            return
        self.sources.append(f"// node {node.id}: {comment(describe(node, 2))}\n{kernels.source}")
        if kernels.zero_output:
            self.body.append(f"    {out}.fill(0){note}")
        scratch = []
        for count, dtype in kernels.scratch:
            scratch.append(self.namer(f"s_{hint}"))
            self.allocations.append(
                f"    {scratch[-1]} = _xp.zeros({count}, dtype=numpy.{dtype})")
        inputs = [self._device_value(a.node) for a in value.args]
        for launch in kernels.launches:
            if 0 in launch.grid:  # nothing to compute (an empty array): CUDA refuses such grids
                continue
            args = ", ".join(_arg(a, inputs, out, scratch) for a in launch.args)
            self._launch(launch.kernel, launch.grid, launch.block, args, note)
        check = kernels.check
        if check is not None:  # an index check: the runtime's message names the node
            self.body.append(f"    if int(_host({scratch[check.scratch]})[0]): _check_index("
                             f"_host({out}), {check.high}, {check.negative}, {check.what!r})")

    def _on_host(self, node, value):
        """The node's reference implementation on host copies of its inputs, its result copied
        into the node's device buffer: slow, never wrong."""
        inputs = [f"_host({self._device_value(a.node)})" for a in value.args]
        call = reference_call(node, inputs, "CUDA", "a host round trip")
        self.uses_reference = True
        self.body.append(f"    {self.buffers[id(node)]}[...] = _xp.asarray({call})  "
                         f"# node {node.id}: {comment(describe(node, 2))} (reference, on the host)")

    def _elementwise(self, node, value, hint):
        """One grid-stride kernel for the fused region `value` computing node's elements."""
        name = self.kernel_names(f"k_{hint}")
        refs, lines, env = [], [], {}

        def emit(v):
            if isinstance(v, Ref):
                n = v.node
                if _scalar_const(n):
                    return _const_text(n)
                if id(n) not in env:
                    refs.append(n)
                    env[id(n)] = f"v{n.id}"
                    lines.append(f"const {ctype(n.dtype)} v{n.id} = a{len(refs) - 1}"
                                 f"[{_offset(n.shape, node.shape)}];  "
                                 f"// {comment(describe(n, 1))}")
                return env[id(n)]
            args = [emit(a) for a in v.args]
            env[id(v.node)] = f"v{v.node.id}"
            lines.append(f"const {ctype(v.node.dtype)} v{v.node.id} = "
                         f"{_formula(v.node, args)};  // node {v.node.id}: "
                         f"{comment(describe(v.node, 1))}")
            return env[id(v.node)]

        result = emit(value)
        params = [f"const {ctype(n.dtype)}* a{k}" for k, n in enumerate(refs)]
        params.append(f"{ctype(node.dtype)}* out")
        size = math.prod(node.shape)
        lines.append(f"out[i] = ({ctype(node.dtype)})({result});")
        note = f"node {node.id}: {comment(describe(node, 2))}"
        self.sources.append(f"// {note}\n{_grid_stride_kernel(name, params, size, lines)}")
        args = ", ".join([self.buffers[id(n)] for n in refs] + [self.buffers[id(node)]])
        if size:
            self._launch(name, (blocks(size),), (THREADS,), args, f"  # {note}")

    def _launch(self, kernel, grid, block, args, note=""):
        self.launched.add(kernel)
        self.body.append(f"    _k[{kernel!r}]({grid}, {block}, ({args},)){note}")

    def _device_value(self, node):
        """The device array holding node's value (a scalar constant is uploaded once)."""
        if id(node) not in self.buffers:
            self._constant(node)
        return self.buffers[id(node)]

    def _constant(self, c):
        array = c.attrs["value"].array
        name = self.namer("c_const")
        self.setup.append(
            f"    {name} = _xp.asarray({self.constants.text(name, array)}, order=\"C\")")
        self.buffers[id(c)] = name

    # ------------------------------------------------------------------ outputs and updates
    def _output(self, k, node):
        """Output k, a copy of its own on the host (or on the device where asked), read now:
        before the updates write, which may write into the very array it is (an input)."""
        if _scalar_const(node):
            array = f"numpy.array({_host_literal(node)})"
            return f"_xp.asarray({array})" if self.on_device else array
        buffer, name = self.buffers[id(node)], self.namer(f"out{k}")
        copy = f"_xp.array({buffer})" if self.on_device else f"_host({buffer})"
        self.body.append(f"    {name} = {copy}")
        return name

    def _updates(self, updates):
        """All new values into buffers no write changes first (a source the lowering marks
        `copy` is copied), then every write: one simultaneous assignment. Updates by take's
        gradient go last, straight into the target's rows."""
        staged, scattered = [], [u for u in updates if isinstance(u, ScatterUpdate)]
        for u in updates:
            target = u.target
            if isinstance(u, ScatterUpdate):
                continue
            if u.subtract:
                _refuse_untyped(target, [target, u.source])
                buf = self._buffer(f"new_{target.name}", target)
                kernel = self.kernel_names(f"k_update_{target.name}")
                size = math.prod(target.shape)
                t = ctype(target.dtype)
                source = (_const_text(u.source) if _scalar_const(u.source)
                          else f"b[{_offset(u.source.shape, target.shape)}]")
                self.sources.append(_grid_stride_kernel(
                    kernel, [f"const {t}* a", f"const {t}* b", f"{t}* out"], size,
                    [f"out[i] = a[i] - ({t})({source});"]))
                b = self.buffers.get(id(u.source), self.buffers[id(target)])
                if size:
                    self._launch(kernel, (blocks(size),), (THREADS,),
                                 f"{self.buffers[id(target)]}, {b}, {buf}")
            elif _scalar_const(u.source):
                buf = f"numpy.array({_host_literal(u.source)})"
            elif u.copy:
                buf = self.namer(f"new_{target.name}")
                self.body.append(f"    {buf} = _xp.array({self.buffers[id(u.source)]})")
            else:
                buf = self.buffers[id(u.source)]
            staged.append((target, buf))
        for u in scattered:
            self._scatter_update(u)
            staged.append((u.target, self.buffers[id(u.target)]))
        for target, buf in staged:  # the caller's array is the driver's parameter
            self.body.append(f"    _store({self.buffers[id(target)].removeprefix('d_')}, {buf})")

    def _scatter_update(self, update):
        """`target -= scale * Σ scatter_add(g, indices)` by atomics into the device copy of
        the target (the caller's array itself where it is a C-ordered GPU array)."""
        _refuse_untyped(update.source, [update.target, *update.operands])
        if update.scale is None:
            scale = self.namer("c_one")
            self.setup.append(f"    {scale} = _xp.ones((), numpy.{update.target.dtype.name})")
        else:
            scale = self._device_value(update.scale)
        note = f"  # node {update.source.id}: {comment(describe(update.source, 2))}"
        for indices, g in update.terms:
            name = self.kernel_names(f"k_update_{update.target.name}")
            source, count = scatter_update(update, indices, g, name)
            self.sources.append(f"// node {update.source.id}: "
                                f"{comment(describe(update.source, 2))}\n{source}")
            if count:
                args = (f"{self._device_value(g)}, {self._device_value(indices)}, {scale}, "
                        f"{self.buffers[id(update.target)]}")
                self._launch(name, (blocks(count),), (THREADS,), args, note)

    # ------------------------------------------------------------------ assembly
    def _cu(self):
        head = f"// {comment(self.title)}: generated by graphdl (no includes: NVRTC compiles it)\n"
        return head + DEVICE_FUNCTIONS + "\n" + "\n".join(self.sources)

    def _driver(self, params, cu):
        kernels = sorted(self.launched)
        doc = (f'"""{comment(self.title)}: the driver of its CUDA kernels, generated by graphdl.'
               f'\n\n{_RUNS_ON[self.device]}\n"""')
        lines = [doc, "import numpy", "", *self.constants.preamble(), "",
                 f"INPUTS = {tuple(n.name for n in self.program.inputs)!r}", "",
                 "CU = r'''" + cu + "'''", "", _HELPERS, "",
                 inspect.getsource(runtime._check_index), inspect.getsource(_check), CAST_INPUT,
                 *[inspect.getsource(_reference)] * self.uses_reference,
                 *[inspect.getsource(f) for f in sorted(self.calls, key=lambda f: f.__name__)],
                 "def build(_load, _xp, _empty, _wait):", "    _module = _load(CU)",
                 f"    _k = {{name: _module.get_function(name) for name in {kernels!r}}}"]
        lines += [*self.setup, "    _wait()  # uploads done: a call on any CUDA stream reads them"]
        lines += ["", f"    def run({', '.join(params)}):"]
        lines += ["    " + line for line in self.allocations + self.body]
        lines += ["", "    return run", "", "", inspect.getsource(_cpu), "",
                  inspect.getsource(_gpu),
                  f"# graphdl passes a device in; run alone: device={self.device!r}",
                  f'run = build(*globals().get("_DEVICE") or _{self.device}())']
        return "\n".join(lines) + "\n"


# What the saved driver's docstring says about where it runs (the device it was compiled for).
_RUNS_ON = {
    "cpu": 'Compiled with device="cpu": run alone, it runs the kernels on the CPU through\n'
           "graphdl's emulator of CUDA (graphdl and g++ needed, no GPU, no CuPy).\n"
           "`build(*_gpu())` runs them on an NVIDIA GPU through CuPy instead.",
    "gpu": "Run alone, it runs the kernels on an NVIDIA GPU through CuPy. `build(*_cpu())`\n"
           "runs them on the CPU through graphdl's emulator of CUDA instead (graphdl and g++).",
}


_HELPERS = '''def _host(array):
    """A NumPy array of the caller's own (CuPy arrays are copied to the host)."""
    return array.get() if hasattr(array, "get") else numpy.array(array)


def _store(target, value):
    """An update written into the caller's array where it lives: a GPU array on the GPU (no
    trip through the host), a NumPy array from the host; nothing to do where the update
    was made in the caller's array itself."""
    if value is target:
        return
    if hasattr(target, "__cuda_array_interface__"):
        import cupy

        cupy.copyto(target, cupy.asarray(value))
    else:
        numpy.copyto(target, _host(value))
'''


def _fed(node, param):
    """The driver's text for input `param` of `node`'s declared dtype: a GPU array as it is
    (`fn` has checked its dtype), anything else cast on the host as `fn` casts it (a kernel
    would read float64 memory as float32)."""
    return (f"{param} if hasattr({param}, '__cuda_array_interface__') else "
            f"_cast_input(numpy.asarray({param}), numpy.{node.dtype.name}, {node.name!r})")


def _grid_stride_kernel(name, params, size, lines):
    """The source of a kernel whose threads run `lines` for every element i < size."""
    body = "\n".join(f"        {line}" for line in lines)
    return (f'extern "C" __global__ void {name}({", ".join(params)}) {{\n'
            f"    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;"
            f" i < {size}LL; i += (long long)blockDim.x * gridDim.x) {{\n{body}\n    }}\n}}\n")


def _nodes(value):
    """The nodes a statement's value reads or computes (fused formulas included)."""
    yield value.node
    for arg in getattr(value, "args", ()):
        yield from _nodes(arg)


def _refuse_untyped(node, nodes):
    """Refuse, naming `node`, a statement over a dtype with no CUDA C type (float16: NVRTC
    compiles without cuda_fp16.h, so a kernel over __half would compile only in the
    emulator)."""
    for n in nodes:
        if n.dtype.name not in C_TYPES:
            raise GraphError(f"the CUDA backend has no {n.dtype.name} kernel for "
                             f"{describe(node, 2)} ({node.op.name}): {n.dtype.name} has no CUDA "
                             f"type here; cast it to float32 first")


def _arg(spec, inputs, out, scratch):
    kind = spec[0]
    if kind == "in":
        return inputs[spec[1]]
    if kind == "out":
        return out
    return scratch[spec[1]]


def _scalar_const(node):
    return node.op is leaf.CONST and node.ndim == 0


def _const_text(node):
    value = node.attrs["value"].array.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not np.isfinite(value):  # by bits: NVRTC has no NAN
        return special_float(value, node.dtype)
    return f"(({ctype(node.dtype)}){value!r})"


def _host_literal(node):
    array = node.attrs["value"].array
    return f"{array.item()!r}, dtype=numpy.{array.dtype.name}"


def _offset(shape, out_shape):
    """The flat index into a contiguous array of `shape` that broadcasting reads for output
    element `i` (row-major, shapes right-aligned, size-1 axes repeated)."""
    if tuple(shape) == tuple(out_shape):
        return "i"
    if math.prod(shape) == 1:
        return "0"
    lead = len(out_shape) - len(shape)
    terms, stride = [], 1
    for axis in reversed(range(len(shape))):
        size = shape[axis]
        if size != 1:
            inner = math.prod(out_shape[lead + axis + 1:])
            index = f"(i / {inner}LL)" if inner != 1 else "i"
            terms.append(f"({index} % {size}LL)" + (f" * {stride}LL" if stride != 1 else ""))
        stride *= size
    return " + ".join(reversed(terms))


def _formula(node, args):
    """The node's SymPy form printed in its compute precision over its argument variables
    (arguments of another dtype are converted first: int / int divides in float64). Each
    argument position is a symbol of its own, even where two read one node: over one symbol
    SymPy would turn `a - a` into 0 and `a / a` into 1, which inf and NaN do not give."""
    compute = node.dtype if node.dtype.kind == "f" else promote(node.inputs, node.attrs)
    slots = sympy.symbols(f"a0:{len(args)}")
    names = {s: a if i.dtype == compute else f"(({ctype(compute)})({a}))"
             for s, a, i in zip(slots, args, node.inputs)}
    return CudaPrinter(compute, names).doprint(node.op.sym(*slots, **node.attrs))
