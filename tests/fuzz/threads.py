"""One compiled function called from several threads at once (`python -m tests.fuzz --mode
threads`), on each backend.

Each random program is compiled once per backend (its scalar and gradients), called one call
at a time on THREADS * CALLS distinct feeds, then called again from THREADS threads started
together, CALLS calls each: every result must be the one-at-a-time result of its own feeds.
Then a training step (`updates=`: every input -= LR * its gradient) runs CALLS times in each
thread, each thread on arrays of its own, and must leave every thread's arrays (and return each
step's scalar) as the same steps run one thread after another do.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

import graphdl as gd

from . import differential, programs

THREADS, CALLS = 8, 4
MODES = ("numpy-threads", "cuda-threads")
OPTIONS = {"numpy-threads": {}, "cuda-threads": {"backend": "cuda", "device": "cpu"}}


def feeds_of(program, k):
    """The program's feeds for call k: every float scaled elementwise by a draw of its own in
    [0.8, 1.2] (signs, zeros and logarithms' domains kept), the indices permuted (in range)."""
    rng = np.random.default_rng((program.seed, k))
    feeds = {}
    for name, value in program.feeds().items():
        if value.dtype.kind == "f":
            feeds[name] = np.asarray(value * rng.uniform(0.8, 1.2, value.shape), value.dtype)
        else:
            feeds[name] = rng.permutation(value.reshape(-1)).reshape(value.shape)
    return feeds


def concurrently(work, items):
    """work(item) for every item, from THREADS threads started together, each running its
    share of the items in turn: the results in the items' order (an exception as its result)."""
    results = [None] * len(items)
    start = threading.Barrier(THREADS)
    errors = np.geterr()  # NumPy's error state is per thread: a new one starts at the default

    def thread(first):
        start.wait()
        with np.errstate(**errors):  # the caller's, as the one-at-a-time calls ran under
            for k in range(first, len(items), THREADS):
                try:
                    results[k] = work(items[k])
                except Exception as exc:  # noqa: BLE001 - reported as this call's crash
                    results[k] = exc

    workers = [threading.Thread(target=thread, args=(t,)) for t in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results


def _steps(step, feeds):
    """CALLS training steps on arrays of their own: each step's scalar, then the arrays."""
    arrays = {name: np.array(value) for name, value in feeds.items()}
    values = [step(arrays) for _ in range(CALLS)]
    return values + [arrays[name] for name in sorted(arrays)]


def _compare(program, mode, where, got, expected):
    """The first call whose results differ from its one-at-a-time results, as a Failure."""
    for k, (g, e) in enumerate(zip(got, expected)):
        if isinstance(g, Exception):
            return differential.Failure(program.seed, mode, "crash", where,
                                        differential._gist(g), f"call {k}: {g!r}")
        for i, (a, b) in enumerate(zip(g, e)):
            why = differential.differs(a, np.asarray(b))
            if why is not None:
                return differential.Failure(program.seed, mode, "mismatch", where, where,
                                            f"call {k}, result {i}: {why}")
    return None


def check(program, modes=MODES):
    """The first failure of each backend's threaded calls (an empty list when all agree)."""
    nodes = programs.build(program)
    inputs = [nodes[k] for k in program.inputs]
    grads = gd.grad(nodes[-1], inputs)
    updates = {x: x - differential.LR * g for x, g in zip(inputs, grads)}
    calls = [feeds_of(program, k) for k in range(THREADS * CALLS)]
    failures = []
    for mode in modes:
        with np.errstate(all="ignore"):
            try:
                fn = gd.compile([nodes[-1], *grads], **OPTIONS[mode])
                step = gd.compile(nodes[-1], updates=updates, **OPTIONS[mode])
                expected = [fn(feeds) for feeds in calls]
                expected_steps = [_steps(step, feeds) for feeds in calls[:THREADS]]
            except Exception as exc:  # noqa: BLE001 - a crash one call at a time
                failures.append(differential.Failure(program.seed, mode, "crash", "run",
                                                     differential._gist(exc), repr(exc)))
                continue
            failure = (_compare(program, mode, "calls", concurrently(fn, calls), expected)
                       or _compare(program, mode, "steps",
                                   concurrently(functools.partial(_steps, step),
                                                calls[:THREADS]),
                                   expected_steps))
        if failure:
            failures.append(failure)
    return failures
