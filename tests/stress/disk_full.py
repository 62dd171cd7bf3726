"""A real full disk under `lstmgen prepare` and `lstmgen train` (not part of the test suite: needs root to
mount a tmpfs).

prepare: on a tmpfs too small for the corpus, it exits 1 with one line naming the registry and saying "free
some space", and nothing is listed; on one that holds one corpus but not a second beside it, `--overwrite`
fails the same way and the previous corpus is listed unchanged; no staging, trash or scratch is left.

The registry goes on a tmpfs sized so that the first checkpoints fit and a later last.pt does not. Checks:
train exits 1 with one line saying the disk is full and which checkpoint is intact; that checkpoint
loads and samples; no temp file is left; after the disk grows (remount), `--resume` finishes the run with
weights bit-identical to an uninterrupted run. The suite's tests/test_faults.py simulates the same
failure (ENOSPC from write) without root.

    sudo python tests/stress/disk_full.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETS = [
    "model.embed=32", "model.hidden=256", "train.batch_size=16", "train.seq_len=32", "train.max_steps=40",
    "train.max_epochs=null", "train.max_time=null", "train.eval_every=10", "train.checkpoint_every=10",
    "train.device=cpu", "train.precision=fp32",
]  # fmt: skip


def cli(home: Path, *args) -> subprocess.CompletedProcess:
    env = os.environ | {"LSTMGEN_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "lstmgen", *args], capture_output=True, text=True, env=env)


def train_args(name: str) -> list[str]:
    return ["train", "--corpus", "jokes", "--name", name, "--quiet", *sum([["--set", s] for s in SETS], [])]


def check_prepare(scratch: Path, jokes: str, corpus_bytes: int) -> list[str]:
    """prepare on a tmpfs too small for it, then --overwrite on one too small for two corpora."""
    failures, mnt = [], scratch / "prepare"
    mnt.mkdir()
    for size, overwrite in ((corpus_bytes // 2, False), (corpus_bytes * 3 // 2 + 64 * 1024, True)):
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)]).returncode != 0:
            return ["cannot mount a tmpfs"]
        try:
            home = mnt / "reg"
            if overwrite:
                subprocess.run(["mount", "-o", f"remount,size={corpus_bytes * 4}", str(mnt)], check=True)
                assert cli(home, "prepare", jokes, "--name", "jokes").returncode == 0
                subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)
            before = json.loads(cli(home, "list", "--json").stdout)["corpora"]
            r = cli(home, "prepare", jokes, "--name", "jokes", "--seed", "3", *(["--overwrite"] * overwrite))
            lines = r.stderr.strip().splitlines()
            print(f"prepare on a {size / 1024:.0f} KiB tmpfs: exit {r.returncode}: {r.stderr.strip()}", file=sys.stderr)
            if r.returncode != 1 or len(lines) != 1 or "free some space" not in lines[0] or str(home) not in lines[0]:
                failures.append(f"prepare ({size} bytes) did not fail with one line naming the registry")
            after = json.loads(cli(home, "list", "--json").stdout)["corpora"]
            if after != before:
                failures.append(f"prepare ({size} bytes) changed the listing: {before} -> {after}")
            left = [p.name for p in home.rglob(".*")]
            if left:
                failures.append(f"prepare ({size} bytes) left {left}")
        finally:
            subprocess.run(["umount", str(mnt)])
    return failures


def main() -> int:
    import torch

    scratch = Path(tempfile.mkdtemp(prefix="lstmgen-diskfull-"))
    ref_home, full_home = scratch / "ref", scratch / "tmpfs"
    full_home.mkdir()
    jokes = str(REPO / "data" / "jokes.csv")
    assert cli(ref_home, "prepare", jokes, "--name", "jokes").returncode == 0
    r = cli(ref_home, *train_args("ref"))
    assert r.returncode == 0, r.stderr
    d = ref_home / "models" / "ref"
    best, last = (d / "best.pt").stat().st_size, (d / "last.pt").stat().st_size
    corpus = sum(f.stat().st_size for f in (ref_home / "corpora").rglob("*") if f.is_file())
    # Room for the corpus, one best.pt and one last.pt, plus half a last.pt: best.pt's next save fits
    # (its temp file needs one best.pt), last.pt's next one (a whole last.pt) does not.
    size = corpus + best + last + last // 2 + 64 * 1024
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(full_home)])
    if mount.returncode != 0:
        print("cannot mount a tmpfs here (needs root); nothing checked", file=sys.stderr)
        return 2
    failures = check_prepare(scratch, jokes, corpus)
    try:
        assert cli(full_home, "prepare", jokes, "--name", "jokes").returncode == 0
        r = cli(full_home, *train_args("full"))
        lines = r.stderr.strip().splitlines()
        print(f"train on a {size / 2**20:.1f} MiB tmpfs: exit {r.returncode}: {r.stderr.strip()}", file=sys.stderr)
        if r.returncode != 1 or len(lines) != 1 or "no space left on device" not in lines[0]:
            failures.append("train did not fail with one 'no space left on device' line")
        if "last.pt of step 10 is intact" not in r.stderr:
            failures.append("the error does not say which checkpoint is intact")
        m = full_home / "models" / "full"
        if list(m.glob(".*.tmp")):
            failures.append(f"temp files left: {list(m.glob('.*.tmp'))}")
        payload = torch.load(m / "last.pt", weights_only=True)
        if payload["train_state"]["step"] != 10:
            failures.append(f"last.pt is at step {payload['train_state']['step']}, not 10")
        s = cli(full_home, "sample", "Why", "--model", "full", "--max-tokens", "20", "--seed", "1")
        if s.returncode != 0 or not s.stdout.startswith("Why"):
            failures.append(f"sample after the failure: {s.stderr.strip()}")

        subprocess.run(["mount", "-o", f"remount,size={size * 4}", str(full_home)], check=True)  # space freed
        r = cli(full_home, "train", "--name", "full", "--resume", "--quiet", "--json")
        if r.returncode != 0 or json.loads(r.stdout)["steps"] != 40:
            failures.append(f"resume after freeing space: {r.stderr.strip()}")
        for which in ("best", "last"):
            a = torch.load(m / f"{which}.pt", weights_only=True)["state_dict"]
            b = torch.load(d / f"{which}.pt", weights_only=True)["state_dict"]
            if not all(torch.equal(a[k], b[k]) for k in a):
                failures.append(f"{which}.pt differs from the uninterrupted run")
    finally:
        subprocess.run(["umount", str(full_home)])
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"tmpfs_bytes": size, "failures": failures, "resumed_bit_identical": not failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
