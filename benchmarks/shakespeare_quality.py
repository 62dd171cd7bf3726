"""Quality at a time budget: tinyshakespeare, trained on the first 90% with configs/shakespeare.yaml for
`max_time` seconds (or, with --recipe, with no config: the self-sizing recipe, `train --corpus shakespeare
--time Nm`), then `lstmgen eval --file` on the last 10% (nanoGPT's split), in nats per character.

The anchors (measured on this kind of machine before, see the issue): nanoGPT's CPU recipe 1.87 after ~3
minutes; a bare 2x256 char LSTM with bf16 autocast 1.56 after 3 minutes. Training runs in bf16 where the
CPU has it (precision: auto); each line says which.

Usage (repo root, after `make install`):
    .venv/bin/python benchmarks/shakespeare_quality.py [--minutes 3 10] [--recipe] [--set model.dropout=0.1 ...]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT.parent / "shared/data/tinyshakespeare.txt"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[3, 10])
    p.add_argument("--set", action="append", default=[], help="config overrides for every run, as for train")
    p.add_argument("--recipe", action="store_true", help="no config: the recipe sizes the run to the budget")
    a = p.parse_args()
    print(cpu(), flush=True)
    sets = [arg for s in a.set for arg in ("--set", s)]
    text = SHAKESPEARE.read_text()
    cut = int(len(text) * 0.9)  # nanoGPT: the first 90% trains, the last 10% is held out
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"LSTMGEN_HOME": str(Path(tmp) / "home")}
        cli = [sys.executable, "-m", "lstmgen"]
        (Path(tmp) / "train90.txt").write_text(text[:cut])
        (Path(tmp) / "last10.txt").write_text(text[cut:])
        subprocess.run([*cli, "prepare", str(Path(tmp) / "train90.txt"), "--records", "file", "--name",
                        "shakespeare", "--test-frac", "0", "--quiet"], env=env, check=True)  # fmt: skip
        for minutes in a.minutes:
            name = f"shakespeare-{minutes:g}min"
            budget = (["--corpus", "shakespeare", "--time", f"{minutes * 60:g}s"] if a.recipe
                      else ["-c", "shakespeare", "--set", f"train.max_time={minutes * 60:g}"])  # fmt: skip
            shown = "--no-progress" if a.recipe else "--quiet"  # --quiet would hide the recipe's two lines too
            run = subprocess.run([*cli, "train", *budget, "--name", name, *sets, shown, "--json"],
                                 env=env, capture_output=True, text=True, check=True)  # fmt: skip
            if a.recipe:  # the recipe's two lines: what it picked and why
                print(*[line for line in run.stderr.splitlines() if line.startswith(("recipe:", "  because:"))],
                      sep="\n", flush=True)  # fmt: skip
            summary = json.loads(run.stdout)
            ev = subprocess.run([*cli, "eval", "--model", name, "--file", str(Path(tmp) / "last10.txt"),
                                 "--records", "file", "--json"], env=env, capture_output=True, text=True,
                                check=True)  # fmt: skip
            result = json.loads(ev.stdout)
            print(f"{minutes:g} min: {summary['steps']:,} steps, {summary['epochs']} epochs, "
                  f"{summary['tokens_per_s']:,} tok/s ({summary['precision']}); "
                  f"best val {summary['best_val_loss']:.4f}; last 10%: {result['loss']:.4f} nats/char "
                  f"({result['bits_per_char']:.3f} bits/char)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
