"""What a person at a terminal sees: lstmgen run on a real pseudo-terminal, its output replayed through a
terminal emulator (pyte) of 80 columns. Colour only on a terminal and never with NO_COLOR."""

import fcntl
import os
import struct
import subprocess
import sys
import termios

import pyte
import pytest

from .conftest import toy_run

COLS, ROWS = 80, 40


def on_a_terminal(*args: str, env: dict | None = None) -> tuple[int, str]:
    """Run `python -m lstmgen ARGS` with stdin/stdout/stderr on a COLS x ROWS pty: exit code, raw output."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "lstmgen", *args], stdin=follower, stdout=follower,
                            stderr=follower, env={**os.environ, **(env or {})}, close_fds=True)  # fmt: skip
    os.close(follower)
    raw = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        raw += chunk
    os.close(leader)
    return proc.wait(timeout=120), raw.decode("utf-8", "replace")


def screen_of(raw: str) -> list[str]:
    """The rows an 80-column terminal shows after `raw`, trailing blanks removed."""
    screen = pyte.Screen(COLS, ROWS)
    pyte.Stream(screen).feed(raw.replace("\n", "\r\n").replace("\r\r\n", "\r\n"))  # the pty's onlcr
    return [row.rstrip() for row in screen.display if row.strip()]


@pytest.fixture
def toy(jokes_csv):
    subprocess.run([sys.executable, "-m", "lstmgen", "prepare", str(jokes_csv), "--name", "toy", "-q"], check=True)


def test_progress_on_an_80_column_terminal_is_one_line_and_leaves_no_debris(toy):
    # log_every 1: the display redraws on every step; sample_every 1: lines printed above it while it runs.
    code, raw = on_a_terminal("train", "--corpus", "toy", "--name", "t", "--set", "train.log_every=1",
                              "--set", "train.sample_every=1", *toy_run(300, 100))  # fmt: skip
    assert code == 0, raw
    rows = screen_of(raw)
    bars = [r for r in rows if "━" in r]
    assert len(bars) == 1, rows  # one progress line, redrawn in place: no stale copies above it
    assert bars[0].startswith("step 300/300 ep") and bars[0].endswith("0:00:00"), rows  # whole, unwrapped
    assert rows[-3].startswith("done: 300 steps") and rows[-4] == bars[0]
    assert "bits/char; unigram" in rows[-1]  # the held-out figure beside its baseline
    assert rows[0].startswith("training t: ") and rows[1].endswith(" steps/epoch, 300 steps")  # a row each
    samples = [r for r in rows if r.startswith("sample at step")]
    assert [s.split(":")[0] for s in samples] == [f"sample at step {s}" for s in (100, 200, 300)], rows
    assert len(rows) == 3 + 3 + 3  # start (2), a row per sample (a long one is cut with "…"), bar, done (3)
    assert "\x1b[2J" not in raw  # never clears the screen (no flicker)


def test_colour_only_on_a_terminal_and_never_with_no_color(toy):
    code, raw = on_a_terminal("sample", "Why", "-m", "nope")
    assert code == 1 and "\x1b[1;31merror:" in raw  # bold red on a terminal
    code, raw = on_a_terminal("sample", "Why", "-m", "nope", env={"NO_COLOR": "1"})
    assert code == 1 and "\x1b[1;31m" not in raw and "\x1b[31m" not in raw and "error:" in raw
    piped = subprocess.run([sys.executable, "-m", "lstmgen", "sample", "Why", "-m", "nope"], capture_output=True,
                           text=True)  # fmt: skip
    assert piped.returncode == 1 and "\x1b" not in piped.stderr
