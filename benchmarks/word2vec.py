"""One word2vec model (skip-gram negative sampling by default; `--model`, `--loss` for the other
three) on one corpus slice: graphdl's compiled step (NumPy backend, sparse updates; 1 and 2
processes), gensim's Word2Vec (workers=1 and 2), and, for skip-gram NS, a plain hand-written
NumPy minibatch trainer on the same batches as graphdl's one process. Prints effective words/s
(center words trained on after subsampling, per second of training, as gensim reports them),
the analogy
accuracy and word-pair correlation (gensim's own evaluations) when the slice is big enough,
and where one graphdl step spends its time.

    PYTHONPATH=. python benchmarks/word2vec.py                  # 1M-word slice (~2 min)
    PYTHONPATH=. python benchmarks/word2vec.py --words 0        # the whole corpus (longer)
    PYTHONPATH=. python benchmarks/word2vec.py --smoke          # the Lee corpus, seconds
    PYTHONPATH=. python benchmarks/word2vec.py --words 0 --epochs 5 --model cbow --loss hs \
        --no-profile                                           # the issue's quality comparison
    PYTHONPATH=. python benchmarks/word2vec.py --words 0 --epochs 5 --trainers graphdl \
        --distributed 1,2,4 --no-profile        # processes sharing no memory, beside the rest

`--distributed N,...` adds the example's `--distributed` mode on N torch.distributed ranks
(examples/word2vec/distributed.py: replicas combined over gloo), each started by torchrun
from this script; its words/s count the training loop of rank 0 (after torch's import, the
group's rendezvous and the step's compilation), as graphdl's one process does. `distributed_rows`
is the same comparison as a function (benchmarks/distributed.py calls it).

Settings as gensim's defaults and word2vec.c's: dim 100, window 5, min_count 5, sample 1e-3,
negative 5, 1 epoch, lr 0.025 -> 0.0001 for all four models (gensim's defaults);
graphdl and the NumPy trainer use the example's batches (examples/word2vec/model.py BATCH: 1024
rows for skip-gram NS, 256 for skip-gram HS and CBOW NS, 64 for CBOW HS; rows are (center,
context) pairs for skip-gram, center words for CBOW). The analogy column adds where queen
ranks for king - man + woman.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from machine import ROOT
from mlp_step import instrument

sys.path.insert(0, str(ROOT))

import graphdl.distributed as gdd
from examples import smoke
from examples.word2vec import distributed, evaluate
from examples.word2vec.corpus import build, read_lines
from examples.word2vec.model import BATCH, LOSSES, MODELS, Shape, declare
from examples.word2vec.train import Data, load, train
from examples.word2vec.vocab import huffman

# below this, too few analogy questions are in the vocabulary (gensim's two samples alone, 486k
# words in theirs, hold 4,195 of them)
ANALOGY_MIN_WORDS = 400_000


@dataclass(frozen=True)
class Settings:
    dim: int = 100
    window: int = 5
    min_count: int = 5
    sample: float = 1e-3
    negative: int = 5
    epochs: int = 1
    batch: int = 1024  # main() takes the example's (model.BATCH)
    seed: int = 0
    model: str = "sg"
    loss: str = "ns"


@dataclass(frozen=True)
class Run:
    name: str
    words: int
    seconds: float
    words_list: list[str]
    vectors: np.ndarray
    workers: int = 1

    @property
    def rate(self) -> float:
        return self.words / self.seconds


def stream(data: Data, s: Settings):
    """The batches graphdl's trainer draws (its one process)."""
    return declared(data, s).stream(data.corpus, data.vocab.counts, epochs=s.epochs,
                                    window=s.window, sample=s.sample, negative=s.negative,
                                    seed=s.seed + 1)


def declared(data: Data, s: Settings):
    tree = huffman(data.vocab.counts) if s.loss == "hs" else None
    return declare(s.model, s.loss, Shape(len(data.vocab), s.dim, s.batch, s.window, s.negative),
                   tree)


