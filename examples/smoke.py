"""Smoke mode (GRAPHDL_SMOKE=1; word2vec's --smoke): the examples' quick CI runs, which check
that the code runs and say nothing about the models. Each example marks it: `note` prints a
banner with what a full run gives at the start, `tag` goes beside every number it prints, and
`stamp` writes the same banner across every picture it saves."""

from __future__ import annotations

import os
import textwrap

LABEL = "SMOKE RUN — not a result"
_full = ""  # what a full run gives, with its command: the latest `note`'s


def on() -> bool:
    """True in smoke mode (GRAPHDL_SMOKE=1)."""
    return os.environ.get("GRAPHDL_SMOKE") == "1"


def enable(smoke: bool = True) -> None:
    """Smoke mode on (or off) from here on, as a --smoke flag says (word2vec's)."""
    if smoke:
        os.environ["GRAPHDL_SMOKE"] = "1"
    else:
        os.environ.pop("GRAPHDL_SMOKE", None)


def text() -> str:
    """The banner: LABEL and what a full run gives."""
    return (f"{LABEL}: a short run on little data, only to check that the code runs; the "
            f"numbers marked so say nothing about the model. A full run gives {_full}")


def note(full: str) -> None:
    """Record `full`, what a full run gives (with the command that gives it), and in smoke mode
    print the banner."""
    global _full
    _full = full
    if on():
        print("\n".join("==== " + line for line in _wrap(text(), 92)), flush=True)


def tag() -> str:
    """' [SMOKE RUN — not a result]' in smoke mode, to print beside a number; else ''."""
    return f" [{LABEL}]" if on() else ""


def stamp(fig) -> None:
    """In smoke mode, write the banner in red across the middle of matplotlib figure `fig`."""
    if on():
        label, rest = text().split(": ", 1)
        lines = [label, *_wrap(rest, max(40, int(fig.get_figwidth() * 8)))]  # 12 pt characters
        fig.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", fontsize=12, color="red",
                 zorder=10, bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "red",
                                  "boxstyle": "round"})


def _wrap(paragraph: str, width: int) -> list[str]:
    return textwrap.wrap(paragraph, width, break_on_hyphens=False)  # commands stay whole
