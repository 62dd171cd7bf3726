import numpy as np
import pytest
import torch

from lstmgen.corpora import load_corpus
from lstmgen.corpus import PrepareOptions
from lstmgen.decoding import generate
from lstmgen.inference import load_for_inference, load_torch
from lstmgen.sample import SampleOptions, sample


class Recording:
    """A backend that records the shape of every ids batch it is given."""

    def __init__(self, backend):
        self.backend, self.shapes = backend, []

    def zero_state(self, n):
        return self.backend.zero_state(n)

    def forward(self, ids, h, c):
        self.shapes.append(tuple(ids.shape))
        return self.backend.forward(ids, h, c)


def test_decoding_is_stateful_one_token_per_step(tiny_model):
    """The prompt is fed once; every later forward is (N, 1): O(1) per token, no re-encoding."""
    loaded = load_for_inference("tiny")
    backend = Recording(loaded.backend)
    prompt = loaded.vocab.encode("Why did")
    steps = list(generate(backend, [prompt], loaded.vocab.eor_id, SampleOptions(num_samples=3, max_tokens=20)))
    assert backend.shapes[0] == (1, len(prompt) + 1)  # <eor> + prompt, once
    assert all(s == (3, 1) for s in backend.shapes[1:])
    assert len(backend.shapes) == len(steps)  # never more than one forward per token


def test_generation_starts_at_a_record_start_and_stops_at_eor(tiny_model):
    loaded = load_torch("tiny")
    eor = loaded.vocab.eor_id
    # Make <eor> overwhelmingly likely: every sample stops after one token.
    with torch.no_grad():
        loaded.backend.model.head.bias[eor] = 100.0
    out = sample(loaded, "Why", SampleOptions(num_samples=4, max_tokens=50), seed=0)
    assert [s.stop_reason for s in out] == ["eor"] * 4 and all(s.text == "Why" and s.tokens == 0 for s in out)


def test_seed_reproducible_and_max_tokens(tiny_model):
    loaded = load_for_inference("tiny")
    a = sample(loaded, "Hey", SampleOptions(num_samples=2, max_tokens=15, temperature=1.5), seed=7)
    b = sample(loaded, "Hey", SampleOptions(num_samples=2, max_tokens=15, temperature=1.5), seed=7)
    assert [s.text for s in a] == [s.text for s in b]
    assert all(s.text.startswith("Hey") and s.tokens <= 15 for s in a)
    assert all(s.stop_reason == "max_tokens" for s in a if s.tokens == 15)


def test_greedy_is_deterministic(tiny_model):
    loaded = load_for_inference("tiny")
    texts = {sample(loaded, "What", SampleOptions(greedy=True, max_tokens=20), seed=s)[0].text for s in range(3)}
    assert len(texts) == 1


def test_word_models_never_sample_unk(toy_corpus):
    from lstmgen import registry
    from lstmgen.corpus import build_corpus
    from lstmgen.sources import read_records, read_source
    from lstmgen.train import train

    from .conftest import tiny_config

    src = read_source(load_corpus("toy")["meta"]["source"])
    registry.save_corpus("w", build_corpus(src, read_records(src)[0], PrepareOptions(tokenizer="word", min_freq=3)))
    cfg = tiny_config(max_steps=2)
    cfg.corpus, cfg.name = "w", "wm"
    train(cfg, load_corpus("w"))
    loaded = load_torch("wm")
    with torch.no_grad():
        loaded.backend.model.head.bias[loaded.vocab.unk_id] = 100.0  # <unk> would win every draw
    out = sample(loaded, "Why", SampleOptions(num_samples=4, max_tokens=10), seed=0)
    assert all("<unk>" not in s.text for s in out)


def test_sampler_agrees_with_refeeding_the_whole_text_from_zero_state(tiny_model):
    """The question's 'method 1' (re-run everything each step) and the stateful sampler pick the same tokens."""
    loaded = load_torch("tiny")
    model, eor = loaded.backend.model, loaded.vocab.eor_id
    prompt = loaded.vocab.encode("Why did")
    stateful = [int(t[0]) for t in generate(loaded.backend, [prompt], eor, SampleOptions(max_tokens=40, greedy=True))]
    ids, refed = [eor, *prompt], []
    with torch.no_grad():
        for _ in range(len(stateful)):
            logits, _ = model(torch.tensor([ids]))  # the whole text, from the zero state, every step
            nxt = int(logits[0, -1].argmax())
            refed.append(nxt)
            ids.append(nxt)
    assert refed == stateful


