"""`lstmgen train --nproc 2`: two real CPU processes under torchrun's launcher, gloo between them."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from lstmgen import checkpoint, registry
from lstmgen.corpora import load_corpus

from .conftest import toy_run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gloo and POSIX signals")

CLI = [sys.executable, "-m", "lstmgen"]
# Dropout off: with it, each rank draws its own masks and the first loss would differ from one process's.
EXACT = ["--set", "model.dropout=0", "--set", "train.log_every=1"]


def cli(*args, check=True):
    r = subprocess.run([*CLI, *map(str, args)], env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True,
                       text=True, timeout=240)  # fmt: skip
    assert not check or r.returncode == 0, r.stderr
    return r


@pytest.fixture
def toy(jokes_csv):
    cli("prepare", jokes_csv, "--name", "toy", "--val-frac", "0.1", "--test-frac", "0.1")


def test_two_processes_train_like_one_on_the_same_global_batch(toy):
    args = ["train", "--corpus", "toy", *toy_run(4, 2, "train.batch_size=4"), *EXACT, "--json"]
    one = json.loads(cli(*args, "--name", "one").stdout)
    r = cli(*args, "--name", "two", "--nproc", 2)
    two = json.loads(r.stdout)  # one JSON line: rank 1 prints nothing on stdout
    assert one["steps"] == two["steps"] == 4 and two["world_size"] == 2
    assert "training two" in r.stderr and "2 processes" in r.stderr
    assert r.stderr.count("done:") == 1, r.stderr  # rank 0 reports for both

    last = {}
    for name in ("one", "two"):
        # Rank 0 wrote it atomically; it holds only plain data (loading never runs code from it).
        last[name] = torch.load(registry.entry_dir("model", name) / "last.pt", weights_only=True)
    # The first step's loss is the global batch's: rows 0-1 on rank 0 and 2-3 on rank 1, averaged.
    first = [last[n]["history"][0]["train_loss"] for n in ("one", "two")]
    assert first[0] == pytest.approx(first[1], abs=1e-5)
    state = last["two"]["train_state"]
    assert state["world_size"] == 2
    checksums = state["replica_checksums"]  # each rank's sum of each weight tensor, at the save
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert tuple(state["hidden"][0].shape) == (2, 4, 16)  # both ranks' lanes: (n_layer, B, H)
    assert len(state["rng_ranks"]) == 2
    # Validation covers the same tokens, split over the ranks and summed: close to one process's loss
    val = [last[n]["history"][-1]["val_loss"] for n in ("one", "two")]
    assert val[0] == pytest.approx(val[1], rel=2e-3)


def test_an_adaptive_softmax_band_that_a_rank_misses_does_not_stall_the_step(jokes_csv):
    """A band none of a rank's targets fall in gets no gradient there; DDP must not wait for it."""
    cli("prepare", jokes_csv, "--name", "words", "--tokenizer", "word", "--min-freq", "1")
    n_vocab = len(load_corpus("words")["vocab"]["itos"])
    rare_band = f"model.adaptive_softmax=[8, {n_vocab - 1}]"  # the last band: one word, seen once
    args = toy_run(6, 3, "train.batch_size=4", rare_band)
    r = cli("train", "--corpus", "words", "--name", "ada", "--nproc", 2, *args, "--json")
    assert json.loads(r.stdout)["steps"] == 6
    checksums = torch.load(registry.entry_dir("model", "ada") / "last.pt", weights_only=True)["train_state"][
        "replica_checksums"
    ]
    assert checksums[0] == checksums[1]  # the band's unchanged weights stayed equal too


