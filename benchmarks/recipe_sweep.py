"""Fits and checks the self-sizing recipe (lstmgen/recipe.py): for each corpus and budget, the recipe's own
pick against a small grid around it (shape x batch x learning rate, the recipe's other choices kept) and
against the fixed shipped `--config char`, each a real `lstmgen train --time SECONDS` process, one after the
other. Reports the best validation bits/char (and nats/char) of each run, the recipe's gap to the grid's
best point, and the recipe's two lines.

Corpora: jokes (data/jokes.csv, 38 K chars) and shakespeare-N (the first N chars of
../shared/data/tinyshakespeare.txt); reddit (../shared/data/reddit-cleanjokes.csv) where asked for.
Grids: quick (shapes 2x128, 2x256, 2x512 at the recipe's batch and lr: 3 runs), full (3 shapes x batch
{16, 64} x lr {2e-3, 4e-3}: 12 runs).

Usage (repo root; each run takes its budget plus ~10 s of start-up; OMP_NUM_THREADS=1 on a shared machine):
    .venv/bin/python benchmarks/recipe_sweep.py [--corpora jokes shakespeare-200000] [--budgets 30 60]
        [--grid quick|full|none] [--no-fixed]
Prints one JSON line per run, then a Markdown table for BENCHMARKS.md.
"""

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared/data"
LSTMGEN = [sys.executable, "-m", "lstmgen"]
SHAPES = [(2, 128), (2, 256), (2, 512)]


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    r = subprocess.run([*LSTMGEN, *args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"lstmgen {' '.join(args)} failed: {r.stderr.strip()[-400:]}")
    return r


def prepare(corpus: str, env: dict, tmp: Path) -> None:
    if corpus == "jokes":
        source = ROOT / "data/jokes.csv"
    elif corpus == "reddit":
        source = SHARED / "reddit-cleanjokes.csv"
    elif corpus.startswith("shakespeare-"):
        source = tmp / f"{corpus}.txt"
        source.write_text((SHARED / "tinyshakespeare.txt").read_text()[: int(corpus.split("-")[1])])
    else:
        sys.exit(f"unknown corpus {corpus}")
    cli("prepare", str(source), "--name", corpus, "-q", env=env)


def train(corpus: str, budget: int, label: str, extra: list[str], env: dict) -> dict:
    r = cli("train", "--corpus", corpus, "--name", "sweep", "--time", f"{budget}s", "--overwrite", "--json",
            "--no-progress", "--set", "train.device=cpu", *extra, env=env)  # fmt: skip
    s = json.loads(r.stdout.strip().splitlines()[-1])
    why = [line.strip() for line in r.stderr.splitlines() if line.startswith(("recipe:", "  because:"))]
    row = {"corpus": corpus, "budget_s": budget, "run": label, "bits_per_char": s["val_bits_per_char"],
           "nats_per_char": round(s["val_bits_per_char"] * math.log(2), 4), "steps": s["steps"],
           "tokens_per_s": s["tokens_per_s"], "unigram": s["unigram_bits_per_char"], "why": why}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def plan(corpus: str, budget: int, env: dict) -> dict:
    r = cli("train", "--corpus", corpus, "--name", "sweep", "--time", f"{budget}s", "--dry-run", "--overwrite",
            "--json", "--set", "train.device=cpu", env=env)  # fmt: skip
    return json.loads(r.stdout)["config"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--corpora", nargs="+", default=["jokes", "shakespeare-200000"])
    p.add_argument("--budgets", nargs="+", type=int, default=[30, 60])
    p.add_argument("--grid", choices=["quick", "full", "none"], default="quick")
    p.add_argument("--no-fixed", action="store_true", help="skip the fixed `--config char` runs")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LSTMGEN_HOME": str(Path(tmp) / "home"), "PYTHONPATH": str(ROOT)}
        for corpus in a.corpora:
            prepare(corpus, env, Path(tmp))
            for budget in a.budgets:
                rows.append(train(corpus, budget, "recipe", [], env))
                picked = plan(corpus, budget, env)  # the same cached speeds: the recipe's own choices
                batches = [picked["train"]["batch_size"]] if a.grid == "quick" else [16, 64]
                lrs = [picked["train"]["lr"]] if a.grid == "quick" else [2e-3, 4e-3]
                for (n_layer, hidden), batch, lr in itertools.product(SHAPES if a.grid != "none" else [], batches,
                                                                      lrs):  # fmt: skip
                    sets = [f"model.n_layer={n_layer}", f"model.hidden={hidden}", f"train.batch_size={batch}",
                            f"train.lr={lr}"]  # fmt: skip
                    label = f"grid {n_layer}x{hidden} b{batch} lr{lr:g}"
                    rows.append(train(corpus, budget, label, [x for s in sets for x in ("--set", s)], env))
                if not a.no_fixed:
                    fixed = ["--config", "char", "--set", "train.max_epochs=null"]
                    rows.append(train(corpus, budget, "fixed --config char", fixed, env))
    print(f"\n{cpu()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n")
    print("| corpus | budget | run | val bits/char | nats/char | steps | tok/s | unigram |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['corpus']} | {r['budget_s']} s | {r['run']} | {r['bits_per_char']:.3f} | "
              f"{r['nats_per_char']:.3f} | {r['steps']:,} | {r['tokens_per_s']:,} | {r['unigram']:.3f} |")  # fmt: skip
    for corpus, budget in itertools.product(a.corpora, a.budgets):
        mine = [r for r in rows if (r["corpus"], r["budget_s"]) == (corpus, budget)]
        grid = [r["nats_per_char"] for r in mine if r["run"].startswith("grid")]
        own = next(r for r in mine if r["run"] == "recipe")
        if grid:
            print(f"{corpus} {budget} s: recipe {own['nats_per_char']:.3f} nats/char, grid best {min(grid):.3f} "
                  f"(gap {own['nats_per_char'] - min(grid):+.3f}); {' / '.join(own['why'])}")  # fmt: skip


if __name__ == "__main__":
    main()
