"""Lesson 1, measured: one training epoch on reddit-cleanjokes, the PyTorch jokes tutorial's algorithm
(../shared/bench/tutorial_baseline.py: per-item Dataset/DataLoader, windows of 4, batch 256) vs `lstmgen train`,
in the same run, on the same machine. Prints one JSON line per contender, then the ratios.

Usage (from the repo root, after `make install`):
    .venv/bin/python benchmarks/vs_tutorial.py [--csv ../shared/data/reddit-cleanjokes.csv] [--epochs 1]

Not part of the test suite: it takes about a minute on 2 cores.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LSTMGEN = [sys.executable, "-m", "lstmgen"]
# The tutorial's model shape (embedding 128, 3 x 128 LSTM, dropout 0.2, one full softmax): same arithmetic
# per token, so the ratio measures the data pipeline and batching, not a smaller model.
TUTORIAL_SHAPE = ["model.embed=128", "model.hidden=128", "model.n_layer=3", "model.dropout=0.2",
                  "model.adaptive_softmax=null"]  # fmt: skip


def tutorial(csv: str, epochs: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(ROOT.parent / "shared/bench/tutorial_baseline.py"), csv, str(epochs)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fields = dict(re.findall(r"(\w+)=([\d.]+)", out))
    return {
        "contender": "tutorial algorithm (3x128, seq 4, batch 256, DataLoader)",
        "epoch_s": float(fields["train_s"]) / epochs,
        "tokens_per_s": float(fields["tok_per_s"]),
        "held_out_word_ppl": float(fields["test_word_ppl"]),
        "note": "no held-out split of its own; added by the script",
    }


def lstmgen(csv: str, epochs: int, label: str, sets: list[str], env: dict) -> dict:
    args = [
        *LSTMGEN,
        "train",
        "--config",
        "word",
        "--corpus",
        "bench",
        "--name",
        label,
        "--quiet",
        "--json",
        "--set",
        f"train.max_epochs={epochs}",
        "--set",
        "train.max_time=null",
        "--set",
        "train.eval_every=100000",
        "--set",
        "train.patience=null",
    ]
    for s in sets:
        args += ["--set", s]
    summary = json.loads(subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout)
    ev = json.loads(
        subprocess.run(
            [*LSTMGEN, "eval", "--model", label, "--json"], capture_output=True, text=True, check=True, env=env
        ).stdout
    )
    return {
        "contender": label,
        "epoch_s": summary["elapsed_s"] / summary["epochs"],
        "tokens_per_s": summary["tokens_per_s"],
        "held_out_word_ppl": round(ev["perplexity"], 1),
        "held_out_bits_per_char": round(ev["bits_per_char"], 3),
        "unk_rate": ev.get("unk_rate"),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", default=str(ROOT.parent / "shared/data/reddit-cleanjokes.csv"))
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = os.environ | {"LSTMGEN_HOME": home}
        subprocess.run(
            [*LSTMGEN, "prepare", a.csv, "--name", "bench", "--tokenizer", "word", "--min-freq", "1"],
            check=True,
            capture_output=True,
            env=env,
        )
        rows = [
            tutorial(a.csv, a.epochs),
            lstmgen(a.csv, a.epochs, "lstmgen-tutorial-shape", TUTORIAL_SHAPE, env),
            lstmgen(a.csv, a.epochs, "lstmgen-word.yaml", [], env),
            # The same config with one full softmax over the vocabulary: what the adaptive one saves.
            lstmgen(a.csv, a.epochs, "lstmgen-word.yaml-full-softmax", ["model.adaptive_softmax=null"], env),
        ]
    for r in rows:
        print(json.dumps(r))
    base = rows[0]["epoch_s"]
    for r in rows[1:]:
        print(
            f"{r['contender']}: epoch {r['epoch_s']:.2f}s vs tutorial {base:.2f}s -> {base / r['epoch_s']:.1f}x faster"
        )


if __name__ == "__main__":
    main()
