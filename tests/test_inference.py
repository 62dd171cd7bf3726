"""Sampling and scoring on the CPU run on ONNX Runtime and numpy: torch is never imported."""

import json
import os
import subprocess
import sys

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; from lstmgen.cli import main; sys.argv[0] = 'lstmgen'; main()"


def without_torch(*args, input=None):
    """`lstmgen ARGS` in a fresh interpreter where `import torch` raises ImportError."""
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], input=input, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)  # fmt: skip


def test_sample_and_eval_never_import_torch(tiny_model):
    r = without_torch("sample", "Why", "--model", "tiny", "--seed", "1", "-n", "3", "--max-tokens", "30",
                      "--top-p", "0.9", "--repetition-penalty", "1.2", "--no-repeat-ngram", "3", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    samples = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(samples) == 3 and all(s["text"].startswith("Why") for s in samples)
    r = without_torch("sample", "-", "--model", "tiny", "--seed", "2", "--stream", input="Hey\nWhat\n")
    assert r.returncode == 0 and [line[:3] for line in r.stdout.splitlines()] == ["Hey", "Wha"], r.stderr
    r = without_torch("eval", "--model", "tiny", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["tokens"] > 0, r.stderr
    r = without_torch("eval", "--model", "tiny", "--per-record", "--split", "val")
    assert r.returncode == 0 and len(r.stdout.splitlines()) > 1, r.stderr


def test_sample_gives_the_same_text_with_and_without_torch(tiny_model):
    args = ["sample", "Why", "--model", "tiny", "--seed", "4", "-n", "2", "--max-tokens", "40", "--top-k", "10"]
    plain = subprocess.run([sys.executable, "-m", "lstmgen", *args, "--device", "auto"], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert plain.returncode == 0 and plain.stdout == without_torch(*args).stdout
