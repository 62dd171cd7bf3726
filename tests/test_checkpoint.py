"""Hostile or damaged model files: every command gives one clear error line, never a traceback or code execution.

Each case damages models/tiny/{best,last}.pt of a trained toy model, then runs what `sample`, `eval`, `show`,
`list` and `train --resume` run: first the library calls (only LstmgenError may escape), then the command
function itself in-process (only a clean exit may escape: typer.Exit(1) after one `error:` line). A few cases
also run the real `python -m lstmgen` in subprocesses; those cost ~2.5 s each (torch import), so only a few.
"""

from __future__ import annotations

import csv
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lstmgen import checkpoint, registry
from lstmgen.cli import app
from lstmgen.corpora import load_corpus
from lstmgen.corpus import PrepareOptions, build_corpus
from lstmgen.errors import LstmgenError
from lstmgen.sample import SampleOptions
from lstmgen.sources import read_records, read_source

from .conftest import JOKES, tiny_config

COMMANDS = ("sample", "eval", "show", "list", "train")


# -- one trained model, copied into each test's fresh registry -------------------------------------------


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory):
    """A registry holding the `toy` corpus and the `tiny` model (what the tiny_model fixture builds), once."""
    from lstmgen.train import train

    home = tmp_path_factory.mktemp("trained") / "home"
    Evil.marker = home.parent / "pwned"  # outside every registry: any test's exploit would show up here
    csv_path = home.parent / "jokes.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "Joke"])
        w.writerows(enumerate(JOKES, 1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LSTMGEN_HOME", str(home))
        torch.set_num_threads(1)
        source = read_source(str(csv_path))
        records, col = read_records(source)
        options = PrepareOptions(tokenizer="char", val_frac=0.1, test_frac=0.1)
        corpus = build_corpus(source, records, options, column=col)
        registry.save_corpus("toy", corpus)
        train(tiny_config(), load_corpus("toy"))
    return home


@pytest.fixture(scope="module")
def damaged_dirs(tmp_path_factory):
    """mutation -> a copy of models/tiny as that mutation left it: each is made once, then copied per test."""
    return {"root": tmp_path_factory.mktemp("damaged")}


@pytest.fixture
def tiny_home(trained_home, registry_home):
    shutil.copytree(trained_home, registry_home)
    return registry_home


def apply_mutation(mutation: str, cache: dict) -> None:
    model_dir = model_path("best").parent
    if mutation in cache:
        shutil.rmtree(model_dir)
        shutil.copytree(cache[mutation], model_dir)
    else:
        MUTATIONS[mutation][0]()
        cache[mutation] = cache["root"] / mutation
        shutil.copytree(model_dir, cache[mutation])


def model_path(which: str) -> Path:
    return registry.home() / "models" / "tiny" / f"{which}.pt"


# -- mutations -----------------------------------------------------------------------------------------


class Evil:
    """Unpickling this runs a shell command: loading must refuse it, never run it."""

    marker: Path  # set by trained_home

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def edit(fn, files=("best", "last")):
    """A mutation that loads each checkpoint safely, lets fn change the payload in place, and saves it back."""

    def apply():
        for which in files:
            path = model_path(which)
            payload = torch.load(path, weights_only=True)
            fn(payload)
            torch.save(payload, path)

    return apply


def raw(make_bytes, files=("best", "last")):
    """A mutation that replaces each checkpoint's bytes with make_bytes(old_bytes)."""

    def apply():
        for which in files:
            path = model_path(which)
            path.write_bytes(make_bytes(path.read_bytes()))

    return apply


def both(*mutations):
    def apply():
        for m in mutations:
            m()

    return apply


def delete_last():
    model_path("last").unlink()


def delete(key):
    return edit(lambda p: p.pop(key))


def set_key(key, value):
    return edit(lambda p: p.__setitem__(key, value))


def set_in(key, sub, value):
    return edit(lambda p: p[key].__setitem__(sub, value))


def _wrong_shape(p):
    sd = p["state_dict"]
    k = next(k for k in sd if k.endswith("weight_ih_l0"))
    sd[k] = torch.zeros(sd[k].shape[0] + 1, sd[k].shape[1])


def _missing_param(p):
    p["state_dict"].pop(next(k for k in p["state_dict"] if k.startswith("lstm.")))


def _hidden_wrong_shape(p):
    h, c = p["train_state"]["hidden"]
    p["train_state"]["hidden"] = (torch.zeros(h.shape[0], h.shape[1], h.shape[2] + 3), c)


def _train_state_missing(p):
    for k in ("optimizer", "rng_cpu", "step"):
        p["train_state"].pop(k)


def _heldout(fn):
    return edit(lambda p: p.__setitem__("heldout", {k: fn(v) for k, v in p["heldout"].items()}))


# name -> (mutation, commands that read the damaged part and so cannot genuinely work: they must fail cleanly).
# The other commands may succeed (exit 0), or fail cleanly too. `list` reads only info.json, never a .pt file,
# so it runs only for the mutations that replace a whole file (RAW): there it must still work.
LOADERS = {"sample", "eval", "show", "train"}
MUTATIONS = {
    **{
        f"no-{key}": (delete(key), LOADERS)
        for key in ("vocab", "state_dict", "history", "config", "heldout")
    },
    "itos-empty": (set_in("vocab", "itos", []), {"sample", "eval", "train"}),
    "itos-not-a-list": (set_in("vocab", "itos", 12345), {"sample", "eval", "train"}),
    "itos-ints": (
        edit(lambda p: p["vocab"].__setitem__("itos", list(range(len(p["vocab"]["itos"]))))),
        {"sample", "eval", "train"},
    ),
    "hidden-negative": (edit(lambda p: p["config"]["model"].__setitem__("hidden", -1)), {"sample", "eval"}),
    "hidden-string": (edit(lambda p: p["config"]["model"].__setitem__("hidden", "16")), {"sample", "eval"}),
    "state-dict-wrong-shape": (edit(_wrong_shape), {"sample", "eval", "train"}),
    "state-dict-missing-key": (edit(_missing_param), {"sample", "eval", "train"}),
    "history-string": (set_key("history", "x"), set()),
    "config-int": (set_key("config", 5), {"train"}),
    "format-99": (set_key("format_version", 99), LOADERS),
    "format-string": (set_key("format_version", "1"), LOADERS),
    "heldout-floats": (_heldout(lambda v: v.float() + 0.5), set()),
    "heldout-out-of-range": (_heldout(lambda v: v.long() + 10_000), {"eval"}),
    "train-state-missing-keys": (edit(_train_state_missing, files=("last",)), {"train"}),
    "train-state-hidden-shape": (edit(_hidden_wrong_shape, files=("last",)), {"train"}),
    "train-state-window-huge": (edit(lambda p: p["train_state"].__setitem__("window", 10**6), ("last",)), {"train"}),
    "train-state-step-string": (edit(lambda p: p["train_state"].__setitem__("step", "7"), ("last",)), {"train"}),
    "corpus-summary-no-chars": (edit(lambda p: p["corpus"].pop("chars")), LOADERS),
    "heldout-meta": (_heldout(lambda v: v.to("meta")), LOADERS),
    "weights-nan": (edit(lambda p: next(iter(p["state_dict"].values())).fill_(float("nan"))), LOADERS),
    "random-bytes": (raw(lambda b: random.Random(0).randbytes(len(b))), LOADERS),
    "truncated": (raw(lambda b: b[: len(b) // 2]), LOADERS),
    "zero-bytes": (raw(lambda b: b""), LOADERS),
    "pickle-exec": (raw(lambda b: pickle.dumps({"format_version": 1, "vocab": Evil()})), LOADERS),
    "torch-save-exec": (set_key("history", Evil()), LOADERS),
    "no-last-best-wrong-shape": (both(edit(_wrong_shape, files=("best",)), delete_last), {"sample", "eval", "train"}),
}

RAW = ("random-bytes", "truncated", "zero-bytes", "pickle-exec")

# -- what each command runs ------------------------------------------------------------------------------


def lib_sample():
    from lstmgen.inference import load_for_inference
    from lstmgen.sample import answer

    list(answer(load_for_inference("tiny"), [["Why"]], SampleOptions(max_tokens=5), seed=0))


def lib_eval():
    from lstmgen.evaluate import evaluate_model

    evaluate_model("tiny", device="cpu")


def lib_show():
    registry.info("model", "tiny")
    checkpoint.latest("tiny")


def lib_list():
    registry.list_entries()


def lib_train():
    from lstmgen.runs import TrainRequest, fit

    fit(TrainRequest(name="tiny", resume=True, overrides=("train.max_steps=14",)))


LIB = {"sample": lib_sample, "eval": lib_eval, "show": lib_show, "list": lib_list, "train": lib_train}

CLI = {  # what `lstmgen <args>` runs for each command, in-process
    "sample": ["sample", "Why", "--model", "tiny", "--max-tokens", "5", "--seed", "0"],
    "eval": ["eval", "--model", "tiny", "--device", "cpu"],
    "show": ["show", "tiny"],
    "list": ["list"],
    "train": ["train", "--name", "tiny", "--resume", "--set", "train.max_steps=14", "--quiet"],
}


def cases():
    for mutation in MUTATIONS:
        for command in COMMANDS if mutation in RAW else [c for c in COMMANDS if c != "list"]:
            yield pytest.param(mutation, command, id=f"{mutation}-{command}")


def assert_one_error_line(stderr: str, what: str):
    assert "Traceback" not in stderr and "internal error" not in stderr, f"{what}: {stderr}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), f"{what}: stderr is not one error line: {stderr!r}"


@pytest.mark.parametrize("mutation,command", list(cases()))
def test_damaged_checkpoint_fails_cleanly(tiny_home, damaged_dirs, capsys, mutation, command):
    must_fail = MUTATIONS[mutation][1]
    apply_mutation(mutation, damaged_dirs)

    # 1. The library: it either works or raises LstmgenError, nothing else.
    try:
        LIB[command]()
        lib_failed = False
    except LstmgenError as e:
        lib_failed = True
        assert len(str(e).strip().splitlines()) == 1, repr(str(e))
    if command in must_fail:
        assert lib_failed, f"{command} worked on a checkpoint with {mutation}"
    capsys.readouterr()
    if command == "train":  # the library run may have rewritten the files: the command gets them as damaged
        apply_mutation(mutation, damaged_dirs)

    # 2. The command, as `lstmgen ...` runs it: works, or prints one error line and exits 1.
    r = CliRunner().invoke(app, CLI[command])
    code, err = r.exit_code, r.stderr
    assert code in (0, 1), (code, err)
    if code:
        assert_one_error_line(err, command)
    assert (code == 1) == lib_failed or command == "train", (code, lib_failed, err)  # train: see its own checks
    if command in must_fail:
        assert code == 1, f"`lstmgen {command}` exited 0 on a checkpoint with {mutation}"
    assert not Evil.marker.exists(), "loading a checkpoint ran code from it"


# -- the real command line, for a few representative cases -----------------------------------------------

SUBPROCESS_CASES = [  # (mutation, command): three kinds of damage; eval and show share sample's loading path
    ("random-bytes", "sample"),
    ("torch-save-exec", "train"),
    ("zero-bytes", "list"),
]


@pytest.fixture(scope="module", autouse=True)
def cli_runs(trained_home, tmp_path_factory):
    """`python -m lstmgen CMD` for each SUBPROCESS_CASES entry, each in its own damaged registry copy.

    Each costs ~2.5 s of torch import: started when this module starts, they run on the second core while
    the in-process tests use the first, and test_real_command_line_on_damaged_checkpoints collects them.
    """
    root = tmp_path_factory.mktemp("cli-runs")
    runs = []
    for mutation, command in SUBPROCESS_CASES:
        home = root / f"{mutation}-{command}"
        shutil.copytree(trained_home, home)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LSTMGEN_HOME", str(home))
            MUTATIONS[mutation][0]()
        args = [sys.executable, "-m", "lstmgen", *CLI[command]]
        env = os.environ | {"LSTMGEN_HOME": str(home)}
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        runs.append((mutation, command, proc))
    yield runs
    for *_, proc in runs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_real_command_line_on_damaged_checkpoints(cli_runs):
    """`python -m lstmgen CMD`: exit 0/1, no traceback, a failure is one `error:` line, and no code ran."""
    for mutation, command, proc in cli_runs:
        _, err = proc.communicate(timeout=120)
        what = f"`lstmgen {command}` on {mutation}"
        assert proc.returncode in (0, 1), (what, proc.returncode, err)
        assert "Traceback" not in err and "internal error" not in err, (what, err)
        if command in MUTATIONS[mutation][1]:
            assert proc.returncode == 1, what
        if proc.returncode:
            assert_one_error_line(err, what)
    assert not Evil.marker.exists(), "loading a checkpoint ran code from it"


def test_bit_flips_in_a_checkpoint_never_escape_as_other_errors(tiny_home):
    """Random byte damage anywhere in best.pt: loading it gives LstmgenError or a payload, nothing else."""
    path = model_path("best")
    good = path.read_bytes()
    rng = random.Random(1)
    for _ in range(80):
        data = bytearray(good)
        for _ in range(rng.choice([1, 4, 32])):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            from lstmgen.inference import load_for_inference
            from lstmgen.sample import sample

            # flips in the weights: NaN must not reach it
            sample(load_for_inference("tiny", "best"), "Why", SampleOptions(max_tokens=5))
        except LstmgenError:
            pass


@pytest.mark.parametrize(
    "vocab",
    [
        None,
        "x",
        {"kind": "char"},
        {"kind": "char", "itos": []},
        {"kind": "char", "itos": [0, 1]},
        {"kind": "char", "itos": "<eor>ab"},
        {"kind": "char", "itos": ["a", "<eor>"]},
        {"kind": "bpe", "itos": ["<eor>"]},
    ],
)
def test_damaged_vocab_is_refused_with_a_clear_error(vocab):
    from lstmgen.tokenize import Vocab

    with pytest.raises(LstmgenError, match="vocabulary is damaged"):
        Vocab.from_dict(vocab)


# -- the format and the resume rules ----------------------------------------------------------------


def test_incomplete_model_file_is_a_clear_error(tiny_model):
    path = registry.model_file("tiny", "best")
    registry.save_pt(path, {"format_version": 1, "vocab": {}})
    with pytest.raises(LstmgenError, match="not a complete lstmgen model .missing config, state_dict"):
        checkpoint.load("tiny", "best")


def test_truncated_checkpoint_is_a_clear_error(tiny_model):
    path = registry.model_file("tiny", "last")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(LstmgenError, match="corrupt"):
        checkpoint.load("tiny", "last")


def test_newer_format_is_refused(tiny_model):
    path = registry.model_file("tiny")
    payload = registry.load_pt(path)
    registry.save_pt(path, payload | {"format_version": 99})
    with pytest.raises(LstmgenError, match="newer"):
        checkpoint.load("tiny")


def test_library_resume_refuses_a_different_data_layout(toy_corpus):
    from lstmgen.train import train

    train(tiny_config(max_steps=4), toy_corpus)
    with pytest.raises(LstmgenError, match="different train.batch_size"):
        train(tiny_config(max_steps=8, batch_size=2), toy_corpus, resume=checkpoint.load("tiny", "last"))
