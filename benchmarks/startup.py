"""Start-up: wall time of `lstmgen --help` and `lstmgen list` (torch is not imported), and of
`lstmgen sample "Hey, "` until its first text reaches stdout, with the quick-start model; beside them
`python -c "import torch"`, the floor of any command that runs a model. Median of --repeats runs.

Usage (repo root, after `make install`; `make demo` first, or pass --home with a trained char model):
    .venv/bin/python benchmarks/startup.py [--repeats 7] [--home ~/.local/share/lstmgen]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "lstmgen"


def first_output(cmd: list[str], env: dict) -> float:
    """Seconds from start until the first byte on stdout (or exit, if it prints nothing)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.read(1)
    elapsed = time.perf_counter() - t0
    proc.communicate()
    return elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--home", default=None, help="registry with a model named char [default: $LSTMGEN_HOME]")
    a = p.parse_args()
    env = os.environ | ({"LSTMGEN_HOME": a.home} if a.home else {})
    commands = {
        "lstmgen --help": [str(BIN), "--help"],
        "lstmgen list": [str(BIN), "list"],
        'python -c "import torch"': [sys.executable, "-c", "import torch; print(1)"],
        'lstmgen sample "Hey, " (first text)': [str(BIN), "sample", "Hey, ", "--model", "char", "--stream"],
    }
    for name, cmd in commands.items():
        times = [first_output(cmd, env) for _ in range(a.repeats)]
        print(f"{name:<38} median {statistics.median(times):5.2f} s   min {min(times):5.2f} s")


if __name__ == "__main__":
    main()
