"""Train word2vec with graphdl: `python -m examples.word2vec.train --model sg --loss ns`.

Builds the corpus cache (build/word2vec/), the vocabulary, one compiled SGD step for the chosen
model (see `model`), trains with the learning rate decaying linearly from 0.025 to 0.0001 (fed
to the step as an input), saves the vectors in word2vec text format and evaluates them.
Batches have a fixed size; the last, short batch of the run is dropped (its pairs are not
trained on). A background thread draws the batches while the step runs. `--smoke` trains on
gensim's Lee corpus alone with tiny settings, in seconds.

`--workers N` runs N processes on this machine. They share the tables in shared memory and race
(Hogwild, `parallel`); with `--distributed` they share no memory: each trains its own replica
on its share of the lines and the replicas are combined over torch.distributed (gloo), the most
frequent rows every ~0.1 s and all rows every ~1 s and at the end (`distributed`; `--sync-rows`).
`--distributed` starts the N workers itself under torchrun (`gdd.launch`); under torchrun or Ray
Train across machines (their environment gives the workers), `--workers` is not needed:

    torchrun --nnodes 2 --node-rank R --nproc-per-node 2 --master-addr HOST \
        --master-port 29500 -m examples.word2vec.train --distributed

Rank 0 reports, saves and evaluates the vectors.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import graphdl.distributed as gdd

from .. import smoke
from . import distributed, evaluate, parallel
from .corpus import CACHE_DIR, build, read_lines
from .model import BATCH, CBOW_UPDATES, LOSSES, MODELS, Model, Shape, declare
from .vocab import Encoded, Vocab, encode_lines, huffman, keep_probability

# --smoke's defaults; an option given on the command line wins.
SMOKE = {"dim": 32, "epochs": 3, "min_count": 5, "batch": 256}
FULL = {"dim": 100, "epochs": 5, "min_count": 5}  # gensim's defaults; and model.BATCH
BUILD_TIMEOUT = 3600.0  # seconds --distributed ranks wait for their machine's corpus build
# 5 epochs of the full corpus (docs/RESULTS.md): analogies, WordSim353 Spearman; queen 1st
FULL_SCORES = {("sg", "ns"): ("14.71 %", 0.564), ("sg", "hs"): ("14.87 %", 0.635),
               ("cbow", "ns"): ("11.70 %", 0.463), ("cbow", "hs"): ("10.70 %", 0.552)}


@dataclass(frozen=True)
class Data:
    vocab: Vocab
    corpus: Encoded  # vocabulary ids


def first_words(corpus: Encoded, words: int | None) -> Encoded:
    """The corpus cut after the line that reaches `words` tokens (all of it for None)."""
    if words is None or words >= len(corpus.ids):
        return corpus
    lines = int(np.searchsorted(corpus.offsets, words, side="left"))
    offsets = corpus.offsets[: lines + 1]
    return Encoded(corpus.ids[: offsets[-1]], offsets)


def load(smoke: bool, min_count: int, words: int | None = None) -> Data:
    """The cached corpus (its first `words` tokens), its vocabulary and its ids."""
    path, _ = build(smoke)
    distinct, encoded = encode_lines(read_lines(path))
    encoded = first_words(encoded, words)
    vocab = Vocab.build(distinct, encoded, min_count)
    return Data(vocab, vocab.restrict(encoded))


def expected_words(data: Data, sample: float, epochs: int) -> int:
    """Center words trained on after subsampling, in expectation (the progress bar's total)."""
    return int(epochs * (data.vocab.counts * keep_probability(data.vocab.counts, sample)).sum())


@dataclass
class Progress:
    """Words/s and the running loss per row, on a tqdm bar where tqdm is installed, else as
    a plain line every `every` seconds."""

    total: int
    every: float = 5.0

    def __post_init__(self):
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=self.total, unit="word", unit_scale=True, smoothing=0.1)
        self.start = self.last = time.perf_counter()
        self.words, self.loss = 0, None

    def update(self, words: int, loss_per_row: float | None):
        """`words` more trained on; the loss of their step (None: not known here)."""
        self.words += words
        if loss_per_row is not None:
            self.loss = (loss_per_row if self.loss is None
                         else 0.98 * self.loss + 0.02 * loss_per_row)
        shown = "" if self.loss is None else f"{self.loss:.4f}"
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(words)
            if shown:
                self.bar.set_postfix(loss=shown, refresh=False)
        elif now - self.last >= self.every:
            self.last = now
            print(f"{self.words:>12,} words {self.words / (now - self.start):>10,.0f} words/s "
                  + (f"loss {shown}" if shown else ""), flush=True)

    def close(self) -> float:
        """Seconds since the start."""
        if self.bar is not None:
            self.bar.close()
        return time.perf_counter() - self.start


