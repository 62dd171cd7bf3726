"""Data-parallel scaling on this machine: `lstmgen train` tokens/s in 1 process and in 2 (`--nproc 2`, DDP over
gloo), one thread per process, the same global batch, alternating in one run (these machines are noisy).
A third figure, 1 process with 2 threads, shows what the same two cores give one process.

threads x processes must stay <= cores: with 2 processes x 2 threads on 2 cores, OpenMP threads spin
against each other and training slows down many times over.

Usage (repo root, after `make install`):
    .venv/bin/python benchmarks/ddp_scaling.py [--rounds 2] [--seconds 45] [--hidden 256] [--batch 32]
                                               [--oversubscribed]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT.parent / "shared/data/tinyshakespeare.txt"


def run(a, env: dict, name: str, nproc: int, threads: int) -> float:
    sets = [f"model.embed={a.hidden}", f"model.hidden={a.hidden}", "model.n_layer=2", "model.dropout=0",
            f"train.batch_size={a.batch}", f"train.seq_len={a.seq}", f"train.max_time={a.seconds}",
            "train.max_steps=null", "train.max_epochs=null", "train.eval_every=100000",
            "train.checkpoint_every=100000", "train.precision=fp32", "train.device=cpu"]  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "lstmgen", "train", "--corpus", "shakespeare", "--name", name, "--nproc", str(nproc),
         "--quiet", "--json", *sum([["--set", s] for s in sets], [])],
        capture_output=True, text=True, env=env | {"OMP_NUM_THREADS": str(threads)},
    )  # fmt: skip
    if r.returncode != 0:
        sys.exit(r.stderr)
    return json.loads(r.stdout)["tokens_per_s"]  # global: all ranks' tokens over step time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=45)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--oversubscribed", action="store_true", help="also 2 processes x 2 threads on these 2 cores")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = os.environ | {"LSTMGEN_HOME": home}
        subprocess.run([sys.executable, "-m", "lstmgen", "prepare", str(SHAKESPEARE), "--records", "file",
                        "--name", "shakespeare", "--quiet"], check=True, env=env)  # fmt: skip
        rows = []
        for i in range(a.rounds):
            one = run(a, env, f"one{i}", 1, 1)
            two = run(a, env, f"two{i}", 2, 1)
            one_2t = run(a, env, f"onet{i}", 1, 2)
            rows.append((one, two, one_2t))
            if a.oversubscribed:
                over = run(a, env, f"over{i}", 2, 2)
                print(f"round {i}: 2 procs x 2 threads {over:,.0f} tok/s ({over / two:.2f}x 2 procs x 1 thread)")
            print(f"round {i}: 1 proc x 1 thread {one:,.0f} tok/s | 2 procs x 1 thread {two:,.0f} tok/s "
                  f"(speed-up {two / one:.2f}, efficiency {two / one / 2:.0%}) | 1 proc x 2 threads {one_2t:,.0f} "
                  f"tok/s ({one_2t / one:.2f})", flush=True)  # fmt: skip
    speedup = statistics.median(two / one for one, two, _ in rows)
    threads = statistics.median(t / one for one, _, t in rows)
    print(f"median: 2 processes {speedup:.2f}x one (scaling efficiency {speedup / 2:.0%}); "
          f"2 threads in one process {threads:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
