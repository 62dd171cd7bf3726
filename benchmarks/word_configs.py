"""Word-level settings trained to early stopping on reddit-cleanjokes: held-out perplexity and time.

Each variant is `lstmgen train --config word` with some overrides, on the word corpus of
reddit-cleanjokes (--min-freq 1: 5,034 words, the tutorial's vocabulary), then `lstmgen eval` on its test
split. The config's own stopping rules apply (early stopping after 4 evaluations without improvement,
170 s at most), so the time is what a user waits.

Usage (repo root, after `make install`):
    .venv/bin/python benchmarks/word_configs.py [--variants shipped full-softmax before ...]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT.parent / "shared/data/reddit-cleanjokes.csv"
LSTMGEN = [sys.executable, "-m", "lstmgen"]
VARIANTS = {
    "shipped": [],
    "full-softmax": ["model.adaptive_softmax=null"],
    "cutoffs-1000-3000": ["model.adaptive_softmax=[1000, 3000]"],
    "cutoffs-250-1000": ["model.adaptive_softmax=[250, 1000]"],
    "1x256": ["model.hidden=256"],
    "2x128": ["model.n_layer=2"],
    "batch-32": ["train.batch_size=32"],
    "batch-128": ["train.batch_size=128"],
    "embed-64": ["model.embed=64"],
    # configs/word.yaml until 2026-11-24: 2 x 256, a full softmax, batch 32
    "before": ["model.hidden=256", "model.n_layer=2", "model.adaptive_softmax=null", "train.batch_size=32"],
}


def run(name: str, sets: list[str], env: dict) -> dict:
    args = [*LSTMGEN, "train", "--config", "word", "--corpus", "w", "--name", name,
            "--quiet", "--json", *(arg for s in sets for arg in ("--set", s))]  # fmt: skip
    summary = json.loads(subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout)
    ev = subprocess.run([*LSTMGEN, "eval", "--model", name, "--json"], capture_output=True, text=True, check=True,
                        env=env)  # fmt: skip
    return {
        "variant": name,
        "overrides": sets,
        "steps": summary["steps"],
        "epochs": summary["epochs"],
        "elapsed_s": summary["elapsed_s"],
        "tokens_per_s": summary["tokens_per_s"],
        "stop": summary["stop_reason"],
        "test_perplexity": round(json.loads(ev.stdout)["perplexity"], 1),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["shipped", "full-softmax", "before"])
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = os.environ | {"LSTMGEN_HOME": home}
        subprocess.run([*LSTMGEN, "prepare", str(CSV), "--name", "w", "--tokenizer", "word", "--min-freq", "1",
                        "--quiet"], check=True, env=env)  # fmt: skip
        for name in a.variants:
            print(json.dumps(run(name, VARIANTS[name], env)), flush=True)


if __name__ == "__main__":
    main()
