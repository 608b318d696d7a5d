"""Training on several processes at once, as gensim's workers: each process takes its own share
of the corpus's lines (its own batches, learning-rate decay and random draws) and steps the same
tables, which live in shared memory. The updates race, as word2vec.c's and gensim's threads do
(Hogwild): a row two processes update at once may lose one of the two updates. Processes, not
threads: a compiled step holds the GIL between its NumPy calls, and two threads stepping one
model were slower than one.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

from .model import Model, Shape, declare
from .vocab import Encoded, Huffman


@dataclass(frozen=True)
class Job:
    """What one process needs to declare the model again and train on its share."""

    kind: str
    loss_kind: str
    shape: Shape
    huffman: Huffman | None
    cbow_update: str
    tables: dict  # name -> (shared memory name, shape, dtype)
    counts: np.ndarray
    part: Encoded
    epochs: int
    window: int
    sample: float
    negative: int
    seed: int
    backend: str
    device: str | None


def shares(corpus: Encoded, workers: int, work: np.ndarray | None = None) -> list[Encoded]:
    """`corpus` cut at line boundaries into `workers` parts of about equal work: the sum of
    `work`, one number per corpus position (`Model.expected_rows`: the workers then run out of
    batches together), or words where it is None."""
    done = np.arange(len(corpus.ids) + 1) if work is None else np.r_[0, np.cumsum(work)]
    at_lines = done[corpus.offsets]
    cuts = np.searchsorted(at_lines, np.linspace(0, at_lines[-1], workers + 1))
    cuts[0], cuts[-1] = 0, len(corpus.offsets) - 1
    parts = []
    for first, last in itertools.pairwise(cuts):
        start, stop = corpus.offsets[first], corpus.offsets[last]
        parts.append(Encoded(corpus.ids[start:stop], corpus.offsets[first:last + 1] - start))
    return parts


def train(model: Model, counts: np.ndarray, corpus: Encoded, tables: dict, *, workers: int,
          epochs: int, window: int, sample: float, negative: int, seed: int, backend: str,
          device: str | None, progress=None):
    """Train `tables` (updated in place) on `workers` processes; (words, per-step losses of
    every process, rows dropped). `progress(words)` is called as the processes report."""
    context = multiprocessing.get_context("spawn")  # no fork of a process holding BLAS threads
    memory = {name: shared_memory.SharedMemory(create=True, size=t.nbytes)
              for name, t in tables.items()}
    try:
        for name, t in tables.items():
            np.ndarray(t.shape, t.dtype, buffer=memory[name].buf)[...] = t
        spec = {name: (memory[name].name, t.shape, t.dtype.str) for name, t in tables.items()}
        done, results = context.Value("q", 0), context.Queue()
        processes = [context.Process(target=_work, args=(Job(
            model.kind, model.loss_kind, model.shape, model.huffman, model.cbow_update, spec,
            counts, part, epochs, window, sample, negative, seed + k, backend, device),
            done, results)) for k, part in enumerate(shares(
            corpus, workers, model.expected_rows(corpus, counts, window, sample)))]
        for p in processes:
            p.start()
        reported, finished = 0, []
        while len(finished) < workers:
            try:  # a result ends the wait at once: the training time is not rounded up
                finished.append(results.get(timeout=0.2))
            except queue.Empty:
                _refuse_silent_deaths(processes)
            if progress is not None and done.value > reported:
                progress(done.value - reported)
                reported = done.value
        for p in processes:
            p.join()
        for name, t in tables.items():
            t[...] = np.ndarray(t.shape, t.dtype, buffer=memory[name].buf)
    finally:
        for m in memory.values():
            m.close()
            m.unlink()
    failed = [f for f in finished if isinstance(f, str)]
    if failed:
        raise RuntimeError("a word2vec worker failed:\n" + "\n".join(failed))
    return (sum(f[0] for f in finished), np.concatenate([f[1] for f in finished]),
            sum(f[2] for f in finished))


def _refuse_silent_deaths(processes) -> None:
    """A worker killed outright (out of memory, a signal) never reports: fail, not wait."""
    dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
    if dead:
        for p in processes:
            p.kill()
        raise RuntimeError(f"a word2vec worker died without reporting (exit code {dead[0]})")


def _work(job: Job, done, results):
    """One process: declare and compile the model, attach the shared tables, train on its part;
    put (words, losses, dropped rows), or the traceback, on `results`."""
    try:
        memory = {name: shared_memory.SharedMemory(name=spec[0])
                  for name, spec in job.tables.items()}
        tables = {name: np.ndarray(shape, np.dtype(dtype), buffer=memory[name].buf)
                  for name, (_, shape, dtype) in job.tables.items()}
        model = declare(job.kind, job.loss_kind, job.shape, job.huffman, job.cbow_update)
        step = model.compile(backend=job.backend, device=job.device)
        stream = model.stream(job.part, job.counts, epochs=job.epochs, window=job.window,
                              sample=job.sample, negative=job.negative, seed=job.seed + 1)

        def report(words, _loss):
            with done.get_lock():
                done.value += words

        words, losses, dropped = model.run(step, tables, stream, report)
        del tables
        for m in memory.values():
            m.close()
        results.put((words, losses, dropped))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        import traceback

        results.put(traceback.format_exc())