def test_no_repeat_ngram_never_repeats_a_bigram(tiny_model):
    loaded = load_for_inference("tiny")
    options = SampleOptions(num_samples=4, max_tokens=60, temperature=1.2, no_repeat_ngram=2)
    for s in sample(loaded, "Why", options, seed=3):
        bigrams = [s.text[i : i + 2] for i in range(len(s.text) - 1)]
        assert len(bigrams) == len(set(bigrams)), s.text


def test_stop_strings_end_the_sample_before_them(tiny_model):
    loaded = load_for_inference("tiny")
    out = sample(loaded, "Why", SampleOptions(num_samples=8, max_tokens=80, temperature=1.5, stop=(" ", "?")), seed=0)
    assert "stop" in {s.stop_reason for s in out}
    for s in out:
        assert " " not in s.completion and "?" not in s.completion and s.text == "Why" + s.completion


def test_greedy_decoding_that_loops_stops_with_reason_loop(tiny_model):
    (s,) = sample(load_for_inference("tiny"), "Why", SampleOptions(greedy=True, max_tokens=300))
    assert s.stop_reason in ("loop", "eor") and s.tokens < 300


def test_batched_prompts_give_what_each_prompt_gives_alone(tiny_model):
    """Different prompts share each decoding step; prompt p still draws from its own seed only."""
    from lstmgen.sample import sample_many

    loaded = load_for_inference("tiny")
    prompts, seeds = ["Why", "What do you", "", "Hey, w"], [5, 6, 7, 8]
    options = SampleOptions(num_samples=2, max_tokens=30, temperature=1.5, top_p=0.95)
    batched = sample_many(loaded, prompts, options, seeds=seeds)
    alone = [sample(loaded, p, options, seed=s) for p, s in zip(prompts, seeds, strict=True)]
    assert [[s.text for s in b] for b in batched] == [[s.text for s in a] for a in alone]
    assert [b[0].prompt for b in batched] == prompts


def test_batched_decoding_reads_each_prompt_once_then_one_step_per_token(tiny_model):
    loaded = load_for_inference("tiny")
    backend = Recording(loaded.backend)
    prompts = [loaded.vocab.encode(p) for p in ("Why did", "Hey", "")]
    rngs = [np.random.default_rng(i) for i in range(3)]
    steps = list(generate(backend, prompts, loaded.vocab.eor_id, SampleOptions(num_samples=2, max_tokens=20),
                          rngs=rngs))  # fmt: skip
    assert backend.shapes[:3] == [(1, len(p) + 1) for p in prompts]  # <eor> + prompt, once each
    assert all(s == (6, 1) for s in backend.shapes[3:]) and len(backend.shapes) - 2 == len(steps)


def test_the_onnx_and_torch_backends_give_the_same_tokens(tiny_model):
    options = SampleOptions(num_samples=3, max_tokens=200, temperature=1.3, top_k=20, repetition_penalty=1.2)
    onnx = sample(load_for_inference("tiny"), "Why", options, seed=11)
    torch_path = sample(load_torch("tiny"), "Why", options, seed=11)
    assert [s.text for s in onnx] == [s.text for s in torch_path]


def test_prompts_are_batched_up_to_64_streams_and_handed_over_when_input_pauses():
    from lstmgen.sample import SampleRequest, prompt_batches

    lines = [f"prompt {i}\n" for i in range(100)]
    size = SampleRequest().prompts_per_batch
    assert [len(b) for b in prompt_batches(lines, size)] == [64, 36]  # two batched decodes, not 100 single ones
    assert SampleRequest(SampleOptions(num_samples=40)).prompts_per_batch == 1  # 40 samples fill a batch alone
    assert SampleRequest(SampleOptions(num_samples=8), labels=("a", "b")).prompts_per_batch == 4  # 16 streams each
    assert SampleRequest(stream=True).prompts_per_batch == 1
    pauses = iter([True, False] * 50)  # the writer pauses after every second line: each pair answered at once
    assert [len(b) for b in prompt_batches(lines[:6], size, lambda: next(pauses))] == [2, 2, 2]
    assert next(prompt_batches(["Why\r\n"], size)) == ["Why"]


