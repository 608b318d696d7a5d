"""einsum: Einstein summation in NumPy's and PyTorch's notation, lowered to the movement ops,
sums and matmul, so its gradient (of any order) and every backend come from theirs.

Subscripts are letters, one per axis, and '...' for the axes an operand has beyond them
(right-aligned and broadcast across operands, as other broadcasting). Without '->' the output
is '...' then the letters met once, in ASCII order (upper case first); with it, the letters
given, and the '...' axes are summed unless the output names them, as PyTorch's. A letter
repeated in one operand reads its diagonal; a size-1 axis broadcasts against the same letter's
larger size elsewhere.

The lowering, as numpy.einsum with optimize: each operand's diagonals are read and the letters
it alone has (and the output has not) summed; then, while several are left, the pair of the
smallest result is contracted by one batched matmul: letters both need later are the batch,
letters only they share are summed by the product, each side's own letters are its rows or
columns (merged into one axis where there are several).
"""

from __future__ import annotations

import math
import string

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd
from graphdl.ops.composite import _named
from graphdl.ops.matmul import MATMUL
from graphdl.ops.rearrange import diagonal

_ELLIPSIS = "..."
_UNKNOWN = 2 ** 40  # an unknown size, when comparing how large results are


def einsum(equation, *operands):
    """Einstein summation of the operands by `equation` (see the module's docstring); the
    operands may also come as one list, as PyTorch allows."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        (operands,) = operands
    if not isinstance(equation, str):
        raise GraphError(f"einsum: the equation must be a string, got {equation!r}")
    xs = leaf.lift_all(list(operands))
    terms, output = _parse(equation, len(xs))
    labels = [_labelled(x, term, k, equation) for k, (x, term) in enumerate(zip(xs, terms))]
    width = max([sum(lb.startswith(_ELLIPSIS) for lb in ls) for ls in labels], default=0)
    output = _output(output, labels, width, equation)
    sizes = _sizes(xs, labels, equation)
    ops = [_reduced(*_diagonals(x, ls, k, equation), labels, k, output)
           for k, (x, ls) in enumerate(zip(xs, labels))]
    while len(ops) > 1:
        i, j = min(((i, j) for i in range(len(ops)) for j in range(i + 1, len(ops))),
                   key=lambda p: _result_size(ops, *p, output, sizes))
        ops = [_contract(ops[i], ops[j], _needed(_without(ops, i, j), output)),
               *_without(ops, i, j)]
    x, ls = _summed(*ops[0], set(output))
    order = tuple(ls.index(lb) for lb in output)
    out = x if order == tuple(range(x.ndim)) else mv.TRANSPOSE(x, axes=order)
    return out if any(out is operand for operand in xs) else _named(out, "einsum")


def _parse(equation, count):
    """The equation's input terms and its output term (None where implicit)."""
    text = equation.replace(" ", "")
    if text.count("->") > 1:
        raise GraphError(f"einsum {equation!r}: more than one '->'")
    inputs, _, output = text.partition("->")
    terms = inputs.split(",")
    if len(terms) != count:
        raise GraphError(f"einsum {equation!r}: the equation has {len(terms)} operand terms, "
                         f"{count} operands were given")
    for term in terms + ([output] if "->" in text else []):
        rest = term.replace(_ELLIPSIS, "", 1)
        bad = [c for c in rest if c not in string.ascii_letters]
        if bad:
            raise GraphError(f"einsum {equation!r}: term {term!r} has {bad[0]!r}; subscripts "
                             f"are letters and at most one '...'")
    return terms, output if "->" in text else None


def _labelled(x, term, k, equation):
    """Operand k's label per axis: its letters, and '...0', '...1'... for the ellipsis axes,
    numbered from the last so that they align right across operands."""
    head, dots, tail = term.partition(_ELLIPSIS)
    extra = x.ndim - len(head) - len(tail)
    if extra < 0 or (extra and not dots):
        raise GraphError(f"einsum {equation!r}: operand {k}, {describe(x)} of shape "
                         f"{format_shape(x.shape)}, has {x.ndim} dimensions; its subscripts "
                         f"{term!r} name {len(head) + len(tail)}")
    return list(head) + [f"{_ELLIPSIS}{extra - 1 - a}" for a in range(extra)] + list(tail)


def _output(output, labels, width, equation):
    """The output's labels, given or implicit."""
    dots = [f"{_ELLIPSIS}{width - 1 - a}" for a in range(width)]
    letters = [lb for ls in labels for lb in ls if not lb.startswith(_ELLIPSIS)]
    if output is None:
        return dots + sorted(lb for lb in set(letters) if letters.count(lb) == 1)
    head, _, tail = output.partition(_ELLIPSIS)
    for c in head + tail:
        if c not in letters:
            raise GraphError(f"einsum {equation!r}: the output's {c!r} is in no operand")
        if (head + tail).count(c) > 1:
            raise GraphError(f"einsum {equation!r}: the output names {c!r} twice")
    return list(head) + (dots if _ELLIPSIS in output else []) + list(tail)


