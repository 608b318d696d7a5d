"""How graphdl's printers spell each SymPy construct, one table for all of them, keyed by target:
"numpy" (`codegen.numpy_backend.printers`), "cuda" (`codegen.cuda_backend.printer`) and the
narration's "text", "latex" and "mathml" (`views.teach_printers`). SymPy's constructs are in
`SPELLINGS`; graphdl's own functions carry theirs beside their definition (`spellings` in
`graphdl.ops.scalar`), as a user's function may. A target a construct does not list prints it
as SymPy's printer does.

A spelling is a format (`str.format`) over the construct's arguments, each printed where it is
placed: `{0}` is the first, `{0.cond}` its attribute `cond`, `{1:ctype}` the second converted by
the printer's `_convert_ctype`; `{nan}` and the like are the printer's `_fields()`, printed too.
MathML lays a spelling out token by token (`teach_printers`). Where the spelling depends on more
than the printed arguments (how many there are, a step function's value at 0), the table holds a
function of the expression that gives it, or None for SymPy's own.
"""

from __future__ import annotations

import string

import sympy


def fold(binary):
    """`binary` ({0}, {1}) folded left over all the arguments: Max(a, b, c) has three."""
    def spell(expr):
        text = "{0}"
        for k in range(1, len(expr.args)):
            text = binary.format(text, f"{{{k}}}")
        return text
    return spell


def nested(select):
    """A Piecewise as nested `select` (condition, value, otherwise), first condition outermost;
    NaN where no condition holds."""
    def spell(expr):
        text = "{nan}"
        for k in reversed(range(len(expr.args))):
            value = f"{{{k}.expr}}"
            text = (value if expr.args[k].cond is sympy.true
                    else select.format(f"{{{k}.cond}}", value, text))
        return text
    return spell


def step(text, ge="≥"):
    """The step function H(x, h0) that is 0 or 1 at 0 (relu's derivative is H(x, 0)) as `text`,
    its `{rel}` the relation where it is 1: `>` for H(x, 0), `ge` for H(x, 1)."""
    by_h0 = {sympy.S.Zero: text.replace("{rel}", ">"), sympy.S.One: text.replace("{rel}", ge)}
    return lambda expr: by_h0.get(expr.args[1])


_STEP = "(1 if {0} {rel} 0 else 0)"

# gd_max, gd_min (NumPy's NaN-propagating maximum), gd_abs, gd_mod: DEVICE_FUNCTIONS of the CUDA
# printer.
SPELLINGS = {
    sympy.Max: {"numpy": fold("numpy.maximum({0}, {1})"), "cuda": fold("gd_max({0}, {1})")},
    sympy.Min: {"numpy": fold("numpy.minimum({0}, {1})"), "cuda": fold("gd_min({0}, {1})")},
    sympy.Abs: {"numpy": "numpy.abs({0})", "cuda": "gd_abs({0})"},  # integers stay integers
    # Python's modulo, of the divisor's sign (C99's printer prints C's fmod, of the dividend's)
    sympy.Mod: {"cuda": "gd_mod<{dtype:ctype}>({0}, {1})"},
    sympy.erf: {"numpy": "_erf({0})"},  # the runtime's: NumPy has none
    sympy.erfc: {"numpy": "_erfc({0})"},
    sympy.Heaviside: {  # H(x, h0): h0 is the value at 0 (SymPy's default: 1/2)
        "numpy": "numpy.heaviside({0}, {1})",
        "text": step(_STEP),
        "latex": step(r"\left(1 \text{{ if }} {0} {rel} 0 \text{{ else }} 0\right)", r"\geq"),
        "mathml": step(_STEP),
    },
    sympy.Piecewise: {"numpy": nested("numpy.where({0}, {1}, {2})"),
                      "cuda": nested("(({0}) ? ({1}) : ({2}))")},
    sympy.Eq: {"text": "{0} == {1}"},
    sympy.Ne: {"text": "{0} ≠ {1}"},
}


def spelling(construct, target):
    """The spelling of the class `construct` on `target`, from the first class in its MRO with
    a table (as a method is inherited); None where it has none."""
    for cls in construct.__mro__:
        table = SPELLINGS.get(cls, vars(cls).get("spellings"))
        if table is not None:
            return table.get(target)
    return None


class _Filler(string.Formatter):
    """Fills a spelling in: each field's value printed, or converted as its spec says."""

    def __init__(self, printer):
        self.printer = printer

    def format_field(self, value, spec):
        if spec:
            return getattr(self.printer, f"_convert_{spec}")(value)
        return self.printer._print(value)


class SpelledPrinter:
    """A SymPy printer mixin, listed before the printer's class: a construct with a spelling on
    the printer's `target` prints from it, anything else as the printer would print it."""

    target: str

    def _fields(self):
        """The named values a spelling may use: {nan}, where no piece of a Piecewise holds."""
        return {"nan": sympy.nan}

    def _print(self, expr, **kwargs):
        spelled = spelling(type(expr), self.target)
        if callable(spelled):
            spelled = spelled(expr)
        if spelled is None:
            return super()._print(expr, **kwargs)
        self._print_level += 1  # as SymPy's dispatch counts (StrPrinter's floats read it)
        try:
            return self._spell(spelled, expr, **kwargs)
        finally:
            self._print_level -= 1

    def _spell(self, spelled, expr):
        return _Filler(self).format(spelled, *expr.args, **self._fields())
