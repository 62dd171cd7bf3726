"""A training recipe that sizes itself: from the corpus (tokens, vocabulary, record lengths), the time budget
and this machine's measured speed, the model shape, batch, window, learning rate, dropout and schedule of a
`lstmgen train --corpus NAME --time 5m` run given no --config. Keys the user sets with --set win.

The rule, in order (its constants are named below, each with where it comes from):
  1. window: record lengths (a record and its context fit in one window), within the corpus;
  2. speed: tokens/s of each candidate shape at that window, measured here for a few seconds (one probe,
     the others scaled by their arithmetic per token; the pick is probed too), cached per machine and shape;
  3. shape: the largest candidate that still sees TOKENS_PER_PARAMETER tokens per parameter in the budget;
  4. batch: as many lanes as keep MIN_STEPS x sqrt(minutes) optimizer steps in the budget (more steps
     beat wider ones for short runs), at most what gives every lane MIN_WINDOWS windows per epoch;
  5. dropout from the epochs the budget buys (many passes over little text overfit), learning rate from the
     width, warmup, a cosine to the end of the budget, and validation every ~1/EVALS of it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import dataclass, field

import torch

from . import registry
from .config import Config, ModelConfig, load_config, lstm_parameters, override_keys
from .errors import UsageError

# Candidate shapes, (n_layer, hidden), from least to most arithmetic per token.
SHAPES = [(1, 128), (2, 128), (2, 256), (2, 384), (2, 512), (3, 512), (2, 768), (3, 768), (3, 1024)]
# Tokens per parameter a run must see in its budget for a larger shape to pay. The prior, 3, is the issue's
# measurement: a 2 x 256 bf16 LSTM (0.9 M parameters) trained ~3 M tokens of tinyshakespeare in 3 minutes
# and reached 1.56 nats/char, better than shapes that saw fewer tokens each; benchmarks/recipe_sweep.py
# checks it (BENCHMARKS.md, "Self-sizing recipe").
TOKENS_PER_PARAMETER = 3.0
# Optimizer steps wanted in a one-minute budget, and how that grows with the budget: MIN_STEPS x
# sqrt(budget / 60 s). Fitted on jokes, reddit-cleanjokes and tinyshakespeare (BENCHMARKS.md, "Self-sizing
# recipe"): at 60 s, 600 -> 1,200 gained 0.10-0.24 nats/char on all three and 2,400 was within the runs'
# noise (~0.06); at 3 minutes, 1,150-1,330 steps (batch 32) trailed 2,600 (batch 16) by 0.06-0.09 on
# reddit-cleanjokes.
MIN_STEPS = 1200
STEPS_BUDGET_S = 60.0
MIN_WINDOWS = 4  # windows per lane and epoch, at least
BATCHES = (8, 16, 32, 64, 128)
EVALS = 15  # validation passes per run, at most; each costs at most EVAL_SHARE of the budget in all
EVAL_SHARE = 0.1
USABLE = 0.85  # of the budget, what the steps get: start-up, validation and saves take the rest
PROBE_S = 0.5  # seconds of timed steps per probe (after one untimed step: oneDNN builds its kernels)
# The shortest budget the recipe sizes: start-up (imports, the corpus) and the probes took 4-6 s here, and a
# `--time 1s` run trained 0 steps and saved an untrained model.
MIN_BUDGET_S = 15.0
SPEED_FILE = "speed.json"  # in the registry home: {machine: {shape: tokens/s}}


@dataclass
class Recipe:
    cfg: Config
    chosen: dict  # dotted key -> the recipe's value (keys the user set are not in it)
    kept: list[str]  # the keys the user set, which the recipe left alone
    why: list[str] = field(default_factory=list)  # two lines: what it picked, and why

    def to_dict(self) -> dict:
        return {"config": self.cfg.to_dict(), "chosen": self.chosen, "kept": self.kept, "why": self.why}


def _machine() -> str:
    """This machine as the speed cache keys it: CPU model and bf16 flags, threads, torch version."""
    model, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("?", ""):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    bf16 = "+".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags) or "no-bf16"
    return f"{model}|{bf16}|{os.cpu_count()} cpus|{torch.get_num_threads()} threads|torch {torch.__version__}"


def dense_parameters(n_layer: int, hidden: int, embed: int, vocab: int) -> int:
    """The weights every token's arithmetic uses: the LSTM's (config.lstm_parameters) and a full softmax
    head's, hidden x vocab + vocab. The embedding is a lookup, no arithmetic per token, so it is left out."""
    return lstm_parameters(ModelConfig(embed=embed, hidden=hidden, n_layer=n_layer)) + hidden * vocab + vocab


def embed_width(hidden: int, vocab: int) -> int:
    return 64 if vocab <= 256 else min(hidden, 256)  # chars need few dimensions; words and BPE pieces more


