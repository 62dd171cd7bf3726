"""bf16 autocast against fp32 for lstmgen's training step on the CPU, variants interleaved in one run.

The step is `lstmgen train`'s: LSTMLM forward with targets, backward, grad clipping, fused AdamW on fp32
master weights, the hidden state carried between windows. Shape: 2 x 256 (embed 128), batch 64, seq 128, a
65-symbol vocabulary (tinyshakespeare's chars), random ids (speed does not depend on the text). Variants:
  fp32                 no autocast
  bf16 (shipped)       torch.autocast("cpu", bf16) around forward: the LSTM and the head's matmul in bf16,
                       cross-entropy on the logits cast to fp32
  bf16, fp32 head      the LSTM in bf16, the output head and loss in fp32 (autocast off around them)
  bf16, bf16 loss      as shipped, but cross-entropy on the bf16 logits (no .float())
  bf16 weights         the whole model cast to bf16 (no autocast, no fp32 masters): an upper bound on speed,
                       not a recipe (AdamW on bf16 weights loses small updates)
Prints tokens/s per variant and round, then the medians and each variant's ratio to fp32, and the CPU line.

Usage (repo root): OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bf16.py [--rounds 3] [--steps 8] [--threads 1]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu  # noqa: E402

VOCAB, B, T = 65, 64, 128
VARIANTS = ["fp32", "bf16 (shipped)", "bf16, fp32 head", "bf16, bf16 loss", "bf16 weights"]


def make(variant: str):
    from lstmgen.config import Config, load_config
    from lstmgen.model import LSTMLM
    from lstmgen.tokenize import IGNORE
    from lstmgen.train import build_optimizer

    cfg: Config = load_config(None, ["model.embed=128", "model.hidden=256", "model.n_layer=2"])
    torch.manual_seed(0)
    model = LSTMLM(VOCAB, cfg.model).train()
    if variant == "bf16 weights":
        model = model.to(torch.bfloat16)
    opt = build_optimizer(model, cfg)

    def nll_fp32_head(out, targets):
        with torch.autocast("cpu", enabled=False):
            logits = model.head(out.float()).flatten(0, 1)
        return F.cross_entropy(logits, targets.flatten(), ignore_index=IGNORE, reduction="none").view_as(targets)

    def nll_bf16_loss(out, targets):
        logits = model.head(out).flatten(0, 1)  # (B * T, V) bf16: autocast runs cross_entropy in fp32 anyway
        return F.cross_entropy(logits, targets.flatten(), ignore_index=IGNORE, reduction="none").view_as(targets)

    if variant == "bf16, fp32 head":
        model._nll = nll_fp32_head
    elif variant == "bf16, bf16 loss":
        model._nll = nll_bf16_loss
    autocast = variant.startswith("bf16") and variant != "bf16 weights"
    state = None

    def step(x, y):
        nonlocal state
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            nll, state = model(x, state, y)
        loss = nll.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = (state[0].detach(), state[1].detach())
        return loss.item()

    return step


def tokens_per_s(step, steps: int) -> float:
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, VOCAB, (B, T + 1), generator=g) for _ in range(steps + 2)]
    for ids in batches[:2]:  # oneDNN builds its primitives on the first calls
        step(ids[:, :-1], ids[:, 1:])
    start = time.perf_counter()
    for ids in batches[2:]:
        step(ids[:, :-1], ids[:, 1:])
    return steps * B * T / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from lstmgen.device import cpu_bf16_lstm_works

    if not cpu_bf16_lstm_works():
        sys.exit(f"this CPU's oneDNN LSTM refuses bf16 ({cpu()}): nothing to compare")
    steps = {v: make(v) for v in VARIANTS}
    got = {v: [] for v in VARIANTS}
    for r in range(a.rounds):
        for v in VARIANTS:  # interleaved: a change in the machine's load touches every variant alike
            got[v].append(tokens_per_s(steps[v], a.steps))
            print(f"round {r + 1} {v:18s} {got[v][-1]:9,.0f} tok/s", flush=True)
    print(f"\n2 x 256, batch {B} x seq {T}, {a.threads} thread(s), median of {a.rounds} rounds of {a.steps} steps;")
    print("the ratio is the median of each round's ratio to that round's fp32 (the load of a shared machine drifts)")
    for v in VARIANTS:
        ratio = statistics.median(x / f for x, f in zip(got[v], got["fp32"], strict=True))
        print(f"| {v:18s} | {statistics.median(got[v]):9,.0f} | {ratio:.2f}x |")
    print(f"torch {torch.__version__}; {cpu()}")


if __name__ == "__main__":
    main()