@dataclass(frozen=True)
class Result:
    tables: dict[str, np.ndarray]
    words: int  # center words trained on (gensim's "effective words")
    seconds: float
    losses: np.ndarray  # each step's loss per row (distributed: rank 0's steps)
    dropped_rows: int  # rows of the last, short batch
    note: str = ""  # distributed: the rounds


def train(model: Model, data: Data, *, epochs: int, window: int, sample: float, negative: int,
          seed: int, backend: str = "numpy", device: str | None = None,
          progress: bool = True, workers: int = 1, sync_rows: int | None = None,
          sync_every: int | None = None) -> Result:
    """Train `model` on `data`; the tables start as word2vec.c's, drawn from `seed`. With
    `workers` > 1, as many processes share the corpus and the tables (`parallel`). With
    `sync_rows` (K), this process is one rank of the torch.distributed group (gdd.init()) and
    trains its replica, combined with the others' (`distributed`; `sync_every`: steps between
    rounds, None for ~0.1 s); rank 0's words on the bar."""
    rng = np.random.default_rng(seed)
    tables = model.tables(rng)
    note = []
    total = expected_words(data, sample, epochs)
    if sync_rows is not None:  # compiled before the clock starts, as one process's step
        step = model.compile(backend=backend, device=device)
        progress = progress and gdd.rank() == 0
        total //= gdd.world_size()

        def run(report):
            *out, line = distributed.train(
                model, step, data.vocab.counts, data.corpus, tables, epochs=epochs,
                window=window, sample=sample, negative=negative, seed=seed, rows=sync_rows,
                every=sync_every, report=report)
            note.append(line)
            return out
    elif workers > 1:  # the processes compile their own steps, inside the time measured

        def run(report):
            return parallel.train(
                model, data.vocab.counts, data.corpus, tables, workers=workers, epochs=epochs,
                window=window, sample=sample, negative=negative, seed=seed, backend=backend,
                device=device,
                progress=None if report is None else lambda words: report(words, None))
    else:
        step = model.compile(backend=backend, device=device)
        stream = model.stream(data.corpus, data.vocab.counts, epochs=epochs, window=window,
                              sample=sample, negative=negative, seed=seed + 1)

        def run(report):
            return model.run(step, tables, stream, report)
    bar = Progress(total) if progress else None
    start = time.perf_counter()
    words, losses, dropped = run(None if bar is None else bar.update)
    seconds = bar.close() if bar is not None else time.perf_counter() - start
    return Result(tables, words, seconds, losses, dropped, "".join(note))


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.word2vec.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="sg", help="skip-gram or CBOW")
    p.add_argument("--loss", choices=LOSSES, default="ns",
                   help="negative sampling or hierarchical softmax")
    p.add_argument("--cbow-update", choices=CBOW_UPDATES, default="word2vec",
                   help="CBOW: word2vec.c's rule (every context row gets the mean's whole "
                        "error) or the true gradient of the mean (1/context size of it)")
    p.add_argument("--backend", choices=("numpy", "cuda"), default="numpy",
                   help="both update only the rows a batch addresses: numpy by "
                        "_scatter_update, cuda by atomic adds into the tables")
    p.add_argument("--device", choices=("cpu", "gpu"), default=None,
                   help="for --backend cuda: gpu (CuPy, the default) or cpu (the emulator)")
    p.add_argument("--epochs", type=int, help=f"default {FULL['epochs']}, smoke {SMOKE['epochs']}")
    p.add_argument("--dim", type=int, help=f"default {FULL['dim']}, smoke {SMOKE['dim']}")
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--min-count", type=int, help=f"default {FULL['min_count']}")
    p.add_argument("--sample", type=float, default=1e-3)
    p.add_argument("--negative", type=int, default=5)
    p.add_argument("--batch", type=int, help="rows per step: default 1024 (sg ns), 256 (sg hs, "
                                             "cbow ns), 64 (cbow hs); smoke "
                                             f"{SMOKE['batch']}; the last short batch is dropped")
    p.add_argument("--words", type=int, help="train on the corpus's first WORDS tokens only")
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing the corpus and the tables (as gensim's workers; "
                        "their updates race, as gensim's do); with --distributed, processes "
                        "with a replica each")
    p.add_argument("--distributed", action="store_true",
                   help="the workers share no memory: torch.distributed ranks (started here by "
                        "torchrun, or by torchrun/Ray across machines), each training its "
                        "replica on its share of the lines; replicas combined every ~0.1 s "
                        "(the --sync-rows most frequent rows), every ~1 s and at the end (all)")
    p.add_argument("--sync-rows", type=int, default=distributed.ROWS,
                   help="--distributed: rows of each table combined every ~0.1 s (K); "
                        f"default {distributed.ROWS:,}")
    p.add_argument("--sync-every", type=int,
                   help="--distributed: steps between two rounds, the same in every run "
                        "(repeatable); default: a round every ~0.1 s of training")
    p.add_argument("--smoke", action="store_true", help="gensim's Lee corpus, tiny settings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="vectors file (word2vec text format); default "
                                            "build/word2vec/vectors-MODEL-LOSS[-smoke].txt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    args = p.parse_args(argv)
    if args.sync_every is not None and (args.sync_every < 1 or not args.distributed):
        p.error(f"--sync-every {args.sync_every}: a number of steps (1 or more) between the "
                "rounds of --distributed")
    full = {**FULL, "batch": BATCH[args.model, args.loss]}
    for key, value in (SMOKE if args.smoke else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        suffix = "-smoke" if args.smoke else ""
        args.out = CACHE_DIR / f"vectors-{args.model}-{args.loss}{suffix}.txt"
    return args


def main(argv=None) -> None:
    args = parse(argv)
    if args.distributed:
        gdd.launch(args.workers)  # re-runs this command on the workers, unless one of them
        gdd.init()
        if gdd.rank() != 0:  # rank 0 prints; the others train quietly
            args.no_progress = True
    smoke.enable(args.smoke)
    analogies, spearman = FULL_SCORES[args.model, args.loss]
    if gdd.rank() == 0:
        smoke.note(f"{analogies} of gensim's analogies, WordSim353 Spearman {spearman}, queen "
                   f"first for king - man + woman (python -m examples.word2vec.train --model "
                   f"{args.model} --loss {args.loss}: 5 epochs of the full 6.2M-word corpus, "
                   "dim 100)")
    data = (load_once_per_machine if args.distributed else load)(args.smoke, args.min_count,
                                                                  args.words)
    if gdd.rank() == 0:
        print(f"corpus: {len(data.corpus.ids):,} words in the vocabulary of {len(data.vocab):,}")
    shape = Shape(len(data.vocab), args.dim, args.batch, args.window, args.negative)
    tree = huffman(data.vocab.counts) if args.loss == "hs" else None
    model = declare(args.model, args.loss, shape, tree, args.cbow_update)
    result = train(model, data, epochs=args.epochs, window=args.window, sample=args.sample,
                   negative=args.negative, seed=args.seed, backend=args.backend,
                   device=args.device, progress=not args.no_progress, workers=args.workers,
                   sync_rows=args.sync_rows if args.distributed else None,
                   sync_every=args.sync_every)
    if gdd.rank() != 0:
        return
    if result.note:
        print(result.note)
    print(f"{args.model} {args.loss}: {result.words:,} effective words in "
          f"{result.seconds:.1f} s, {result.words / result.seconds:,.0f} effective words/s, "
          f"loss per row {result.losses[-100:].mean():.4f} over the last 100 steps (the last "
          f"short batch of {result.dropped_rows} rows dropped){smoke.tag()}")
    vectors = result.tables["W_in"]
    evaluate.save_word2vec_text(args.out, data.vocab.words, vectors)
    print(f"vectors saved to {args.out}")
    nb = evaluate.Neighbours(data.vocab.words, vectors)
    evaluate.print_neighbours(nb)
    evaluate.print_scores(evaluate.gensim_scores(nb))
    plot = evaluate.pca_plot(nb, CACHE_DIR / "pca.png")
    if plot is not None:
        print(f"PCA plot saved to {plot}{smoke.tag()}")


def load_once_per_machine(smoke: bool, min_count: int, words: int | None) -> Data:
    """`load` on every rank, after the first worker of each machine (LOCAL_RANK 0) built the
    corpus cache: the others wait for it in a collective, not building it at the same time
    (a first build reads every source: minutes, past the collectives' usual timeout)."""
    first = os.environ.get("LOCAL_RANK", str(gdd.rank())) == "0"
    if first:
        build(smoke)
    gdd.set_timeout(BUILD_TIMEOUT)
    gdd.allreduce_array(np.zeros(1), "sum")
    gdd.set_timeout(gdd.DEFAULT_TIMEOUT)
    return load(smoke, min_count, words)


if __name__ == "__main__":
    main()
