"""Generated NumPy code frees large temporaries after their last read (`del`), so a step's peak
memory is what is alive at once, not everything it computed; a deleted name is never read again."""

from __future__ import annotations

import re

import numpy as np

import graphdl as gd
from graphdl.codegen.numpy_backend.render import FREED_BYTES


def lenet_step():
    x, y = gd.input("x", (16, 1, 28, 28)), gd.input("y", (16,), "int64")
    c1, c2 = gd.input("c1", (6, 1, 5, 5)), gd.input("c2", (16, 6, 5, 5))
    f1 = gd.input("f1", (256, 10))
    h = gd.max_pool2d(gd.relu(gd.conv2d(x, c1)), 2)
    h = gd.max_pool2d(gd.relu(gd.conv2d(h, c2)), 2)
    loss = gd.softmax_cross_entropy(gd.reshape(h, (16, 256)) @ f1, y)
    params = [c1, c2, f1]
    return gd.compile(loss, updates={p: p - 0.1 * g for p, g in zip(params, gd.grad(loss, params))})


def feeds(rng):
    return {"x": rng.standard_normal((16, 1, 28, 28)).astype(np.float32),
            "y": rng.integers(0, 10, 16),
            "c1": rng.standard_normal((6, 1, 5, 5)).astype(np.float32) * 0.3,
            "c2": rng.standard_normal((16, 6, 5, 5)).astype(np.float32) * 0.1,
            "f1": rng.standard_normal((256, 10)).astype(np.float32) * 0.1}


def test_deleted_names_are_never_read_again(rng):
    fn = lenet_step()
    fn(feeds(rng))
    body = fn.source.split("def run(")[1].splitlines()
    deleted = [(k, name) for k, line in enumerate(body) if line.strip().startswith("del ")
               for name in line.split("#")[0].strip()[4:].split(", ")]
    assert len(deleted) >= 4  # conv outputs, pool routes, gradients of the first layers
    for k, name in deleted:
        later = [line.split("#")[0] for line in body[k + 1:]]
        assert not any(re.search(rf"\b{name}\b", line) for line in later), name


def test_small_temporaries_keep_their_names_and_values_are_unchanged(rng):
    fn = lenet_step()
    fed = feeds(rng)
    mine = {k: v.copy() for k, v in fed.items()}
    theirs = {k: v.copy() for k, v in fed.items()}
    fn(mine)
    gd.compile(fn.outputs, updates=dict(fn.updates), debug=True)(theirs)  # one statement per node
    for k in ("c1", "c2", "f1"):
        np.testing.assert_allclose(mine[k], theirs[k], rtol=1e-5, atol=1e-6)
    x, w = gd.input("x", (4, 3)), gd.input("w", (3, 2))
    small = gd.compile(gd.sum(gd.tanh(x @ w) @ gd.transpose(w)))  # arrays far below FREED_BYTES
    assert small.source.count(" = ") > 2 and "del " not in small.source
    assert 4 * 3 * 4 < FREED_BYTES
