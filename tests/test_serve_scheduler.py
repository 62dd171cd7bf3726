"""The server's continuous batching, driven step by step in-process: streams join and leave a shared batch,
and every request still gets exactly the text `lstmgen sample` gives for its seed and options."""

import shutil

import numpy as np
import pytest

from lstmgen import checkpoint, registry
from lstmgen.inference import load_for_inference
from lstmgen.onnx_graph import save_graph
from lstmgen.sample import SampleOptions, answer
from lstmgen.serve.scheduler import Busy, Job, Scheduler

from .servers import make_home, save_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A registry with 'tiny' and 'endless' (servers.make_home), trained once for the module."""
    return make_home(tmp_path_factory.mktemp("scheduler") / "home")


@pytest.fixture
def models(trained, registry_home):
    """This test's registry: a copy of the module's, so a test may change its models."""
    shutil.copytree(trained, registry_home)
    return registry_home


class Recording:
    """A backend that records every forward: (N, T, whether it started from the zero state, i.e. a prompt read)."""

    def __init__(self, backend):
        self.backend, self.sizes = backend, []
        self.meta = getattr(backend, "meta", {})

    def zero_state(self, n):
        return self.backend.zero_state(n)

    def forward(self, ids, h, c):
        self.sizes.append((*ids.shape, not h.any()))
        return self.backend.forward(ids, h, c)


def run(scheduler: Scheduler, arrivals: dict[int, list[Job]], limit: int = 5000, each=None) -> int:
    """Step until every job has finished, submitting arrivals[i] before step i; the number of steps.
    each(): called after every step."""
    jobs = [j for js in arrivals.values() for j in js]
    for i in range(limit):
        for job in arrivals.get(i, []):
            scheduler.submit(job)
        scheduler.step()
        if each is not None:
            each()
        if all(j.finished for j in jobs) and i >= max(arrivals):
            return i + 1
    raise AssertionError("jobs did not finish")


def finish(scheduler: Scheduler, limit: int = 5000) -> None:
    """Step until no stream is running or waiting."""
    for _ in range(limit):
        if not scheduler.active and not scheduler.waiting:
            return
        scheduler.step()
    raise AssertionError("streams did not finish")


def expected(loaded, job: Job) -> list[tuple[str, str, int]]:
    """What `lstmgen sample` prints for the job's prompts (one per stdin line), seed and options."""
    return [(s.text, s.stop_reason, s.tokens) for s in answer(loaded, [job.prompts], job.options, job.seed)]


def got(job: Job) -> list[tuple[str, str, int]]:
    return [(r.text, r.reason, r.tokens) for r in job.results]


def test_requests_joining_and_leaving_a_shared_batch_get_lstmgen_samples_text_for_their_seed(models):
    loaded = load_for_inference("tiny")
    recording = Recording(loaded.backend)
    loaded.backend = recording
    scheduler = Scheduler("tiny", loaded)
    jobs = {
        0: [Job(["Why did"], SampleOptions(max_tokens=60, temperature=1.3, top_k=20, repetition_penalty=1.2,
                                           num_samples=3), seed=11),
            Job(["Hey", "", "What do you"], SampleOptions(max_tokens=50, top_p=0.9, no_repeat_ngram=3, stop=(" ",)),
                seed=5, stream=True)],
        3: [Job(["Why"], SampleOptions(greedy=True, max_tokens=300), seed=0)],
        10: [Job(["I told"], SampleOptions(max_tokens=5, temperature=0.7, num_samples=2), seed=2**63 - 1)],
    }  # fmt: skip
    batches = []  # after each step: (streams in the batch, distinct jobs among them)

    def each():
        slots = scheduler.current.slots
        batches.append((len(slots), len({id(s.job) for s in slots})))

    run(scheduler, jobs, each=each)
    for job in (j for js in jobs.values() for j in js):
        assert job.state == "done" and got(job) == expected(load_for_inference("tiny"), job)
    # Each step is one batched forward of every stream in the batch; prompt reads are (1, T) apart.
    assert [n for n, t, read in recording.sizes if not read] == [n for n, _ in batches if n]
    assert all(n == 1 for n, _, read in recording.sizes if read)
    assert max(j for _, j in batches) >= 3  # different requests, different options, one step
    assert scheduler.active == 0 and scheduler.waiting == 0


