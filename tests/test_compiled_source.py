"""Seeing generated code: `fn.source` before the first call, the specializations compiled so far,
picking one by shape, and a saved `device="cpu"` CUDA module running where it was compiled."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys

import numpy as np
import pytest

import graphdl as gd
from graphdl.errors import InputError

GXX = pytest.mark.skipif(shutil.which("g++") is None,
                         reason="device='cpu' compiles CUDA kernels with g++")
BACKENDS = [pytest.param({"backend": "numpy"}, id="numpy"),
            pytest.param({"backend": "cuda", "device": "cpu"}, id="cuda-cpu", marks=GXX)]
FRESH = itertools.count()  # gd.compile caches by graph: each test's graph is one of its own


def layer(**options):
    """A linear layer with an unknown batch: `x` (?, 4) float32, `W` (4, 3) float32."""
    x, W = gd.input("x", (None, 4), "float32"), gd.input("W", (4, 3), "float32")
    return gd.compile(gd.tanh(x @ W) + float(next(FRESH)), **options)


def feeds(batch, rng):
    return {"x": rng.standard_normal((batch, 4)).astype(np.float32),
            "W": rng.standard_normal((4, 3)).astype(np.float32)}


@pytest.mark.parametrize("options", BACKENDS)
def test_source_before_the_first_call_lists_the_inputs_and_how_to_pick_shapes(options):
    fn = layer(**options)
    text = fn.source
    assert "x: (?, 4) float32" in text and "W: (4, 3) float32" in text
    assert "fn.specialize(x=" in text and "fn.specializations" in text
    assert fn.specializations == []


@pytest.mark.parametrize("options", BACKENDS)
def test_specializations_are_the_shapes_compiled_so_far_in_order(options, rng):
    fn = layer(**options)
    for batch in (2, 5, 2):
        fn(feeds(batch, rng))
    assert fn.specializations == [{"x": (2, 4), "W": (4, 3)}, {"x": (5, 4), "W": (4, 3)}]


@pytest.mark.parametrize("options", BACKENDS)
def test_source_says_which_specialization_it_shows_and_that_others_exist(options, rng):
    fn = layer(**options)
    fn(feeds(2, rng))
    fn(feeds(5, rng))
    head, _, body = fn.source.partition("\n")
    comment = "//" if options["backend"] == "cuda" else "#"
    assert head.startswith(comment) and "x: (5, 4)" in head and "2 specializations" in head
    assert body == fn.specialize(x=(5, 4)).source


def test_a_graph_without_unknown_dimensions_shows_its_one_source_unchanged():
    x = gd.input("x", (2, 4), "float32")
    fn = gd.compile(x * float(next(FRESH)))
    assert fn.source == fn.specialize().source and fn.specializations == [{"x": (2, 4)}]


@pytest.mark.parametrize("options", BACKENDS)
def test_a_specialization_is_picked_by_shape_and_compiled_once(options, rng):
    fn = layer(**options)
    program = fn.specialize(x=(3, 4))
    assert "def run(" in program.source or "__global__" in program.source
    assert program.kernels and program.reports
    assert fn.specialize({"x": (3, 4), "W": (4, 3)}) is program  # the dict form, as before
    f = feeds(3, rng)
    # inputs by position in the program's order (the graph's: W may be the older node, since
    # inputs are hash-consed and another test may have declared the same W first)
    np.testing.assert_array_equal(program.run(*[f[name] for name in program.shapes])[0], fn(f))
    assert fn.specializations == [{"x": (3, 4), "W": (4, 3)}]


@pytest.mark.parametrize(("shapes", "message"), [
    ({"y": (2, 4)}, r"unknown input 'y'; this graph's inputs are \[('x', 'W'|'W', 'x')\]"),
    ({}, r"input 'x' has unknown dimensions \(\?, 4\): give its shape"),
    ({"x": (2, 5)}, r"input 'x' is declared with shape \(\?, 4\), not \(2, 5\)"),
    ({"x": (2,)}, r"input 'x' is declared with shape \(\?, 4\), not \(2,\)"),
    ({"x": (2, 4), "W": (3, 3)}, r"input 'W' is declared with shape \(4, 3\), not \(3, 3\)"),
    ({"x": (-1, 4)}, r"input 'x': sizes are non-negative integers, not \(-1, 4\)"),
])
def test_picking_a_shape_the_graph_cannot_take_names_the_input(shapes, message):
    fn = layer()
    with pytest.raises(InputError, match=message):
        fn.specialize(**shapes)
    assert fn.specializations == []


def test_kernels_and_save_before_the_first_call_say_how_to_pick_shapes(tmp_path):
    fn = layer()
    for ask in (lambda: fn.kernels, lambda: fn.reports, lambda: fn.save(tmp_path / "m.py")):
        with pytest.raises(RuntimeError, match=r"fn\.specialize\(x="):
            ask()


@GXX
def test_a_picked_specialization_saves_its_own_module(tmp_path, rng):
    fn = layer(backend="cuda", device="cpu")  # its kernels hold their sizes
    fn(feeds(2, rng))
    picked = fn.specialize(x=(7, 4))
    fn(feeds(2, rng))
    picked.save(tmp_path / "model.py")
    assert (tmp_path / "model.cu").read_text() == picked.source != fn.specialize(x=(2, 4)).source


@GXX
def test_a_saved_cpu_cuda_module_runs_on_the_machine_it_was_compiled_on(tmp_path, rng):
    """Compiled with device="cpu" where CuPy is absent, the saved module runs on the CPU."""
    fn = layer(backend="cuda", device="cpu")
    f = feeds(3, rng)
    expected = fn(f)
    fn.save(tmp_path / "model.py")
    np.savez(tmp_path / "feeds.npz", **f)
    script = (
        "import sys, numpy, importlib.util\n"
        "sys.modules['cupy'] = None\n"  # importing CuPy fails, wherever it is installed
        f"spec = importlib.util.spec_from_file_location('model', {str(tmp_path / 'model.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"f = numpy.load({str(tmp_path / 'feeds.npz')!r})\n"
        "(out,) = m.run(*[f[name] for name in m.INPUTS])\n"
        f"numpy.save({str(tmp_path / 'out.npy')!r}, out)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
