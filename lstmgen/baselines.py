"""The references a run's held-out bits/char is shown beside: a unigram model of the training split, and the
model's previous run on the same split. They tell a user whether the model learned anything."""

from __future__ import annotations

import math

import torch


def unigram_bits_per_char(train_ids: torch.Tensor, heldout_ids: torch.Tensor, vocab_size: int,
                          heldout_chars: int) -> float | None:  # fmt: skip
    """Bits per character of `heldout_ids` under the training split's token frequencies with add-one
    (Laplace) smoothing: every id of the vocabulary, seen in training or not, gets a count of at least one.
    Per character, each record's end counting as one (the unit of `lstmgen eval` and the trainer's report).
    None for an empty held-out split."""
    if heldout_ids.numel() == 0 or heldout_chars <= 0:
        return None
    counts = _counts(train_ids, vocab_size).double() + 1.0  # (V,)
    logp = counts.log() - counts.sum().log()  # (V,) natural log
    nats = float((_counts(heldout_ids, vocab_size).double() * logp).sum().neg())
    return round(nats / heldout_chars / math.log(2), 4)


def previous_bits_per_char(info: dict, corpus: str, sha256: str | None) -> float | None:
    """The best held-out bits/char an earlier run of this model name reached (its info.json), when it trained
    on the same corpus: another corpus's validation split is not the same test. An info.json without the
    corpus's digest (older runs) is taken at its corpus name."""
    value = info.get("best_val_bits_per_char")
    if not isinstance(value, (int, float)) or info.get("corpus") != corpus:
        return None
    earlier_sha = info.get("corpus_sha256")
    if earlier_sha is not None and sha256 is not None and earlier_sha != sha256:
        return None
    return float(value)


CHUNK = 1 << 24  # ids widened to int64 at a time: 128 MB, however large the corpus


def _counts(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(V,) int64 occurrences of each id in `ids` (any integer dtype: corpora store the smallest that fits)."""
    counts = torch.zeros(vocab_size, dtype=torch.int64)
    for start in range(0, ids.numel(), CHUNK):
        counts += torch.bincount(ids[start : start + CHUNK].long(), minlength=vocab_size)[:vocab_size]
    return counts
