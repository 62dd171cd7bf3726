"""Ctrl-C/SIGTERM during a real `lstmgen train` process: a checkpoint is saved, the exit code says why."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lstmgen import checkpoint

from .conftest import toy_run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_signal_saves_a_checkpoint_and_resume_continues(jokes_csv, signum, code):
    cli = [sys.executable, "-m", "lstmgen"]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    subprocess.run([*cli, "prepare", str(jokes_csv), "--name", "toy"], check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        [*cli, "train", "--corpus", "toy", "--name", "sig", *toy_run(100_000, 100_000)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while "training sig" not in proc.stderr.readline():  # started: the handlers are in place
        assert proc.poll() is None, proc.stderr.read()
    time.sleep(0.5)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "interrupted at step" in stderr and "--resume" in stderr and "Traceback" not in stderr
    steps = checkpoint.load("sig", "last").train_state["step"]
    assert steps > 0
    r = subprocess.run(
        [*cli, "train", "--name", "sig", "--resume", "--set", f"train.max_steps={steps + 3}", "--json", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == steps + 3


def test_training_outlives_the_reader_of_its_progress(jokes_csv):
    """`lstmgen train ... 2>&1 | head`: once the reader leaves, progress lines have nowhere to go. That once
    ended the run at its next line, unsaved and without a word; the messages are what is lost now."""
    cli = [sys.executable, "-m", "lstmgen"]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    subprocess.run([*cli, "prepare", str(jokes_csv), "--name", "toy"], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([*cli, "train", "--corpus", "toy", "--name", "head", *toy_run(300, 100)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert "training head" in proc.stderr.readline()
    proc.stderr.close()  # `| head -1` has read its line and gone
    assert proc.wait(timeout=120) == 0
    assert checkpoint.load("head", "last").train_state["step"] == 300


@pytest.mark.parametrize("command", [["sample", "--max-tokens", "5"], ["sample", "--max-tokens", "5", "--stream"]])
def test_ctrl_c_ends_sample_with_one_line_and_130(tiny_model, command):
    """Interrupted while waiting for its next prompt on stdin (after answering one): `interrupted`, exit 130, as
    for every command (typer on its own would exit 130 in silence)."""
    proc = subprocess.Popen([sys.executable, "-m", "lstmgen", *command], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)  # fmt: skip
    proc.stdin.write("Why\n")
    proc.stdin.flush()
    assert proc.stdout.readline()  # answered, and now waiting for more
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and stderr == "interrupted\n", stderr


def test_a_sigint_its_parent_ignores_is_still_ignored(tiny_model):
    """A shell script's `lstmgen sample - &` inherits SIGINT ignored, so that Ctrl-C aimed at the script spares
    its background jobs: the entry point's own handler must not undo that."""
    command = [sys.executable, "-m", "lstmgen", "sample", "-", "--max-tokens", "5"]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            bufsize=1,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    proc.stdin.write("Why\n")
    proc.stdin.flush()
    assert proc.stdout.readline()  # running, and waiting for more
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # ignored, as its parent asked
    proc.stdin.write("Hey\n")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.startswith("Hey"), err
