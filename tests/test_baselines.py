"""The references a run's bits/char is shown beside: the unigram baseline and the previous run's figure."""

import math

import pytest
import torch

from lstmgen import registry
from lstmgen.baselines import previous_bits_per_char, unigram_bits_per_char
from lstmgen.train import train

from .conftest import tiny_config


def test_unigram_baseline_is_the_add_one_smoothed_training_frequencies_per_char():
    train_ids = torch.tensor([1, 1, 1, 2], dtype=torch.uint8)  # counts + 1 over V=4: [1, 4, 2, 1] of 8
    heldout = torch.tensor([1, 2, 3], dtype=torch.int16)  # id 3 never seen in training: still finite
    nats = -(math.log(4 / 8) + math.log(2 / 8) + math.log(1 / 8))
    assert unigram_bits_per_char(train_ids, heldout, 4, heldout_chars=6) == pytest.approx(
        nats / 6 / math.log(2), abs=1e-4
    )
    assert unigram_bits_per_char(train_ids, heldout[:0], 4, heldout_chars=0) is None


def test_previous_figure_only_counts_on_the_same_corpus():
    info = {"corpus": "toy", "corpus_sha256": "a", "best_val_bits_per_char": 2.5}
    assert previous_bits_per_char(info, "toy", "a") == 2.5
    assert previous_bits_per_char(info, "toy", "b") is None  # the corpus was prepared again from another file
    assert previous_bits_per_char(info, "other", "a") is None
    assert previous_bits_per_char({"corpus": "toy", "best_val_bits_per_char": 2.5}, "toy", "a") == 2.5  # older info
    assert previous_bits_per_char({}, "toy", "a") is None


def test_a_run_reports_its_bits_per_char_beside_the_unigram_and_the_previous_run(toy_corpus):
    first = train(tiny_config(max_steps=8), toy_corpus)
    assert first["previous_val_bits_per_char"] is None  # no earlier run of this name
    info = registry.info("model", "tiny")
    assert first["val_bits_per_char"] == info["best_val_bits_per_char"]
    assert info["unigram_bits_per_char"] == first["unigram_bits_per_char"]
    # The unigram figure is the same split's: a 2x16 model after 8 steps is near it, not below 1 bit or above 8.
    assert 1 < first["unigram_bits_per_char"] < 8
    second = train(tiny_config(max_steps=40, lr=0.02), toy_corpus)  # --overwrite of the same name
    assert second["previous_val_bits_per_char"] == first["val_bits_per_char"]
    assert second["unigram_bits_per_char"] == first["unigram_bits_per_char"]
    assert second["val_bits_per_char"] < second["unigram_bits_per_char"]  # 40 steps learn more than frequencies
