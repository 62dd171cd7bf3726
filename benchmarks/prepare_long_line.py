"""Peak memory of `lstmgen prepare` on long lines: the worst cases of its caps (TOKENIZE_CHARS, MAX_LINE_CHARS).

Each case is one `python -m lstmgen prepare` process; its peak RSS comes from os.wait4 (that child's own
ru_maxrss). Pass --baseline DIR (a checkout of another commit) to run the same cases with that code, side by
side in the same run:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prepare_long_line.py [--mb 20] [--baseline /path/to/old]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_text(path: Path, mb: int, spaces: bool, lines: list[int] | None = None) -> None:
    """`mb` MB of words from data/jokes.csv on one line (or, `lines`, also these many short lines before it)."""
    rng = random.Random(0)
    words = (REPO / "data" / "jokes.csv").read_text().split()
    target = mb * 1_000_000
    with path.open("w") as f:
        for _ in lines or []:
            f.write("a short line of text to make records\n")
        n = 0
        while n < target:
            chunk = (" " if spaces else "").join(rng.choice(words) for _ in range(10_000))
            chunk = chunk[: target - n]
            f.write(chunk + (" " if spaces else ""))
            n += len(chunk) + (1 if spaces else 0)
        f.write("\n")


def run(code: Path, home: Path, args: list[str]) -> tuple[int, float, int, str]:
    """(exit code, wall seconds, peak RSS in MB, last stderr line) of one prepare."""
    env = os.environ | {"PYTHONPATH": str(code), "LSTMGEN_HOME": str(home), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    # cwd: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH
    p = subprocess.Popen([sys.executable, "-m", "lstmgen", "prepare", *args, "--quiet"], env=env, cwd=home.parent,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, time.perf_counter() - start, usage.ru_maxrss // 1024, (err.strip().splitlines() or [""])[-1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=20)
    ap.add_argument("--baseline", type=Path, help="another checkout to compare with (its repository root)")
    opts = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="lstmgen-longline-"))
    try:
        spaced, solid, mixed = scratch / "spaced.txt", scratch / "solid.txt", scratch / "mixed.txt"
        write_text(spaced, opts.mb, spaces=True)
        write_text(solid, opts.mb, spaces=False)  # no whitespace at all: every cut is a hard one
        write_text(mixed, 15, spaces=True, lines=list(range(20)))  # 15 MB: a line under MAX_LINE_CHARS
        cases = [
            (f"bpe, --records file, {opts.mb} MB one line", [str(spaced), "--records", "file", "--tokenizer", "bpe"]),
            (f"bpe, --records file, {opts.mb} MB without spaces", [str(solid), "--records", "file", "--tokenizer",
                                                                   "bpe"]),
            (f"word, --records file, {opts.mb} MB one line", [str(spaced), "--records", "file", "--tokenizer", "word",
                                                              "--max-vocab", "50000"]),
            (f"char, --records file, {opts.mb} MB one line", [str(spaced), "--records", "file"]),
            ("bpe, --records line, a 15 MB line + 20 short", [str(mixed), "--tokenizer", "bpe"]),
            (f"bpe, --records line, {opts.mb} MB one line", [str(spaced), "--tokenizer", "bpe"]),
        ]  # fmt: skip
        print(f"cpu: {os.cpu_count()} cores; python {sys.version.split()[0]}")
        print("| case | code | exit | wall | peak RSS | last line |\n|---|---|---:|---:|---:|---|")
        for title, args in cases:
            for label, code in [("this", REPO)] + ([("baseline", opts.baseline)] if opts.baseline else []):
                home = scratch / f"home-{label}"
                rc, wall, rss, last = run(code, home, [*args, "--name", "c", "--overwrite"])
                print(f"| {title} | {label} | {rc} | {wall:.1f} s | {rss:,} MB | {last[:90]} |", flush=True)
                shutil.rmtree(home, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
