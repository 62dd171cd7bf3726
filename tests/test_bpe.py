"""Byte-level BPE (`--tokenizer bpe`): any text encodes and decodes exactly, the tokenizer travels with the
corpus and the model, and prompts are token-healed."""

import json

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lstmgen import registry
from lstmgen.corpora import load_corpus
from lstmgen.errors import LstmgenError
from lstmgen.inference import load_for_inference, load_torch
from lstmgen.sample import SampleOptions, sample, sample_many
from lstmgen.tokenize import EOR, Vocab, build_vocab

from .cli.runner import TINY, bad, ok
from .conftest import JOKES


@pytest.fixture(scope="module")
def vocab():
    return build_vocab("bpe", JOKES, vocab_size=320)


@pytest.fixture
def bpe_model(jokes_csv):
    ok("prepare", jokes_csv, "--name", "toy-bpe", "--tokenizer", "bpe", "--vocab-size", "300",
       "--val-frac", "0.1", "--test-frac", "0.1")  # fmt: skip
    ok("train", "-c", "bpe", "--corpus", "toy-bpe", "--name", "bpe", "--quiet", *TINY)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",))))
@example("line one\nline two\r\n\u00e9\U0001f600 <eor> <unk> \x00")
def test_bpe_round_trips_any_text_without_unk(vocab, text):
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert vocab.eor_id not in ids  # a literal "<eor>" in a text is text, not the end of the record


def test_bpe_learns_merges_and_starts_from_all_bytes(vocab):
    assert vocab.itos[0] == EOR and vocab.unk_id is None and len(vocab) == 320
    assert len(vocab.encode(JOKES[0])) < len(JOKES[0]) / 2  # common words became single tokens
    assert vocab.unknown("\U0001f600 anything") == []


def test_a_damaged_bpe_vocab_is_one_clear_error(vocab):
    for broken in ({**vocab.to_dict(), "bpe": "{not json"}, {**vocab.to_dict(), "itos": vocab.itos[:-1]},
                   {k: v for k, v in vocab.to_dict().items() if k != "bpe"}):  # fmt: skip
        with pytest.raises(LstmgenError, match="vocabulary is damaged"):
            Vocab.from_dict(broken)


def test_prepare_train_sample_eval_with_bpe(bpe_model, tmp_path):
    corpus = load_corpus("toy-bpe")
    assert corpus["vocab"]["kind"] == "bpe" and corpus["meta"]["tokenizer"] == "bpe"
    registry.remove("corpus", "toy-bpe")  # sampling never needs the data: the tokenizer is in the model
    for prompt in ("Hey, ", "Why did the ca", "\U0001f600 <eor> \u65e5\u672c"):
        r = ok("sample", prompt, "-m", "bpe", "--seed", "1", "-n", "3", "--max-tokens", "30", "--json")
        samples = [json.loads(line) for line in r.stdout.splitlines()]
        assert len(samples) == 3 and all(s["text"] == prompt + s["completion"] for s in samples)
    # nothing was unknown; the one note says novelty cannot be checked without the corpus
    assert [line for line in r.stderr.splitlines() if line.startswith("note:")] == [
        line for line in r.stderr.splitlines() if line.startswith("note: longest_copy is null")
    ]
    texts = tmp_path / "texts.txt"
    texts.write_text("Why did the cat sit?\nA caf\u00e9 \U0001f600 joke.\n")
    m = json.loads(ok("eval", "-m", "bpe", "--file", texts, "--json").stdout)
    assert m["chars"] == len("Why did the cat sit?\nA caf\u00e9 \U0001f600 joke.\n") and m["bits_per_char"] > 0
    assert "--vocab-size sets the size" in bad("prepare", texts, "--vocab-size", "500", code=2)
    assert "--vocab-size must be between 257" in bad("prepare", texts, "--tokenizer", "bpe", "--vocab-size",
                                                       "100", code=2)  # fmt: skip


def test_token_healing_continues_the_prompts_last_token(bpe_model):
    loaded = load_torch("bpe")
    with torch.no_grad():
        loaded.backend.model.head.bias[loaded.vocab.eor_id] = 100.0  # the model would end every text at once
    for prompt in ("Why did the ca", "Hey, "):
        last = loaded.vocab.tokenize(prompt)[-1]
        for s in sample(loaded, prompt, SampleOptions(num_samples=4, max_tokens=5), seed=0):
            # The dropped last token comes back as the first generated one (or one it begins), then <eor>.
            assert s.text.startswith(prompt) and s.tokens == 1 and s.stop_reason == "eor"
            assert loaded.vocab.tokenize(s.text)[-1].startswith(last)


def test_streaming_a_bpe_sample_never_shows_half_a_character(bpe_model):
    loaded = load_for_inference("bpe")
    for seed in range(4):  # temperature 3: byte tokens in odd orders, partial UTF-8 sequences on the way
        pieces = []
        options = SampleOptions(max_tokens=40, temperature=3.0)
        (s,) = sample(loaded, "\u00e9t\u00e9 ", options, seed=seed, on_text=pieces.append)
        assert "".join(pieces) == s.text


def test_batched_bpe_prompts_match_single_ones(bpe_model):
    loaded = load_for_inference("bpe")
    prompts = ["Hey, ", "Why did the ca", "", "\U0001f600"]
    options = SampleOptions(num_samples=2, max_tokens=25, temperature=1.2)
    batched = sample_many(loaded, prompts, options, seeds=[3, 4, 5, 6])
    alone = [sample(loaded, p, options, seed=s) for p, s in
             zip(prompts, [3, 4, 5, 6], strict=True)]  # fmt: skip
    assert [[s.text for s in b] for b in batched] == [[s.text for s in a] for a in alone]


def test_a_stop_string_in_the_healed_end_of_the_prompt_does_not_stop_the_sample(bpe_model):
    # The first token re-generates the prompt's healed "ca"; only a "ca" after the prompt may stop a sample.
    options = SampleOptions(num_samples=4, max_tokens=20, stop=("ca",))
    out = sample(load_for_inference("bpe"), "Why did the ca", options, seed=1)
    assert not all(s.tokens == 1 and s.stop_reason == "stop" for s in out), out
    assert all(s.text.startswith("Why did the ca") and "ca" not in s.completion for s in out)


def test_unreadable_prompts_and_tokenizers_are_one_clear_line(bpe_model, vocab):
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "lstmgen", "sample", "-", "-m", "bpe", "--max-tokens", "5"],
                       input=b"Why\nab\xff\n", capture_output=True, env=os.environ)  # fmt: skip
    assert r.returncode == 1 and r.stdout.decode().startswith("Why")  # the good line first
    assert r.stderr.decode().strip() == (
        "error: line 2 of stdin is not valid UTF-8: byte 0xff at offset 2; convert it to UTF-8"
    )
    spec = json.loads(vocab.bpe)
    for part, value in (("decoder", None), ("pre_tokenizer", None), ("normalizer", {"type": "Lowercase"})):
        with pytest.raises(LstmgenError, match="vocabulary is damaged"):
            Vocab.from_dict({**vocab.to_dict(), "bpe": json.dumps({**spec, part: value})})
    assert "--max-vocab and --min-freq shape a word vocabulary" in bad(
        "prepare", "data/jokes.csv", "--tokenizer", "bpe", "--max-vocab", "300", code=2
    )
