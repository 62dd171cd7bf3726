"""Continuous batching for one model: requests' streams join and leave the running batch at every step.

An LSTM stream's whole state is one (n_layer, H) pair, so a step is one batched forward of the last token
of every active stream: a stream joins once its prompt is read (its first token is chosen in that same
step, from the prompt's scores), and leaves the batch the step it ends or its client goes. Each step's
token choice is decoding.choose and each stream's text is a sample.TextStream: the same code as `lstmgen
sample`, so a request's seed gives `lstmgen sample --seed`'s text.

The scheduler runs in its own thread (`start`) of the engine process (engine.py), or is driven by calling
`step()` (tests). After each step it hands the jobs with news to `on_update`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import registry
from ..decoding import Draws, Stream, choose, read_prompts
from ..errors import LstmgenError
from ..inference import Loaded
from ..sample import SampleOptions, TextStream, banned_ids, prepare, prompt_seed
from ..tokenize import Vocab

RELOAD_EVERY = 1.0  # seconds between looks at the model's files for a new best checkpoint


class Busy(LstmgenError):
    """The model's queue of waiting requests is full."""


@dataclass
class Result:
    """One finished stream."""

    text: str  # prompt + completion
    completion: str
    tokens: int  # generated, <eor> not counted
    reason: str  # TextStream's: "eor", "stop", "loop" or "max_tokens"


@dataclass(eq=False)
class Job:
    """One completion request: len(prompts) x options.num_samples streams, prompt-major, prompt p seeded
    with seed + p (as `lstmgen sample` seeds stdin's prompts). `stream`: its text is wanted as it comes.

    Written by the scheduler's thread (in the engine; the server keeps a copy that the engine's messages
    update): `updates` gets (stream index, text piece, finish reason or None) as text settles (streaming
    jobs only); `state` goes "waiting" -> "running" (prompts read; prompt_tokens known) -> "done" (`results`
    filled), or "waiting" -> "failed" (`error`). `cancel()` frees its streams at the next step."""

    prompts: list[str]
    options: SampleOptions
    seed: int
    stream: bool = False
    state: str = "waiting"
    error: LstmgenError | None = None
    prompt_tokens: int = 0
    results: list[Result | None] = field(default_factory=list)
    updates: deque = field(default_factory=deque)
    cancelled: bool = False
    waker: object = None  # the server's asyncio.Event, set from its loop after each update
    generation: int = 0  # the checkpoint step it runs on
    error_kind: str = ""  # with error: "prompt" (unreadable), "busy", "cancelled", "engine" (it ended) or "internal"
    id: int = 0  # the server's number for it
    model: str = ""

    @property
    def size(self) -> int:
        return len(self.prompts) * self.options.num_samples

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(eq=False)
class Slot:
    """One stream in the batch."""

    job: Job
    index: int  # its choice index within the job
    decode: Stream
    text: TextStream


class Generation:
    """One checkpoint's decoder and the batch of streams running on it. A new best checkpoint starts a new
    generation for new requests; streams already running finish on theirs (their state belongs to it)."""

    def __init__(self, loaded: Loaded, signature: tuple | None):
        self.loaded, self.signature = loaded, signature
        self.backend, self.vocab = loaded.backend, loaded.vocab
        self.eor_id, self.banned = loaded.vocab.eor_id, banned_ids(loaded.vocab)
        self.step = getattr(loaded.backend, "meta", {}).get("step", 0)
        self.slots: list[Slot] = []
        self.h = self.c = None  # (n_layer, N, H) float32, row j: slots[j]
        self.last = np.zeros(0, dtype=np.int64)  # (N,): each slot's last token, fed at the next step