def test_streamed_pieces_add_up_to_the_text_and_stop_strings_are_never_streamed(models):
    loaded = load_for_inference("tiny")
    scheduler = Scheduler("tiny", loaded)
    job = Job(["Why", "Hey"], SampleOptions(max_tokens=80, temperature=1.5, num_samples=2, stop=("e", "?")), seed=3,
              stream=True)  # fmt: skip
    run(scheduler, {0: [job]})
    pieces: dict[int, str] = {}
    finishes = {}
    for index, piece, reason in job.updates:
        pieces[index] = pieces.get(index, "") + piece
        if reason is not None:
            finishes[index] = reason
    assert pieces == {i: r.completion for i, r in enumerate(job.results)}
    assert finishes == {i: r.reason for i, r in enumerate(job.results)}
    assert all("e" not in p and "?" not in p for p in pieces.values())


def test_a_cancelled_request_leaves_the_batch_at_the_next_step(models):
    scheduler = Scheduler("endless", load_for_inference("endless"))
    gone, stays = (Job(["Why"], SampleOptions(max_tokens=1000, num_samples=4), seed=1) for _ in range(2))
    scheduler.submit(gone)
    scheduler.submit(stays)
    for _ in range(5):
        scheduler.step()
    assert scheduler.active == 8
    gone.cancel()
    scheduler.step()
    assert scheduler.active == 4 and not stays.finished
    finish(scheduler)
    assert stays.state == "done" and all(r.tokens == 1000 and r.reason == "max_tokens" for r in stays.results)


def test_requests_wait_for_room_and_a_full_queue_is_refused(models):
    scheduler = Scheduler("tiny", load_for_inference("tiny"), max_streams=4, max_waiting=1)
    first, second = (Job(["Why"], SampleOptions(max_tokens=30, num_samples=3), seed=s) for s in (1, 2))
    scheduler.submit(first)
    scheduler.step()
    scheduler.submit(second)  # 3 streams, 1 free slot: it waits
    with pytest.raises(Busy, match="requests waiting"):
        scheduler.submit(Job(["Hey"], SampleOptions(), seed=0))
    scheduler.step()
    assert second.state == "waiting" and scheduler.active == 3
    finish(scheduler)
    assert first.state == second.state == "done" and got(second) == expected(load_for_inference("tiny"), second)


def test_a_prompt_the_model_cannot_read_fails_only_its_own_request(models):
    scheduler = Scheduler("tiny", load_for_inference("tiny"))
    bad, good = Job(["Why ☃"], SampleOptions(), seed=0), Job(["Why"], SampleOptions(max_tokens=10), seed=0)
    run(scheduler, {0: [bad, good]})
    assert bad.state == "failed" and "☃" in str(bad.error) and "skip" in str(bad.error)
    assert good.state == "done"


def test_a_new_best_checkpoint_is_picked_up_and_running_streams_finish_on_theirs(models):
    notes = []
    before = load_for_inference("endless")
    scheduler = Scheduler("endless", load_for_inference("endless"), on_note=notes.append)
    old = Job(["Why"], SampleOptions(max_tokens=200, num_samples=2), seed=4)
    scheduler.submit(old)
    for _ in range(20):
        scheduler.step()
    assert not scheduler.check_reload()  # nothing changed yet
    save_model("endless", "endless", scale=3, steps=10)  # what training does when it saves a new best
    assert scheduler.check_reload() and "now serving step 22" in notes[-1] and "2 running" in notes[-1]
    new = Job(["Why"], SampleOptions(max_tokens=200, num_samples=2), seed=4)
    run(scheduler, {0: [new]})
    assert got(old) == expected(before, old)  # not dropped, not switched mid-text
    after = load_for_inference("endless")
    assert got(new) == expected(after, new) != got(old)
    assert (old.generation, new.generation) == (12, 22) and len(scheduler.generations) == 1