def test_answer_gives_each_prompt_its_own_seed_whatever_the_batching(tiny_model):
    from lstmgen.sample import answer

    loaded = load_for_inference("tiny")
    options = SampleOptions(max_tokens=12)
    prompts = ["Why", "Hey", "What", "I"]
    together = [s.text for s in answer(loaded, [prompts], options, seed=5)]
    apart = [s.text for s in answer(loaded, [[p] for p in prompts], options, seed=5)]
    assert together == apart and len(together) == 4
    assert [s.seed for s in answer(loaded, [prompts[:2], prompts[2:]], options, seed=5)] == [5, 6, 7, 8]


def _random_model_backend():
    from lstmgen.config import ModelConfig
    from lstmgen.model import LSTMLM, TorchDecoder

    torch.manual_seed(0)
    return TorchDecoder(LSTMLM(23, ModelConfig(embed=8, hidden=16, n_layer=1, dropout=0.0)).eval())


def test_every_sampling_option_value_decodes_or_is_one_usage_error():
    """Property: over each numeric option's whole domain (subnormals, huge, inf, nan, negative), either
    SampleOptions refuses it with a UsageError, or decoding runs and yields ids inside the vocabulary."""
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    from lstmgen.errors import UsageError

    floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([5e-324, 1e-300, 1e308]))
    ints = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, 1, 2**63]))
    backend = _random_model_backend()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(temperature=floats, top_p=st.one_of(st.none(), floats), penalty=floats, top_k=st.one_of(st.none(), ints),
           max_tokens=ints, num_samples=ints, ngram=ints)  # fmt: skip
    @example(temperature=0.00390625, top_p=None, penalty=1.0, top_k=None, max_tokens=1, num_samples=1, ngram=0)
    @example(temperature=3.0e36, top_p=None, penalty=1.0, top_k=None, max_tokens=1, num_samples=1, ngram=0)
    @example(temperature=4.5e307, top_p=None, penalty=1.0, top_k=None, max_tokens=1, num_samples=1, ngram=0)
    def check(temperature, top_p, penalty, top_k, max_tokens, num_samples, ngram):
        try:
            options = SampleOptions(max_tokens=max_tokens, temperature=temperature,
                                    top_k=top_k, top_p=top_p, num_samples=num_samples, no_repeat_ngram=ngram,
                                    repetition_penalty=penalty, limit_max_tokens=40, limit_num_samples=8)  # fmt: skip
        except UsageError as e:
            assert "\n" not in str(e)
            return
        # No overflow, division by zero or NaN anywhere on the way. Underflow is the intended result of a tiny
        # temperature (every token but the best rounds to probability 0), so it stays quiet.
        with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
            steps = list(generate(backend, [[1, 2]], 0, options, rngs=[np.random.default_rng(0)]))
        assert steps and all(((s >= 0) & (s < 23)).all() for s in steps)

    check()


@pytest.mark.parametrize("kind", ["char", "word"])
def test_a_stop_string_longer_than_64_tokens_ends_the_sample_where_it_completes(kind):
    """Stop strings are checked in the newest text; that window must hold the longest one, whatever its
    length (once it was a fixed 64 tokens, and a longer stop string never fired)."""
    from lstmgen.sample import TextStream
    from lstmgen.tokenize import EOR, Vocab

    rng = np.random.default_rng(0)
    symbols = list("abcdefghijklmnop") if kind == "char" else [f"w{i}" for i in range(16)]
    vocab = Vocab(kind, [EOR, *symbols])
    ids = rng.integers(1, len(vocab), 300).tolist()  # random: no periodic tail for the loop check to end it
    stop = vocab.detokenize([vocab.itos[i] for i in ids[150:250]])  # 100 tokens: over 64
    stream = TextStream(vocab, "", [], (stop,))
    ended = [i for i, t in enumerate(ids) if stream.add(t)]
    assert ended[:1] == [249] and stream.reason == "stop"
    assert stream.result()[1] + stop == vocab.detokenize([vocab.itos[i] for i in ids[:250]])


def test_stdin_lines_at_the_prompt_cap_are_read_whole_whatever_their_line_end():
    """A CRLF line of exactly the cap was taken for a cut one, and the rest of stdin was dropped, exit 0."""
    import io

    from lstmgen.sample import bounded_lines

    for end in ("\n", "\r\n"):
        text = f"abcde{end}fghij{end}klm{end}"
        assert list(bounded_lines(io.StringIO(text), 5)) == [f"abcde{end}", f"fghij{end}", f"klm{end}"]
    assert list(bounded_lines(io.StringIO("abcdefgh" * 3 + "\nmore\n"), 5)) == ["abcdefg"]  # cut: the last read