def test_sigterm_stops_every_rank_at_one_step_and_resume_needs_the_same_world_size(toy):
    proc = subprocess.Popen(
        [
            *CLI,
            "train",
            "--corpus",
            "toy",
            "--name",
            "sig",
            "--nproc",
            "2",
            *toy_run(100_000, 100_000, "train.batch_size=4"),
        ],  # fmt: skip
        env=os.environ | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not proc.stderr.readline().startswith("step "):  # both ranks are stepping
        assert proc.poll() is None, proc.stderr.read()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stderr.count("interrupted at step") == 1 and "Traceback" not in stderr, stderr
    assert stderr.count("stopping after this step") == 1, stderr
    last = checkpoint.load("sig", "last")
    steps = last.train_state["step"]
    assert steps > 0 and last.train_state["world_size"] == 2
    checksums = last.train_state["replica_checksums"]  # gathered at that step: same weights, same step
    assert checksums[0] == checksums[1]

    r = cli("train", "--name", "sig", "--resume", check=False)
    assert r.returncode == 1 and "was training on 2 process(es)" in r.stderr and "--nproc 2" in r.stderr
    assert r.stderr.count("\n") == 1 and checkpoint.load("sig", "last").step == steps

    r = cli("train", "--name", "sig", "--resume", "--nproc", 2, "--set", f"train.max_steps={steps + 3}", "--json")
    assert json.loads(r.stdout)["steps"] == steps + 3


# Each rank trains (DDP, collectives, checkpoint) through train(), which closes the group, then names its threads.
RANK_THREADS = """
import json, os, sys
from lstmgen.corpora import load_corpus
from lstmgen.config import load_config
from lstmgen.distributed import Group
from lstmgen.train import train

group = Group.from_env()
train(load_config(None, sys.argv[1:]), load_corpus("toy"), group=group)
names = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
print(json.dumps({"rank": group.rank, "threads": names}))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread names are read from /proc")
def test_training_ends_the_groups_threads_before_the_interpreter_exits(toy, tmp_path):
    """A gloo thread alive at interpreter exit may still be freeing its last collective's work, which takes the
    GIL; the finalizing interpreter then ends that thread inside a noexcept destructor and the rank aborts
    ("terminate called without an active exception"; seen in 1 of 5-11 reruns of the SIGTERM test). So
    close() must end them."""
    script = tmp_path / "rank_threads.py"
    script.write_text(RANK_THREADS)
    sets = toy_run(2, 2, "train.batch_size=4", "corpus=toy", "name=threads")[1::2]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        str(script), *sets], env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True,
                       text=True, timeout=240)  # fmt: skip
    assert r.returncode == 0, r.stderr
    # The ranks share one stdout: their lines can interleave, so each rank's object is found on its own.
    ranks = sorted((json.loads(obj) for obj in re.findall(r"\{[^{}]*\}", r.stdout)), key=lambda x: x["rank"])
    assert [x["rank"] for x in ranks] == [0, 1], r.stdout
    for x in ranks:
        assert not [name for name in x["threads"] if "gloo" in name], x  # gloo_tcp_loop, pt_gloo_runloop


def test_a_batch_that_does_not_split_is_one_line_before_any_process_starts(toy):
    r = cli("train", "--corpus", "toy", "--name", "odd", "--nproc", 2, *toy_run(4, 2, "train.batch_size=3"),
            check=False)  # fmt: skip
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "train.batch_size=3 does not split evenly over 2 processes" in r.stderr
    assert not registry.entry_dir("model", "odd").exists()


def test_a_damaged_window_stops_every_rank_with_the_same_line(toy):
    """Each rank checks the whole global window, so none is left waiting in a collective for a rank that
    raised (which gloo reports as a lost connection)."""
    path = registry.entry_dir("corpus", "toy") / "corpus.pt"
    corpus = registry.load_pt(path)
    ids = corpus["splits"]["train"].clone()
    ids[3 * (ids.numel() // 4) + 5] = 250  # in lane 3, which rank 1 owns
    registry.save_pt(path, corpus | {"splits": corpus["splits"] | {"train": ids}})
    r = cli("train", "--corpus", "toy", "--name", "bad", "--nproc", 2, *toy_run(3, 3, "train.batch_size=4"),
            check=False)  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("training window 0 holds ids outside its vocabulary") == 2, r.stderr  # rank 0 and 1
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
