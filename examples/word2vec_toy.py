"""One skip-gram negative-sampling step on a five-word vocabulary, drawn and narrated by graphdl.

    v_c = W_in[center]      u_o = W_out[context]      u_n = W_out[negative]
    loss = -log σ(u_o · v_c) - log σ(-u_n · v_c)

The lecture's word2vec input is a one-hot vector e_c times the embedding matrix: e_cᵀ W_in picks
row `center`, and the gradient of that product, e_c (∂loss/∂v_c)ᵀ, is zero but in that row.
graphdl computes the lookup as `gd.take` (no one-hot vector is built); the drawing labels each
take with the rows it reads and shows its table's gradient as "gradient into row 2 only", and
the narration says "rows [2] of W_in (center = 2): the one-hot e_2 times W_in" and "added into
row 2 of W_in only". One SGD step then changes those rows and no other. Last, the Huffman tree
of the same vocabulary (hierarchical softmax, the lecture's other way around the full softmax):
each word's code is its path from the root.

Run from the repository root:  python examples/word2vec_toy.py [--out build] [--quiet]
CLI:  graphdl draw examples/word2vec_toy.py --collapse log_sigmoid -o toy.svg
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from word2vec.vocab import huffman

import graphdl as gd

WORDS = ["the", "cat", "sat", "on", "mat"]
COUNTS = np.array([9, 4, 3, 2, 1])  # sorted by count, as the vocabulary ids are
DIM = 3
CENTER, CONTEXT, NEGATIVE = 2, 1, 4  # "sat" predicts "cat"; "mat" is the drawn negative
LR = 0.5

# Both tables random (word2vec starts W_out at zero, where no gradient would reach W_in yet).
_rng = np.random.default_rng(0)
values = {"W_in": (_rng.standard_normal((len(WORDS), DIM)) * 0.5).round(2),
          "W_out": (_rng.standard_normal((len(WORDS), DIM)) * 0.5).round(2),
          "center": np.array(CENTER), "context": np.array(CONTEXT),
          "negative": np.array(NEGATIVE)}

w_in = gd.input("W_in", (len(WORDS), DIM), "float64")
w_out = gd.input("W_out", (len(WORDS), DIM), "float64")
center, context, negative = (gd.input(name, (), "int64")
                             for name in ("center", "context", "negative"))


v_c = gd.take(w_in, center, axis=0).named("v_c")
u_o = gd.take(w_out, context, axis=0).named("u_o")
u_n = gd.take(w_out, negative, axis=0).named("u_n")
positive = gd.log_sigmoid(gd.sum(u_o * v_c)).named("log_σ_o")
negative_ = gd.log_sigmoid(-gd.sum(u_n * v_c)).named("log_σ_n")
output = (-(positive + negative_)).named("loss")


def sgd_step():
    """One step W -= LR · ∂loss/∂W; returns the rows of each table that changed."""
    grads = gd.evaluate(gd.grad(output, [w_in, w_out]), values)
    changed = {}
    for name, g in zip(("W_in", "W_out"), grads):
        updated = values[name] - LR * g
        changed[name] = np.flatnonzero(np.any(updated != values[name], axis=1))
    return changed


def tree_lines(words, counts, codes, points, lengths):
    """The Huffman tree drawn from the words' paths: inner node n<i> (weight), each branch
    labelled with its bit, the leaves the words with their counts and codes."""
    children = {}  # inner node -> {bit: ("inner", id) or ("word", id)}
    for w in range(len(words)):
        for d in range(lengths[w]):
            below = ("inner", points[w, d + 1]) if d + 1 < lengths[w] else ("word", w)
            children.setdefault(points[w, d], {})[int(codes[w, d])] = below

    def weight(kind, i):
        if kind == "word":
            return counts[i]
        return sum(weight(*c) for c in children[i].values())

    def walk(kind, i, prefix, lines):
        if kind == "word":
            code = "".join(str(int(b)) for b in codes[i, :lengths[i]])
            lines[-1] += f"{words[i]} ({counts[i]}), code {code}"
            return
        lines[-1] += f"n{i} ({weight(kind, i)})"
        for bit in (0, 1):
            last = bit == 1
            lines.append(f"{prefix}{'└' if last else '├'}─{bit}─ ")
            walk(*children[i][bit], prefix + ("    " if last else "│   "), lines)

    root = len(words) - 2
    lines = ["root "]
    walk("inner", root, "", lines)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build", help="output directory")
    parser.add_argument("--quiet", action="store_true", help="do not print the narration")
    args = parser.parse_args()

    print(f"Vocabulary: {', '.join(f'{i} {w}' for i, w in enumerate(WORDS))}; dimension {DIM}")
    print(f"center {WORDS[CENTER]} ({CENTER}), context {WORDS[CONTEXT]} ({CONTEXT}), "
          f"negative {WORDS[NEGATIVE]} ({NEGATIVE})\n")
    ex = gd.explain(output, values, collapse=["log_sigmoid"])
    if not args.quiet:
        print(ex)
    os.makedirs(args.out, exist_ok=True)
    drawing = gd.draw(output, values, collapse=["log_sigmoid"],
                      title="one skip-gram negative-sampling step")
    try:
        drawing.render(outfile=os.path.join(args.out, "word2vec_toy.png"))
        print(f"\n  wrote {os.path.join(args.out, 'word2vec_toy.png')}")
    except gd.DotNotFound as e:
        print(f"\n  ({e})")

    changed = sgd_step()
    print(f"\nOne SGD step (learning rate {LR}) changes rows {changed['W_in'].tolist()} of W_in "
          f"and rows {changed['W_out'].tolist()} of W_out, no other")
    assert changed["W_in"].tolist() == [CENTER]
    assert changed["W_out"].tolist() == sorted([CONTEXT, NEGATIVE])

    h = huffman(COUNTS)
    print("\nHuffman tree of the vocabulary (hierarchical softmax): a word's code is its path "
          "from the root,\nbit by bit; n<i> are the inner nodes (weight = the counts below)")
    for line in tree_lines(WORDS, COUNTS, h.codes, h.points, h.lengths):
        print("  " + line)


if __name__ == "__main__":
    main()
