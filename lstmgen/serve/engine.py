"""The decoding engine in a process of its own, beside the HTTP server's.

In one process the schedulers' steps and the event loop share one GIL: each ONNX Runtime call and each
socket write lets the GIL go, and getting it back can take the other thread's whole switch interval (5 ms).
Measured with 64 streaming clients (benchmarks/serve.py), that halved the tokens/s the schedulers reach on
their own. So the server process only speaks HTTP, and this process, started by it, runs one Scheduler
thread per model: the two meet over a socket pair with JSON messages, one per step with news.

    server -> engine  ["load", request, name] ["submit", job, name, prompts, options, seed, stream]
                      ["cancel", job] ["unload", name] ["stop"]
    engine -> server  ["ready"] ["loaded", request, error or null] ["note", message]
                      ["news", [[job, state, prompt_tokens, generation, updates, results, error], ...],
                       {model: [streams, waiting]}]
                      ["removed", name] (its checkpoint is gone: the server decides whether to unload it)

The engine ignores SIGINT and SIGTERM (the server drains, then tells it to stop) and exits when the
server's end of the socket closes, whatever killed the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from multiprocessing.connection import Connection

from ..errors import LstmgenError
from .options import Limits
from .scheduler import Busy, Job, Result


class EngineGone(LstmgenError):
    """The engine process ended."""


GONE = "the decoding engine process ended unexpectedly (its error is in the server's log); restart the server"


def _send(conn: Connection, message: list) -> None:
    conn.send_bytes(json.dumps(message, ensure_ascii=False).encode())


def _recv(conn: Connection) -> list:
    return json.loads(conn.recv_bytes())


class Engine:
    """The server's handle on the engine process. Before the event loop runs, `load` blocks; once `start`
    hands it the loop, messages are read as they come (loop.add_reader) and the jobs they concern are
    updated and woken, and `load_async` awaits its answer."""

    def __init__(
        self,
        limits: Limits,
        on_note: Callable[[str], None] | None = None,
        on_removed: Callable[[str], None] | None = None,
    ):
        self.on_note, self.on_removed = on_note, on_removed
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "lstmgen.serve.engine", str(theirs.fileno()), json.dumps(asdict(limits))]
        self.proc = subprocess.Popen(command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)  # fmt: skip
        theirs.close()
        self.conn = Connection(ours.detach())
        self.jobs: dict[int, Job] = {}
        self.stats: dict[str, list[int]] = {}  # model -> [streams decoding, requests waiting]
        self.answers: dict[int, asyncio.Future] = {}
        self.loaded: dict[int, str | None] = {}  # answers to blocking loads
        self.loop: asyncio.AbstractEventLoop | None = None
        self.counter = 0
        self.stopped = False
        self.gone: str | None = None  # why the engine process is no more: every later call fails with it
        try:
            started = self._next() == ["ready"]
        except EngineGone:
            started = False
        if not started:
            self.proc.kill()
            self.proc.wait()
            self.conn.close()
            raise EngineGone("the decoding engine did not start (its error is above)")

    def _next(self) -> list:
        """The next message, dispatched; blocking (before the loop runs)."""
        try:
            message = _recv(self.conn)
        except (EOFError, OSError):
            raise EngineGone("the decoding engine process ended unexpectedly (its error is above)") from None
        self._dispatch(message)
        return message

    def _id(self) -> int:
        self.counter += 1
        return self.counter

    def _send(self, message: list) -> None:
        """A message to the engine; EngineGone once it has ended (then every job and answer waiting fails)."""
        if self.gone is not None:
            raise EngineGone(self.gone)
        try:
            _send(self.conn, message)
        except OSError:
            self._fail_all(GONE)
            raise EngineGone(GONE) from None

    def load(self, name: str) -> None:
        """Load model `name` in the engine (blocking); LstmgenError with its reason."""
        request = self._id()
        self._send(["load", request, name])
        while request not in self.loaded:
            self._next()
        error = self.loaded.pop(request)
        if error is not None:
            raise LstmgenError(error)

    async def load_async(self, name: str) -> None:
        request = self._id()
        self.answers[request] = answer = self.loop.create_future()
        self._send(["load", request, name])
        error = await answer
        if error is not None:
            raise LstmgenError(error)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.add_reader(self.conn.fileno(), self._readable)
        # uvloop (libuv's uv_poll_init) makes a watched descriptor non-blocking, and Connection reads a message
        # in parts: a big one not all arrived yet raised BlockingIOError midway, taken for the engine's death
        # (a stream cut short under load). Readable means a message has begun, and its rest follows at once.
        os.set_blocking(self.conn.fileno(), True)

    def submit(self, name: str, job: Job) -> None:
        job.id = self._id()
        self._send(["submit", job.id, name, job.prompts, asdict(job.options), job.seed, job.stream])
        self.jobs[job.id] = job

    def unload(self, name: str) -> None:
        """Free a model: it takes no new requests, and leaves the engine once its running ones have finished."""
        if self.gone is None and not self.stopped:
            try:
                _send(self.conn, ["unload", name])
            except OSError:
                pass  # the engine has ended: the reader finds out and fails what was running

    def cancel(self, job: Job) -> None:
        """Free a job's streams (its client has gone): they leave the batch at the engine's next step."""
        job.cancelled = True
        if self.jobs.pop(job.id, None) is not None and not self.stopped:
            try:
                _send(self.conn, ["cancel", job.id])
            except OSError:
                pass

    def stop(self, timeout: float = 10.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.loop is not None:
            self.loop.remove_reader(self.conn.fileno())
        try:
            _send(self.conn, ["stop"])
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.conn.close()

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self._dispatch(_recv(self.conn))
        except (EOFError, OSError):
            self._fail_all(GONE)

    def _fail_all(self, message: str) -> None:
        """The engine has ended: fail every job and every answer waiting, now and from here on."""
        if self.gone is not None:
            return
        self.gone = message
        if self.loop is not None:
            self.loop.remove_reader(self.conn.fileno())
        for job in self.jobs.values():
            job.state, job.error, job.error_kind = "failed", EngineGone(message), "engine"
            if job.waker is not None:
                job.waker.set()
        self.jobs.clear()
        for answer in self.answers.values():
            if not answer.done():
                answer.set_exception(EngineGone(message))
        self.answers.clear()
        if self.on_note is not None:
            if self.loop is not None and self.loop.is_running():  # reaping may wait: not on the event loop
                self.loop.run_in_executor(None, self._note_end)
            else:
                self._note_end()

    def _note_end(self) -> None:
        """The server's log says once how the engine process ended."""
        try:
            code = self.proc.wait(1)  # its end is seen on the socket first: let the OS reap it
        except subprocess.TimeoutExpired:
            code = None
        how = "still running" if code is None else f"signal {-code}" if code < 0 else f"exit code {code}"
        self.on_note(f"the decoding engine process ended ({how}); requests get 503 until the server restarts")

    def _dispatch(self, message: list) -> None:
        kind = message[0]
        if kind == "news":
            for job_id, state, prompt_tokens, generation, updates, results, error in message[1]:
                job = self.jobs.get(job_id)
                if job is None:  # cancelled here meanwhile
                    continue
                job.prompt_tokens, job.generation = prompt_tokens, generation
                job.updates.extend(tuple(u) for u in updates)
                if results is not None:
                    job.results = [Result(*r) for r in results]
                if error is not None:
                    job.error_kind, text = error
                    job.error = Busy(text) if job.error_kind == "busy" else LstmgenError(text)
                job.state = state
                if job.finished:
                    del self.jobs[job_id]
                if job.waker is not None:
                    job.waker.set()
            self.stats = message[2]  # every model the engine holds: one unloaded drops out
        elif kind == "loaded":
            _, request, error = message
            answer = self.answers.pop(request, None)
            if answer is None:
                self.loaded[request] = error
            elif not answer.done():
                answer.set_result(error)
        elif kind == "note" and self.on_note is not None:
            self.on_note(message[1])
        elif kind == "removed" and self.on_removed is not None:
            self.on_removed(message[1])


