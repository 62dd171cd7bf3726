"""One decode step, torch against ONNX Runtime on the same weights, side by side in one run.

Models (random weights: speed does not depend on training): the quick-start char model (embed 64, 2 x 256,
vocab 61) and the tutorial-shaped word model with a full softmax (embed 128, 3 x 128, vocab 5,034). A step
is (N, 1) ids with the carried state, N = 1 (one stream) and N = 64 (`--num-samples 64`). torch runs
under torch.backends.mkldnn.flags(enabled=False), its native LSTM kernel, as lstmgen's sampler does;
ONNX Runtime runs lstmgen's graph (lstmgen/onnx_graph.py) through lstmgen.runtime.Decoder. Both are timed
at 1 and 2 intra-op threads, in alternating rounds so that a busy machine slows all alike; each figure is
the median step. Then `import onnxruntime` against `import torch`, each in fresh interpreters.

Usage (repo root, after `make install`):
    .venv/bin/python benchmarks/onnx_step.py [--steps 400] [--rounds 5]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from machine import cpu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = {
    "char 2x256 V=61": (61, dict(embed=64, hidden=256, n_layer=2)),
    "word 3x128 V=5034": (5034, dict(embed=128, hidden=128, n_layer=3)),
}


def import_seconds(modules: tuple[str, ...], repeats: int) -> list[float]:
    """Median wall time of `python -c "import M"` per module, the modules alternating in each repeat."""
    times: dict[str, list[float]] = {m: [] for m in modules}
    for _ in range(repeats):
        for m in modules:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import {m}"], check=True)
            times[m].append(time.perf_counter() - t0)
    return [statistics.median(times[m]) for m in modules]


def torch_steps(model, ids, state, steps: int, times: list[float]) -> None:
    """`steps` single-token forwards, the state carried; each step's wall time appended to `times`."""
    h, c = state
    for _ in range(steps):
        t0 = time.perf_counter()
        _, (h, c) = model(ids, (h, c))
        times.append(time.perf_counter() - t0)


def ort_steps(dec, ids, state, steps: int, times: list[float]) -> None:
    x, h, c = ids.numpy(), state[0].numpy(), state[1].numpy()
    for _ in range(steps):
        t0 = time.perf_counter()
        _, h, c = dec.forward(x, h, c)
        times.append(time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=400, help="timed steps per round at batch 1 (batch 64: a quarter)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--imports", type=int, default=5, help="fresh interpreters per module")
    a = p.parse_args()

    import numpy as np
    import onnxruntime
    import torch

    from lstmgen.config import ModelConfig
    from lstmgen.model import LSTMLM
    from lstmgen.onnx_graph import build_graph, describe
    from lstmgen.runtime import load_graph

    print(f"CPU: {cpu()}")
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, python {sys.version.split()[0]}")
    print(f"median µs per decode step, {a.rounds} alternating rounds of {a.steps} steps (N=1) or {a.steps // 4} (N=64)")
    print(f"{'model':20s} {'N':>3s} {'threads':>7s} {'torch':>9s} {'onnxrt':>9s} {'torch/ort':>9s} {'max |diff|':>10s}")
    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    for label, (vocab_size, shape) in MODELS.items():
        model = LSTMLM(vocab_size, ModelConfig(**shape, dropout=0.0)).eval()
        path = tmp / "g.onnx"
        path.write_bytes(build_graph(model, describe(model, name="bench", step=0)))
        for n in (1, 64):
            steps = a.steps if n == 1 else a.steps // 4
            ids = torch.randint(0, vocab_size, (n, 1))
            state = tuple(torch.randn(shape["n_layer"], n, shape["hidden"]) * 0.5 for _ in range(2))
            for threads in (1, 2):
                torch.set_num_threads(threads)
                dec = load_graph(path, threads=threads)
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # mkldnn.flags' TF32 notice on CPU-only builds
                    with torch.backends.mkldnn.flags(enabled=False):
                        ref = model(ids, state)[0].numpy()
                        diff = float(np.abs(dec.forward(ids.numpy(), *(s.numpy() for s in state))[0] - ref).max())
                        torch_steps(model, ids, state, steps, [])  # warm-up: first calls allocate, pick kernels
                        ort_steps(dec, ids, state, steps, [])
                        times = {"torch": [], "ort": []}
                        for _ in range(a.rounds):
                            torch_steps(model, ids, state, steps, times["torch"])
                            ort_steps(dec, ids, state, steps, times["ort"])
                t_us, o_us = (statistics.median(times[k]) * 1e6 for k in ("torch", "ort"))
                print(f"{label:20s} {n:3d} {threads:7d} {t_us:9.0f} {o_us:9.0f} {t_us / o_us:8.1f}x {diff:10.1e}")
    print(f"import, median of {a.imports} fresh interpreters (seconds):")
    bare, ort_s, torch_s = import_seconds(("sys", "onnxruntime", "torch"), a.imports)
    print(f"  python -c 'import sys'          {bare:6.2f}")
    print(f"  python -c 'import onnxruntime'  {ort_s:6.2f}")
    print(f"  python -c 'import torch'        {torch_s:6.2f}   {torch_s / ort_s:.1f}x onnxruntime's")


if __name__ == "__main__":
    main()
