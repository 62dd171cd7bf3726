"""The whole decoding loop on ONNX Runtime (lstmgen.decoding.generate), this tree's against another git
revision's, side by side in one run, and how a step splits between the graph and the numpy sampler.

In the loop, the sampler's numpy calls cost about three times what they cost timed alone (33 µs -> 110 µs a
step for one stream of the char model): ONNX Runtime's run between them evicts their code and data from the
caches. So the sampler is timed where it runs, between graph calls, not in a micro-benchmark.

Models (random weights: speed does not depend on training), as benchmarks/onnx_step.py: the quick-start char
shape (embed 64, 2 x 256, vocab 61) and the tutorial's word shape with a full softmax (embed 128, 3 x 128,
vocab 5,034). Sampling at temperature 0.8 with <eor> banned, so every stream runs the full length. The two
revisions alternate within each round; the figures are medians. Each revision's tokens are compared too: the
same seed must give the same text.

Usage (repo root, after `make install`):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/decode_loop.py [--against HEAD~1] [--tokens 2000] [--rounds 5]
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = {
    "char 2x256 V=61": (61, dict(embed=64, hidden=256, n_layer=2)),
    "word 3x128 V=5034": (5034, dict(embed=128, hidden=128, n_layer=3)),
}


def decoding_at(revision: str, tmp: Path):
    """lstmgen/decoding.py as it was at `revision`, imported under its own module name."""
    source = subprocess.run(["git", "show", f"{revision}:lstmgen/decoding.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    path = tmp / "decoding_then.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("decoding_then", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["decoding_then"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def loop(decoding, backend, n_streams: int, tokens: int):
    """(tokens/s over all streams, seconds per step in the sampler, seconds per step in the graph, tokens)."""
    import numpy as np

    from lstmgen.sample import SampleOptions

    options = SampleOptions(num_samples=n_streams, max_tokens=tokens)
    eor, prompt = 0, [1, 2, 3]
    streams = [decoding.Stream(options, decoding.Draws(np.random.default_rng(0), n_streams), j, list(prompt))
               for j in range(n_streams)]  # fmt: skip
    t_start = time.perf_counter()
    logits, h, c = decoding.read_prompts(backend, [prompt], eor, n_streams)
    chosen, in_sampler, in_graph = [], 0.0, 0.0
    for _ in range(tokens):
        t0 = time.perf_counter()
        nxt = decoding.choose(logits, streams, eor, (eor,))
        t1 = time.perf_counter()
        scores, h, c = backend.forward(nxt[:, None], h, c)
        logits = scores[:, -1]
        in_sampler, in_graph = in_sampler + t1 - t0, in_graph + time.perf_counter() - t1
        chosen.append(nxt)
    elapsed = time.perf_counter() - t_start
    return tokens * n_streams / elapsed, in_sampler / tokens, in_graph / tokens, np.stack(chosen)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", default="HEAD~1", help="git revision whose lstmgen/decoding.py to compare with")
    p.add_argument("--tokens", type=int, default=2000, help="steps per run at one stream (64 streams: a tenth)")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()

    import numpy as np
    import torch

    from lstmgen import decoding as now
    from lstmgen.config import ModelConfig
    from lstmgen.model import LSTMLM
    from lstmgen.onnx_graph import build_graph, describe
    from lstmgen.runtime import load_graph

    tmp = Path(tempfile.mkdtemp())
    then = decoding_at(a.against, tmp)
    print(f"CPU: {cpu()}")
    print(f"this tree against {a.against}; median of {a.rounds} alternating rounds; µs per step")
    print(f"{'model':18s} {'N':>3s} {'revision':>9s} {'tokens/s':>9s} {'sampler':>8s} {'graph':>7s} {'ratio':>6s}")
    torch.manual_seed(0)
    for label, (vocab_size, shape) in MODELS.items():
        model = LSTMLM(vocab_size, ModelConfig(**shape, dropout=0.0)).eval()
        path = tmp / "g.onnx"
        path.write_bytes(build_graph(model, describe(model, name="bench", step=0)))
        backend = load_graph(path, threads=1)
        for n in (1, 64):
            tokens = a.tokens if n == 1 else a.tokens // 10
            loop(now, backend, n, tokens // 10)  # warm-up
            runs = {"then": [], "now": []}
            for _ in range(a.rounds):
                for name, module in (("then", then), ("now", now)):
                    runs[name].append(loop(module, backend, n, tokens))
            same = all(np.array_equal(x[3], y[3]) for x, y in zip(runs["then"], runs["now"], strict=True))
            base = statistics.median(r[0] for r in runs["then"])
            for name in ("then", "now"):
                rate, sampler, graph = (statistics.median(r[i] for r in runs[name]) for i in range(3))
                shown = a.against if name == "then" else "this tree"
                print(f"{label:18s} {n:3d} {shown:>9s} {rate:9,.0f} {sampler * 1e6:8.0f} {graph * 1e6:7.0f} "
                      f"{rate / base:5.2f}x")  # fmt: skip
            print(f"{'':18s} same tokens for the same seed: {same}")


if __name__ == "__main__":
    main()
