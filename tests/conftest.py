"""Shared fixtures: every test gets its own empty registry, and tiny corpora/models at toy sizes."""

import csv
import errno
import os

import pytest
import torch
from hypothesis import settings

from lstmgen import registry
from lstmgen.config import load_config
from lstmgen.corpora import load_corpus
from lstmgen.corpus import PrepareOptions, build_corpus
from lstmgen.sources import read_records, read_source
from lstmgen.train import train

# The suite gates every submission, so its property tests draw the same examples on every run: a failure
# that random drawing finds on one run in twenty would otherwise block unrelated work. To hunt for new
# failures, draw at random: HYPOTHESIS_PROFILE=explore make test, and add what it finds as an @example.
settings.register_profile("suite", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

# What the terminal tests assert is rich's output in a plain environment: a CI machine's colour or width
# settings would change it for every command, in-process and in subprocesses alike.
for variable in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
    os.environ.pop(variable, None)
if os.environ.get("TERM") in ("dumb", "unknown"):
    os.environ["TERM"] = "xterm-256color"

JOKES = [
    "Why did the cat sit on the mat? It was warm.",
    "What do you call a sleepy dog? A napping pup.",
    "Hey, did you hear about the bread? It was a loaf story.",
    "Why do ducks quack? They cannot whistle.",
    "I told my plant a joke. It did not grow on it.",
    "What is a fish without eyes? A fsh.",
    "Hey, why is the sun bright? It went to school.",
    "Why did the cow cross the road? To reach the moo-vies.",
] * 6


@pytest.fixture(autouse=True)
def registry_home(tmp_path, monkeypatch):
    """Point LSTMGEN_HOME at a fresh temp dir, as users of llm-style tools expect tests to do."""
    home = tmp_path / "home"
    monkeypatch.setenv("LSTMGEN_HOME", str(home))
    torch.set_num_threads(1)
    return home


@pytest.fixture
def jokes_csv(tmp_path):
    path = tmp_path / "jokes.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "Joke"])
        for i, j in enumerate(JOKES, 1):
            w.writerow([i, j])
    return path


def toy_run(max_steps: int, every: int, *extra: str) -> list[str]:
    """`--set` flags for a real `lstmgen train` process on the toy corpus: a 2x16 model, windows of 2 x 8,
    bounded by max_steps only, evaluating and checkpointing every `every` steps; `extra` overrides more."""
    sets = ["model.embed=8", "model.hidden=16", "train.batch_size=2", "train.seq_len=8",
            f"train.max_steps={max_steps}", "train.max_epochs=null", "train.max_time=null",
            f"train.eval_every={every}", f"train.checkpoint_every={every}", *extra]  # fmt: skip
    return [arg for item in sets for arg in ("--set", item)]


def tiny_config(**train_overrides):
    sets = [
        "corpus=toy",
        "name=tiny",
        "model.embed=8",
        "model.hidden=16",
        "model.n_layer=2",
        "model.dropout=0.1",
        "train.batch_size=4",
        "train.seq_len=16",
        "train.max_epochs=null",
        "train.max_steps=12",
        "train.eval_every=4",
        "train.checkpoint_every=4",
        "train.log_every=2",
        "train.warmup_steps=2",
        "train.device=cpu",
        "train.precision=fp32",
    ]
    sets += [f"train.{k}={v}" for k, v in train_overrides.items()]
    return load_config(None, sets)


@pytest.fixture
def toy_corpus(jokes_csv):
    source = read_source(str(jokes_csv))
    records, col = read_records(source)
    corpus = build_corpus(source, records, PrepareOptions(tokenizer="char", val_frac=0.1, test_frac=0.1), column=col)
    registry.save_corpus("toy", corpus)
    return load_corpus("toy")


@pytest.fixture
def tiny_model(toy_corpus):
    """A 2x16 char model trained for 12 steps into the registry as 'tiny'."""
    cfg = tiny_config()
    train(cfg, toy_corpus)
    return cfg


class _FullDisk:
    """A file that fails like a full disk once `budget` bytes are written (shared by all files opened)."""

    def __init__(self, f, budget: list[int]):
        self.f, self.budget = f, budget

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if n > self.budget[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget[0] -= n
        return self.f.write(data)

    def __getattr__(self, attr):
        return getattr(self.f, attr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.fixture
def disk_full(monkeypatch):
    """disk_full(after_bytes=N): registry writes fail with ENOSPC once N more bytes are written."""
    from lstmgen import registry as reg

    real = os.fdopen

    def fill(after_bytes: int = 0):
        budget = [after_bytes]
        monkeypatch.setattr(reg.os, "fdopen", lambda *a, **k: _FullDisk(real(*a, **k), budget))

    return fill
