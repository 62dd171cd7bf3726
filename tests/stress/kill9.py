"""kill -9 fault injection for `lstmgen train` (not part of the test suite: it runs for minutes).

Trains one model in a chain of `lstmgen train --config C --resume` processes, each killed with SIGKILL at
a random moment, and checks after every kill that

  - `lstmgen list --json` works and names the model once it has a checkpoint,
  - every checkpoint on disk loads completely (weights-only) and `sample` generates from it,
  - the model's lock was released by the kernel (a new writer can take it at once),

and that the next `--resume` continues (a process that exits non-zero on its own is a failure). When a
chain's last process finishes, its best.pt and last.pt must be bit-identical to an uninterrupted run of
the same config. Chains repeat (with --overwrite of the model) until --trials kills have been made.

Kill moments, in turn: uniform over the first seconds of the process (start-up included); a random time
after training has started; and "mid-checkpoint", the moment a checkpoint's temp file appears.

    python tests/stress/kill9.py --trials 200
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lstmgen import checkpoint
from lstmgen.inference import load_for_inference

REPO = Path(__file__).resolve().parents[2]
CONFIG = """\
corpus: jokes
name: victim
model: {embed: 32, hidden: 256, n_layer: 2, dropout: 0.1}
train:
  batch_size: 16
  seq_len: 32
  max_steps: 240
  max_epochs: null
  max_time: null
  eval_every: 10
  checkpoint_every: 10
  log_every: 1
  device: cpu
  precision: fp32
"""


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lstmgen", *args], capture_output=True, text=True, **kw)


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def check_after_kill(model_dir: Path) -> dict:
    """The registry as users see it after a kill: list, full loads, a sample, a free lock. Raises on failure."""
    from lstmgen import registry
    from lstmgen.sample import SampleOptions, sample

    r = cli("list", "--json")
    if r.returncode != 0:
        raise AssertionError(f"list failed: {r.stderr.strip()}")
    listing = json.loads(r.stdout)
    checkpoints = sorted(p.stem for p in model_dir.glob("*.pt"))
    listed = [m for m in listing["models"] if m["name"] == "victim"]
    if checkpoints and (not listed or sorted(listed[0]["checkpoints"]) != checkpoints):
        raise AssertionError(f"list shows {listed} but the directory has {checkpoints}")
    steps = {}
    for which in checkpoints:
        payload = checkpoint.load("victim", which)  # raises on a partial or corrupt file
        steps[which] = payload.step
        text = sample(load_for_inference("victim", which), "Why", SampleOptions(max_tokens=20), seed=1)[0].text
        if not text.startswith("Why"):
            raise AssertionError(f"sample from {which}.pt gave {text!r}")
    with registry.lock("model", "victim", "checking it"):  # the kernel released the killed writer's lock
        pass
    return steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200, help="number of kill -9s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary registry")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    home = Path(tempfile.mkdtemp(prefix="lstmgen-kill9-"))
    os.environ["LSTMGEN_HOME"] = str(home)
    os.environ["OMP_NUM_THREADS"] = "1"  # same threads in every process: bit-identical arithmetic
    from lstmgen import registry

    config = home / "victim.yaml"
    config.write_text(CONFIG)
    r = cli("prepare", str(REPO / "data" / "jokes.csv"), "--name", "jokes")
    assert r.returncode == 0, r.stderr
    t0 = time.perf_counter()
    r = cli("train", "--config", str(config), "--name", "reference", "--quiet")
    assert r.returncode == 0, r.stderr
    straight_s = time.perf_counter() - t0
    reference = {w: checkpoint.load("reference", w).state_dict for w in ("best", "last")}
    print(f"reference run: {straight_s:.1f} s uninterrupted", file=sys.stderr)

    model_dir = registry.entry_dir("model", "victim")
    kills = failures = chains = finished_chains = 0
    lost_steps, by_mode, tmp_seen = [], {"early": 0, "training": 0, "mid-checkpoint": 0}, 0
    overwrite = True
    while kills < args.trials:
        mode = ("early", "training", "mid-checkpoint")[kills % 3]
        cmd = [sys.executable, "-m", "lstmgen", "train", "--config", str(config)]
        cmd += ["--overwrite"] if overwrite else ["--resume"]
        if overwrite:
            chains += 1
        overwrite = False
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda out=lines, f=proc.stderr: out.extend(iter(f.readline, "")), daemon=True)
        reader.start()
        started = time.perf_counter()
        deadline = started + (rng.uniform(0, 6) if mode == "early" else 120)
        trained_since = None
        before = {p.name for p in model_dir.glob(".*.tmp")} if model_dir.is_dir() else set()
        killed = False
        while proc.poll() is None:
            now = time.perf_counter()
            if trained_since is None and any(line.startswith("step ") for line in lines):
                trained_since = now
                if mode == "training":
                    deadline = now + rng.uniform(0, 3)
            if mode == "mid-checkpoint" and model_dir.is_dir():
                if {p.name for p in model_dir.glob(".*.tmp")} - before:
                    deadline = now
            if now >= deadline:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.002)
        proc.wait()
        reader.join()
        log = "".join(lines)
        if not killed:
            if proc.returncode != 0:
                failures += 1
                print(f"FAIL: a --resume exited {proc.returncode} on its own: {log.strip()[-300:]}", file=sys.stderr)
                overwrite = True
                continue
            finished_chains += 1
            final = {w: checkpoint.load("victim", w).state_dict for w in ("best", "last")}
            identical = all(same_weights(final[w], reference[w]) for w in final)
            if not identical:
                failures += 1
            print(
                f"chain {chains} finished: best.pt and last.pt bit-identical to the reference: {identical}",
                file=sys.stderr,
            )
            overwrite = True
            continue
        kills += 1
        by_mode[mode] += 1
        tmp_seen += len(list(model_dir.glob(".*.tmp"))) if model_dir.is_dir() else 0
        reached = max(map(int, re.findall(r"step (\d+)", log.replace(",", ""))), default=0)
        try:
            steps = check_after_kill(model_dir)
            if "last" in steps:
                lost_steps.append(reached - steps["last"])
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            failures += 1
            print(f"FAIL after kill {kills} ({mode}): {type(e).__name__}: {e}", file=sys.stderr)
        if kills % 20 == 0:
            print(f"{kills} kills, {failures} failures", file=sys.stderr)

    if not overwrite:  # finish the chain the last kill interrupted
        r = cli("train", "--config", str(config), "--resume", "--quiet")
        final = {w: checkpoint.load("victim", w).state_dict for w in ("best", "last")}
        identical = r.returncode == 0 and all(same_weights(final[w], reference[w]) for w in final)
        finished_chains += 1
        failures += not identical
        print(
            f"chain {chains} finished: best.pt and last.pt bit-identical to the reference: {identical}", file=sys.stderr
        )

    summary = {
        "kills": kills,
        "by_moment": by_mode,
        "chains_started": chains,
        "chains_finished_bit_identical_checked": finished_chains,
        "failures": failures,
        "temp_files_left_by_kills": tmp_seen,
        "max_steps_lost": max(lost_steps, default=0),
        "checkpoint_every": 10,
        "reference_run_s": round(straight_s, 1),
        "wall_s": round(time.perf_counter() - t0),
    }
    print(json.dumps(summary))
    if not args.keep:
        import shutil

        shutil.rmtree(home)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
