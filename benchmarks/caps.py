"""Peak memory at each documented cap, the worst case a user can ask for without raising a limit: a prompt
of --limit-prompt-chars characters, --num-samples at its limit, --max-tokens at its limit, a config file at
config.MAX_CONFIG_BYTES, a line of corpus.MAX_LINE_CHARS characters (BPE, --records line); and, for scale,
what the same commands cost at their defaults. Each command runs in its own process; peak RSS from wait4.

Usage (repo root, after `make install`):
    .venv/bin/python benchmarks/caps.py
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu

ROOT = Path(__file__).resolve().parent.parent
BIN = [sys.executable, "-m", "lstmgen"]


# Runs the command as its only child and reports that child's peak RSS (KB) as its last stderr line.
MEASURE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")


def peak(args: list[str], env: dict, stdin: bytes | None = None) -> tuple[float, float, int, str]:
    """(peak RSS in MB, seconds, exit code, the command's last stderr line) of `lstmgen ARGS`."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", MEASURE, *BIN, *args], env=env, input=stdin or b"",
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    lines = r.stderr.decode(errors="replace").strip().splitlines()
    return int(lines[-1]) / 1024, time.perf_counter() - t0, r.returncode, (lines[-2] if len(lines) > 1 else "")[:100]


def main():
    from lstmgen.config import MAX_CONFIG_BYTES
    from lstmgen.sources import MAX_LINE_CHARS

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "LSTMGEN_HOME": str(tmp / "home"), "OMP_NUM_THREADS": "1"}
        subprocess.run([*BIN, "prepare", str(ROOT / "data/jokes.csv"), "-q"], env=env, check=True)
        subprocess.run([*BIN, "train", "-c", "char", "-q", "--set", "train.max_epochs=null", "--set",
                        "train.max_time=null", "--set", "train.max_steps=20"], env=env, check=True)  # fmt: skip
        long_cfg = tmp / "big.yaml"
        long_cfg.write_text("corpus: jokes\nname: big\nmodel: {adaptive_softmax: [" + ", ".join(
            ["1"] * ((MAX_CONFIG_BYTES - 100) // 3)) + "]}\n")  # fmt: skip
        line = tmp / "line.txt"
        line.write_bytes(b"word " * (MAX_LINE_CHARS // 5) + b"\nshort one\nanother\n" * 20)
        cases = {
            "sample, default (1 prompt, 300 tokens)": (["sample", "Hey, "], None),
            "prompt of 100,000 chars (--limit-prompt-chars)": (["sample", "-"], b"Why " * 25_000 + b"\n"),
            "--num-samples 1024 x 300 tokens (--limit-num-samples)": (["sample", "Hey", "-n", "1024"], None),
            "--max-tokens 100,000 (--limit-max-tokens)": (["sample", "Hey", "--max-tokens", "100000", "--top-k",
                                                           "3"], None),  # fmt: skip
            f"config file of {MAX_CONFIG_BYTES // 1024} KB (refused in validation)": (["train", "-c", str(long_cfg)],
                                                                                        None),  # fmt: skip
            f"BPE prepare, one line of {MAX_LINE_CHARS >> 20} Mi chars": (["prepare", str(line), "--tokenizer",
                                                                             "bpe", "--name", "l"], None),  # fmt: skip
        }
        print(f"CPU: {cpu()}")
        for name, (args, stdin) in cases.items():
            rss, seconds, code, last = peak(args, env, stdin)
            print(f"{name:<58} peak {rss:6.0f} MB  {seconds:6.1f} s  exit {code}  {last if code else ''}")


if __name__ == "__main__":
    main()
