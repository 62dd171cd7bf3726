"""Quality at a time budget: tinyshakespeare, trained on the first 90% with configs/shakespeare.yaml for
`max_time` seconds, then `lstmgen eval --file` on the last 10% (nanoGPT's split), in nats per character.

The anchors (measured on this kind of machine before, see the issue): nanoGPT's CPU recipe 1.87 after ~3
minutes; a bare 2x256 char LSTM with bf16 autocast 1.56 after 3 minutes. This CPU has no avx512_bf16, so
lstmgen runs in fp32 here.

Usage (repo root, after `make install`):
    .venv/bin/python benchmarks/shakespeare_quality.py [--minutes 3 10] [--set model.dropout=0.1 ...]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT.parent / "shared/data/tinyshakespeare.txt"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[3, 10])
    p.add_argument("--set", action="append", default=[], help="config overrides for every run, as for train")
    a = p.parse_args()
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
            run = subprocess.run([*cli, "train", "-c", "shakespeare", "--name", name,
                                  "--set", f"train.max_time={minutes * 60:g}", *sets, "--quiet", "--json"],
                                 env=env, capture_output=True, text=True, check=True)  # fmt: skip
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
