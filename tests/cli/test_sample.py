"""`lstmgen sample` from the command line: prompts, stdin, seeds, options, streaming."""

import json
import shutil

import numpy as np
import pytest

from lstmgen.inference import load_for_inference
from lstmgen.sample import SampleOptions

from .runner import TINY, bad, ok, run


def test_same_seed_same_output(trained):
    a = ok("sample", "Hey", "--seed", "5", "-n", "2", "--max-tokens", "40").stdout
    assert a == ok("sample", "Hey", "--seed", "5", "-n", "2", "--max-tokens", "40").stdout


def test_prompts_from_stdin_one_output_each_in_order(trained):
    r = ok("sample", "-", "--json", "--seed", "2", "--max-tokens", "20", input="Why\nWhat do\nHey, \n")
    assert [json.loads(line)["prompt"] for line in r.stdout.splitlines()] == ["Why", "What do", "Hey, "]
    r = ok("sample", "--seed", "2", "--max-tokens", "20", input="Why\nWhat\n")  # piped stdin, no PROMPT
    assert len(r.stdout.splitlines()) == 2


def test_word_model_maps_unknown_prompt_words_to_unk(jokes_csv):
    ok("prepare", jokes_csv, "--name", "w", "--tokenizer", "word", "--min-freq", "1")
    ok("train", "-c", "word", "--corpus", "w", "--name", "wm", "--quiet", *TINY)
    r = ok("sample", "Why zyzzyva", "--seed", "1", "--max-tokens", "5")
    assert "zyzzyva" in r.stderr and "<unk>" in r.stderr and "of model 'wm'" in r.stderr and "''" not in r.stderr
    assert r.stdout.startswith("Why zyzzyva")


