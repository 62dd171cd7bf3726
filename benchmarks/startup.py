"""Start-up: wall time of `lstmgen --help` and `lstmgen list` (torch is not imported), and of
`lstmgen sample "Hey, "` until its first text reaches stdout, on the CPU default (ONNX Runtime, no torch) and
on the torch path (--device auto, which is the CPU here); beside them `python -c "import torch"`, the floor
of any command that runs the torch model. Median of --repeats runs, alternating, with each command's peak
resident memory. The quick-start model is trained first (configs/char.yaml, 200 steps).

Usage (repo root, after `make install`):
    .venv/bin/python benchmarks/startup.py [--repeats 9]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "lstmgen"


def first_output(cmd: list[str], env: dict) -> tuple[float, float]:
    """(seconds from start until the first byte on stdout, or exit if it prints nothing; peak RSS in MB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.read(1)
    elapsed = time.perf_counter() - t0
    proc.stdout.read()
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return elapsed, usage.ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = os.environ | {"LSTMGEN_HOME": home}
        run = [str(BIN)]
        subprocess.run([*run, "prepare", str(ROOT / "data/jokes.csv"), "-q"], env=env, check=True)
        subprocess.run([*run, "train", "-c", str(ROOT / "configs/char.yaml"), "-q", "--set", "train.max_steps=200",
                        "--set", "train.max_time=null"], env=env, check=True)  # fmt: skip
        commands = {
            "lstmgen --help": [*run, "--help"],
            "lstmgen list": [*run, "list"],
            'python -c "import torch"': [sys.executable, "-c", "import torch; print(1)"],
            'sample "Hey, " (first text), cpu: ONNX': [*run, "sample", "Hey, ", "--stream"],
            'sample "Hey, " (first text), torch': [*run, "sample", "Hey, ", "--stream", "--device", "auto"],
        }
        results = {name: [] for name in commands}
        for _ in range(a.repeats):  # alternating, so load on the machine hits every command alike
            for name, cmd in commands.items():
                results[name].append(first_output(cmd, env))
    print(f"CPU: {cpu()}")
    torch_s = statistics.median(t for t, _ in results['python -c "import torch"'])
    for name, rows in results.items():
        t, rss = statistics.median(t for t, _ in rows), max(r for _, r in rows)
        print(f"{name:<40} median {t:5.2f} s ({t / torch_s:4.2f}x import torch)   min {min(r[0] for r in rows):5.2f} s"
              f"   peak RSS {rss:4.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
