"""Smoke runs say so: the banner with what a full run gives, the tag beside each number, the
stamp on pictures (examples/smoke.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples import smoke

ROOT = Path(__file__).resolve().parent.parent


def run_smoke(*args):
    env = {**os.environ, "GRAPHDL_SMOKE": "1", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          timeout=300, check=True)
    return done.stdout.decode("utf-8").splitlines()


def test_mlp_smoke_run_says_so():
    lines = run_smoke("examples/mlp_fashion_mnist.py")
    banner = " ".join(line for line in lines if line.startswith("===="))
    assert smoke.LABEL in lines[0] and "86.62 %" in banner
    assert "python examples/mlp_fashion_mnist.py" in banner
    accuracies = [line for line in lines if "accuracy" in line and not line.startswith("====")]
    assert accuracies and all(line.endswith(f"[{smoke.LABEL}]") for line in accuracies)


def test_gaussian_blur_smoke_run_says_so(tmp_path):
    lines = run_smoke("examples/gaussian_blur.py", "--out", str(tmp_path / "blur.png"))
    assert smoke.LABEL in lines[0]
    assert all(line.endswith(f"[{smoke.LABEL}]") for line in lines if "difference" in line)
    assert (tmp_path / "blur.png").stat().st_size > 0


@pytest.mark.parametrize("mode", ["1", None])
def test_stamp_writes_the_banner_on_a_figure(monkeypatch, capsys, mode):
    plt = pytest.importorskip("matplotlib.pyplot")
    if mode is None:
        monkeypatch.delenv("GRAPHDL_SMOKE", raising=False)
    else:
        monkeypatch.setenv("GRAPHDL_SMOKE", mode)
    smoke.note("42 % (python examples/x.py --full)")
    fig = plt.figure(figsize=(6, 4))
    try:
        smoke.stamp(fig)
        texts = [t.get_text() for t in fig.texts]
    finally:
        plt.close(fig)
    printed = capsys.readouterr().out
    if mode is None:  # a full run: nothing printed, nothing drawn, no tag
        assert (printed, texts, smoke.tag()) == ("", [], "")
        return
    assert smoke.LABEL in printed and "--full)" in printed
    assert len(texts) == 1 and texts[0].startswith(smoke.LABEL + "\n")
    assert "42 % (python examples/x.py --full)" in " ".join(texts[0].split())
    assert smoke.tag() == f" [{smoke.LABEL}]"