def test_char_model_names_unknown_prompt_chars(trained):
    err = bad("sample", "Why \u00e9\u00e9 \u4e2d", "--max-tokens", "5")
    assert "'\u00e9'" in err and "'\u4e2d'" in err and "--skip-unknown" in err and len(err.strip().splitlines()) == 1
    r = ok("sample", "Why \u00e9", "--skip-unknown", "--max-tokens", "5", "--seed", "1")
    assert "dropped 1" in r.stderr and r.stdout.startswith("Why ") and "\u00e9" not in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "0"], "--temperature must be a number > 0"),
        (["--temperature", "-1"], "--temperature must be a number > 0"),
        (["--temperature", "nan"], "--temperature must be a number > 0"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--top-k", "-3"], "--top-k must be at least 1"),
        (["--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["--limit-max-tokens", "-1"], "--limit-max-tokens must be at least 1 (got -1)"),  # not "5 is over -1"
        (["--limit-num-samples", "0"], "--limit-num-samples must be at least 1"),
        (["--limit-prompt-chars", "0"], "--limit-prompt-chars must be at least 1"),
        (["--greedy", "--top-k", "3"], "--greedy takes the most likely token, which --top-k would not change"),
        (["--greedy", "--top-p", "0.5"], "which --top-p would not change; drop one"),
    ],
)
def test_bad_sampling_options_are_usage_errors(trained, args, message):
    err = bad("sample", "Why", *args, code=2)
    assert message in err and len(err.strip().splitlines()) == 1


def test_empty_prompt_is_refused(trained):
    assert "prompt is empty" in bad("sample", "", code=2)


def test_each_stdin_prompt_gets_its_own_seed(trained):
    r = ok("sample", "-", "--json", "--seed", "1", "--max-tokens", "5", input="Why\nWhy\n")
    assert [json.loads(line)["seed"] for line in r.stdout.splitlines()] == [1, 2]


def test_out_of_range_seed_is_a_usage_error(trained):
    assert "--seed must be between 0 and 2^63 - 1" in bad("sample", "Why", "--seed", str(2**64), code=2)


def test_empty_stdin_with_dash_is_a_usage_error(trained):
    assert "no prompts on stdin" in bad("sample", "-", input="", code=2)


def test_generation_controls_from_the_command_line(trained):
    r = ok("sample", "Why", "--stop", " ", "--no-repeat-ngram", "3", "--repetition-penalty", "1.2", "-n", "4",
           "--seed", "1", "--json", "--temperature", "1.5")  # fmt: skip
    samples = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(samples) == 4 and all(" " not in s["completion"] for s in samples)
    assert {s["stop_reason"] for s in samples} <= {"stop", "eor", "loop", "max_tokens"}
    assert "--no-repeat-ngram must be 0" in bad("sample", "Why", "--no-repeat-ngram", "-1", code=2)
    assert "--repetition-penalty must be between 1e-6" in bad("sample", "Why", "--repetition-penalty", "0", code=2)
    assert "--stop needs a non-empty string" in bad("sample", "Why", "--stop", "", code=2)


def test_stream_prints_the_same_text_as_a_plain_sample(trained):
    for extra in ([], ["--stop", "e"]):
        plain = ok("sample", "Why", "--seed", "4", "--max-tokens", "40", *extra).stdout
        streamed = ok("sample", "Why", "--seed", "4", "--max-tokens", "40", "--stream", *extra).stdout
        assert streamed == plain and plain.startswith("Why")
    assert "--stream prints one sample" in bad("sample", "Why", "--stream", "-n", "2", code=2)


def test_stream_hands_out_each_piece_once_and_holds_back_a_possible_stop(trained):
    from lstmgen.sample import sample

    pieces = []
    options = SampleOptions(max_tokens=60, temperature=1.3, stop=("the",))
    (s,) = sample(load_for_inference("tiny"), "Why", options, seed=2, on_text=pieces.append)
    assert pieces[0] == "Why"  # the prompt as read, then the completion
    assert "".join(pieces[1:]) == s.completion and "the" not in s.completion
    assert len(pieces) > 2  # it streamed, not one piece at the end


def test_stdin_prompts_are_printed_in_order_each_with_its_seed(trained):
    nouns = "cat dog sun moo fish road plant bread mat pup school eyes joke duck cow loaf story warm bright grow"
    prompts = [f"{a} {b}" for a in ("Why", "What", "Hey", "I told", "The") for b in nouns.split()]  # 100
    r = ok("sample", "-", "--json", "--seed", "3", "--max-tokens", "8", input="\n".join(prompts) + "\n")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [s["prompt"] for s in lines] == prompts and [s["seed"] for s in lines] == list(range(3, 103))
    alone = json.loads(ok("sample", prompts[70], "--json", "--seed", "73", "--max-tokens", "8").stdout)
    assert alone["text"] == lines[70]["text"]  # batching changes nothing a user sees


def test_a_slow_writer_gets_each_answer_before_sending_more(trained):
    """`tail -f prompts | lstmgen sample -`: a prompt is answered as soon as no more input is waiting."""
    import os
    import select
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "lstmgen", "sample", "-", "-m", "tiny", "--max-tokens", "5"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ)  # fmt: skip
    try:
        proc.stdin.write("Why\n")
        proc.stdin.flush()
        assert select.select([proc.stdout], [], [], 60)[0], "no answer while stdin stayed open"
        assert proc.stdout.readline().startswith("Why")
        proc.stdin.write("Hey\n")
        proc.stdin.close()
        assert proc.stdout.readline().startswith("Hey") and proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_a_prompt_the_model_cannot_read_fails_after_the_ones_before_it(trained):
    r = run("sample", "-", "--seed", "1", "--max-tokens", "5", input="Why\nWhat\ncaf\u00e9\nHey\n")
    lines = r.stdout.splitlines()
    assert r.exit_code == 1 and len(lines) == 2 and lines[0].startswith("Why") and lines[1].startswith("What")
    assert "line 3 of stdin has 1 character(s) the model's vocabulary lacks" in r.stderr


