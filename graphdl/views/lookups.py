"""Embedding lookups: a `take` along axis 0 reads whole rows of its table (one-hot rows times
the table); its gradient, a `scatter_add` along axis 0, is non-zero in those rows only. Drawings
list the rows on the wires; narrations tell the lookup as the one-hot product it is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphdl.ir import Node
from graphdl.ops import movement as mv
from graphdl.views.circuit import unchecked


@dataclass(frozen=True)
class Lookup:
    """The rows a lookup gate reads (take) or writes (scatter_add) at the probe point."""

    table: Node  # the table the rows belong to (for scatter_add, the node it is shaped like)
    index: Node  # the indices as fed, before their bounds check
    rows: np.ndarray  # the index values flattened, negative ones counted from the end
    size: int  # the number of rows of the table
    writes: bool  # scatter_add: its value is zero outside the rows

    @property
    def distinct(self):
        """The rows, each once, in the order the indices first name them."""
        _, first = np.unique(self.rows, return_index=True)
        return self.rows[np.sort(first)]

    @property
    def unit(self):
        """What one index selects: a row of a matrix, an entry of a vector."""
        return "row" if self.table.ndim > 1 else "entry"

    @property
    def units(self):
        return "rows" if self.table.ndim > 1 else "entries"


def lookup(circuit, node):
    """The `Lookup` of an axis-0 take or scatter_add with known indices, else None."""
    if node.op not in (mv.TAKE, mv.SCATTER_ADD) or node.attrs["axis"] != 0:
        return None
    index = node.inputs[1]
    values = circuit.value(index)
    table = node.inputs[0] if node.op is mv.TAKE else node.inputs[2]
    if values is None or circuit.value(table) is None:
        return None
    index = unchecked(index)  # name the indices the user fed, not their check
    size = circuit.value(table).shape[0]  # as fed: the declared size may be unknown (None)
    rows = np.ravel(values).astype(np.int64) % size
    return Lookup(table, index, rows, size, node.op is mv.SCATTER_ADD)
