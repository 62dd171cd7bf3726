"""How far each quick-start config trains under a wall-time budget and under its epoch budget, side by side.

The shipped configs stop on epochs and early stopping, so that one seed gives one model on a quiet and on a
busy machine. This picks and checks their epoch counts: for each config it runs the real CLI (`prepare` of
the bundled jokes with the config's tokenizer, then `train`) once bounded by wall time alone
(`--set train.max_epochs=null --time SECONDS`), once as shipped, and reports steps, epochs, wall time
(measured around the process), the best validation loss and why each stopped. A wall-time run reaches
fewer epochs when other work shares the CPU; the shipped run does not depend on it.

Usage (from the repo root; about 5 minutes per config on 2 cores):
    .venv/bin/python benchmarks/config_budgets.py [--configs char word bpe] [--seconds 150 170 150]
        [--only time|shipped]

Not part of the test suite. Prints one JSON line per run, then a Markdown table for BENCHMARKS.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu  # noqa: E402

LSTMGEN = [sys.executable, "-m", "lstmgen"]
PREPARE = {  # the corpus each config trains on, as its header's command prepares it
    "char": ["jokes"],
    "word": ["jokes", "--tokenizer", "word", "--name", "jokes-word"],
    "bpe": ["jokes", "--tokenizer", "bpe", "--name", "jokes-bpe"],
}


def cli(*args: str, env: dict) -> str:
    r = subprocess.run([*LSTMGEN, *args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"lstmgen {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def train(config: str, variant: str, seconds: float, env: dict) -> dict:
    limits = ["--set", "train.max_epochs=null", "--time", f"{seconds:g}s"] if variant == "time" else []
    start = time.perf_counter()
    summary = json.loads(cli("train", "--config", config, *limits, "--overwrite", "--json", "-q", env=env))
    wall = time.perf_counter() - start
    return {
        "config": config,
        "variant": "shipped" if variant == "shipped" else f"max_time {seconds:g} s",
        "steps": summary["steps"],
        "epochs": summary["epochs"],
        "reported_s": summary["elapsed_s"],
        "wall_s": round(wall, 1),
        "best_val_loss": round(summary["best_val_loss"], 4),
        "stop_reason": summary["stop_reason"],
        "precision": summary["precision"],
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["char", "word", "bpe"])
    ap.add_argument("--seconds", nargs="+", type=float, default=[150, 170, 150], help="each config's time budget")
    ap.add_argument("--only", choices=("time", "shipped"), help="run one variant")
    args = ap.parse_args()
    print(f"# {cpu()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "LSTMGEN_HOME": home}
        for config, seconds in zip(args.configs, args.seconds, strict=True):
            cli("prepare", *PREPARE[config], "-q", env=env)
            for variant in ("time", "shipped"):
                if args.only in (None, variant):
                    rows.append(train(config, variant, seconds, env))
                    print(json.dumps(rows[-1]), flush=True)
    print("\n| config | bound | steps | epochs | wall s (reported) | best val loss | stopped by | load |")
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(
            f"| {r['config']} | {r['variant']} | {r['steps']:,} | {r['epochs']:.1f} | {r['wall_s']} "
            f"({r['reported_s']}) | {r['best_val_loss']} | {r['stop_reason']} | {r['load_avg_1m']} |"
        )


if __name__ == "__main__":
    main()
