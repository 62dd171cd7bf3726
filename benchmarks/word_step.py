"""What makes configs/word.yaml's training step fast, one change at a time, alternating in one run.

Each variant trains lstmgen's own model (lstmgen.model.LSTMLM) with the step `lstmgen train` takes
(forward with targets, backward, grad clipping, AdamW) for a few epochs of reddit-cleanjokes' word corpus
(--min-freq 1, 5,034 words, as the tutorial's vocabulary), configs/word.yaml's shape (1 x 128, batch 64 x 32).
The variants add, in order:
  1. full softmax, nn.Dropout, AdamW's CPU default (a Python loop over the parameters)
  2. + the adaptive softmax (model.adaptive_softmax [500, 2000])
  3. + fused AdamW (one kernel for all parameters)
  4. + FastDropout (the mask drawn as uniforms compared in place, not bernoulli_), i.e. lstmgen as shipped
Prints tokens/s per variant and round, then the medians and each step's gain.

Usage (repo root, after `make install`):
    .venv/bin/python benchmarks/word_step.py [--rounds 3] [--epochs 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from lstmgen.corpora import load_corpus

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT.parent / "shared/data/reddit-cleanjokes.csv"
VARIANTS = ["full softmax, nn.Dropout, AdamW", "+ adaptive softmax", "+ fused AdamW", "+ FastDropout (shipped)"]


def tokens_per_s(variant: int, ids: torch.Tensor, vocab_size: int, epochs: int) -> float:
    from lstmgen.config import load_config
    from lstmgen.model import LSTMLM

    cfg = load_config("word").model
    if variant < 1:
        cfg.adaptive_softmax = None
    torch.manual_seed(0)
    model = LSTMLM(vocab_size, cfg).train()
    if variant < 3:
        model.drop = nn.Dropout(cfg.dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=variant >= 2)
    b, t = 64, 32
    lanes = (len(ids) - 1) // b
    x_all, y_all = ids[: lanes * b].view(b, lanes), ids[1 : lanes * b + 1].view(b, lanes)  # (B, L) each
    start, tokens = time.perf_counter(), 0
    for _ in range(epochs):
        state = None
        for i in range(0, lanes, t):
            x, y = x_all[:, i : i + t], y_all[:, i : i + t]
            nll, state = model(x, state, y)  # (B, T)
            opt.zero_grad(set_to_none=True)
            nll.mean().backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            state = (state[0].detach(), state[1].detach())
            tokens += x.numel()
    return tokens / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["LSTMGEN_HOME"] = home
        subprocess.run(
            [sys.executable, "-m", "lstmgen", "prepare", str(CSV), "--name", "w", "--tokenizer", "word",
             "--min-freq", "1", "--quiet"],
            check=True,
        )  # fmt: skip

        corpus = load_corpus("w")
        ids, vocab_size = corpus["splits"]["train"].long(), len(corpus["vocab"]["itos"])
    results = {v: [] for v in range(len(VARIANTS))}
    tokens_per_s(3, ids, vocab_size, 1)  # warm-up: the first run in a process pays oneDNN's set-up
    for r in range(a.rounds):
        for v in range(len(VARIANTS)):
            results[v].append(tokens_per_s(v, ids, vocab_size, a.epochs))
        print(f"round {r}: " + ", ".join(f"{VARIANTS[v]} {results[v][-1]:,.0f}" for v in results), flush=True)
    medians = [statistics.median(results[v]) for v in results]
    for v, m in enumerate(medians):
        gain = f"  x{m / medians[v - 1]:.2f} on the line above" if v else ""
        print(f"{VARIANTS[v]:34s} {m:9,.0f} tok/s{gain}")
    print(f"shipped vs the first line: x{medians[-1] / medians[0]:.2f}")


if __name__ == "__main__":
    main()
