"""What the CLI writes: product on stdout (flushed, quiet when the reader leaves), messages on stderr."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import typer
from rich.console import Console
from rich.markup import escape

# stderr: `err` for progress, notes and summaries (silenced by --quiet), `problems` for what must always be
# seen (errors, interruptions). rich colours only on a terminal and honours NO_COLOR. soft_wrap: one line
# stays one line in logs.
err = Console(stderr=True, highlight=False, soft_wrap=True)
problems = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130  # 130: 128 + SIGINT, as shells report Ctrl-C

# When this process started, as a time.perf_counter() reading; set by the console entry point (main), so that
# `train` counts the interpreter's start and imports in its wall time. None in-process (tests, library use).
launched: float | None = None

_origin = ""  # "rank N: " in the processes torchrun starts beside rank 0, so their errors say whose they are


def process_age() -> float:
    """Seconds since this process started (Linux: from /proc); 0 where that cannot be read."""
    from pathlib import Path

    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()  # the fields after "pid (comm)"
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime: clock ticks since boot
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def set_origin(origin: str) -> None:
    global _origin
    _origin = f"{origin}: "


def quiet(on: bool) -> None:
    """--quiet: nothing on stderr but errors."""
    err.quiet = on


def error(message: str) -> None:
    """One clear error line on stderr (user text such as "[draft].txt" is not markup)."""
    problems.print(f"[bold red]error:[/] {_origin}{escape(message)}")


def note(message: str, always: bool = False) -> None:
    """A note on stderr; `always`: even with --quiet (only rank 0's, under torchrun)."""
    if always and not _origin:
        problems.print(f"note: {escape(message)}")
    elif not always:
        err.print(f"note: {escape(message)}")


def out(line: str = "", end: str = "\n") -> None:
    """Write product to stdout, flushed; a closed pipe (`| head -1`) ends the program quietly."""
    try:
        sys.stdout.write(line + end)
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()  # the reader left (`| head -1`): end quietly
        raise typer.Exit(0) from None


def out_json(obj) -> None:
    """One line of strict JSON: NaN and infinities (say, from a hand-edited info.json) become null, since
    Python's json would write the bare words NaN/Infinity that other JSON readers refuse."""
    out(json.dumps(_finite(obj), ensure_ascii=False, default=str, allow_nan=False))


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class LosableStream:
    """stderr that a reader's leaving cannot fail: `train ... 2>&1 | head` or a closed terminal (EPIPE, EIO)
    once ended an hours-long run at its next progress line, unsaved. On the first failed write or flush, fd
    2 is pointed at devnull and the messages are what is lost, never the work. The rest is the stream's."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            self._lose()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            self._lose()

    def _lose(self) -> None:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
            self._stream.flush()  # what was buffered goes to devnull now
        except (OSError, ValueError, AttributeError):  # no real file behind it: replace the stream itself
            self._stream = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process

    def __getattr__(self, name):
        return getattr(self._stream, name)


def silence_stdout() -> None:
    """Point stdout at devnull so the interpreter's final flush cannot raise again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file behind stdout: nothing to flush at exit
        pass


class Meter:
    """`on_progress(done, total)` for a long library call: a bar on stderr, on a terminal only, once the work
    has taken more than `after` seconds (a quick one shows nothing), removed when it ends. A context manager."""

    def __init__(self, label: str, after: float = 1.5):
        self.label, self.after, self.started = label, after, time.perf_counter()
        self.progress = None

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self.started
        if self.progress is None:
            if err.quiet or not err.is_terminal or elapsed < self.after:
                return
            from rich.progress import BarColumn, Progress, TextColumn

            columns = (TextColumn("{task.description}"), BarColumn(bar_width=20), TextColumn("{task.fields[shown]}"))
            self.progress = Progress(*columns, console=err, transient=True)
            self.task = self.progress.add_task(escape(self.label), total=total, shown="")
            self.progress.start()
        left = elapsed / done * (total - done) if done else None
        eta = f" eta {int(left) // 3600}:{int(left) // 60 % 60:02d}:{int(left) % 60:02d}" if left is not None else ""
        self.progress.update(self.task, completed=done, total=total, shown=f"{done / max(total, 1):.0%}{eta}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Characters a terminal acts on rather than shows: C0 controls (ESC starts escape sequences that can retitle the
# window or rewrite the screen; tab and newline break a table row), DEL, C1 controls (0x9b is a one-byte CSI),
# the Unicode line and paragraph separators, and the bidi embeddings, overrides and isolates (they reorder what
# follows them on screen, so a name could show as another). Each becomes its Python escape (\x1b, \n, \u202e).
_UNSHOWN = {
    c: ascii(chr(c))[1:-1]
    for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}


def printable(text) -> str:
    """`text` (any value, as str) safe to write to a terminal: the characters a terminal would act on instead of
    showing are written as escapes (ESC as \x1b). For strings that come from the registry or its inputs (file
    names, labels, sources, config values) in `list` and `show`; --json keeps the exact strings. Backslashes are
    left as they are: --json tells a literal "\x1b" from an escape."""
    return str(text).translate(_UNSHOWN)


def labels_line(labels: dict, shown: int = 8) -> str:
    """{label: records} as one line for `prepare`, `list` and `show`: the most frequent first, then how many
    more labels."""
    items = list(labels.items())
    more = f", ... and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(f"{name} {count:,}" for name, count in items[:shown]) + more
