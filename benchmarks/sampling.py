"""Sampling speed, 500-token outputs, one model, one run (these machines are noisy):

- stateful: lstmgen's decoder (the prompt read once, then one token per step with the carried (h, c)), on
  its CPU default, ONNX Runtime, and beside it on the torch model through the same loop;
- re-feed: the whole text so far fed again from the zero state at every step (the well-known question's
  "method 1"), O(n^2) in the output length, in torch;
- batched: `--num-samples 64`, one (64, 1) forward per step, tokens/s over all 64 streams;
- the tutorial's sampling loop (../shared/bench/tutorial_baseline.py, which re-feeds a growing window with a
  carried state and moves every step's probabilities through numpy), on its own model of the same shape.

lstmgen's model is word level on reddit-cleanjokes at the tutorial's shape (embedding 128, 3 x 128 LSTM, full
softmax), trained briefly: speed does not depend on how well it is trained. <eor> is banned so every output
is 500 tokens long.

Usage (repo root, after `make install`):
    .venv/bin/python benchmarks/sampling.py [--tokens 500] [--repeats 3]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu

ROOT = Path(__file__).resolve().parent.parent
JOKES = ROOT.parent / "shared/data/reddit-cleanjokes.csv"
PROMPT = "Knock knock. Whos there?"


def tutorial_words_per_s(tokens: int) -> float:
    out = subprocess.run([sys.executable, str(ROOT.parent / "shared/bench/tutorial_baseline.py"), str(JOKES), "1",
                          str(tokens)], capture_output=True, text=True, check=True).stdout  # fmt: skip
    return float(re.search(r"words_per_s=(\d+)", out)[1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["LSTMGEN_HOME"] = home
        cli = [sys.executable, "-m", "lstmgen"]
        subprocess.run([*cli, "prepare", str(JOKES), "--tokenizer", "word", "--name", "jw", "--quiet"], check=True)
        # The tutorial's shape, full softmax included (configs/word.yaml's adaptive one is switched off).
        shape = ["model.embed=128", "model.hidden=128", "model.n_layer=3", "model.dropout=0.2",
                 "model.adaptive_softmax=null", "train.batch_size=32", "train.max_steps=150", "train.max_time=null",
                 "train.max_epochs=null"]  # fmt: skip
        subprocess.run([*cli, "train", "-c", "word", "--corpus", "jw", "--name", "tw",
                        "--quiet", *sum([["--set", s] for s in shape], [])], check=True)  # fmt: skip

        import torch

        from lstmgen.decoding import generate
        from lstmgen.inference import load_for_inference, load_torch
        from lstmgen.model import native_lstm_kernel
        from lstmgen.sample import SampleOptions

        torch.set_num_threads(1)  # as ONNX Runtime's session (one intra-op thread)
        onnx, torch_path = load_for_inference("tw"), load_torch("tw")
        model, vocab = torch_path.backend.model, onnx.vocab
        eor, prompt = vocab.eor_id, vocab.encode(PROMPT)

        def stateful(backend, n_streams: int) -> float:
            t0 = time.perf_counter()
            options = SampleOptions(num_samples=n_streams, max_tokens=a.tokens)
            rngs = [np.random.default_rng(0)]
            steps = sum(1 for _ in generate(backend, [prompt], eor, options, banned=(eor,), rngs=rngs))
            return steps * n_streams / (time.perf_counter() - t0)

        @torch.no_grad()
        def refeed() -> float:
            """Method 1: every step reads <eor> + prompt + output so far from the zero state."""
            g, ids = torch.Generator().manual_seed(0), [eor, *prompt]
            t0 = time.perf_counter()
            for _ in range(a.tokens):
                logits, _ = model(torch.tensor([ids]))
                probs = torch.softmax(logits[0, -1].index_fill(0, torch.tensor([eor]), float("-inf")), dim=-1)
                ids.append(int(torch.multinomial(probs, 1, generator=g)))
            return a.tokens / (time.perf_counter() - t0)

        rows = []
        for _ in range(a.repeats):
            single, batched = stateful(onnx.backend, 1), stateful(onnx.backend, 64)
            torch_single, torch_batched = stateful(torch_path.backend, 1), stateful(torch_path.backend, 64)
            with native_lstm_kernel():  # re-feed gets the same kernel choice as the torch decoder
                native = refeed()
            rows.append((single, batched, max(native, refeed()), torch_single, torch_batched))
        tutorial = tutorial_words_per_s(a.tokens)
    single, batched, again, torch_single, torch_batched = (statistics.median(r[i] for r in rows) for i in range(5))
    print(f"CPU: {cpu()}")
    print(f"{a.tokens}-token outputs, median of {a.repeats}, tokens/s:")
    print(f"  tutorial's sampling loop          {tutorial:9,.0f}")
    print(f"  re-feed from zero state (torch)   {again:9,.0f}")
    print(f"  lstmgen one stream, torch         {torch_single:9,.0f}   {torch_single / tutorial:5.1f}x the tutorial")
    print(f"  lstmgen one stream, ONNX Runtime  {single:9,.0f}   {single / tutorial:5.1f}x the tutorial, "
          f"{single / again:5.1f}x re-feed, {single / torch_single:4.1f}x torch")  # fmt: skip
    print(f"  --num-samples 64, torch           {torch_batched:9,.0f}   "
          f"{torch_batched / torch_single:5.1f}x one stream")  # fmt: skip
    print(f"  --num-samples 64, ONNX Runtime    {batched:9,.0f}   {batched / single:5.1f}x one stream, "
          f"{batched / torch_batched:4.1f}x torch")  # fmt: skip


if __name__ == "__main__":
    main()