def run_graphdl(data: Data, s: Settings, workers: int = 1) -> Run:
    model = declared(data, s)
    result = train(model, data, epochs=s.epochs, window=s.window, sample=s.sample,
                   negative=s.negative, seed=s.seed, progress=False, workers=workers)
    return Run(f"graphdl workers={workers}", result.words, result.seconds, data.vocab.words,
               result.tables["W_in"], workers)


def run_distributed(words: int | None, smoke_corpus: bool, s: Settings, workers: int,
                    rows: int = distributed.ROWS) -> Run:
    """The example's --distributed mode on `workers` ranks, started by torchrun running this
    script as the rank (`rank_main`); rank 0's training time and vectors."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rank-0.npz"
        job = {"words": words, "smoke": smoke_corpus, "settings": asdict(s), "rows": rows,
               "out": str(out)}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={workers}", __file__, "--rank", json.dumps(job)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        with np.load(out) as saved:
            print(f"  {saved['note']}", flush=True)
            return Run(f"graphdl distributed={workers}", int(saved["words"]),
                       float(saved["seconds"]), [str(w) for w in saved["vocab"]],
                       saved["vectors"], workers)


def rank_main(job: dict) -> None:
    """One rank of `run_distributed`: trains; rank 0 saves what the parent reports."""
    gdd.init()
    s = Settings(**job["settings"])
    data = load(job["smoke"], s.min_count, job["words"])
    result = train(declared(data, s), data, epochs=s.epochs, window=s.window, sample=s.sample,
                   negative=s.negative, seed=s.seed, progress=False, sync_rows=job["rows"])
    if gdd.rank() == 0:
        np.savez(job["out"], words=result.words, seconds=result.seconds,
                 vocab=np.array(data.vocab.words), vectors=result.tables["W_in"],
                 note=result.note)


def distributed_rows(words: int | None = None, epochs: int = 5, workers=(1, 2, 4),
                     shared=(1, 2), model: str = "sg", loss: str = "ns",
                     smoke_corpus: bool = False) -> list[Run]:
    """words/s and quality of the --distributed mode on each of `workers` ranks beside graphdl's
    `shared`-memory processes (parallel.py), `words` of the corpus (None: all), printed as
    main()'s table; the runs returned."""
    s = Settings(epochs=epochs, model=model, loss=loss, batch=BATCH[model, loss])
    data = load(smoke_corpus, s.min_count, words)
    runs = [run_graphdl(data, s, w) for w in shared]
    runs += [run_distributed(words, smoke_corpus, s, w) for w in workers]
    print_table(runs, data)
    return runs


def sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def numpy_step(W_in, W_out, center, target, negatives, lr):
    """One SGNS step on a batch, written by hand: gathers, the two scores, their error
    gradients, and np.add.at scatters (all from the tables as they were before the step)."""
    v, u, un = W_in[center], W_out[target], W_out[negatives]
    g_pos = sigmoid(np.einsum("bd,bd->b", v, u)) - 1  # d loss / d score
    g_neg = sigmoid(np.einsum("bd,bkd->bk", v, un))
    d_v = g_pos[:, None] * u + np.einsum("bk,bkd->bd", g_neg, un)
    np.add.at(W_out, target, -lr * g_pos[:, None] * v)
    np.add.at(W_out, negatives, -lr * g_neg[..., None] * v[:, None])
    np.add.at(W_in, center, -lr * d_v)


def run_numpy(data: Data, s: Settings) -> Run:
    rng = np.random.default_rng(s.seed)
    W_in = ((rng.random((len(data.vocab), s.dim)) - 0.5) / s.dim).astype(np.float32)
    W_out = np.zeros_like(W_in)
    words, start = 0, time.perf_counter()
    for b in stream(data, s):
        if len(b.centers) == s.batch:  # the last short batch dropped, as graphdl's trainer
            numpy_step(W_in, W_out, b.centers, b.contexts, b.negatives, np.float32(b.lr))
            words += b.words
    return Run("hand-written NumPy", words, time.perf_counter() - start, data.vocab.words, W_in)


