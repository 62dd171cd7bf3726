"""Char vs word vs byte-level BPE: held-out bits per character at the same model and the same time budget.

For each dataset and tokenizer it runs the real CLI: `prepare` (the same split of the text for every
tokenizer), `train` for a fixed wall time, then `eval` of the best checkpoint on the test split. Bits per
character divide the test split's total NLL by its characters, so the three compare directly. Word models
read rare words as <unk>, which makes their figure optimistic: the <unk> rate is printed beside it.

Usage (from the repo root, after `make install`; about 2.5 minutes per run, 6 runs by default):
    .venv/bin/python benchmarks/char_word_bpe.py [--minutes 2.5] [--datasets reddit-cleanjokes tinyshakespeare]

Not part of the test suite. Prints one JSON line per run, then a Markdown table for BENCHMARKS.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
LSTMGEN = [sys.executable, "-m", "lstmgen"]
DATASETS = {  # name: prepare arguments
    "reddit-cleanjokes": [str(SHARED / "reddit-cleanjokes.csv")],  # one record per joke
    "tinyshakespeare": [str(SHARED / "tinyshakespeare.txt"), "--records", "file"],  # one stream, cut 90/5/5
}
# Windows of about 128 characters for each tokenizer (a word is ~5 characters with its space, a 1,024-token
# BPE token ~2.5-3), so each sees the same span of text per step.
SEQ_LEN = {"char": 128, "word": 32, "bpe": 48}
# The same LSTM for all three: only the embedding and the output layer grow with the vocabulary.
MODEL = "{embed: 128, hidden: 256, n_layer: 2, dropout: 0.2, tie_weights: false}"


def cli(*args: str, env: dict) -> str:
    r = subprocess.run([*LSTMGEN, *args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"lstmgen {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def run(dataset: str, tokenizer: str, seconds: float, env: dict, workdir: Path) -> dict:
    name = f"{dataset}-{tokenizer}"
    prepared = json.loads(cli("prepare", *DATASETS[dataset], "--tokenizer", tokenizer, "--name", name,
                              "--overwrite", "--json", "-q", env=env))  # fmt: skip
    config = workdir / f"{name}.yaml"
    config.write_text(
        f"corpus: {name}\nname: {name}\nmodel: {MODEL}\n"
        f"train: {{batch_size: 32, seq_len: {SEQ_LEN[tokenizer]}, lr: 0.003, max_steps: null, max_epochs: null, "
        f"max_time: {seconds}, eval_every: 100, patience: 5, checkpoint_every: 100, seed: 0}}\n"
    )
    trained = json.loads(cli("train", "--config", str(config), "--overwrite", "--json", "-q", env=env))
    scored = json.loads(cli("eval", "--model", name, "--json", env=env))
    return {
        "dataset": dataset,
        "tokenizer": tokenizer,
        "vocab": prepared["vocab_size"],
        "chars_per_token": round(prepared["chars"]["train"] / prepared["tokens"]["train"], 2),
        "steps": trained["steps"],
        "tokens_per_s": trained["tokens_per_s"],
        "stop": trained["stop_reason"],
        "test_bits_per_char": round(scored["bits_per_char"], 4),
        "test_unk_rate": scored.get("unk_rate"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.5, help="training time per run")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--tokenizers", nargs="+", default=list(SEQ_LEN), choices=list(SEQ_LEN))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LSTMGEN_HOME": tmp}
        for dataset in args.datasets:
            for tokenizer in args.tokenizers:
                rows.append(run(dataset, tokenizer, args.minutes * 60, env, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n| dataset | tokenizer | vocab | chars/token | steps in {args.minutes:g} min | tokens/s "
          "| test bits/char | test <unk> |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        unk = "-" if r["test_unk_rate"] is None else f"{r['test_unk_rate']:.1%}"
        print(f"| {r['dataset']} | {r['tokenizer']} | {r['vocab']:,} | {r['chars_per_token']} | {r['steps']:,} "
              f"| {r['tokens_per_s']:,} | **{r['test_bits_per_char']:.3f}** | {unk} |")  # fmt: skip


if __name__ == "__main__":
    main()
