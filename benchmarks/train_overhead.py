"""Training overhead: `lstmgen train` tokens/s against the bare nn.LSTM + Adam loop
(../shared/bench/lstm_ceiling.py) at the same shapes and precision, alternating in one run (these machines
are noisy, so each round runs both back to back and the ratio is taken per round).

lstmgen trains on tinyshakespeare (real data, contiguous lanes, carried hidden state, grad clipping,
AdamW, lr schedule); the bare loop on random tokens with plain Adam. Two lstmgen figures: steps only
(its own tokens/s, evaluation excluded) and wall (tokens / elapsed, evaluation and checkpoints included).

Usage (repo root, after `make install`):
    .venv/bin/python benchmarks/train_overhead.py [--rounds 3] [--seconds 20] [--hidden 256] [--batch 64]
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
SHARED = ROOT.parent / "shared"


def ceiling(a) -> float:
    out = subprocess.run(
        [sys.executable, str(SHARED / "bench/lstm_ceiling.py"), "--hidden", str(a.hidden), "--layers", "2",
         "--batch", str(a.batch), "--seq", str(a.seq), "--vocab", "65", "--seconds", str(a.seconds)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)["tokens_per_s"]


def lstmgen(a, env: dict, round_: int, dropout: float) -> dict:
    sets = [f"model.embed={a.hidden}", f"model.hidden={a.hidden}", "model.n_layer=2", f"model.dropout={dropout}",
            f"train.batch_size={a.batch}", f"train.seq_len={a.seq}", f"train.max_time={a.seconds}",
            "train.max_steps=null", "train.max_epochs=null", "train.eval_every=100", "train.checkpoint_every=100",
            "train.precision=fp32", "train.device=cpu"]  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "lstmgen", "train", "--corpus", "shakespeare", "--name", f"r{round_}-{dropout}",
         "--quiet", "--json", *sum([["--set", s] for s in sets], [])],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if r.returncode != 0:
        sys.exit(r.stderr)
    s = json.loads(r.stdout)
    steps_tps = s["tokens_per_s"]
    wall_tps = s["steps"] * a.batch * a.seq / s["elapsed_s"]
    return {"steps": steps_tps, "wall": wall_tps}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=128)
    a = ap.parse_args()
    home = tempfile.mkdtemp(prefix="lstmgen-bench-")
    env = os.environ | {"LSTMGEN_HOME": home}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "lstmgen",
            "prepare",
            str(SHARED / "data/tinyshakespeare.txt"),
            "--records",
            "file",
            "--name",
            "shakespeare",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    rows = []
    for i in range(a.rounds):
        bare = ceiling(a)
        plain = lstmgen(a, env, i, 0.0)
        dropout = lstmgen(a, env, i, 0.2)
        row = {
            "round": i,
            "bare_tokens_per_s": bare,
            "lstmgen_steps": round(plain["steps"]),
            "lstmgen_wall": round(plain["wall"]),
            "ratio_steps": round(plain["steps"] / bare, 3),
            "ratio_wall": round(plain["wall"] / bare, 3),
            "ratio_steps_dropout_0.2": round(dropout["steps"] / bare, 3),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({
        "shape": f"2x{a.hidden}, batch {a.batch}, seq {a.seq}, fp32, {a.seconds:g} s per run",
        **{k: statistics.median(r[k] for r in rows) for k in ("ratio_steps", "ratio_wall", "ratio_steps_dropout_0.2")},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
