"""The novelty index: suffix arrays and longest-copy lookups against brute force, and indexes of word corpora."""

import numpy as np
import pytest

from lstmgen import novelty
from lstmgen.corpus import PrepareOptions, build_corpus
from lstmgen.novelty import Index, build_index, suffix_array
from lstmgen.sources import read_records, read_source


def test_suffix_array_sorts_every_suffix():
    rng = np.random.default_rng(0)
    for _ in range(200):
        t = rng.integers(0, rng.integers(1, 5), rng.integers(1, 40)).astype(np.uint8)
        assert suffix_array(t).tolist() == sorted(range(t.size), key=lambda i: t[i:].tolist())


def _brute(records: list[str], s: str) -> int:
    best = 0
    for i in range(len(s)):
        while i + best < len(s) and any(s[i : i + best + 1] in r for r in records):
            best += 1
    return best


@pytest.mark.parametrize(
    "window, prefix_entries, key_chars",
    [(1, 4, None), (3, 1 << 10, None), (32, 16, None), (1, 4, 1), (3, 16, 3), (32, 1 << 10, 8)],
)
def test_longest_copy_agrees_with_brute_force(monkeypatch, window, prefix_entries, key_chars):
    monkeypatch.setattr(novelty, "WINDOW", window)  # small windows: many rounds of narrowing
    monkeypatch.setattr(novelty, "PREFIX_ENTRIES", prefix_entries)
    monkeypatch.setattr(novelty, "KEY_CHARS", key_chars or 8)  # None: the search without packed keys
    rng = np.random.default_rng(window + (key_chars or 0))
    for trial in range(150):
        records = ["".join(rng.choice(list("abc"), rng.integers(1, 20))) for _ in range(rng.integers(1, 6))]
        text = np.array([0] + [c for r in records for c in [*(ord(ch) - 96 for ch in r), 0]], dtype=np.uint8)
        starts = (np.flatnonzero(text == 0)[:-1] + 1).astype(np.int64)
        index = Index(text, suffix_array(text), starts, np.arange(len(records)) + 10, "abc", {})
        if key_chars is None:
            index.keys = None
        s = str(rng.choice(records)) if trial % 3 == 0 else "".join(rng.choice(list("abcd"), rng.integers(0, 25)))
        copy = index.longest(s)
        assert copy.chars == _brute(records, s), (records, s)
        assert copy.copied == (s in records)
        if copy.chars:
            assert s[copy.at : copy.at + copy.chars] in records[copy.record - 10]


def test_word_corpus_index_finds_its_records(jokes_csv):
    source = read_source(str(jokes_csv))
    records, column = read_records(source)
    corpus = build_corpus(source, records, PrepareOptions(tokenizer="word", min_freq=1), column=column)
    index = build_index(corpus)
    train = list(novelty.train_texts(corpus))
    copy = index.longest(train[3])
    assert copy.copied and copy.chars == len(train[3]) and records[copy.record] == train[3]
    assert index.longest("Zzz qqq " + train[3][:20] + " xx").chars == 20  # its record begins there
    assert not index.longest(train[3] + " and more").copied
