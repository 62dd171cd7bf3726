"""Sampling and scoring on the CPU run on ONNX Runtime and numpy: torch is never imported."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; from lstmgen.cli import main; sys.argv[0] = 'lstmgen'; main()"


def without_torch(*args, input=None):
    """`lstmgen ARGS` in a fresh interpreter where `import torch` raises ImportError."""
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], input=input, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)  # fmt: skip


def test_sample_and_eval_never_import_torch(tiny_model):
    r = without_torch("sample", "Why", "--model", "tiny", "--seed", "1", "-n", "3", "--max-tokens", "30",
                      "--top-p", "0.9", "--repetition-penalty", "1.2", "--no-repeat-ngram", "3", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    samples = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(samples) == 3 and all(s["text"].startswith("Why") for s in samples)
    r = without_torch("sample", "-", "--model", "tiny", "--seed", "2", "--stream", input="Hey\nWhat\n")
    assert r.returncode == 0 and [line[:3] for line in r.stdout.splitlines()] == ["Hey", "Wha"], r.stderr
    r = without_torch("eval", "--model", "tiny", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["tokens"] > 0, r.stderr
    r = without_torch("eval", "--model", "tiny", "--per-record", "--split", "val")
    assert r.returncode == 0 and len(r.stdout.splitlines()) > 1, r.stderr


def test_sample_gives_the_same_text_with_and_without_torch(tiny_model):
    args = ["sample", "Why", "--model", "tiny", "--seed", "4", "-n", "2", "--max-tokens", "40", "--top-k", "10"]
    plain = subprocess.run([sys.executable, "-m", "lstmgen", *args, "--device", "auto"], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert plain.returncode == 0 and plain.stdout == without_torch(*args).stdout


def _train(tokenizer: str, jokes_csv, **model) -> str:
    """A briefly trained model of each kind (its corpus: the toy jokes at that tokenizer level)."""
    from dataclasses import replace

    from lstmgen import registry
    from lstmgen.corpora import load_corpus
    from lstmgen.corpus import PrepareOptions, build_corpus
    from lstmgen.sources import read_records, read_source
    from lstmgen.train import train

    from .conftest import tiny_config

    source = read_source(str(jokes_csv))
    records, col = read_records(source)
    sized = {"vocab_size": 300} if tokenizer == "bpe" else {"min_freq": 1} if tokenizer == "word" else {}
    options = PrepareOptions(tokenizer, val_frac=0.1, test_frac=0.1, **sized)
    registry.save_corpus(tokenizer, build_corpus(source, records, options, column=col))
    cfg = tiny_config(max_steps=6)
    cfg = replace(cfg, corpus=tokenizer, name=f"m-{tokenizer}", model=replace(cfg.model, **model))
    train(cfg, load_corpus(tokenizer))
    return cfg.name


def test_onnx_and_torch_paths_give_the_same_tokens_and_nll_for_every_kind_of_model(jokes_csv):
    from lstmgen import checkpoint
    from lstmgen.decoding import generate
    from lstmgen.evaluate import evaluate_model
    from lstmgen.inference import load_for_inference, load_torch
    from lstmgen.sample import SampleOptions, sample
    from lstmgen.validation import evaluate

    kinds = {"char": {}, "word": {"hidden": 32, "adaptive_softmax": [10, 20]}, "bpe": {}}
    options = SampleOptions(num_samples=4, max_tokens=100, temperature=1.5, top_p=0.98, repetition_penalty=1.1)
    for tokenizer, model in kinds.items():
        name = _train(tokenizer, jokes_csv, **model)
        a = sample(load_for_inference(name), "Why did", options, seed=3)
        b = sample(load_torch(name), "Why did", options, seed=3)
        assert [s.text for s in a] == [s.text for s in b], tokenizer
        # 500 tokens per stream, <eor> banned so none ends early: the same tokens from both backends
        long = SampleOptions(num_samples=2, max_tokens=500, temperature=1.2, top_k=50)
        streams = [
            np.stack(list(generate(loaded.backend, [loaded.vocab.encode("Why did")], loaded.vocab.eor_id, long,
                                   rngs=[np.random.default_rng(7)], banned=(loaded.vocab.eor_id,))))  # fmt: skip
            for loaded in (load_for_inference(name), load_torch(name))
        ]
        assert streams[0].shape == (500, 2) and (streams[0] == streams[1]).all(), tokenizer
        ckpt = checkpoint.load(name)  # the held-out loss as training's validation computes it, in torch
        nll, n = evaluate(ckpt.build_model(), ckpt.heldout["test"], ckpt.make_vocab().eor_id)
        assert evaluate_model(name)["loss"] == pytest.approx(nll / n, rel=1e-5), tokenizer


def test_a_model_without_a_graph_gets_one_with_a_note_and_a_damaged_graph_is_one_error(tiny_model):
    from lstmgen import registry

    d = registry.entry_dir("model", "tiny")
    (d / "best.onnx").unlink()
    (d / "heldout.npz").unlink()
    args = [sys.executable, "-m", "lstmgen"]
    r = subprocess.run([*args, "sample", "Why", "-m", "tiny", "--seed", "1"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("Why"), r.stderr
    assert r.stderr.count("\n") == 1 and "note: built" in r.stderr and "best.onnx" in r.stderr
    r = without_torch("eval", "--model", "tiny")  # graph and held-out ids are back: no torch needed
    assert r.returncode == 0 and r.stderr == "", r.stderr
    data = bytearray((d / "best.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "best.onnx").write_bytes(bytes(data))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in d.iterdir())
    r = without_torch("sample", "Why", "--model", "tiny")
    assert r.returncode == 1 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert "best.onnx" in r.stderr and "delete it" in r.stderr and "Traceback" not in r.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in d.iterdir()) == before  # the registry is as it was