class Speeds:
    """Measured training tokens/s per shape on this machine, cached in the registry home (a failed write
    only costs the next run its probe). `save=False` (a dry run) measures but writes nothing."""

    def __init__(self, device: torch.device, precision: str, save: bool = True):
        self.device, self.precision, self.save = device, precision, save
        self.path = registry.home() / SPEED_FILE
        self.key = f"{_machine()}|{device}|{precision}"
        self.cache = registry.read_json(self.path)
        self.measured: dict[str, float] = {}
        self.spent = 0.0  # seconds this plan spent probing: they come out of the run's budget

    def shape_key(self, n_layer, hidden, embed, vocab, batch, seq) -> str:
        return f"{n_layer}x{hidden} e{embed} v{vocab} b{batch}x{seq}"

    def get(self, n_layer, hidden, embed, vocab, batch, seq) -> float | None:
        key = self.shape_key(n_layer, hidden, embed, vocab, batch, seq)
        value = self.measured.get(key, (self.cache.get(self.key) or {}).get(key))
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    def measure(self, n_layer, hidden, embed, vocab, batch, seq) -> float:
        known = self.get(n_layer, hidden, embed, vocab, batch, seq)
        if known is not None:
            return known
        started = time.perf_counter()
        tps = probe(n_layer, hidden, embed, vocab, batch, seq, self.device, self.precision)
        self.spent += time.perf_counter() - started
        key = self.shape_key(n_layer, hidden, embed, vocab, batch, seq)
        self.measured[key] = tps
        if self.save:
            fresh = registry.read_json(self.path)  # another run may have added its own since
            fresh.setdefault(self.key, {})[key] = round(tps)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                registry.write_json(self.path, fresh)
            except (OSError, registry.SaveFailed):
                pass
        return tps


def probe(n_layer, hidden, embed, vocab, batch, seq, device, precision) -> float:
    """Training tokens/s of one shape: `lstmgen train`'s step (forward with targets, backward, clipping,
    fused AdamW) on random ids, for about PROBE_S seconds after one untimed step; the caller's RNG untouched."""
    from .config import ModelConfig
    from .device import autocast
    from .model import LSTMLM
    from .train import build_optimizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LSTMLM(vocab, ModelConfig(embed=embed, hidden=hidden, n_layer=n_layer, dropout=0.1)).to(device)
        opt = build_optimizer(model, Config())
        ids = torch.randint(0, vocab, (batch, seq + 1), device=device)  # (B, T + 1)
        state, steps, start = None, 0, 0.0
        while steps < 2 or time.perf_counter() - start < PROBE_S:
            if steps == 1:
                start = time.perf_counter()  # the first step builds kernels: untimed
            with autocast(device, precision):
                nll, state = model(ids[:, :-1], state, ids[:, 1:])  # (B, T)
            opt.zero_grad(set_to_none=True)
            nll.mean().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            state = (state[0].detach(), state[1].detach())
            steps += 1
            if steps > 50:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (steps - 1) * batch * seq / (time.perf_counter() - start)


def _pow2_floor(x: float) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(x, 1)))))


