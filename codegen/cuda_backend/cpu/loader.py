"""Run CUDA C kernel source on the CPU, with NumPy arrays as device memory.

The source that nvcc or NVRTC compiles for a GPU is compiled here by g++ against `cuda_cpu.h`,
a header that defines CUDA's built-ins for the CPU (see its opening comment for the execution
model), and launched through an object shaped like CuPy's `RawModule`:

    module = load(source)                          # like cupy.RawModule(code=source)
    kernel = module.get_function("fused_relu")     # an `extern "C" __global__` kernel
    kernel((blocks,), (256,), (x, y, np.int32(n)), shared_mem=0)

Arguments are checked against the kernel's parameter types as g++ sees them: an array for each
pointer parameter, C-contiguous and of exactly the pointee's dtype (writable unless the pointee
is `const`); an exact NumPy scalar type for each value parameter (`np.int32(n)` for `int`,
never a Python int, whose width CuPy would guess). A wrong argument raises TypeError before the
kernel runs. Template kernels are launched by the instances named in `name_expressions`.

Checks that turn kernel bugs into errors or NaNs instead of plausible numbers:
- each array is copied into a buffer with `guard_bytes` of guard words on both sides (NaN in
  float16, float32 and float64): reads past either end see NaN, and a write there raises
  IndexError after the launch;
- shared memory is filled with 0xFF bytes (NaN, or -1 as an integer) before each block, and
  `empty()` makes device arrays filled the same way;
- `order` runs the threads of a block (and the blocks of the grid) "forward", "reverse" or in
  a seeded "random" permutation ("random:7"): run a kernel in two orders and compare, and a
  missing `__syncthreads` shows as different results;
- barriers in divergent code, threads that return while others wait at `__syncthreads`, and
  `__trap()` raise KernelError.

A built module is cached under `$GRAPHDL_CUDA_CPU_CACHE` (default
`$XDG_CACHE_HOME/graphdl/cuda_cpu`, else `~/.cache/graphdl/cuda_cpu`), keyed by a hash of the
source, the build options and the header, beside the header's precompiled form (built once);
`$GRAPHDL_CUDA_CPU_ORDER` sets the default order.
Blocks run one after another on the calling thread, and the GIL is held during a launch.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = Path(__file__).with_name("cuda_cpu.h")
INCLUDE_DIR = Path(__file__).with_name("include")  # empty cuda.h, cuda_fp16.h, ... for #include
CACHE_ENV = "GRAPHDL_CUDA_CPU_CACHE"
ORDER_ENV = "GRAPHDL_CUDA_CPU_ORDER"
ORDERS = ("forward", "reverse", "random")
FLAGS = ("-std=c++17", "-O1", "-fPIC", "-shared", "-fvisibility=hidden", "-fno-gnu-unique",
         "-fno-strict-aliasing", "-w")
DEFAULT_SHARED_LIMIT = 48 * 1024  # CUDA's dynamic shared memory per block without an opt-in

# GCC's spelling of a parameter type -> the NumPy dtype an argument must have.
DTYPES = {
    "float": np.float32, "double": np.float64, "_Float16": np.float16, "bool": np.bool_,
    "signed char": np.int8, "char": np.int8, "unsigned char": np.uint8,
    "short int": np.int16, "short unsigned int": np.uint16,
    "int": np.int32, "unsigned int": np.uint32,
    "long int": np.int64, "long long int": np.int64,
    "long unsigned int": np.uint64, "long long unsigned int": np.uint64,
}


class BuildError(RuntimeError):
    """g++ is missing or rejected the kernel source."""


class KernelError(RuntimeError):
    """A kernel failed while running on the CPU (divergent barrier, __trap(), ...)."""


def load(source, *, order=None, options=(), name_expressions=(), guard_bytes=1024):
    """Build `source` (cached) and return its `CpuRawModule`; see the module docstring."""
    return CpuRawModule(source, options=options, name_expressions=name_expressions, order=order,
                        guard_bytes=guard_bytes)


def empty(shape, dtype):
    """A device array for the CPU: every byte 0xFF, so an element no kernel wrote reads as NaN
    (or -1), as shared memory does."""
    array = np.empty(shape, dtype)
    _bytes(array)[...] = 0xFF
    return array


def cache_dir() -> Path:
    """Where built modules are kept."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "graphdl" / "cuda_cpu"


