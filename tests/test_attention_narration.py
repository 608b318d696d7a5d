"""The attention block drawn and narrated as one gate: its wires are q, k and v (not the
projections that only it uses), labelled so, each narrated by its own part's rule, and the
gradients the narration gives them are PyTorch's."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import graphdl as gd

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(21)
VALUES = {"x": RNG.standard_normal((5, 4)),
          **{w: RNG.standard_normal((4, 4)) / 2 for w in ("Wq", "Wk", "Wv")}}
RULE_ENDS = {"q": "; to q: dS·k·scale", "k": "; to k: dSᵀ·q·scale", "v": "; to v: Pᵀ·g"}


def _self_attention():
    """sum(attention(x·Wq, x·Wk, x·Wv)²), causal: (loss, the three projections)."""
    x = gd.input("x", (5, 4), "float64")
    q, k, v = (x @ gd.input(w, (4, 4), "float64") for w in ("Wq", "Wk", "Wv"))
    y = gd.scaled_dot_product_attention(q, k, v, is_causal=True)
    return gd.sum(y * y), (q, k, v)


def _torch_gradients():
    q, k, v = (torch.tensor(VALUES["x"] @ VALUES[w], requires_grad=True)
               for w in ("Wq", "Wk", "Wv"))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    (y * y).sum().backward()
    return [t.grad.numpy() for t in (q, k, v)]


def test_the_gate_takes_q_k_v_and_the_projections_stay_outside_it():
    loss, _ = _self_attention()
    source = gd.draw(loss, VALUES, collapse="attention").source
    assert source.count("label=<Attention<br/>") == 1
    assert re.findall(r"headlabel=(\w+)", source) == ["q", "k", "v"]
    assert source.count("label=<@>") == 3  # the projections: gates of their own


def test_each_wire_is_narrated_by_its_part_and_carries_pytorchs_gradient():
    loss, projections = _self_attention()
    explained = gd.explain(loss, VALUES, collapse="attention")
    (step,) = [s for s in explained.steps if s.gate.label == "Attention"]
    assert "Attention(" in step.forward
    for term, node, part, want in zip(step.terms, projections, "qkv", _torch_gradients(),
                                      strict=True):
        assert term.source is node and term.rule.endswith(RULE_ENDS[part])
        np.testing.assert_allclose(term.contribution, want, rtol=1e-12, atol=1e-12)


def test_an_argument_playing_every_part_gets_their_sum():
    x = gd.input("x", (3, 2), "float64")
    y = gd.sum(gd.scaled_dot_product_attention(x, x, x) * np.arange(6.0).reshape(3, 2))
    values = {"x": RNG.standard_normal((3, 2))}
    (step,) = [s for s in gd.explain(y, values, collapse="attention").steps
               if s.gate.label == "Attention"]
    (term,) = step.terms
    assert term.rule.endswith("; to q, k, v: dS·k·scale + dSᵀ·q·scale + Pᵀ·g")
    xt = torch.tensor(values["x"], requires_grad=True)
    (F.scaled_dot_product_attention(xt, xt, xt) * torch.arange(6.0).reshape(3, 2)).sum().backward()
    np.testing.assert_allclose(term.contribution, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_the_collapsed_block_renders_to_png(tmp_path):
    loss, _ = _self_attention()
    gd.draw(loss, VALUES, collapse="attention").render(tmp_path / "attention", format="png")
    assert (tmp_path / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attentions_sharing_their_scores_draw_expanded():
    """The example's attention weights are attention(q, k, identity): the same scores product as
    the model's attention. Neither region is then a gate of its own (their insides are shared),
    and finding their parts must not fail."""
    q, k, v = (gd.input(n, (5, 4), "float64") for n in "qkv")
    y = gd.scaled_dot_product_attention(q, k, v, is_causal=True)
    weights = gd.scaled_dot_product_attention(q, k, np.eye(5), is_causal=True)
    values = {n: RNG.standard_normal((5, 4)) for n in "qkv"}
    source = gd.draw(gd.sum(y) + gd.sum(weights), values, collapse="attention").source
    assert "label=<Attention<br/>" not in source and "headlabel" not in source
