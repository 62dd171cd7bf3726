"""The novelty index (lstmgen.novelty): build time and peak memory for tinyshakespeare and a 100 MB text, the
cost of a lookup against generating the sample it checks, and how long a span held-out text shares with its
training split by chance (what --max-copy's default rests on).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/novelty.py [--big-mb 100] [--samples 20]

The 100 MB text is tinyshakespeare's lines in a seeded random order until 100 MB (each line recurs ~90
times, as duplicates do in scraped corpora: the worst case for prefix doubling), written to /tmp and removed.
Memory is tracemalloc's peak during the build (numpy's arrays are traced), with the corpus ids memory-mapped.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
JOKES = ROOT.parent / "shared" / "data" / "reddit-cleanjokes.csv"


def corpus_of(path: Path, work: Path) -> dict:
    from lstmgen.corpora import TextInput, read_inputs
    from lstmgen.corpus import PrepareOptions, build_corpus

    source, texts, column, _ = read_inputs([TextInput(str(path))], work)
    return build_corpus(source, texts, PrepareOptions(), column=column, work_dir=work)


def build(corpus: dict):
    from lstmgen.novelty import build_index

    tracemalloc.start()
    t0 = time.perf_counter()
    index = build_index(corpus)
    took = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return index, took, peak


def heldout_copies(corpus: dict, index) -> np.ndarray:
    """The longest copy of each val record in the train split: what unseen text of this kind shares by chance."""
    from lstmgen.tokenize import Vocab

    vocab = Vocab.from_dict(corpus["vocab"])
    ids = corpus["splits"]["val"].numpy()
    cuts = np.flatnonzero(ids == vocab.eor_id)
    records = [vocab.decode(r) for r in np.split(ids, cuts + 1)]  # decode stops at each record's <eor>
    return np.array([index.longest(r).chars for r in records if r])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=300)
    args = ap.parse_args()
    print(cpu())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["LSTMGEN_HOME"] = str(work / "home")
        shakes = corpus_of(SHAKESPEARE, work)
        index, took, peak = build(shakes)
        n = index.text.size
        print(f"tinyshakespeare: {n:,} chars indexed in {took:.2f} s, peak {peak / 2**20:.0f} MB "
              f"({peak / n:.1f} B/char); on disk {(index.text.nbytes + index.sa.nbytes + index.keys.nbytes) / 2**20:.1f} MB")  # fmt: skip  # noqa: E501

        for name, path in (("tinyshakespeare", SHAKESPEARE), ("reddit-cleanjokes", JOKES)):
            c = shakes if name == "tinyshakespeare" else corpus_of(path, work)
            idx = index if name == "tinyshakespeare" else build(c)[0]
            lens = heldout_copies(c, idx)
            q = np.percentile(lens, [50, 90, 99, 100])
            print(f"{name}: held-out records' longest copy of train, chars: median {q[0]:.0f}, p90 {q[1]:.0f}, "
                  f"p99 {q[2]:.0f}, max {q[3]:.0f} ({lens.size} records)")  # fmt: skip

        # Lookup against generation: a model of char.yaml's shape (2x256), trained briefly (speed, not quality).
        from lstmgen import registry
        from lstmgen.config import load_config
        from lstmgen.inference import load_for_inference
        from lstmgen.sample import SampleOptions, sample
        from lstmgen.train import train

        registry.save_corpus("shakes", shakes)
        cfg = load_config(ROOT / "configs" / "char.yaml", ["corpus=shakes", "name=bench", "train.max_steps=20",
                          "train.max_epochs=null", "train.eval_every=20", "train.device=cpu",
                          "train.precision=fp32"])  # fmt: skip
        from lstmgen.corpora import load_corpus

        train(cfg, load_corpus("shakes"))
        loaded = load_for_inference("bench")
        opts = SampleOptions(max_tokens=args.tokens)
        gen, look, texts = [], [], []
        for seed in range(args.samples):
            t0 = time.perf_counter()
            s = sample(loaded, "", opts, seed=seed)[0]
            gen.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            index.longest(s.text)
            look.append(time.perf_counter() - t0)
            texts.append(s.text)
        g, lk = statistics.median(gen), statistics.median(look)
        chars = statistics.median(map(len, texts))
        print(f"one sample (--max-tokens {args.tokens}, median of {args.samples}, {chars:.0f} chars): generate "  # noqa: E501
              f"{g * 1e3:.1f} ms, look up in tinyshakespeare's index {lk * 1e3:.2f} ms = {lk / g:.1%} of generating")  # fmt: skip  # noqa: E501
        # The same lookups without the packed keys (the window search alone), alternating with them.
        from dataclasses import replace

        bare = replace(index)
        bare.keys = None
        with_keys, without = [], []
        for _ in range(3):
            for target, times in ((index, with_keys), (bare, without)):
                for text in texts:
                    t0 = time.perf_counter()
                    assert target.longest(text).chars >= 0
                    times.append(time.perf_counter() - t0)
        kw, kb = statistics.median(with_keys), statistics.median(without)
        print(f"  lookup with packed keys {kw * 1e3:.2f} ms, without {kb * 1e3:.2f} ms: {kb / kw:.1f}x")

        if not args.big_mb:
            return
        big = work / "big.txt"
        lines = SHAKESPEARE.read_text().splitlines(keepends=True)
        rng = np.random.default_rng(0)
        with big.open("w") as f:
            size = 0
            while size < args.big_mb * 10**6:
                for i in rng.permutation(len(lines)):
                    f.write(lines[i])
                    size += len(lines[i])
                    if size >= args.big_mb * 10**6:
                        break
        bigc = corpus_of(big, work)
        big.unlink()
        bindex, took, peak = build(bigc)
        n = bindex.text.size
        print(f"{args.big_mb} MB text: {n:,} chars indexed in {took:.1f} s, peak {peak / 2**20:.0f} MB "
              f"({peak / n:.1f} B/char); on disk {(bindex.text.nbytes + bindex.sa.nbytes + bindex.keys.nbytes) / 2**20:.0f} MB")  # fmt: skip  # noqa: E501
        look = []
        for text in texts:
            t0 = time.perf_counter()
            bindex.longest(text)
            look.append(time.perf_counter() - t0)
        lk = statistics.median(look)
        print(
            f"the same samples looked up in the {args.big_mb} MB index: {lk * 1e3:.2f} ms = {lk / g:.1%} of "
            "generating one"
        )


if __name__ == "__main__":
    main()