# -- the engine process --------------------------------------------------------------------------------


class _Process:
    """The engine's side: one Scheduler thread per model; this thread reads the server's messages."""

    def __init__(self, conn: Connection, limits: Limits):
        self.conn, self.limits = conn, limits
        self.schedulers: dict = {}
        self.leaving: list = []  # unloaded schedulers finishing their running requests
        self.jobs: dict[int, Job] = {}
        self.sending = threading.Lock()  # scheduler threads send their news one at a time

    def send(self, message: list) -> None:
        with self.sending:
            _send(self.conn, message)

    def run(self) -> None:
        try:
            self.send(["ready"])  # the server may be gone already (Ctrl-C while it started): end quietly
            while True:
                message = _recv(self.conn)
                kind = message[0]
                if kind == "submit":
                    self._submit(*message[1:])
                elif kind == "cancel":
                    job = self.jobs.pop(message[1], None)
                    if job is not None:
                        job.cancel()
                        for scheduler in [self.schedulers.get(job.model), *self.leaving]:  # the job's is one
                            if scheduler is not None:
                                scheduler.wake()
                elif kind == "load":
                    self._load(*message[1:])
                elif kind == "unload":
                    scheduler = self.schedulers.pop(message[1], None)
                    if scheduler is not None:
                        scheduler.retire()
                        self.leaving = [s for s in self.leaving if s.thread.is_alive()] + [scheduler]
                elif kind == "stop":
                    break
        except (EOFError, OSError):
            pass  # the server has gone
        finally:
            for scheduler in [*self.schedulers.values(), *self.leaving]:
                scheduler.stop()

    def _load(self, request: int, name: str) -> None:
        from ..inference import load_for_inference
        from .scheduler import Scheduler

        error = None
        if name not in self.schedulers:
            try:
                loaded = load_for_inference(name, on_note=self.note)
            except LstmgenError as e:
                error = str(e)
            else:
                scheduler = Scheduler(name, loaded, max_streams=self.limits.streams, max_waiting=self.limits.waiting,
                                      on_update=self.news, on_note=self.note, on_removed=self.removed)  # fmt: skip
                self.schedulers[name] = scheduler
                scheduler.start()
        self.send(["loaded", request, error])

    def _submit(self, job_id: int, name: str, prompts: list, options: dict, seed: int, stream: bool) -> None:
        from ..sample import SampleOptions

        job = Job(prompts, SampleOptions(**options), seed, stream=stream)
        job.id, job.model = job_id, name
        self.jobs[job_id] = job
        try:
            self.schedulers[name].submit(job)
        except Busy as e:
            job.state, job.error, job.error_kind = "failed", e, "busy"
            self.news([job])

    def news(self, jobs: list[Job]) -> None:
        """From a scheduler's thread after a step: what changed for these jobs, and the streams' counts."""
        items = []
        for job in jobs:
            updates = []
            while job.updates:
                updates.append(job.updates.popleft())
            results = None
            if job.state == "done":
                results = [[r.text, r.completion, r.tokens, r.reason] for r in job.results]
            error = None if job.error is None else [job.error_kind, str(job.error)]
            items.append([job.id, job.state, job.prompt_tokens, job.generation, updates, results, error])
            if job.finished:
                self.jobs.pop(job.id, None)
        stats = {name: [s.active, s.waiting] for name, s in list(self.schedulers.items())}
        for s in self.leaving:  # unloaded, its requests still running: counted until they end
            counts = stats.setdefault(s.name, [0, 0])
            counts[0], counts[1] = counts[0] + s.active, counts[1] + s.waiting
        self.send(["news", items, stats])

    def note(self, message: str) -> None:
        self.send(["note", message])

    def removed(self, name: str) -> None:
        self.send(["removed", name])


def main(argv: list[str]) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the server drains its requests, then stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(int(argv[1]))
    _Process(conn, Limits(**json.loads(argv[2]))).run()


if __name__ == "__main__":
    main(sys.argv)
