"""The character-level GPT of examples/char_transformer.py trained by graphdl and by PyTorch CPU
eager side by side: the same model, written here with torch.nn.functional on the same parameter
names and layouts, from the same initial weights (the example's `init_params`) on the same
batches (its `batches`, same seed), with Adam at the same rate.

Each step is taken in both frameworks, the order alternating, and timed. Printed: both losses
after each tenth of the steps and after the last, the largest relative loss difference over all
steps and the largest parameter difference at the end (float32 rounding makes the two
trajectories drift apart slowly; a wrong gradient makes them part at once), then the median step
times and the median of the per-step ratios graphdl / PyTorch.

Both run on --threads threads (default 1: OpenBLAS through threadpoolctl, torch by
`set_num_threads`; see benchmarks/localization_step.py for why one on a shared machine).

    PYTHONPATH=. python benchmarks/char_transformer.py [--steps N] [--threads N] [--gelu none]
    PYTHONPATH=. python benchmarks/char_transformer.py --smoke      # seconds: CI's
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# this tree's graphdl, the example, and benchmarks/ (machine.py) where the tests import this
sys.path[:0] = [str(ROOT), str(ROOT / "examples"), str(ROOT / "benchmarks")]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle torch threads must not spin

import char_transformer as ct
import machine
import smoke
import torch
import torch.nn.functional as F


def torch_forward(p, x, config):
    """The example's `forward` in PyTorch: logits (B, T, vocab) of the characters x (B, T)."""
    n, t = x.shape
    d, heads = config.dim, config.heads
    h = F.embedding(x, p["tok_emb"]) + p["pos_emb"]
    for i in range(config.layers):
        pre = f"h{i}."
        a = F.layer_norm(h, (d,), p[pre + "ln1.weight"], p[pre + "ln1.bias"])
        q, k, v = (F.linear(a, p[pre + f"attn.{part}.weight"], p[pre + f"attn.{part}.bias"])
                   .view(n, t, heads, d // heads).transpose(1, 2) for part in "qkv")
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(n, t, d)
        h = h + F.linear(y, p[pre + "attn.out.weight"], p[pre + "attn.out.bias"])
        m = F.layer_norm(h, (d,), p[pre + "ln2.weight"], p[pre + "ln2.bias"])
        m = F.gelu(F.linear(m, p[pre + "mlp.fc.weight"], p[pre + "mlp.fc.bias"]),
                   approximate=config.gelu)
        h = h + F.linear(m, p[pre + "mlp.proj.weight"], p[pre + "mlp.proj.bias"])
    h = F.layer_norm(h, (d,), p["ln_f.weight"], p["ln_f.bias"])
    return F.linear(h, p["head.weight"])


def torch_loss(p, x, y, config):
    """Mean cross-entropy of the next characters y (B, T) given x (B, T)."""
    logits = torch_forward(p, torch.as_tensor(x), config)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.as_tensor(y).reshape(-1))


def torch_params(params):
    """Leaf tensors with gradients, copies of the NumPy arrays."""
    return {name: torch.tensor(value, requires_grad=True) for name, value in params.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    ap.add_argument("--threads", type=int, default=1, help="threads for NumPy's BLAS and torch")
    ap.add_argument("--gelu", choices=("tanh", "none"), default="tanh",
                    help="GELU's form: tanh (the example's, GPT-2's) or none (exact, erf)")
    ap.add_argument("--smoke", action="store_true",
                    help="the example's smoke model and text, a few steps: seconds")
    args = ap.parse_args()
    smoke.enable(args.smoke)
    steps = 5 if args.smoke else args.steps
    smoke.note("graphdl's and PyTorch's losses within 2.5e-5 (relative) of each other over 200 "
               "steps, a graphdl step 2.0-2.1x PyTorch's on one thread "
               "(PYTHONPATH=. python benchmarks/char_transformer.py)")
    print(machine.limit_threads(args.threads))
    print(f"tree {machine.source_version()}, {machine.cpu_model()}, torch {torch.__version__}")
    config = dataclasses.replace(ct.SMOKE if args.smoke else ct.Config(), gelu=args.gelu)
    name, text = ct.load_text(args.smoke)
    vocab = ct.Vocab(text)
    print(f"{name}: {len(text):,} characters, {len(vocab)} distinct; {config}; {steps} steps")

    params = ct.init_params(config, len(vocab))
    tp = torch_params(params)
    opt = torch.optim.Adam(tp.values(), lr=config.lr)
    step, state = ct.compile_step(config, len(vocab), {"backend": "numpy"})

    times = {"graphdl": [], "torch": []}
    losses = {"graphdl": [], "torch": []}
    runs = {"graphdl": lambda x, y: float(step(x=x, y=y, **params, **state)),
            "torch": lambda x, y: machine.torch_step(opt, torch_loss(tp, x, y, config))}
    every = max(1, steps // 10)
    for k, (x, y) in zip(range(steps), ct.batches(vocab.encode(text), config)):
        for who in sorted(runs, reverse=k % 2 == 1):  # alternate who goes first
            start = time.perf_counter()
            losses[who].append(runs[who](x, y))
            times[who].append(time.perf_counter() - start)
        if (k + 1) % every == 0 or k + 1 == steps:
            print(f"step {k + 1:5d}: loss graphdl {losses['graphdl'][-1]:.6f}, "
                  f"PyTorch {losses['torch'][-1]:.6f}{smoke.tag()}")

    a, b = np.array(losses["graphdl"]), np.array(losses["torch"])
    # A key bias's gradient is 0 but for rounding (softmax ignores a shift of all of a query's
    # scores), which Adam divides by its own size: those walk apart by design, left out here.
    gap = max(float(np.max(np.abs(params[n] - t.detach().numpy()))) for n, t in tp.items()
              if not n.endswith("attn.k.bias"))
    print(f"largest relative loss difference over the {steps} steps: "
          f"{float(np.max(np.abs(a - b) / np.abs(b))):.2e}; largest parameter difference at the "
          f"end (key biases left out): {gap:.2e}{smoke.tag()}")
    timed = slice(min(5, steps - 1), None)  # the first steps compile and warm caches
    g, t = (np.array(times[who][timed]) for who in ("graphdl", "torch"))
    print(f"median step: graphdl {1e3 * statistics.median(g):.1f} ms, PyTorch "
          f"{1e3 * statistics.median(t):.1f} ms; median per-step ratio graphdl / PyTorch "
          f"{statistics.median(g / t):.2f} (compiling the step: {step.compile_seconds:.1f} s)"
          f"{smoke.tag()}")


if __name__ == "__main__":
    main()
