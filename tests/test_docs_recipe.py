"""docs/ARCHITECTURE.md's "adding an op" recipe is the facet list (`graphdl.facets.recipe()`),
so it cannot drift from what the facet check enforces."""

from __future__ import annotations

import pathlib
import re

from graphdl import facets

DOC = pathlib.Path(__file__).parents[1] / "docs" / "ARCHITECTURE.md"


def test_the_architecture_recipe_is_the_facet_list():
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"<!-- recipe:begin -->\n(.*?)<!-- recipe:end -->", text, re.S)
    assert block, "docs/ARCHITECTURE.md lost its recipe markers"
    expected = "```\n" + facets.recipe() + "\n```\n"
    assert block[1] == expected, ("docs/ARCHITECTURE.md's recipe differs from the facet list; "
                                  "paste `python -m graphdl.facets --recipe` between the markers")