def run_gensim(sentences: list[list[str]], s: Settings, workers: int) -> Run:
    from gensim.models import Word2Vec

    hs = s.loss == "hs"
    model = Word2Vec(vector_size=s.dim, window=s.window, min_count=s.min_count, sample=s.sample,
                     negative=0 if hs else s.negative, hs=int(hs), sg=int(s.model == "sg"),
                     workers=workers, seed=s.seed)
    model.build_vocab(sentences)
    start = time.perf_counter()
    effective, _raw = model.train(sentences, total_examples=len(sentences), epochs=s.epochs)
    seconds = time.perf_counter() - start
    return Run(f"gensim workers={workers}", effective, seconds, list(model.wv.index_to_key),
               model.wv.vectors, workers)


def pair_generation(data: Data, s: Settings, steps: int) -> float:
    """Seconds per batch of drawing pairs and negatives, over `steps` batches after the first
    (which pays for the noise table and the first chunk's pairs once)."""
    batches = stream(data, s)
    next(batches)
    start, n = time.perf_counter(), 0
    for _ in zip(range(steps), batches):
        n += 1
    return (time.perf_counter() - start) / n


def category(line: str) -> str:
    if "_scatter_update" in line:
        return "scatter (_scatter_update)"
    if "numpy.take" in line or "_check_index" in line:
        return "gather (take, index checks)"
    if "astype" in line:
        return "input conversion"
    return "elementwise and reductions"


def profile(data: Data, s: Settings, steps: int = 600) -> None:
    """Per-statement medians of graphdl's generated run() over real batches, grouped; the
    rest of a compiled call (feed checks, dispatch) and the pair generation beside them.
    The batches alternate between the compiled call and run() alone, each batch stepped once
    (a batch stepped twice would find its rows in the cache the second time)."""
    model = declared(data, s)
    fn = model.compile()
    tables = model.tables(np.random.default_rng(s.seed))
    fed = [model.feeds(b) for _, b in zip(range(steps), stream(data, s))
           if len(b.centers) == s.batch]
    run, text, times = instrument(fn.source, "run")
    calls, bodies = [], []
    for k, f in enumerate(fed):  # alternately the compiled call and run() statement by statement
        arrays = {**tables, **f}
        start = time.perf_counter()
        if k % 2:
            run(*(arrays[name] for name in fn.input_names))
        else:
            fn(arrays)
        (bodies if k % 2 else calls).append(time.perf_counter() - start)
    medians = [float(np.median(times[i])) for i in range(len(text))]
    call, body = float(np.median(calls)), float(np.median(bodies))
    groups: dict[str, float] = {}
    for line, t in zip(text, medians):
        groups[category(line)] = groups.get(category(line), 0.0) + t
    pairs = pair_generation(data, s, steps)
    print(f"\nOne graphdl step (batch {s.batch}, medians over {len(fed)} steps): compiled call "
          f"{call * 1e3:.2f} ms, its run() {body * 1e3:.2f} ms; pair generation "
          f"{pairs * 1e3:.2f} ms per batch{smoke.tag()}")
    groups["Python between the statements"] = body - sum(medians)
    for name, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {t * 1e3:7.2f} ms {t / (call + pairs):6.1%}  {name}")
    print(f"  {(call - body) * 1e3:7.2f} ms {(call - body) / (call + pairs):6.1%}  "
          "the call around run() (feed checks, dispatch)")
    print(f"  {pairs * 1e3:7.2f} ms {pairs / (call + pairs):6.1%}  pair generation (batches.py)")
    print(f"per statement:{smoke.tag()}")
    for line, t in sorted(zip(text, medians), key=lambda lt: -lt[1])[:8]:
        print(f"  {t * 1e3:7.2f} ms  {line[:100]}")


def queen_rank(nb: evaluate.Neighbours) -> str:
    """Where queen comes in most_similar(king - man + woman), the query words excluded."""
    if not all(w in nb for w in ("king", "man", "woman", "queen")):
        return "-"
    found = [w for w, _ in nb.most_similar(["king", "woman"], ["man"], topn=100)]
    return str(found.index("queen") + 1) if "queen" in found else ">100"


