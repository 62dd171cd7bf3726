"""Where one ONNX Runtime decode step goes, node by node: ONNX Runtime's own profiler over single-stream
steps (batch 1, one token, the state carried) of the tutorial-shaped word model (embedding 128, 3 x 128
LSTM, a full softmax over 5,034 words), random weights: speed does not depend on training.

Usage (repo root, after `make install`; OMP_NUM_THREADS=1 on a shared machine):
    .venv/bin/python benchmarks/onnx_profile.py [--steps 500]
Prints the median step without the profiler, then the median time per node with it (the profiler's own
overhead is in the whole-run figure, not in the nodes').
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from machine import cpu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=500)
    a = p.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from lstmgen.config import ModelConfig
    from lstmgen.model import LSTMLM
    from lstmgen.onnx_graph import build_graph, describe
    from lstmgen.runtime import load_graph

    print(f"CPU: {cpu()}; onnxruntime {ort.__version__}")
    torch.manual_seed(0)
    vocab, shape = 5034, dict(embed=128, hidden=128, n_layer=3)
    model = LSTMLM(vocab, ModelConfig(**shape, dropout=0.0)).eval()
    path = Path(tempfile.mkdtemp()) / "g.onnx"
    path.write_bytes(build_graph(model, describe(model, name="bench", step=0)))
    ids = np.array([[5]], np.int64)
    h = c = np.zeros((shape["n_layer"], 1, shape["hidden"]), np.float32)

    decoder = load_graph(path, threads=1)  # as `lstmgen sample` runs it
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        _, h, c = decoder.forward(ids, h, c)
        times.append(time.perf_counter() - t0)
    print(f"one step, lstmgen's session: median {statistics.median(times) * 1e6:.0f} µs over {a.steps}")

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.enable_profiling = 1, True
    opts.profile_file_prefix = str(path.parent / "profile")  # beside the graph, not in the current directory
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    for _ in range(a.steps):
        _, h, c = session.run(None, {"ids": ids, "h": h, "c": c})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_node = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[f"{e['args']['op_name']} ({e['name'].removesuffix('_kernel_time')})"].append(e["dur"])
    total = sum(statistics.median(v) for v in per_node.values())
    print(f"per node, median µs (sum {total:.0f}):")
    for name, durations in sorted(per_node.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {statistics.median(durations):7.1f}  {name}")


if __name__ == "__main__":
    main()