def test_a_graph_mid_save_or_damaged_is_not_picked_up(models):
    notes = []
    scheduler = Scheduler("tiny", load_for_inference("tiny"), on_note=notes.append)
    ckpt = checkpoint.load("tiny")
    ckpt.step += 1
    ckpt.save(ckpt.path)  # the checkpoint is new, its graph not yet: stale, looked at again later
    graph = registry.entry_dir("model", "tiny") / "best.onnx"
    graph.write_bytes(graph.read_bytes())  # a new file (mtime) that still belongs to the old checkpoint
    assert not scheduler.check_reload() and notes == []
    save_graph(ckpt)
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    assert not scheduler.check_reload() and "still serving step 12" in notes[-1] and "damaged" in notes[-1]
    assert not scheduler.check_reload() and len(notes) == 1  # reported once
    job = Job(["Why"], SampleOptions(max_tokens=10), seed=0)
    run(scheduler, {0: [job]})
    assert job.state == "done" and job.generation == 12


def test_per_stream_choice_matches_a_lone_run_whatever_else_is_in_the_batch(models):
    """The draws of a prompt's samples do not depend on other streams: the same job alone and in a crowd."""
    loaded = load_for_inference("tiny")
    options = SampleOptions(max_tokens=40, temperature=1.4, num_samples=2)
    alone = Job(["Hey"], options, seed=9)
    run(Scheduler("tiny", loaded), {0: [alone]})
    crowd = [Job(["Why"], SampleOptions(max_tokens=int(m)), seed=int(m)) for m in np.arange(5, 45, 5)]
    again = Job(["Hey"], options, seed=9)
    run(Scheduler("tiny", loaded), {0: crowd[:4], 2: [again], 6: crowd[4:]})
    assert got(again) == got(alone)


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
def test_word_and_bpe_models_get_lstmgen_samples_text_too(tokenizer, jokes_csv):
    """Word models re-space their text; BPE prompts are token-healed (the first token must extend the prompt's
    last one): both done by sample.prepare and TextStream, in the scheduler as in `lstmgen sample`."""
    from .test_inference import _train

    name = _train(tokenizer, jokes_csv)
    loaded = load_for_inference(name)
    first = SampleOptions(max_tokens=40, temperature=1.3, num_samples=2, stop=("?",))
    second = SampleOptions(max_tokens=30, top_k=10, repetition_penalty=1.3)
    jobs = [Job(["Why did", "Hey, "], first, seed=3, stream=True), Job(["What do you call a"], second, seed=8)]
    run(Scheduler(name, loaded), {0: jobs[:1], 2: jobs[1:]})
    for job in jobs:
        assert job.state == "done" and got(job) == expected(load_for_inference(name), job)
    assert all(r.text.startswith(("Why did", "Hey,")) for r in jobs[0].results)


def test_a_removed_model_is_reported_once_and_once_retired_its_thread_ends_after_its_jobs(models):
    """`lstmgen rm` while serving: the periodic look at the files tells the server (once), which unloads the
    model; its scheduler takes no more jobs but finishes those it has."""
    import gc
    import weakref

    removed, loaded = [], load_for_inference("endless")
    scheduler = Scheduler("endless", loaded, on_removed=removed.append)
    session = weakref.ref(loaded.backend)
    del loaded
    job = Job(["Why"], SampleOptions(max_tokens=300), seed=1)
    scheduler.submit(job)
    scheduler.step()
    shutil.rmtree(registry.entry_dir("model", "endless"))
    assert not scheduler.check_reload() and removed == ["endless"]
    assert not scheduler.check_reload() and removed == ["endless"]  # said once
    scheduler.retire()
    scheduler.start()
    scheduler.thread.join(30)
    assert not scheduler.thread.is_alive()
    assert job.state == "done" and job.results[0].tokens == 300 and job.results[0].reason == "max_tokens"
    gc.collect()
    assert session() is None  # the retired model's ONNX Runtime session is freed, though the engine keeps the thread


def test_the_engine_connection_stays_blocking_under_uvloop():
    """uvloop's add_reader makes the socket non-blocking, and a message not all arrived yet then raised
    BlockingIOError midway through Connection's read: the server took it for the engine's death, and a
    busy machine's streams ended in "the decoding engine process ended unexpectedly"."""
    import os

    uvloop = pytest.importorskip("uvloop")  # what uvicorn runs on where it is installed (not on Windows)
    from lstmgen.serve.engine import Engine
    from lstmgen.serve.options import Limits

    engine, loop = Engine(Limits()), uvloop.new_event_loop()
    try:
        engine.start(loop)
        assert os.get_blocking(engine.conn.fileno())
    finally:
        engine.stop()
        loop.close()
