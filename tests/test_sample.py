import torch

from lstmgen.sample import filter_logits, generate, load_model, sample


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.1)).tolist() == [[False, True, True, True]]
    assert not torch.isinf(filter_logits(logits, top_p=1.0)).any()
    torch.testing.assert_close(filter_logits(logits, temperature=2.0), logits / 2)


def test_decoding_is_stateful_one_token_per_step(tiny_model):
    """The prompt is fed once; every later forward is (N, 1): O(1) per token, no re-encoding."""
    loaded = load_model("tiny")
    shapes = []
    loaded.model.register_forward_hook(lambda mod, args, out: shapes.append(tuple(args[0].shape)))
    prompt = loaded.vocab.encode("Why did")
    steps = list(
        generate(
            loaded.model,
            prompt,
            loaded.vocab.eor_id,
            num_samples=3,
            max_tokens=20,
            generator=torch.Generator().manual_seed(0),
        )
    )
    assert shapes[0] == (1, len(prompt) + 1)  # <eor> + prompt, once
    assert all(s == (3, 1) for s in shapes[1:])
    assert len(shapes) == len(steps)  # never more than one forward per token


def test_generation_starts_at_a_record_start_and_stops_at_eor(tiny_model):
    loaded = load_model("tiny")
    model, eor = loaded.model, loaded.vocab.eor_id
    # Make <eor> overwhelmingly likely: every sample stops after one token.
    with torch.no_grad():
        model.head.bias[eor] = 100.0
    out = sample(loaded, "Why", num_samples=4, max_tokens=50, seed=0)
    assert [s.stop_reason for s in out] == ["eor"] * 4 and all(s.text == "Why" and s.tokens == 0 for s in out)


def test_seed_reproducible_and_max_tokens(tiny_model):
    loaded = load_model("tiny")
    a = sample(loaded, "Hey", num_samples=2, max_tokens=15, seed=7, temperature=1.5)
    b = sample(loaded, "Hey", num_samples=2, max_tokens=15, seed=7, temperature=1.5)
    assert [s.text for s in a] == [s.text for s in b]
    assert all(s.text.startswith("Hey") and s.tokens <= 15 for s in a)
    assert all(s.stop_reason == "max_tokens" for s in a if s.tokens == 15)


def test_greedy_is_deterministic(tiny_model):
    loaded = load_model("tiny")
    texts = {sample(loaded, "What", greedy=True, max_tokens=20, seed=s)[0].text for s in range(3)}
    assert len(texts) == 1


def test_word_models_never_sample_unk(toy_corpus):
    from lstmgen import registry
    from lstmgen.corpus import build_corpus, read_records, read_source
    from lstmgen.train import train

    from .conftest import tiny_config

    src = read_source(registry.load_corpus("toy")["meta"]["source"])
    registry.save_corpus("w", build_corpus(src, read_records(src)[0], tokenizer="word", min_freq=3))
    cfg = tiny_config(max_steps=2)
    cfg.corpus, cfg.name = "w", "wm"
    train(cfg, registry.load_corpus("w"))
    loaded = load_model("wm")
    with torch.no_grad():
        loaded.model.head.bias[loaded.vocab.unk_id] = 100.0  # <unk> would win every draw
    out = sample(loaded, "Why", num_samples=4, max_tokens=10, seed=0)
    assert all("<unk>" not in s.text for s in out)


def test_sampler_agrees_with_refeeding_the_whole_text_from_zero_state(tiny_model):
    """The question's 'method 1' (re-run everything each step) and the stateful sampler pick the same tokens."""
    loaded = load_model("tiny")
    model, eor = loaded.model, loaded.vocab.eor_id
    prompt = loaded.vocab.encode("Why did")
    stateful = [int(t) for t in generate(model, prompt, eor, max_tokens=40, greedy=True)]
    ids, refed = [eor, *prompt], []
    with torch.no_grad():
        for _ in range(len(stateful)):
            logits, _ = model(torch.tensor([ids]))  # the whole text, from the zero state, every step
            nxt = int(logits[0, -1].argmax())
            refed.append(nxt)
            ids.append(nxt)
    assert refed == stateful