def parse_order(order):
    """'forward' | 'reverse' | 'random' | 'random:<seed>' (None: $GRAPHDL_CUDA_CPU_ORDER, else
    forward) -> (mode, seed) as the launch function takes them."""
    spec = order if order is not None else os.environ.get(ORDER_ENV, "forward")
    name, colon, seed = str(spec).partition(":")
    if name not in ORDERS or (colon and (name != "random" or not seed.isdigit())):
        where = "" if order is not None else f" (from ${ORDER_ENV})"
        raise ValueError(f"thread order {spec!r}{where}: expected 'forward', 'reverse', "
                         "'random' or 'random:<seed>'")
    return ORDERS.index(name), int(seed or 0)


# ---------------------------------------------------------------- reading the source

_LITERAL_OR_COMMENT = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|//[^\n]*|/\*.*?\*/',
                                 re.DOTALL)
_BOUNDS = r"(?:__launch_bounds__\s*\([^)]*\)\s*)?"
_KERNEL = re.compile(r"\b__global__\s+" + _BOUNDS + r"void\s+" + _BOUNDS + r"(\w+)\s*\(")
_SHARED = re.compile(r"\b(extern\s+)?__shared__\b")
_DYNAMIC_SHARED = re.compile(
    r"\s*(?:__align__\s*\(\s*\d+\s*\)\s*)?([\w:\s]+?)\s+(\w+)\s*\[\s*\]\s*")
_DECLARATOR = re.compile(r"(\w+)\s*(?:\[[^\]]*\]\s*)*$")
_NAMED_PARAM = re.compile(r".*[\s*&](\w+)\s*(?:\[[^\]]*\]\s*)*$", re.DOTALL)


def _blank(source):
    """The source with comments and literals replaced by spaces (newlines kept), so that
    positions in it are positions in the source."""
    return _LITERAL_OR_COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), source)