def plan_recipe(overrides=(), *, save_speeds: bool = True) -> Recipe:
    """The recipe for the overrides' corpus and budget (train.max_time), the overrides on top: they win."""
    from .corpora import load_corpus
    from .device import pick_device, pick_precision

    given = override_keys(overrides)
    base = load_config(None, overrides)  # the user's own values, and the device and precision to measure on
    budget_s = float(base.train.max_time)
    if budget_s < MIN_BUDGET_S:
        raise UsageError(
            f"--time {_clock(budget_s)} is too short for a run that sizes itself: start-up and measuring this "
            f"machine take seconds of it; give at least {MIN_BUDGET_S:.0f}s, or a --config"
        )
    meta = load_corpus(base.corpus)["meta"]
    n_train = int(meta["tokens"]["train"])
    vocab = int(meta["vocab_size"])
    records = max(1, int((meta.get("records") or {}).get("train") or 1))
    per_record = n_train / records
    device = pick_device(base.train.device)
    precision = pick_precision(base.train.precision, device)
    speeds = Speeds(device, precision, save=save_speeds)

    def pick(key, value):
        return getattr(getattr(base, key.split(".")[0]), key.split(".")[1]) if key in given else value

    # 1. the window: a record and the context before it (LSTMs carry state across windows, so this is
    # about where gradients reach, not what the model sees), within what the corpus has.
    seq = pick("train.seq_len", min(128, max(32, 1 << math.ceil(math.log2(max(2 * per_record, 1))))))
    seq = min(seq, max(8, n_train // (MIN_WINDOWS * BATCHES[0]))) if "train.seq_len" not in given else seq
    steps_s = budget_s * USABLE

    # 2-3. speed and shape: one probe at a middle shape, the others scaled by their arithmetic per token.
    def shape_of(n_layer, hidden):
        n_layer, hidden = pick("model.n_layer", n_layer), pick("model.hidden", hidden)
        return n_layer, hidden, pick("model.embed", embed_width(hidden, vocab))

    batch0 = pick("train.batch_size", 16)
    anchor = shape_of(2, 256)
    anchor_tps = speeds.measure(*anchor, vocab, batch0, seq)
    anchor_params = dense_parameters(*anchor, vocab)

    def estimate(shape) -> float:
        return speeds.get(*shape, vocab, batch0, seq) or anchor_tps * anchor_params / dense_parameters(*shape, vocab)

    candidates = list(dict.fromkeys(shape_of(*s) for s in SHAPES))
    fits = [s for s in candidates if estimate(s) * steps_s >= TOKENS_PER_PARAMETER * dense_parameters(*s, vocab)]
    shape = fits[-1] if fits else candidates[0]
    tps = speeds.measure(*shape, vocab, batch0, seq)
    while tps * steps_s < TOKENS_PER_PARAMETER * dense_parameters(*shape, vocab) and candidates.index(shape) > 0:
        shape = candidates[candidates.index(shape) - 1]  # slower than scaled: one size down, measured
        tps = speeds.measure(*shape, vocab, batch0, seq)
    n_layer, hidden, embed = shape
    params = dense_parameters(*shape, vocab)
    tokens = tps * steps_s  # what the budget buys

    # 4. batch: enough steps (MIN_STEPS a minute, growing as the budget's square root), and MIN_WINDOWS
    # windows per lane and epoch.
    by_steps = _pow2_floor(tokens / (seq * MIN_STEPS * math.sqrt(max(1.0, budget_s / STEPS_BUDGET_S))))
    by_data = _pow2_floor(n_train / (seq * MIN_WINDOWS))
    batch = pick("train.batch_size", min(max(BATCHES[0], min(by_steps, by_data, BATCHES[-1])), max(1, by_data)))
    if batch != batch0:
        tps = speeds.measure(*shape, vocab, batch, seq)
    # The run's clock started with the command: the probes' seconds (none when cached) are not the steps'.
    tokens = tps * max(1.0, steps_s - speeds.spent)
    steps = max(1, int(tokens / (batch * seq)))
    epochs = tokens / max(n_train, 1)

    # 5. regularisation and schedule.
    dropout = 0.0 if epochs < 3 else 0.1 if epochs < 10 else 0.2 if epochs < 30 else 0.3
    lr = round(min(4e-3, 3e-3 * math.sqrt(256 / hidden)), 5)
    warmup = min(100, max(10, steps // 20))
    n_val = int(meta["tokens"].get("val") or 0)
    eval_s = n_val / (3 * tps)  # a validation pass reads each token forward only: ~3x a training step's rate
    evals = max(1, min(EVALS, int(EVAL_SHARE * budget_s / max(eval_s, 1e-3))))
    every = max(10, steps // evals)
    chosen = {
        "model.n_layer": n_layer, "model.hidden": hidden, "model.embed": embed, "model.dropout": dropout,
        "model.tie_weights": False, "model.adaptive_softmax": [500, 2000] if meta.get("tokenizer") == "word" else None,
        "train.batch_size": batch, "train.seq_len": seq, "train.lr": lr, "train.warmup_steps": warmup,
        "train.schedule": "cosine", "train.min_lr_ratio": 0.05, "train.max_epochs": None, "train.max_steps": None,
        "train.max_time": budget_s, "train.eval_every": every, "train.checkpoint_every": every,
        "train.patience": 4 if epochs >= 10 else None,  # many passes: stop once validation turns
    }  # fmt: skip
    kept = sorted(given & set(chosen) - {"train.max_time"})  # the budget is the user's by definition
    chosen = {k: v for k, v in chosen.items() if k not in given}
    cfg = load_config(None, [*(f"{k}={json.dumps(v)}" for k, v in chosen.items()), *overrides])
    m, t = cfg.model, cfg.train
    why = [
        f"recipe: {m.n_layer}x{m.hidden} LSTM ({params / 1e6:.1f}M parameters), batch {t.batch_size} x "
        f"{t.seq_len}, lr {t.lr:.1e}, dropout {m.dropout}, cosine over {_clock(budget_s)}"
        + (f"; yours: {', '.join(kept)}" if kept else ""),
        f"  because: {n_train:,} train tokens (vocab {vocab}, ~{per_record:.0f} per record); {m.n_layer}x{m.hidden} "
        f"trains {tps:,.0f} tok/s here ({precision}) = {tokens / 1e6:.1f}M tokens, {epochs:.1f} epochs, "
        f"{tokens / params:.0f} per parameter",
    ]
    return Recipe(cfg, chosen, kept, why)


def _clock(seconds: float) -> str:
    """A budget as --time writes it: 90s, 5m, 100h."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 60:g}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g}s"


def uses_recipe(config: str | None, resume: bool, overrides=()) -> bool:
    """A fresh run given no --config but a time budget (--time, or --set train.max_time, not null) sizes itself."""
    if config is not None or resume or "train.max_time" not in override_keys(overrides):
        return False
    return load_config(None, overrides).train.max_time is not None