def raw_sentences(smoke: bool, lines: int) -> list[list[str]]:
    path, _ = build(smoke)
    return [words for _, words in zip(range(lines), read_lines(path))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=1_000_000,
                    help="corpus tokens to train on (0: all); default 1,000,000 (~2 min)")
    ap.add_argument("--smoke", action="store_true", help="gensim's Lee corpus alone")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--trainers", default="graphdl,numpy,gensim",
                    help="comma-separated subset of graphdl,numpy,gensim")
    ap.add_argument("--model", choices=MODELS, default="sg")
    ap.add_argument("--loss", choices=LOSSES, default="ns")
    ap.add_argument("--workers", default="1,2", help="gensim's worker counts, comma-separated")
    ap.add_argument("--graphdl-workers", default="1,2",
                    help="graphdl's process counts (examples/word2vec/parallel.py)")
    ap.add_argument("--distributed", default="",
                    help="graphdl's --distributed rank counts, comma-separated (torchrun)")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-statement profile")
    ap.add_argument("--rank", help=argparse.SUPPRESS)  # a rank of run_distributed (its job)
    args = ap.parse_args()
    if args.rank:
        rank_main(json.loads(args.rank))
        return
    smoke.enable(args.smoke)
    smoke.note("graphdl ~152-155k effective words/s on one process, its 2 processes 0.50-0.55x "
               "gensim's 2 workers (one epoch of the full corpus on a quiet 2-core box: "
               "PYTHONPATH=. python benchmarks/word2vec.py --words 0 --no-profile; "
               "benchmarks/README.md)")
    s = Settings(epochs=args.epochs, model=args.model, loss=args.loss,
                 batch=BATCH[args.model, args.loss])
    data = load(args.smoke, s.min_count, args.words or None)
    print(f"corpus slice: {len(data.corpus.ids):,} words ({len(data.corpus.offsets) - 1:,} "
          f"lines), vocabulary {len(data.vocab):,}; {s}")
    trainers = args.trainers.split(",")
    if (s.model, s.loss) != ("sg", "ns"):  # the hand-written trainer is skip-gram NS only
        trainers = [t for t in trainers if t != "numpy"]
    runs = [run_graphdl(data, s, int(w)) for w in args.graphdl_workers.split(",")
            if "graphdl" in trainers]
    runs += [run_distributed(args.words or None, args.smoke, s, int(w))
             for w in args.distributed.split(",") if w]
    runs += [run_numpy(data, s)] if "numpy" in trainers else []
    if "gensim" in trainers and evaluate.has_gensim():
        sentences = raw_sentences(args.smoke, len(data.corpus.offsets) - 1)
        runs += [run_gensim(sentences, s, int(w)) for w in args.workers.split(",")]
    print_table(runs, data)
    if not args.no_profile:
        profile(data, s)


def print_table(runs: list[Run], data: Data) -> None:
    """Each run's words/s (and its ratio to gensim's with the most workers, where run), with
    its scores where the corpus is big enough."""
    scored = len(data.corpus.ids) >= ANALOGY_MIN_WORDS and evaluate.has_gensim()
    # the yardstick: each rate over gensim's with the most workers, in this very run
    gensims = [r for r in runs if r.name.startswith("gensim")]
    yardstick = max(gensims, key=lambda r: r.workers) if gensims else None
    print(f"\n{'trainer':26} {'eff. words':>11} {'seconds':>8} {'words/s':>9}"
          + (f" {'ratio':>6}" if yardstick else "")
          + ("  analogy  questions  wordsim353 (Spearman)  queen's rank" if scored else "")
          + smoke.tag())
    if yardstick:
        print(f"(ratio: words/s over {yardstick.name}'s)")
    for r in runs:
        line = f"{r.name:26} {r.words:>11,} {r.seconds:>8.1f} {r.rate:>9,.0f}"
        line += f" {r.rate / yardstick.rate:>6.2f}" if yardstick else ""
        if scored:
            nb = evaluate.Neighbours(r.words_list, r.vectors)
            sc = evaluate.gensim_scores(nb)
            line += (f"  {sc['analogy']:>7.2%}  {sc['analogy_questions']:>9,}  "
                     f"{sc['spearman']:>21.3f}  {queen_rank(nb):>12}")
        print(line + smoke.tag(), flush=True)


if __name__ == "__main__":
    main()