def _sizes(xs, labels, equation):
    """Each label's size: the one it has in every operand where it is not 1 (size 1
    broadcasts); 1 where it is 1 everywhere; None where unknown."""
    seen = {}  # label -> [(operand, size)]
    for k, (x, ls) in enumerate(zip(xs, labels)):
        for lb, d in zip(ls, x.shape):
            seen.setdefault(lb, []).append((k, d))
    sizes = {}
    for lb, uses in seen.items():
        big = [(k, d) for k, d in uses if d not in (None, 1)]
        # (a clash within one operand is its diagonal's, refused there)
        clash = next(((k, d) for k, d in big if d != big[0][1] and k != big[0][0]), None)
        if clash:
            (j, dj), (k, dk) = big[0], clash
            raise GraphError(f"einsum {equation!r}: {_say(lb)} has size {dj} in operand {j}, "
                             f"{describe(xs[j])}, and {dk} in operand {k}, {describe(xs[k])}")
        sizes[lb] = big[0][1] if big else None if any(d is None for _, d in uses) else 1
    return sizes


def _say(label):
    return "an ellipsis ('...') axis" if label.startswith(_ELLIPSIS) else f"subscript {label!r}"


def _diagonals(x, ls, k, equation):
    """x with each repeated label's diagonal read (as a last axis), and its labels."""
    ls = list(ls)
    for lb in list(dict.fromkeys(ls)):
        while ls.count(lb) > 1:
            a1 = ls.index(lb)
            a2 = ls.index(lb, a1 + 1)
            if x.shape[a1] != x.shape[a2]:
                raise GraphError(f"einsum {equation!r}: {_say(lb)} is repeated in operand {k}, "
                                 f"{describe(x)}, over axes of sizes {x.shape[a1]} and "
                                 f"{x.shape[a2]}; a diagonal needs them equal")
            x = diagonal(x, axis1=a1, axis2=a2)
            ls = [c for a, c in enumerate(ls) if a not in (a1, a2)] + [lb]
    return x, ls


def _reduced(x, ls, labels, k, output):
    """x summed over the labels no other operand and not the output has."""
    others = {lb for j, other in enumerate(labels) if j != k for lb in other}
    return _summed(x, ls, others | set(output))


def _summed(x, ls, keep):
    """(x summed over its labels not in `keep`, the labels left)."""
    drop = tuple(a for a, lb in enumerate(ls) if lb not in keep)
    if not drop:
        return x, ls
    return rd.sum(x, axis=drop), [lb for lb in ls if lb in keep]


def _without(ops, i, j):
    return ops[:i] + ops[i + 1:j] + ops[j + 1:]


def _needed(ops, output):
    """The labels the output or any of `ops` has."""
    return set(output) | {lb for _, ls in ops for lb in ls}


def _result_size(ops, i, j, output, sizes):
    """How many elements contracting ops i and j would give (unknown sizes count as large)."""
    later = _needed(_without(ops, i, j), output)
    kept = {lb for lb in ops[i][1] + ops[j][1] if lb in later}
    return math.prod(_UNKNOWN if sizes[lb] is None else sizes[lb] for lb in kept)


def _contract(a, b, later):
    """The operands a and b, each (node, labels), contracted into one: one batched matmul of
    a as (batch, rows, summed) by b as (batch, summed, columns), the batch broadcast by it."""
    (x, la), (y, lb) = _summed(*a, later | set(b[1])), _summed(*b, later | set(a[1]))
    batch = [c for c in la if c in lb and c in later]
    summed = [c for c in la if c in lb and c not in later]
    rows = [c for c in la if c not in lb]
    cols = [c for c in lb if c not in la]
    x, y = _moved(x, la, batch + rows + summed), _moved(y, lb, batch + summed + cols)
    x, y = _broadcast_summed(x, y, len(batch), len(rows), len(summed))
    nb = len(batch)
    xb, xr, xs = x.shape[:nb], x.shape[nb:nb + len(rows)], x.shape[nb + len(rows):]
    yb, yc = y.shape[:nb], y.shape[nb + len(summed):]
    out = MATMUL(_merged(x, xb, [xr, xs]), _merged(y, yb, [xs, yc]))
    shape = tuple(p if q in (1, None) else q for p, q in zip(xb, yb)) + xr + yc
    return (out if out.shape == shape else mv.reshape(out, _reshapeable(shape))), \
        batch + rows + cols


def _moved(x, ls, order):
    axes = tuple(ls.index(c) for c in order)
    return x if axes == tuple(range(x.ndim)) else mv.TRANSPOSE(x, axes=axes)


def _broadcast_summed(x, y, nb, nr, ns):
    """x and y with each summed axis of size 1 on one side broadcast to the other's size
    (where their shapes are known)."""
    xs, ys = x.shape[nb + nr:], y.shape[nb:nb + ns]
    to_x = tuple(q if p == 1 and q is not None else p for p, q in zip(xs, ys))
    to_y = tuple(p if q == 1 and p is not None else q for p, q in zip(xs, ys))
    if to_x != xs and None not in x.shape:
        x = mv.broadcast_to(x, x.shape[:nb + nr] + to_x)
    if to_y != ys and None not in y.shape:
        y = mv.broadcast_to(y, y.shape[:nb] + to_y + y.shape[nb + ns:])
    return x, y


def _merged(x, batch, groups):
    """x, whose axes are `batch` and the two groups, with each group merged into one axis."""
    shape = tuple(batch) + tuple(_product(g) for g in groups)
    return x if x.shape == shape else mv.reshape(x, _reshapeable(shape))


def _product(ds):
    return ds[0] if len(ds) == 1 else None if None in ds else math.prod(ds)


def _reshapeable(shape):
    if sum(d is None for d in shape) > 1:
        raise GraphError(f"einsum: merging axes to a matmul needs all sizes but one known; "
                         f"the shape would be {format_shape(tuple(shape))}")
    return [-1 if d is None else d for d in shape]