class Scheduler:
    """The continuous-batching loop of one model: at most `max_streams` streams decode together, and at
    most `max_waiting` requests wait for room (then `submit` raises Busy)."""

    def __init__(
        self,
        name: str,
        loaded: Loaded,
        *,
        max_streams: int = 256,
        max_waiting: int = 1024,
        on_update: Callable[[list[Job]], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        on_removed: Callable[[str], None] | None = None,
    ):
        self.name, self.max_streams, self.max_waiting = name, max_streams, max_waiting
        self.on_update, self.on_note, self.on_removed = on_update, on_note, on_removed
        self.current = Generation(loaded, _signature(loaded.path))
        self.generations = [self.current]
        self.inbox: deque[Job] = deque()
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.retiring = False  # unloaded: the thread ends once its jobs have
        self.missing = False  # the checkpoint was gone at the last look (on_removed has been told)
        self.refused: tuple | None = None  # the files of a checkpoint that could not be loaded: not retried
        self.steps = 0
        self.counts = (0, 0)  # (streams, waiting) when on_update last heard

    # -- the server's side ----------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a job; its streams join the batch at the next step with room for them."""
        with self.cond:
            if len(self.inbox) >= self.max_waiting:
                for waiting in [j for j in self.inbox if j.cancelled]:
                    self.inbox.remove(waiting)
                if len(self.inbox) >= self.max_waiting:
                    raise Busy(
                        f"model {self.name!r} has {len(self.inbox)} requests waiting already (the server's "
                        "--limit-waiting); try again shortly"
                    )
            self.inbox.append(job)
            self.cond.notify()

    def wake(self) -> None:
        """Have the thread look at its jobs now (a job was cancelled)."""
        with self.cond:
            self.cond.notify()

    @property
    def active(self) -> int:
        """Streams in the batch now."""
        return sum(len(g.slots) for g in self.generations)

    @property
    def waiting(self) -> int:
        return len(self.inbox)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"lstmgen-serve-{self.name}", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()
        if self.thread is not None:
            self.thread.join(timeout)

    def retire(self) -> None:
        """Take no new jobs (the model is no longer served); the thread ends once those it has are done."""
        with self.cond:
            self.retiring = True
            self.cond.notify()

    def _run(self) -> None:
        next_look = time.monotonic() + RELOAD_EVERY
        while True:
            with self.cond:
                while not self.stopping and not self.retiring and not self.inbox and not self.active:
                    if not self.cond.wait(timeout=max(0.0, next_look - time.monotonic())):
                        break  # timed out: time to look at the files
                if self.stopping or self.retiring and not self.inbox and not self.active:
                    break
            if time.monotonic() >= next_look and not self.retiring:
                self.check_reload()
                next_look = time.monotonic() + RELOAD_EVERY
            try:
                self.step()
            except Exception as e:  # noqa: BLE001 - a bug must fail its requests, not hang them
                self._fail_all(LstmgenError(f"internal error ({type(e).__name__}: {e}); this is a bug in lstmgen"))
        self._fail_all(LstmgenError("the server stopped before this request finished"))
        if self.retiring:  # its model is served no more: let go of its ONNX Runtime session and weights
            self.current, self.generations = None, []

    # -- one step -------------------------------------------------------------------------------------

    def step(self) -> int:
        """One batched step: waiting jobs join (prompts read), every active stream gets its next token,
        ended and cancelled streams leave. Returns the number of streams that got a token."""
        touched: dict[int, Job] = {}
        joining = self._take_joining(touched)
        tokens = 0
        for gen in list(self.generations):
            tokens += self._step_generation(gen, joining if gen is self.current else [], touched)
        self.generations = [g for g in self.generations if g.slots or g is self.current]
        self.steps += 1
        counts = (self.active, len(self.inbox))
        if (touched or counts != self.counts) and self.on_update is not None:
            self.on_update(list(touched.values()))  # also when only the counts changed (a job cancelled)
        self.counts = counts
        return tokens

    def _take_joining(self, touched: dict[int, Job]) -> list[Job]:
        """The waiting jobs that fit in the batch now, first come first served; cancelled ones are dropped."""
        joining, room = [], self.max_streams - self.active
        with self.cond:
            while self.inbox:
                job = self.inbox[0]
                if job.cancelled:
                    self.inbox.popleft()
                    job.state, job.error, job.error_kind = "failed", LstmgenError("cancelled"), "cancelled"
                    continue
                if job.size > room:
                    break
                self.inbox.popleft()
                joining.append(job)
                room -= job.size
        return joining

    def _step_generation(self, gen: Generation, joining: list[Job], touched: dict[int, Job]) -> int:
        # Cancelled jobs leave before their forward.
        gone = [s.job.cancelled for s in gen.slots]
        if any(gone):
            self._keep(gen, ~np.array(gone, dtype=bool))
        parts, hs, cs = [], [], []
        if gen.slots:
            scores, h, c = gen.backend.forward(gen.last[:, None], gen.h, gen.c)  # (N, 1, V)
            parts.append(scores[:, -1])
            hs.append(h)
            cs.append(c)
        for job in joining:
            joined = self._join(gen, job)
            if joined is None:
                touched[id(job)] = job
                continue
            scores, h, c = joined
            parts.append(scores)
            hs.append(h)
            cs.append(c)
            touched[id(job)] = job
        if not parts:
            return 0
        scores = np.concatenate(parts) if len(parts) > 1 else parts[0]  # (N, V)
        gen.h = np.concatenate(hs, axis=1) if len(hs) > 1 else hs[0]
        gen.c = np.concatenate(cs, axis=1) if len(cs) > 1 else cs[0]
        chosen = choose(scores, [s.decode for s in gen.slots], gen.eor_id, gen.banned)
        keep = np.ones(len(gen.slots), dtype=bool)
        for j, (slot, tok) in enumerate(zip(gen.slots, chosen.tolist(), strict=True)):
            ended = tok == gen.eor_id
            if ended:
                slot.text.add(tok)  # reason "eor"
            else:
                ended = slot.text.add(tok) or slot.decode.steps >= slot.decode.options.max_tokens
            job = slot.job
            if ended:
                text, completion = slot.text.result()
                job.results[slot.index] = Result(text, completion, len(slot.text.tokens), slot.text.reason)
                if job.stream:
                    job.updates.append((slot.index, slot.text.rest(), slot.text.reason))
                touched[id(job)] = job
                keep[j] = False
                if all(r is not None for r in job.results):
                    job.state = "done"
            elif job.stream:
                piece = slot.text.piece()
                if piece:
                    job.updates.append((slot.index, piece, None))
                    touched[id(job)] = job
            if job.cancelled:
                keep[j] = False
        gen.last = chosen
        if not keep.all():
            self._keep(gen, keep)
        return len(chosen)

    def _join(self, gen: Generation, job: Job):
        """A job's streams into the batch: its prompts read, each once. (scores (n, V), h, c), or None when
        a prompt cannot be read by this model (the job fails with the reason)."""
        vocab, o = gen.vocab, job.options
        try:
            read = prepare(vocab, job.prompts, o)
        except LstmgenError as e:
            job.state, job.error, job.error_kind = "failed", e, "prompt"
            return None
        scores, h, c = read_prompts(gen.backend, read.ids, gen.eor_id, o.num_samples)
        ns = o.num_samples
        draws = [Draws(np.random.default_rng(prompt_seed(job.seed, p)), ns) for p in range(len(job.prompts))]
        job.results = [None] * job.size
        for j in range(job.size):
            p = j // ns
            allowed = None if read.first_allowed is None else read.first_allowed[j]
            stream = Stream(o, draws[p], j % ns, list(read.ids[p]), allowed)
            gen.slots.append(Slot(job, j, stream, TextStream(vocab, read.reads[p], read.tokens[p], o.stop)))
        # BPE healing read each prompt less its last token: usage counts the prompt as the user sent it.
        job.prompt_tokens = sum(
            len(ids) + (vocab.kind == "bpe" and bool(r)) for ids, r in zip(read.ids, read.reads, strict=True)
        )
        job.generation = gen.step
        job.state = "running"
        return scores, h, c

    def _keep(self, gen: Generation, keep: np.ndarray) -> None:
        """Only the slots where keep (N,) is True stay in the batch."""
        gen.slots = [s for s, k in zip(gen.slots, keep.tolist(), strict=True) if k]
        gen.last = gen.last[keep]
        if gen.slots:
            gen.h, gen.c = gen.h[:, keep], gen.c[:, keep]
        else:
            gen.h = gen.c = None

    def _fail_all(self, error: LstmgenError) -> None:
        jobs = {id(s.job): s.job for g in self.generations for s in g.slots}
        with self.cond:
            jobs.update({id(j): j for j in self.inbox})
            self.inbox.clear()
        for g in self.generations:
            g.slots, g.h, g.c, g.last = [], None, None, np.zeros(0, dtype=np.int64)
        for job in jobs.values():
            if not job.finished:
                job.state, job.error, job.error_kind = "failed", error, "internal"
        if jobs and self.on_update is not None:
            self.on_update(list(jobs.values()))

    # -- a new best checkpoint ------------------------------------------------------------------------

    def check_reload(self) -> bool:
        """Start a new generation if the model's checkpoint (best, else last) has a new graph; streams
        already running finish on theirs. A graph mid-save is looked at again next time; one that cannot
        be loaded is reported once and the model keeps serving what it has; a checkpoint gone from the registry
        (`lstmgen rm`) is reported once to on_removed. True when it reloaded."""
        from ..runtime import GraphMissing, GraphStale, open_graph

        try:
            path = registry.model_file(self.name)
        except LstmgenError:  # removed from the registry (`lstmgen rm`): the server stops serving it
            if not self.missing and self.on_removed is not None:
                self.on_removed(self.name)
            self.missing = True
            return False
        self.missing = False
        signature = _signature(path)
        if signature is None or signature in (self.current.signature, self.refused):
            return False
        try:
            decoder = open_graph(path)
        except (GraphMissing, GraphStale):  # training is between writing the checkpoint and its graph
            return False
        except LstmgenError as e:
            self.refused = signature
            self._note(f"model {self.name!r}: still serving step {self.current.step:,}; the new checkpoint: {e}")
            return False
        loaded = Loaded(
            decoder, Vocab.from_dict(decoder.meta["vocab"]), self.name, decoder.meta.get("corpus") or {}, path
        )
        self.current = Generation(loaded, signature)
        self.generations.append(self.current)
        running = sum(len(g.slots) for g in self.generations[:-1])
        self._note(
            f"model {self.name!r}: now serving step {self.current.step:,} ({path.name})"
            + (f"; {running} running stream(s) finish on the previous one" if running else "")
        )
        return True

    def _note(self, message: str) -> None:
        if self.on_note is not None:
            self.on_note(message)


def _signature(checkpoint: Path | None) -> tuple | None:
    """What identifies the graph file beside a checkpoint on disk: it is replaced whole (atomically) at each
    save, so a new inode, size or mtime means a new graph. None when there is none."""
    if checkpoint is None:
        return None
    graph = Path(checkpoint).with_suffix(".onnx")
    try:
        st = graph.stat()
    except OSError:
        return None
    return (Path(checkpoint).name, st.st_ino, st.st_size, st.st_mtime_ns)
