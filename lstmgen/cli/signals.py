"""How the CLI turns Ctrl-C and SIGTERM into an orderly stop: the library only polls `should_stop()`."""

from __future__ import annotations

import contextlib
import signal

from .output import err, problems

# The signals that end a session besides Ctrl-C: a supervisor's SIGTERM, a closed terminal's SIGHUP.
ENDING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def exit_on_ending_signals() -> None:
    """For the whole process: SIGTERM and SIGHUP end any command as Ctrl-C does, through every `finally`
    (scratch files go, locks are freed, `export` leaves no half folder), exiting 128 + the signal. A signal
    the parent set to be ignored (`nohup`) stays ignored. `train` and `serve` take them over while they run,
    to save a checkpoint or drain requests first."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    for s in ENDING:
        with contextlib.suppress(ValueError):  # not the main thread
            if signal.getsignal(s) is signal.SIG_DFL:
                signal.signal(s, stop)


class StopSignals:
    """While active, the first Ctrl-C/SIGTERM/SIGHUP asks training to stop after the current step (and save);
    a second Ctrl-C aborts, a second SIGTERM or SIGHUP changes nothing."""

    def __init__(self, announce: bool = True):
        self.signum = 0
        self.previous = {}
        self.announce = announce  # under torchrun, rank 0 says it for every rank

    def requested(self) -> bool:
        return self.signum != 0

    def _handle(self, signum, frame):
        if self.signum:
            # A second Ctrl-C aborts. A second SIGTERM does not: supervisors repeat it (torchrun forwards the
            # launcher's to every rank), and an abort raised wherever a rank then is (a finalizer, the save)
            # prints a traceback and can lose the checkpoint the first one asked for.
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum
        if not self.announce:
            return
        newline = "\n" if problems.is_terminal and not err.quiet else ""  # end the progress bar's line
        problems.print(f"{newline}stopping after this step and saving a checkpoint (press Ctrl-C again to abort)")

    def __enter__(self):
        for s in (signal.SIGINT, *ENDING):
            try:
                self.previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: no handlers, training runs to its limits
                pass
        return self

    def __exit__(self, *exc):
        for s, h in self.previous.items():
            signal.signal(s, h)
