import torch

from lstmgen.checkpoint import load_for_inference
from lstmgen.corpora import load_corpus
from lstmgen.corpus import PrepareOptions
from lstmgen.sample import SampleOptions, filter_logits, generate, sample


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.1)).tolist() == [[False, True, True, True]]
    assert not torch.isinf(filter_logits(logits, top_p=1.0)).any()
    torch.testing.assert_close(filter_logits(logits, temperature=2.0), logits / 2)


def test_decoding_is_stateful_one_token_per_step(tiny_model):
    """The prompt is fed once; every later forward is (N, 1): O(1) per token, no re-encoding."""
    loaded = load_for_inference("tiny")
    shapes = []
    loaded.model.register_forward_hook(lambda mod, args, out: shapes.append(tuple(args[0].shape)))
    prompt = loaded.vocab.encode("Why did")
    steps = list(
        generate(loaded.model, [prompt], loaded.vocab.eor_id, SampleOptions(num_samples=3, max_tokens=20),
            generators=[torch.Generator().manual_seed(0)],
        )
    )
    assert shapes[0] == (1, len(prompt) + 1)  # <eor> + prompt, once
    assert all(s == (3, 1) for s in shapes[1:])
    assert len(shapes) == len(steps)  # never more than one forward per token


def test_generation_starts_at_a_record_start_and_stops_at_eor(tiny_model):
    loaded = load_for_inference("tiny")
    model, eor = loaded.model, loaded.vocab.eor_id
    # Make <eor> overwhelmingly likely: every sample stops after one token.
    with torch.no_grad():
        model.head.bias[eor] = 100.0
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
    from lstmgen.corpus import build_corpus, read_records, read_source
    from lstmgen.train import train

    from .conftest import tiny_config

    src = read_source(load_corpus("toy")["meta"]["source"])
    registry.save_corpus("w", build_corpus(src, read_records(src)[0], PrepareOptions(tokenizer="word", min_freq=3)))
    cfg = tiny_config(max_steps=2)
    cfg.corpus, cfg.name = "w", "wm"
    train(cfg, load_corpus("w"))
    loaded = load_for_inference("wm")
    with torch.no_grad():
        loaded.model.head.bias[loaded.vocab.unk_id] = 100.0  # <unk> would win every draw
    out = sample(loaded, "Why", SampleOptions(num_samples=4, max_tokens=10), seed=0)
    assert all("<unk>" not in s.text for s in out)


def test_sampler_agrees_with_refeeding_the_whole_text_from_zero_state(tiny_model):
    """The question's 'method 1' (re-run everything each step) and the stateful sampler pick the same tokens."""
    loaded = load_for_inference("tiny")
    model, eor = loaded.model, loaded.vocab.eor_id
    prompt = loaded.vocab.encode("Why did")
    stateful = [int(t) for t in generate(model, [prompt], eor, SampleOptions(max_tokens=40, greedy=True))]
    ids, refed = [eor, *prompt], []
    with torch.no_grad():
        for _ in range(len(stateful)):
            logits, _ = model(torch.tensor([ids]))  # the whole text, from the zero state, every step
            nxt = int(logits[0, -1].argmax())
            refed.append(nxt)
            ids.append(nxt)
    assert refed == stateful


def test_loop_detection_finds_a_repeated_tail_only():
    from lstmgen.sample import is_looping

    back_to = [5, 6] * 8  # "back to back to ..." as word ids: period 2 over 16 tokens
    assert is_looping([1, 2, 3, *back_to])
    assert is_looping(list(range(30)) + list(range(10)) * 3)  # a 10-token block, three times
    assert not is_looping([5, 6] * 7)  # too short to call a loop
    assert not is_looping(list(range(40)))
    assert not is_looping([1, 2] * 8 + [3])  # it stopped repeating


def test_repetition_penalty_lowers_seen_tokens_whatever_their_sign():
    from lstmgen.sample import penalise_repeats

    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    assert penalise_repeats(logits, seen, 2.0).tolist() == [[1.0, -4.0, 2.0, -2.0]]


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
    shapes = []
    loaded.model.register_forward_hook(lambda mod, args, out: shapes.append(tuple(args[0].shape)))
    prompts = [loaded.vocab.encode(p) for p in ("Why did", "Hey", "")]
    steps = list(generate(loaded.model, prompts, loaded.vocab.eor_id, SampleOptions(num_samples=2, max_tokens=20),
                          generators=[torch.Generator().manual_seed(i) for i in range(3)]))  # fmt: skip
    assert shapes[:3] == [(1, len(p) + 1) for p in prompts]  # <eor> + prompt, once each
    assert all(s == (6, 1) for s in shapes[3:]) and len(shapes) - 2 == len(steps)


def test_draw_follows_the_probabilities_and_never_picks_an_excluded_token():
    from lstmgen.sample import draw

    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])  # zeros: what top-k/top-p/banned leave at -inf
    picks = draw(probs.expand(60_000, -1), torch.Generator().manual_seed(0)).flatten()
    freq = torch.bincount(picks, minlength=6).float() / picks.numel()
    assert (freq[probs == 0] == 0).all()
    assert torch.allclose(freq, probs, atol=0.01)
    again = draw(probs.expand(60_000, -1), torch.Generator().manual_seed(0)).flatten()
    assert torch.equal(picks, again)  # a seed gives the same draws
    assert draw(torch.tensor([[0.0, 0.0, 1.0]])).item() == 2  # a single possible token, always


def test_prompts_are_batched_up_to_64_streams_and_handed_over_when_input_pauses():
    from lstmgen.sample import prompt_batches, prompts_per_batch

    lines = [f"prompt {i}\n" for i in range(100)]
    size = prompts_per_batch(SampleOptions())
    assert [len(b) for b in prompt_batches(lines, size)] == [64, 36]  # two batched decodes, not 100 single ones
    assert prompts_per_batch(SampleOptions(num_samples=40)) == 1  # 40 samples fill a batch on their own
    assert prompts_per_batch(SampleOptions(), stream=True) == 1
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
