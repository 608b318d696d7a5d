"""The word2vec example's data side on small hand-written texts (no gensim, no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

from examples.word2vec import batches as B
from examples.word2vec import corpus
from examples.word2vec import vocab as V


def _encoded(lines):
    ids = np.array([w for line in lines for w in line], dtype=np.int64)
    return V.Encoded(ids, np.cumsum([0] + [len(line) for line in lines]))


def test_tokenize_lowercases_and_keeps_letter_runs():
    assert corpus.tokenize("Don't PANIC: 42 times!") == ["don", "t", "panic", "times"]


def test_gcide_block_drops_pronunciation_etymology_tags_and_spells_accents():
    block = ('Abdomen \\Ab*do"men\\, n. [L. abdomen (a word of uncertain\n'
             "   etymol.).]\n   The belly of a Ph[oe]nician caf['e]. [1913 Webster]")
    assert corpus.gcide_block_text(block) == "Abdomen , n. The belly of a Phoenician cafe."


def test_vocab_sorts_by_count_then_first_appearance_and_drops_rare_words():
    words, encoded = V.encode_lines([["b", "a", "c", "a"], ["c", "b", "d"]])
    assert words == ["b", "a", "c", "d"]
    vocab = V.Vocab.build(words, encoded, min_count=2)
    assert vocab.words == ["b", "a", "c"]  # all seen twice: first appearance decides
    assert vocab.counts.tolist() == [2, 2, 2]
    restricted = vocab.restrict(encoded)
    assert restricted.ids.tolist() == [0, 1, 2, 1, 2, 0]
    assert restricted.offsets.tolist() == [0, 4, 6]


def test_huffman_codes_and_points_for_counts_5_4_3_2_1():
    # By hand, word2vec.c's two queues: merge 0 = {4, 3} (3), merge 1 = {merge 0, 2} (6: a tie
    # of 3 and 3 goes to the merged node first), merge 2 = {1, 0} (9), root 3 = {m1, m2} (15).
    # The second node of each merge has bit 1; paths read from the root.
    h = V.huffman(np.array([5, 4, 3, 2, 1]))
    assert h.lengths.tolist() == [2, 2, 2, 3, 3]
    assert h.codes.tolist() == [[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert h.points.tolist() == [[3, 2, 0], [3, 2, 0], [3, 1, 0], [3, 1, 0], [3, 1, 0]]
    assert h.mask.tolist() == [[1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]]


def test_huffman_paths_are_distinct_prefix_free_and_optimal():
    counts = np.array([40, 30, 30, 20, 9, 9, 9, 1, 1, 1])
    h = V.huffman(counts)
    paths = [tuple(h.codes[w, : h.lengths[w]].astype(int)) for w in range(len(counts))]
    for a in paths:
        assert not any(a != b and b[: len(a)] == a for b in paths)
    # Optimal total length: the sum of all merge weights, here computed independently.
    weights, cost = sorted(counts.tolist()), 0
    while len(weights) > 1:
        merged = weights.pop(0) + weights.pop(0)
        cost += merged
        weights = sorted(weights + [merged])
    assert int((h.lengths * counts).sum()) == cost


def test_huffman_refuses_a_single_word():
    with pytest.raises(ValueError, match="at least 2 words"):
        V.huffman(np.array([3]))


def test_keep_probability_matches_the_formula_on_hand_picked_counts():
    # N = 1000 words, sample = 0.01: threshold t = 10, keep = (sqrt(v / t) + 1) * t / v.
    keep = V.keep_probability(np.array([400, 475, 100, 25]), sample=0.01)
    np.testing.assert_allclose(keep, [0.1831139, 0.1661479, 0.4162278, 1.0], rtol=1e-6)
    assert V.keep_probability(np.array([5, 3]), sample=0).tolist() == [1.0, 1.0]


def test_noise_table_draws_follow_unigram_to_the_three_quarters():
    counts = np.array([1000, 300, 50, 10, 1])
    expected = counts**0.75 / (counts**0.75).sum()
    draws = 400_000
    got = np.bincount(V.NoiseTable(counts).draw(np.random.default_rng(7), draws), minlength=5)
    # Each frequency is binomial: within 5 standard errors (a 1-in-1.7-million miss per word
    # for a right table) while the plain unigram (power 1) is hundreds of errors away.
    stderr = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(got / draws - expected) < 5 * stderr)


@pytest.mark.parametrize("counts", [[1000, 300, 50, 10, 1], [5, 5, 5], [1, 10**6], [7]])
def test_noise_table_alias_slots_hold_exactly_the_distribution(counts):
    weights = np.asarray(counts, dtype=np.float64) ** 0.75
    table = V.NoiseTable(np.array(counts))
    np.testing.assert_allclose(table.probabilities(), weights / weights.sum(), rtol=1e-12)
    assert np.all((table.keep > 0) & (table.keep <= 1))


def test_noise_table_redraws_negatives_equal_to_the_target():
    table = V.NoiseTable(np.array([1000, 1, 1]))  # word 0 is drawn 99% of the time
    targets = np.zeros((500, 1), dtype=np.int64)
    negatives = table.draw(np.random.default_rng(0), (500, 4), exclude=targets)
    assert negatives.shape == (500, 4) and np.all(negatives != 0)


def test_context_window_reach_is_window_minus_b_within_the_line():
    line_of = np.array([0] * 7 + [1] * 4)
    window = 3
    where, mask = B.context_window(line_of, window, np.random.default_rng(5))
    reach = window - np.random.default_rng(5).integers(0, window, len(line_of))
    position = np.array([0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3])
    length = np.array([7] * 7 + [4] * 4)
    expected = np.minimum(reach, position) + np.minimum(reach, length - 1 - position)
    assert mask.sum(axis=1).tolist() == expected.tolist()
    assert np.all(line_of[where[mask]] == np.repeat(line_of, mask.sum(axis=1)))
    assert np.all(where[~mask] == 0)


def test_skipgram_pairs_with_window_1_are_every_neighbour_in_the_line():
    corpus_ = _encoded([[0, 1, 2], [3, 4]])
    (batch,) = B.batches(corpus_, np.ones(5), "skipgram", window=1, sample=0, negative=0,
                         batch_size=100)
    pairs = list(zip(batch.centers.tolist(), batch.contexts.tolist()))
    assert pairs == [(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3)]
    assert batch.mask is None and batch.negatives is None


def test_cbow_rows_mask_line_edges_and_skip_lone_words():
    corpus_ = _encoded([[0, 1, 2], [3], [4, 5]])
    (batch,) = B.batches(corpus_, np.ones(6), "cbow", window=1, sample=0, negative=0,
                         batch_size=100)
    assert batch.centers.tolist() == [0, 1, 2, 4, 5]  # word 3 has no context
    assert batch.mask.tolist() == [[0, 1], [1, 1], [1, 0], [0, 1], [1, 0]]
    assert batch.contexts.tolist() == [[0, 1], [0, 2], [1, 0], [0, 5], [4, 0]]
    assert batch.mask.dtype == np.float32


def test_lr_decays_linearly_from_0_025_to_0_0001():
    assert B.linear_lr(0, 1000) == 0.025
    assert B.linear_lr(1000, 1000) == pytest.approx(0.0001, abs=1e-15)
    assert B.linear_lr(500, 1000) == pytest.approx(0.01255)


def _small_run(mode, seed, **kw):
    rng = np.random.default_rng(3)
    lines = [rng.integers(0, 20, rng.integers(2, 12)).tolist() for _ in range(300)]
    corpus_ = _encoded(lines)
    counts = np.bincount(corpus_.ids, minlength=20)
    return list(B.batches(corpus_, counts, mode, window=4, batch_size=64, negative=3, epochs=2,
                          seed=seed, chunk_words=200, **kw))


def test_batches_are_full_sized_with_negatives_never_the_predicted_word():
    for mode in ("skipgram", "cbow"):
        run = _small_run(mode, seed=1, sample=0)
        assert all(len(b.centers) == 64 for b in run[:-1]) and 0 < len(run[-1].centers) <= 64
        for b in run:
            predicted = b.contexts if mode == "skipgram" else b.centers
            assert b.negatives.shape == (len(b.centers), 3)
            assert np.all(b.negatives != predicted[:, None])


def test_batch_lr_starts_at_0_025_and_decreases_over_all_epochs():
    rates = [b.lr for b in _small_run("skipgram", seed=1, sample=0)]
    assert rates[0] == 0.025
    assert np.all(np.diff(rates) <= 0) and 0.0001 <= rates[-1] < 0.0003


def test_batches_repeat_for_a_seed_and_change_with_it():
    first, again, other = (_small_run("cbow", seed=s, sample=0.02) for s in (1, 1, 2))
    same = all(np.array_equal(a.contexts, b.contexts) and np.array_equal(a.negatives, b.negatives)
               for a, b in zip(first, again))
    assert same and len(first) == len(again)
    assert not all(np.array_equal(a.mask, b.mask) for a, b in zip(first, other))


def test_batches_refuse_an_unknown_mode_and_ids_past_the_counts():
    with pytest.raises(ValueError, match="'skipgram' or 'cbow'"):
        next(B.batches(_encoded([[0, 1]]), np.ones(2), "glove"))
    with pytest.raises(ValueError, match="past the 2 counts"):
        next(B.batches(_encoded([[0, 5]]), np.ones(2), "cbow"))


def test_prefetched_yields_every_item_in_order_and_raises_where_the_producer_failed():
    assert list(B.prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield from (1, 2)
        raise KeyError("drawn badly")

    items = B.prefetched(failing())
    assert [next(items), next(items)] == [1, 2]
    with pytest.raises(KeyError, match="drawn badly"):
        next(items)


def test_corpus_help_prints_the_sources_and_builds_nothing(capsys, monkeypatch):
    monkeypatch.setattr(corpus, "build", lambda *a, **k: pytest.fail("--help built the corpus"))
    with pytest.raises(SystemExit) as exit_:
        corpus.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for source in corpus.SOURCES:
        assert f"{source.name} ({source.package})" in out


def test_corpus_check_names_each_skipped_source_and_its_package(capsys, monkeypatch):
    def missing():
        raise corpus.SourceMissing("the `bible` program is missing (apt-get install bible-kjv)")

    sources = tuple(s if s.name != "bible" else corpus.Source("bible", missing, s.read, s.package)
                    for s in corpus.SOURCES)
    monkeypatch.setattr(corpus, "SOURCES", sources)
    monkeypatch.setattr(corpus, "build", lambda *a, **k: pytest.fail("--check built the corpus"))
    corpus.main(["--check"])
    out = capsys.readouterr().out
    assert "SKIPPED bible        Debian: bible-kjv" in out
    assert "apt-get install bible-kjv" in out
    assert "sources skipped" in out