def _split_top_level(text):
    """`text` split at commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        depth += (c in "(<[") - (c in ")>]")
        if c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [p.strip() for p in parts + [text[start:]] if p.strip()]


def _closing_paren(text, start):
    """Index of the ')' matching the '(' just before `start`."""
    depth = 1
    for i in range(start, len(text)):
        depth += (text[i] == "(") - (text[i] == ")")
        if depth == 0:
            return i
    raise ValueError("unbalanced parentheses in a kernel's parameter list")


@dataclass(frozen=True)
class KernelDecl:
    name: str
    template: bool
    param_names: tuple  # "" where a parameter is unnamed


def find_kernels(source):
    """Every `__global__` function declared in `source`, by name (an overloaded name keeps
    its first declaration)."""
    text = _blank(source)
    kernels = {}
    for m in _KERNEL.finditer(text):
        # the declaration's own text: from the last statement or block boundary (rfind, not a
        # split of everything before: a module has thousands of kernels)
        before = text[max(text.rfind(c, 0, m.start()) for c in ";{}") + 1:m.start()]
        params = text[m.end():_closing_paren(text, m.end())]
        names = tuple((n.group(1) if (n := _NAMED_PARAM.match(p)) else "")
                      for p in _split_top_level(params))
        kernels.setdefault(m.group(1), KernelDecl(m.group(1), bool(re.search(r"\btemplate\b",
                                                                             before)), names))
    return kernels


def _rewrite_shared(source):
    """`__shared__` declarations made C++ (see cuda_cpu.h): each static one is followed by
    GDL_SHARED_FIRST_USE of its variables, and `extern __shared__ T name[];` becomes a pointer
    into the dynamic shared memory. The blanked text gives positions; line numbers are kept."""
    text, pieces, last = _blank(source), [], 0
    depth, counted = 0, 0  # brace depth at `counted`, moved on incrementally (linear time)
    for m in _SHARED.finditer(text):
        end = text.index(";", m.end())
        declaration = text[m.end():end]
        depth += text.count("{", counted, m.start()) - text.count("}", counted, m.start())
        counted = m.start()
        if depth == 0:
            raise ValueError(f"__shared__{declaration} at file scope: the CPU launcher needs "
                             "shared memory declared inside the function that uses it")
        if m.group(1):
            dynamic = _DYNAMIC_SHARED.fullmatch(declaration)
            if not dynamic:
                raise ValueError(f"extern __shared__{declaration}: expected "
                                 "`extern __shared__ T name[];`")
            pieces += [source[last:m.start()],
                       f"GDL_DYN_SMEM({dynamic.group(1).strip()}, {dynamic.group(2)});"]
        else:
            names = [_DECLARATOR.search(part).group(1) for part in _split_top_level(declaration)]
            pieces += [source[last:end + 1],
                       "".join(f" GDL_SHARED_FIRST_USE({name})" for name in names)]
        last = end + 1
    return "".join(pieces) + source[last:]


def translate(source, name_expressions=(), kernels=None):
    """The C++ text g++ compiles: dynamic shared memory rewritten, then one launch entry per
    non-template kernel and per name expression. Returns (text, {kernel name: symbol}).
    `kernels`: `find_kernels(source)`, where the caller has it already."""
    kernels = find_kernels(source) if kernels is None else kernels
    symbols = {name: name for name, k in kernels.items() if not k.template}
    symbols.update({expr: f"gdl_expr_{i}" for i, expr in enumerate(name_expressions)})
    exports = "".join(f"\nGDL_CPU_EXPORT({sym}, {expr})" for expr, sym in symbols.items())
    return _rewrite_shared(source) + "\n" + exports + "\n", symbols


# ---------------------------------------------------------------- building


@functools.cache
def _build_inputs():
    """The bytes a build depends on besides the kernel source and the options."""
    files = [HEADER, *sorted(INCLUDE_DIR.iterdir())]
    return b"\0".join(f.name.encode() + f.read_bytes() for f in files) + " ".join(FLAGS).encode()


def build(text, options=()) -> Path:
    """The shared library of translated source `text`, from the cache or built by g++."""
    key = hashlib.sha256(b"\0".join([_build_inputs(), "\0".join(options).encode(),
                                     text.encode()])).hexdigest()[:32]
    directory = cache_dir()
    library = directory / f"{key}.so"
    if library.exists():
        return library
    compiler = shutil.which("g++")
    if compiler is None:
        raise BuildError("g++ was not found on PATH: running CUDA kernels on the CPU compiles "
                         "them with g++ (install it, e.g. `apt-get install g++`)")
    directory.mkdir(parents=True, exist_ok=True)
    source_file = library.with_suffix(".cu")
    _write_atomically(source_file, text.encode())
    # options may define macros the header reads (-DGDL_CPU_UCONTEXT): then the header is parsed
    header = _precompiled_header(compiler, directory) if not options else HEADER
    done = _compile([compiler, *FLAGS, "-I", str(INCLUDE_DIR), "-include", str(header), *options,
                     "-x", "c++", str(source_file)], library)
    if done.returncode:
        raise BuildError(f"g++ could not compile the kernel source ({source_file}):\n"
                         + done.stderr[-4000:])
    return library


@functools.cache
def _precompiled_header(compiler, directory) -> Path:
    """The header to include: a copy beside its precompiled form, which g++ loads instead of
    parsing the header again (0.4 s of the ~1 s build of a typical module). Built once per
    header, flags and compiler, in the cache; where g++ cannot make it, the header itself."""
    version = subprocess.run([compiler, "--version"], check=False, capture_output=True).stdout
    key = hashlib.sha256(_build_inputs() + version).hexdigest()[:16]
    copy = directory / f"header-{key}" / HEADER.name
    precompiled = copy.with_name(copy.name + ".gch")
    if not precompiled.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(copy, HEADER.read_bytes())
        done = _compile([compiler, *FLAGS, "-I", str(INCLUDE_DIR), "-x", "c++-header", str(copy)],
                        precompiled)
        if done.returncode:
            return HEADER
    return copy


def _compile(command, target):
    """Run g++ `command` with output `target`, which appears complete or not at all."""
    fd, partial = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    try:
        done = subprocess.run([*command, "-o", partial], check=False, capture_output=True,
                              text=True)
        if not done.returncode:
            os.replace(partial, target)
        return done
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _write_atomically(path, data):
    fd, partial = tempfile.mkstemp(dir=path.parent, suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(partial, path)


# ---------------------------------------------------------------- modules and kernels

_libraries: dict = {}  # path -> the loaded library (loaded once per process)


class CpuRawModule:
    """The compiled kernels of one source, shaped like `cupy.RawModule(code=..., options=...,
    name_expressions=...)`; `order` and `guard_bytes` are the CPU checks' settings."""

    def __init__(self, code, options=(), name_expressions=(), order=None, guard_bytes=1024):
        self.order = order
        parse_order(order)
        if guard_bytes < 0:
            raise ValueError(f"guard_bytes must be >= 0, got {guard_bytes}")
        self.guard_bytes = -(-guard_bytes // 64) * 64
        self.kernels = find_kernels(code)
        text, self._symbols = translate(code, tuple(name_expressions), self.kernels)
        self.path = build(text, tuple(options))
        if self.path not in _libraries:
            # PyDLL keeps the GIL through a launch: a library's scheduler serves one at a time.
            _libraries[self.path] = ctypes.PyDLL(str(self.path))
        self._lib = _libraries[self.path]
        self._lib.gdl_cpu_error.restype = ctypes.c_char_p

    def get_function(self, name):
        """The kernel `name`: an `extern "C"` kernel's name or one of the name expressions."""
        if name not in self._symbols:
            raise LookupError(f"no kernel {name!r} in this module; it has "
                              f"{sorted(self._symbols)} (a template kernel is launched through "
                              "an instance listed in name_expressions)")
        decl = self.kernels.get(name.split("<")[0].strip())
        return CpuKernel(self, name, self._symbols[name], decl.param_names if decl else ())


@dataclass(frozen=True)
class Param:
    ctype: str  # GCC's spelling, e.g. "const float*"
    name: str
    dtype: np.dtype
    pointer: bool
    const: bool

    def describe(self, index):
        named = f" {self.name!r}" if self.name else ""
        return f"argument {index}{named} ({self.ctype})"


def _param(ctype, name):
    pointer = ctype.endswith("*")
    base = ctype[:-1].strip() if pointer else ctype
    const = base.startswith("const ")
    base = base.removeprefix("const ").strip()
    if base not in DTYPES:
        raise TypeError(f"parameter {name or ctype!r} has type '{ctype}', which the CPU launcher "
                        f"cannot pass (supported: {', '.join(DTYPES)} and pointers to them)")
    return Param(ctype, name, np.dtype(DTYPES[base]), pointer, const)


class CpuKernel:
    """One kernel; call it like `cupy.RawKernel`: kernel(grid, block, args, shared_mem=0)."""

    def __init__(self, module, name, symbol, param_names):
        self.name = name
        self.max_dynamic_shared_size_bytes = DEFAULT_SHARED_LIMIT  # as CuPy's attribute
        self._module = module
        self._launch = getattr(module._lib, f"gdl_launch_{symbol}")
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
                                 ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                 ctypes.c_ulonglong]
        signature = getattr(module._lib, f"gdl_signature_{symbol}")
        signature.restype = ctypes.c_char_p
        types = _parameter_types(signature().decode())
        names = param_names if len(param_names) == len(types) else ("",) * len(types)
        self.params = tuple(_param(t, n) for t, n in zip(types, names))

    def __call__(self, grid, block, args, shared_mem=0, order=None):
        """Run the kernel; `order` overrides the module's thread order for this launch."""
        grid = _dims(grid, "grid", (2**31 - 1, 65535, 65535))
        block = _dims(block, "block", (1024, 1024, 64))
        if block[0] * block[1] * block[2] > 1024:
            raise ValueError(f"{self.name}: block {block} has more than 1024 threads")
        if grid[0] * grid[1] * grid[2] >= 2**32:
            raise ValueError(f"{self.name}: grid {grid} has too many blocks to run on the CPU")
        if not 0 <= shared_mem <= self.max_dynamic_shared_size_bytes:
            raise ValueError(f"{self.name}: shared_mem={shared_mem} bytes, the limit is "
                             f"{self.max_dynamic_shared_size_bytes} "
                             "(max_dynamic_shared_size_bytes)")
        mode, seed = parse_order(self._module.order if order is None else order)
        self._check_args(args)
        regions = _Regions(self.params, args, self._module.guard_bytes)
        values = [ctypes.c_void_p(regions.address(i)) if p.pointer
                  else ctypes.create_string_buffer(a.tobytes(), a.nbytes)
                  for i, (p, a) in enumerate(zip(self.params, args))]
        argv = (ctypes.c_void_p * max(1, len(values)))(*(ctypes.addressof(v) for v in values))
        failed = self._launch((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), shared_mem,
                              argv, mode, seed)
        if failed:
            raise KernelError(f"kernel {self.name}: {self._module._lib.gdl_cpu_error().decode()}")
        regions.finish(self.name, self.params)

    def _check_args(self, args):
        if len(args) != len(self.params):
            raise TypeError(f"kernel {self.name} takes {len(self.params)} arguments "
                            f"({', '.join(p.ctype for p in self.params)}), got {len(args)}")
        for i, (p, a) in enumerate(zip(self.params, args)):
            problem = _argument_problem(p, a)
            if problem:
                raise TypeError(f"kernel {self.name}, {p.describe(i)}: {problem}")


