"""Helpers for the server tests: a registry with small models, and a real `lstmgen serve` process on a free
loopback port."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


def make_home(home: Path, *, endless: bool = True, copies: tuple[str, ...] = ()) -> Path:
    """A registry at `home` with the toy char corpus and model 'tiny' (conftest's 12-step 2x16 model); with
    `endless`, also 'endless': tiny with <eor> made impossible, so a completion runs to max_tokens (what
    tests of long-running streams need); and a copy of tiny under each name in `copies`."""
    from lstmgen import registry
    from lstmgen.corpora import load_corpus
    from lstmgen.corpus import PrepareOptions, build_corpus
    from lstmgen.sources import read_records, read_source
    from lstmgen.train import train

    from .conftest import JOKES, tiny_config

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LSTMGEN_HOME", str(home))
        home.mkdir(parents=True, exist_ok=True)
        source = home / "jokes.csv"
        with source.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["ID", "Joke"])
            w.writerows(enumerate(JOKES, 1))
        src = read_source(str(source))
        records, col = read_records(src)
        options = PrepareOptions(tokenizer="char", val_frac=0.1, test_frac=0.1)
        registry.save_corpus("toy", build_corpus(src, records, options, column=col))
        train(tiny_config(), load_corpus("toy"))
        if endless:
            save_model("tiny", "endless", no_eor=True)
        for name in copies:
            save_model("tiny", name)
    return home


def save_model(source: str, name: str, *, no_eor: bool = False, scale: float = 1.0, steps: int = 0) -> None:
    """Save model `source`'s best checkpoint as model `name`'s new best, as training does (best.pt, then its
    graph beside it): with <eor> made impossible (no_eor), the head's weights times `scale`, `steps` more
    steps. In the registry LSTMGEN_HOME points at."""
    from lstmgen import checkpoint, registry
    from lstmgen.onnx_graph import save_graph

    ckpt = checkpoint.load(source)
    if no_eor:
        ckpt.state_dict["head.bias"][ckpt.make_vocab().eor_id] = -1e4
    ckpt.state_dict["head.weight"] *= scale
    ckpt.name, ckpt.step = name, ckpt.step + steps
    d = registry.entry_dir("model", name)
    d.mkdir(parents=True, exist_ok=True)
    ckpt.path = d / "best.pt"
    ckpt.save(ckpt.path)
    save_graph(ckpt)


class Server:
    """`lstmgen serve ARGS` on port 0 with LSTMGEN_HOME=home; `url` once it listens. Its stderr is collected
    in `log` (a thread drains it)."""

    def __init__(self, home: Path, *args: str, env: dict | None = None):
        environ = {**os.environ, "LSTMGEN_HOME": str(home), "OMP_NUM_THREADS": "1", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "lstmgen", "serve", "--port", "0", *args], env=environ,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.log: list[str] = []
        self.url = None
        ready = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line)
                found = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
                if found and self.url is None:
                    self.url = found[1]
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        ready.wait(120)
        if self.url is None:
            self.stop()
            raise AssertionError("the server did not start: " + "".join(self.log))

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait_for(self, text: str, timeout: float = 30) -> bool:
        """Whether `text` appears in the server's stderr within `timeout` seconds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in line for line in self.log):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
