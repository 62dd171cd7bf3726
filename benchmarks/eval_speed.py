"""`lstmgen eval` on tinyshakespeare's last 10% (nanoGPT's split), the CPU default (the model's ONNX graph
on ONNX Runtime, numpy log-softmax) against the torch path (training's validation NLL, computed inside the
model), same model, same text, alternating, each with its default threads (a thread per core); the NLLs
must agree to 1e-5.

The model has configs/shakespeare.yaml's shape (2 x 256, vocab 65), trained for 30 steps: speed does not
depend on how well it is trained.

Usage (repo root, after `make install`):
    .venv/bin/python benchmarks/eval_speed.py [--repeats 3]
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
SHAKESPEARE = ROOT.parent / "shared/data/tinyshakespeare.txt"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    text = SHAKESPEARE.read_text()
    cut = int(len(text) * 0.9)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LSTMGEN_HOME"] = str(Path(tmp) / "home")
        cli = [sys.executable, "-m", "lstmgen"]
        (Path(tmp) / "train90.txt").write_text(text[:cut])
        (Path(tmp) / "last10.txt").write_text(text[cut:])
        subprocess.run([*cli, "prepare", str(Path(tmp) / "train90.txt"), "--records", "file", "--name",
                        "shakespeare", "--test-frac", "0", "--quiet"], check=True)  # fmt: skip
        subprocess.run([*cli, "train", "-c", str(ROOT / "configs/shakespeare.yaml"), "--quiet", "--set",
                        "train.max_time=null", "--set", "train.max_steps=30"], check=True)  # fmt: skip

        import torch

        from lstmgen import checkpoint
        from lstmgen.corpora import TextInput
        from lstmgen.corpus import encode_records
        from lstmgen.evaluate import evaluate_model
        from lstmgen.validation import evaluate

        held_out = TextInput(str(Path(tmp) / "last10.txt"), records="file")
        ckpt = checkpoint.load("shakespeare")
        model, vocab = ckpt.build_model(), ckpt.make_vocab()
        texts, _ = held_out.read(held_out.open())
        stream = torch.from_numpy(encode_records(vocab, texts))
        onnx_s, torch_s = [], []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            onnx = evaluate_model("shakespeare", text=held_out)
            onnx_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            nll, n = evaluate(model, stream, vocab.eor_id)
            torch_s.append(time.perf_counter() - t0)
        assert abs(onnx["loss"] - nll / n) <= 1e-5 * abs(nll / n), (onnx["loss"], nll / n)
    o, t = statistics.median(onnx_s), statistics.median(torch_s)
    print(f"CPU: {cpu()}")
    print(f"eval of the last 10% ({onnx['tokens']:,} tokens), median of {a.repeats}:")
    print(f"  torch (training's validation NLL)   {t:6.2f} s")
    print(f"  ONNX Runtime + numpy (lstmgen eval) {o:6.2f} s   {t / o:4.2f}x the torch path")
    print(f"  loss {onnx['loss']:.6f} (ONNX) vs {nll / n:.6f} (torch) nats/char")


if __name__ == "__main__":
    main()
