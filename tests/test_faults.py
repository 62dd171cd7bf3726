"""Faults a long training run meets: a full disk, a second writer, kill -9. The long randomised version is
tests/stress/kill9.py; these are the fast, deterministic cases."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from lstmgen import checkpoint, registry
from lstmgen.errors import LstmgenError
from lstmgen.train import train

from .conftest import tiny_config, toy_run

CLI = [sys.executable, "-m", "lstmgen"]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def weights(name, which="last"):
    return checkpoint.load(name, which).state_dict


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_disk_full_mid_training_keeps_the_last_checkpoint_and_resume_finishes_the_run(toy_corpus, disk_full):
    train(tiny_config(max_steps=12), toy_corpus)
    straight = weights("tiny")

    cfg = tiny_config(max_steps=12)
    cfg.name = "full"
    calls = iter(range(100))
    train(cfg, toy_corpus, should_stop=lambda: next(calls) >= 4)  # stopped, with a checkpoint, at step 4
    d = registry.entry_dir("model", "full")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    disk_full(after_bytes=0)
    with pytest.raises(LstmgenError, match=r"no space left on device.*last\.pt of step 4 is intact.*--resume"):
        train(cfg, toy_corpus, resume=checkpoint.load("full", "last"))
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # intact, and no temp files

    disk_full(after_bytes=10**9)  # space freed
    train(cfg, toy_corpus, resume=checkpoint.load("full", "last"))
    assert same(weights("full"), straight)


def test_a_second_writer_is_refused_while_the_first_holds_the_lock():
    with registry.lock("model", "m", "training it"):
        with pytest.raises(registry.Busy, match=rf"model 'm' is busy \(pid {os.getpid()} training it since"):
            with registry.lock("model", "m", "training it"):
                pass
        with registry.lock("model", "other", "training it"):  # other names are free
            pass
    with registry.lock("model", "m", "training it"):  # released on exit
        pass
    assert not (registry.home() / "locks").exists()  # and it leaves nothing behind


def test_lock_clears_the_temp_files_a_killed_writer_left(tiny_model):
    d = registry.entry_dir("model", "tiny")
    (d / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    with registry.lock("model", "tiny", "training it"):
        assert not list(d.glob(".*.tmp"))


def test_rm_refuses_while_the_model_is_training(tiny_model):
    with registry.lock("model", "tiny", "training it"):
        with pytest.raises(registry.Busy, match="busy"):
            registry.remove("model", "tiny")
    assert registry.entry_dir("model", "tiny").is_dir()


@posix_only
def test_concurrent_train_and_prepare_refuse_and_sample_reads_the_last_checkpoint(jokes_csv, toy_corpus):
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    sets = toy_run(100_000, 20)
    first = subprocess.Popen(
        [*CLI, "train", "--corpus", "toy", "--name", "busy", *sets], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        while "training busy" not in first.stderr.readline():
            assert first.poll() is None
        while not (registry.entry_dir("model", "busy") / "last.pt").exists():
            assert first.poll() is None  # a run that died before its first save would leave us waiting for ever
            time.sleep(0.05)
        second = subprocess.run(
            [*CLI, "train", "--corpus", "toy", "--name", "busy", "--overwrite", *sets],
            env=env,
            capture_output=True,
            text=True,
        )
        assert second.returncode == 1
        assert second.stderr.count("\n") == 1 and f"model 'busy' is busy (pid {first.pid} training it" in second.stderr
        with registry.lock("corpus", "toy", "preparing it"):
            prep = subprocess.run(
                [*CLI, "prepare", str(jokes_csv), "--name", "toy", "--overwrite"],
                env=env,
                capture_output=True,
                text=True,
            )
        assert prep.returncode == 1 and "corpus 'toy' is busy" in prep.stderr
        # Readers take no lock: they see the last complete checkpoint while training goes on.
        s = subprocess.run(
            [*CLI, "sample", "Why", "--model", "busy", "--max-tokens", "5", "--seed", "1"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert s.returncode == 0 and s.stdout.startswith("Why"), s.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143


@posix_only
def test_kill_9_after_a_checkpoint_then_resume_is_bit_identical(toy_corpus):
    """kill -9 loses at most one checkpoint interval, and the resumed run ends where a straight one does."""
    exact = ("model.dropout=0.1", "train.device=cpu", "train.precision=fp32")
    sets = ["--corpus", "toy", "--quiet", *toy_run(200, 20, *exact)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run([*CLI, "train", "--name", "straight", *sets], env=env, check=True, capture_output=True)

    proc = subprocess.Popen([*CLI, "train", "--name", "killed", *sets], env=env, stderr=subprocess.DEVNULL)
    info = registry.entry_dir("model", "killed") / "info.json"
    # info.json is rewritten at each save, best.pt's (at an eval) before last.pt's: at 60, last.pt is >= 40.
    while json.loads(info.read_text()).get("steps", 0) < 60 if info.exists() else True:
        assert proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = checkpoint.load("killed", "last").train_state["step"]
    assert 40 <= step < 200
    r = subprocess.run(
        [*CLI, "train", "--name", "killed", "--resume", "--quiet", "--json"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 200
    for which in ("last", "best"):
        assert same(weights("killed", which), weights("straight", which))


def test_resume_with_no_checkpoint_yet_starts_from_step_zero(toy_corpus, tmp_path):
    from typer.testing import CliRunner

    from lstmgen.cli import app

    config = tmp_path / "c.yaml"
    config.write_text(
        "corpus: toy\nname: fresh\nmodel: {embed: 8, hidden: 16}\n"
        "train: {batch_size: 2, seq_len: 8, max_steps: 3, max_epochs: null, max_time: null}\n"
    )
    r = CliRunner().invoke(app, ["train", "--config", str(config), "--resume", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "no checkpoint to resume from yet; starting it from step 0" in r.output
    assert checkpoint.load("fresh", "last").train_state["step"] == 3
    r = CliRunner().invoke(app, ["train", "--name", "nothing", "--resume"])
    assert r.exit_code == 1 and "no model named 'nothing'" in r.output and "names: fresh" in r.output
    r = CliRunner().invoke(app, ["train", "--name", "toy", "--resume"])  # a corpus's name: say so
    assert r.exit_code == 1 and "'toy' is a corpus (train a model on it: lstmgen train --corpus toy)" in r.output


def test_a_failed_first_save_of_a_fresh_run_says_to_run_it_again(tiny_model, toy_corpus, disk_full):
    before = {p.name: p.read_bytes() for p in registry.entry_dir("model", "tiny").iterdir()}
    disk_full(after_bytes=0)
    with pytest.raises(LstmgenError, match="nothing was saved, and an earlier model .* run the same command again"):
        train(tiny_config(max_steps=8), toy_corpus)  # --overwrite of tiny
    assert {p.name: p.read_bytes() for p in registry.entry_dir("model", "tiny").iterdir()} == before


@pytest.mark.parametrize("earlier", [False, True], ids=["new", "overwrite"])
def test_a_first_save_that_fails_midway_leaves_the_earlier_model_or_none(toy_corpus, disk_full, earlier, tmp_path):
    """A fresh run's first save writes best.pt, heldout.npz, best.onnx and info.json. A disk that filled
    after some of them once left a half entry (best.pt, no info.json) that became the default model, which
    neither running the command again nor --resume could mend. Now the save arrives whole or not at all."""
    from .conftest import _FullDisk
    from .test_hostile_registry import snapshot

    if earlier:
        train(tiny_config(max_steps=4), toy_corpus)
    home, kept = registry.home(), tmp_path / "kept"
    shutil.copytree(home, kept, symlinks=True)
    before = snapshot()

    def restore():
        shutil.rmtree(home)
        shutil.copytree(kept, home, symlinks=True)

    counted, real = [2**62], registry.os.fdopen
    registry.os.fdopen = lambda *a, **k: _FullDisk(real(*a, **k), counted)  # never full: it counts
    try:
        train(tiny_config(max_steps=4, seed=9), toy_corpus)
    finally:
        registry.os.fdopen = real
    total = 2**62 - counted[0]  # both saves of a whole run: best at step 4, then last
    in_first_save = 0
    for budget in sorted({0, 100, 1_000, 10_000, total // 8, total // 4, total // 3}):
        restore()
        disk_full(after_bytes=budget)
        with pytest.raises(LstmgenError, match="no space left on device") as e:
            train(tiny_config(max_steps=4, seed=9), toy_corpus)
        if "nothing was saved" in str(e.value):
            in_first_save += 1
            assert snapshot() == before, budget
        else:  # the first save was whole: a later one failed, and the model it left is complete
            assert "best.pt of step 4 is intact" in str(e.value)
            assert registry.info("model", "tiny")["steps"] == 4
    assert in_first_save >= 4  # the budgets do fall inside the first save


def _lock_hammer(home: str, rounds: int, marker_dir: str) -> int:
    """Take and release locks on three names; an O_EXCL marker per name proves no two holders overlap."""
    os.environ["LSTMGEN_HOME"] = home
    overlaps = 0
    for i in range(rounds):
        name = "abc"[i % 3]
        try:
            with registry.lock("model", name, "testing"):
                marker = os.path.join(marker_dir, name)
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    overlaps += 1
                    continue
                os.unlink(marker)
        except registry.Busy:
            pass
    return overlaps


def test_the_lock_excludes_under_contention_and_never_crashes(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        overlaps = pool.starmap(_lock_hammer, [(str(registry.home()), 300, str(tmp_path))] * 4)
    assert overlaps == [0, 0, 0, 0]  # and no process died (FileExistsError once did)
    assert not (registry.home() / "locks").exists()
