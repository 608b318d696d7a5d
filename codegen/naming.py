"""Names and comments in generated code, whichever backend writes it: user strings reach the
source only as identifiers from `Namer`, as `comment` text or through repr()."""

from __future__ import annotations

import builtins
import keyword
import re

RESERVED = set(dir(builtins)) | {"numpy", "run", "INPUTS", "OUTPUTS", "_CONSTANTS"}


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
