"""A corpus larger than it is sensible to hold in memory: `lstmgen prepare` of a generated text file
(default 1 GB) and a short `lstmgen train` on it, with the peak resident memory of each, sampled from
/proc (Linux) and split into anonymous memory (the heap: what the process really holds) and file-backed
pages (the memory-mapped corpus: clean page cache the kernel drops under pressure).

The text is tinyshakespeare repeated, read as one stream (--records file) with tiny held-out fractions,
so that validation stays a few hundred kB. The same training on the 1 MB original shows what the model
itself takes. The baseline is `python -c "import torch"`: what any process
that imports torch holds before doing anything.

Usage (repo root, after `make install`; needs ~3x the size in free disk):
    .venv/bin/python benchmarks/large_corpus.py [--mb 1000] [--steps 200]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT.parent / "shared/data/tinyshakespeare.txt"


def peak_memory(cmd: list[str], env: dict) -> dict:
    """Run `cmd`, polling /proc/PID/status every 20 ms: peak RSS, anonymous and file-backed MB, seconds."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in peak:
                    peak[key] = max(peak[key], int(value.split()[0]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.02)
    out, err = proc.communicate()
    if proc.returncode:
        sys.exit(err)
    return {"seconds": time.perf_counter() - start, "stdout": out} | {k: v / 1024 for k, v in peak.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, default=1000)
    p.add_argument("--steps", type=int, default=200)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT.parent if os.access(ROOT.parent, os.W_OK) else None) as tmp:
        text = Path(tmp) / "big.txt"
        piece = SHAKESPEARE.read_bytes()
        with text.open("wb") as f:
            for _ in range(a.mb * 1_000_000 // len(piece) + 1):
                f.write(piece)
        size_mb = text.stat().st_size / 1e6
        env = os.environ | {"LSTMGEN_HOME": str(Path(tmp) / "home")}
        cli = [sys.executable, "-m", "lstmgen"]
        base = peak_memory([sys.executable, "-c", "import torch"], env)
        prep = peak_memory([*cli, "prepare", str(text), "--name", "big", "--records", "file", "--val-frac", "0.0002",
                            "--test-frac", "0.0002", "--json"], env)  # fmt: skip
        corpus_mb = (Path(tmp) / "home/corpora/big/corpus.pt").stat().st_size / 1e6
        sets = ["model.embed=64", "model.hidden=256", "train.batch_size=64", "train.seq_len=128",
                f"train.max_steps={a.steps}", "train.max_epochs=null", "train.max_time=null",
                f"train.eval_every={a.steps}", f"train.checkpoint_every={a.steps}", "train.device=cpu"]  # fmt: skip
        train = peak_memory([*cli, "train", "--corpus", "big", "--name", "big", "--quiet", "--json",
                             *sum([["--set", s] for s in sets], [])], env)  # fmt: skip
        summary = json.loads(train["stdout"])
        # The same training on the 1 MB original: what the model and its activations take by themselves.
        subprocess.run([*cli, "prepare", str(SHAKESPEARE), "--name", "small", "--records", "file", "--quiet"],
                       env=env, check=True)  # fmt: skip
        small = peak_memory([*cli, "train", "--corpus", "small", "--name", "small", "--quiet", "--json",
                             *sum([["--set", s] for s in sets], [])], env)  # fmt: skip

    def row(name, r):
        return (f"{name:<22} {r['seconds']:7.1f} s  peak RSS {r['VmRSS']:7.0f} MB  anon {r['RssAnon']:6.0f} MB  "
                f"file-backed {r['RssFile']:6.0f} MB")  # fmt: skip

    print(f"text {size_mb:,.0f} MB -> corpus.pt {corpus_mb:,.0f} MB (uint8 ids)")
    print(row("import torch (base)", base))
    print(row("prepare", prep) + f"  {size_mb / prep['seconds']:.1f} MB/s")
    print(row(f"train {a.steps} steps", train) + f"  {summary['tokens_per_s']:,} tok/s")
    print(row("same on 1 MB corpus", small))


if __name__ == "__main__":
    main()