def _argument_problem(p, a):
    """Why `a` cannot be passed for parameter `p`, or None."""
    if p.pointer:
        if not isinstance(a, np.ndarray):
            return f"expected a NumPy array of {p.dtype}, got {type(a).__name__}"
        if a.dtype != p.dtype:
            return f"expected an array of {p.dtype}, got an array of {a.dtype}"
        if not a.flags.c_contiguous:
            return "the array is not C-contiguous"
        if not (p.const or a.flags.writeable):
            return "the array is read-only but the parameter is not const"
        return None
    if not isinstance(a, np.generic) or a.dtype != p.dtype:
        got = f"{type(a).__name__} {a.dtype}" if isinstance(a, np.generic) else type(a).__name__
        return f"expected a NumPy scalar np.{p.dtype.name}(...), got {got}"
    return None


def _parameter_types(pretty):
    """Parameter types from GCC's `... [with F = void (*)(const float*, int)]`."""
    start = pretty.index("(*)(") + 4
    return _split_top_level(pretty[start:_closing_paren(pretty, start)])


def _dims(value, what, limits):
    dims = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) and
                                          not isinstance(d, bool) for d in dims):
        raise TypeError(f"{what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    if not all(1 <= d <= limit for d, limit in zip(dims, limits)):
        raise ValueError(f"{what} {dims} is outside CUDA's limits {limits}")
    return dims


@dataclass
class _Copy:
    """One array's memory during a launch, and the guarded buffer that stands in for it."""

    array: np.ndarray
    arguments: list  # indices of the arguments that pass this memory
    written: bool = False  # some of them point to non-const
    buffer: np.ndarray | None = None
    offset: int = 0
    word: int = 0


class _Regions:
    """The arrays of one launch, each copied into a guarded buffer: 64-byte aligned, with guard
    words on both sides. Arguments that are the same memory share one copy, as on a GPU;
    arguments that overlap only in part are refused."""

    def __init__(self, params, args, guard):
        self.guard = guard
        self.copies = {}  # (address, nbytes) -> _Copy
        self.of_argument = {}  # argument index -> _Copy
        for i, (p, a) in enumerate(zip(params, args)):
            if p.pointer:
                copy = self.copies.setdefault((a.ctypes.data, a.nbytes), _Copy(a, []))
                copy.arguments.append(i)
                copy.written |= not p.const
                self.of_argument[i] = copy
        self._refuse_partial_overlap()
        if guard:
            for n, copy in enumerate(self.copies.values()):
                self._stage(copy, 0x7FF47F00 | (n & 0xFF))

    def _refuse_partial_overlap(self):
        spans = sorted((address, address + nbytes, copy.arguments)
                       for (address, nbytes), copy in self.copies.items() if nbytes)
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                raise ValueError(f"array arguments {first[0]} and {second[0]} overlap in part; "
                                 "pass the same array or disjoint arrays")

    def _stage(self, copy, word):
        # The word is a quiet NaN as float32, as both halves of a float64 and as both float16.
        nbytes = copy.array.nbytes
        copy.word = word
        copy.buffer = np.full(-(-(nbytes + 2 * self.guard + 64) // 4), word,
                              np.uint32).view(np.uint8)
        copy.offset = self.guard + (-(copy.buffer.ctypes.data + self.guard) % 64)
        copy.buffer[copy.offset:copy.offset + nbytes] = _bytes(copy.array)

    def address(self, i):
        copy = self.of_argument[i]
        return copy.array.ctypes.data if copy.buffer is None else \
            copy.buffer.ctypes.data + copy.offset

    def finish(self, kernel, params):
        """Raise on a write into a guard; copy written arrays back."""
        staged = [c for c in self.copies.values() if c.buffer is not None]
        for copy in staged:
            end = copy.offset + copy.array.nbytes
            if not (_is_pattern(copy.buffer[:copy.offset], copy.word, 0) and
                    _is_pattern(copy.buffer[end:], copy.word, end)):
                where = " / ".join(params[i].describe(i) for i in copy.arguments)
                raise IndexError(f"kernel {kernel} wrote out of bounds of {where}")
        for copy in staged:
            if copy.written:
                _bytes(copy.array)[...] = copy.buffer[copy.offset:copy.offset + copy.array.nbytes]


def _bytes(array):
    return array.reshape(-1).view(np.uint8)


def _is_pattern(piece, word, start):
    """Whether bytes `piece`, found at byte `start` of a buffer filled with the 32-bit `word`,
    still hold it."""
    phase = start % 4
    expected = np.full(-(-(len(piece) + phase) // 4), word, np.uint32).view(np.uint8)
    return np.array_equal(piece, expected[phase:phase + len(piece)])