def test_an_endless_stdin_line_is_refused_once_it_passes_the_cap(trained):
    """`sample - < /dev/zero` ran for ever: the cap was checked only at the line's end."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "lstmgen", "sample", "-", "-m", "tiny", "--max-tokens", "5",
                             "--limit-prompt-chars", "1000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        proc.stdin.write("Why\n" + "a" * 5000)
        proc.stdin.flush()  # no line end and no end of input follow
        assert proc.wait(timeout=60) == 2
        assert proc.stdout.read().startswith("Why")  # the line before it is answered
        assert proc.stderr.read() == (
            "error: line 2 of stdin is longer than 1,000 characters, the limit set by --limit-prompt-chars\n"
        )
    finally:
        proc.kill()


def test_a_prompt_that_is_not_utf8_names_its_byte(trained):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "lstmgen", "sample", "-", "-m", "tiny"], input=b"Why\n\xffoops\n",
                       capture_output=True)  # fmt: skip
    assert r.returncode == 1 and r.stdout.decode().startswith("Why")  # the line before it is answered
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "line 2 of stdin is not valid UTF-8: byte 0xff at offset 0" in err


def test_waiting_on_a_silent_stdin_pipe_says_so_once(trained, registry_home):
    import os
    import subprocess
    import sys
    import threading
    import time

    cmd = [sys.executable, "-m", "lstmgen", "sample", "--seed", "1", "--max-tokens", "5"]
    env = {**os.environ, "LSTMGEN_HOME": str(registry_home)}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    watchdog = threading.Timer(120, proc.kill)  # were the note never to come, readline would wait forever
    watchdog.start()
    started = time.perf_counter()
    first = proc.stderr.readline()  # the note, ~2 s after the model is loaded
    waited = time.perf_counter() - started
    time.sleep(1)  # it is said once, however long the wait
    out, err = proc.communicate("Why\n", timeout=120)
    watchdog.cancel()
    assert proc.returncode == 0 and out.startswith("Why")
    assert first.startswith("note: waiting for prompts on stdin") and "give PROMPT, or close stdin" in first
    assert waited >= 2 and "waiting" not in err
    prompt_at_once = subprocess.run(cmd, input="Why\n", capture_output=True, text=True, env=env, timeout=120)
    assert prompt_at_once.stdout.startswith("Why") and prompt_at_once.stderr == ""  # nothing to wait for


MEMO = ["the owl sings at noon", "a red fox naps", "my cat eats pie"]
MEMORISE = ["--set", "model.embed=16", "--set", "model.hidden=48", "--set", "model.n_layer=1", "--set",
            "model.dropout=0", "--set", "train.batch_size=8", "--set", "train.seq_len=32", "--set",
            "train.max_steps=120", "--set", "train.max_epochs=null", "--set", "train.eval_every=60", "--set",
            "train.checkpoint_every=60", "--set", "train.lr=0.02", "--set", "train.max_time=null"]  # fmt: skip


def _files(home):
    return sorted((str(p), p.stat().st_size) for p in home.rglob("*"))


def test_novelty_flags_a_memorised_corpus_and_redraws_copies(tmp_path, registry_home):
    memo = tmp_path / "memo.txt"
    memo.write_text("\n".join(MEMO * 20) + "\n")
    ok("prepare", memo, "--name", "memo")
    ok("train", "-c", "char", "--corpus", "memo", "--name", "memo", "--quiet", *MEMORISE)
    four = ("sample", "-n", "4", "--seed", "1", "--json", "--temperature", "0.3")
    rows = [json.loads(line) for line in ok(*four).stdout.splitlines()]
    assert all(r["copied"] and r["longest_copy"]["chars"] == len(r["text"]) for r in rows)
    assert all(MEMO[r["longest_copy"]["record"] % 3] == r["text"] for r in rows)  # its number in the input
    # A random string over the same characters shares only short spans.
    noise = "".join(np.random.default_rng(0).choice(list("".join(MEMO)), 40))
    row = json.loads(ok("sample", noise, "--max-tokens", "1", "--json").stdout)
    assert not row["copied"] and row["longest_copy"]["chars"] < 8
    # --novel: every draw copies a whole record, so each is drawn again --max-redraws times, reproducibly.
    args = ("sample", "-n", "2", "--seed", "3", "--temperature", "0.3", "--json", "--novel", "--max-copy", "10",
            "--max-redraws", "2")  # fmt: skip
    r = ok(*args)
    assert [json.loads(line)["redrawn"] for line in r.stdout.splitlines()] == [2, 2]
    assert "redrew 2 of 2 sample(s)" in r.stderr and "2 still did after 2 tries" in r.stderr
    assert ok(*args).stdout == r.stdout
    # The index gone (as for a corpus prepared before indexes): --json alone says so and does not build it (that
    # takes torch and memory), --novel builds it once (a note); the corpus removed refuses --novel in one line.
    shutil.rmtree(registry_home / "corpora" / "memo" / "novelty")
    unknown = ok(*four)
    assert "`lstmgen sample --novel` builds its index once" in unknown.stderr
    assert all(json.loads(x)["longest_copy"] is None for x in unknown.stdout.splitlines())
    again = ok(*four, "--novel", "--max-copy", "1000")
    assert "building the novelty index" in again.stderr
    assert [json.loads(x) | {"redrawn": 0} for x in again.stdout.splitlines()] == [r | {"redrawn": 0} for r in rows]
    assert [json.loads(x) for x in ok(*four).stdout.splitlines()] == rows  # built: --json reports it again
    ok("rm", "memo", "--kind", "corpus")
    before = _files(registry_home)
    err = bad("sample", "--novel")
    assert "training records of model 'memo' are gone" in err and len(err.strip().splitlines()) == 1
    assert _files(registry_home) == before
    r = ok("sample", "--json", "--seed", "1")
    assert json.loads(r.stdout)["longest_copy"] is None and "are gone" in r.stderr
    assert "add --novel" in bad("sample", "--max-copy", "5", code=2)
    assert "--max-redraws set what --novel redraws; add --novel" in bad("sample", "--max-redraws", "3", code=2)
