"""Numbers and shapes as drawings and narrations print them: few digits, a true minus in gate
labels, one line for a whole tensor."""

from __future__ import annotations

import math

import numpy as np


def fmt(x, digits=2, significant=False):
    """A scalar as text: `digits` decimals (drawings) or significant digits (narration)."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if significant:
        s = f"{x:.{digits}g}"
        if "e" not in s and "." not in s and abs(x) >= 10 ** digits:
            s = f"{x:.{digits}e}"
        return s
    s = f"{x:.{digits}f}"
    if abs(x) >= 1e6 or (x != 0 and abs(x) < 10 ** -digits / 2):
        s = f"{x:.{max(digits - 1, 1)}e}"  # 3.1e-07 rather than 0.00: vanishing stays visible
    return s


def number(value):
    """A constant for a gate label: integers without decimals, negatives with a true minus."""
    v = float(value)
    s = str(int(v)) if v.is_integer() and abs(v) < 1e6 else f"{v:g}"
    return s.replace("-", "−")


def summary(array, digits=2, significant=False):
    """One line for a tensor: its norm, and its mean where that says something (the shape is
    shown separately)."""
    raw = np.asarray(array)
    if raw.dtype.kind in "iub" and raw.size <= 8:
        return "[" + ", ".join(str(v) for v in raw.ravel().tolist()) + "]"
    a = raw.astype(np.float64)
    norm = float(np.linalg.norm(a.ravel()))
    text = f"‖·‖={fmt(norm, digits, significant)}"
    mean = float(a.mean()) if a.size else 0.0
    # A mean under 1% of the entries' root mean square reads as a zero-mean tensor anyway (a
    # softmax gradient's -1.9e-10 is rounding noise of an exact zero): only the norm is shown.
    if abs(mean) * math.sqrt(a.size) >= 0.01 * norm > 0:
        text = f"μ={fmt(mean, digits, significant)} {text}"
    return text


def shape_text(shape):
    """A shape, an unknown dimension as ?: (?,3)."""
    return "(" + ",".join("?" if d is None else str(d) for d in shape) + ")"


def rows_text(rows, limit=8):
    """Row numbers as a short list: [2], [3, 1, 3], [4, 0, 7, …] (512 in all)."""
    rows = [int(r) for r in np.ravel(rows)]
    if len(rows) <= limit:
        return "[" + ", ".join(map(str, rows)) + "]"
    return "[" + ", ".join(map(str, rows[:limit])) + f", …] ({len(rows)} in all)"
