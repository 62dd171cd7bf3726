"""`lstmgen eval` from the command line."""

import json
from types import SimpleNamespace

import pytest

from lstmgen import checkpoint

from .runner import bad, ok


def test_eval_on_another_file(trained, tmp_path):
    f = tmp_path / "more.txt"
    f.write_text("Why did the cat nap?\nWhat is a dog?\n")
    m = json.loads(ok("eval", "--file", f, "--json").stdout)
    assert m["on"].endswith("more.txt") and m["chars"] == len("Why did the cat nap?") + 1 + len("What is a dog?") + 1


def test_file_options_without_a_file_are_refused_and_quiet_leaves_stderr_empty(trained):
    err = bad("eval", "--column", "text", "--encoding", "latin-1", code=2)
    assert "--column, --encoding describe --file, and no --file was given" in err and err.count("\n") == 1
    r = ok("eval", "--quiet", "--json")
    assert json.loads(r.stdout)["bits_per_char"] > 0 and r.stderr == ""


def test_a_split_and_a_file_together_are_refused_not_one_dropped(trained, tmp_path):
    f = tmp_path / "texts.txt"
    f.write_text("Hey, why is the sun bright?\n")
    for split in ("test", "val"):  # the default's own name too: the user asked for two things
        err = bad("eval", "--split", split, "--file", f)
        assert f"--split {split} names a held-out split" in err and "drop one" in err and err.count("\n") == 1
    assert json.loads(ok("eval", "--split", "val", "--json").stdout)["on"] == "val split"


def test_unknown_characters_of_every_record_are_named_at_once(trained, tmp_path):
    f = tmp_path / "texts.txt"
    f.write_text("Why did the cat nap?\nA \u2603 here\nand \u00a7 there, \u2603 again\n")  # records 2 and 3
    err = bad("eval", "--file", f)
    assert "(first in record 2) has 2 character(s) the model's vocabulary lacks: '\u2603', '\u00a7'" in err, err
    assert json.loads(ok("eval", "--file", f, "--skip-unknown", "--json").stdout)["chars"] > 0


def test_eval_file_has_prepares_record_cap_and_option(trained, tmp_path):
    f = tmp_path / "texts.txt"
    f.write_text("Why did the cat nap?\n" + "a" * 2000 + "\n")
    err = bad("eval", "--file", f, "--max-line-chars", "1000")  # the fix its message names is an eval option too
    assert "line 2 is longer than 1,000 characters" in err and "--max-line-chars" in err
    assert json.loads(ok("eval", "--file", f, "--max-line-chars", "2000", "--json").stdout)["chars"] == 2021 + 1
    assert "0 is not in the range x>=1" in bad("eval", "--file", f, "--max-line-chars", "0", code=2)


def test_eval_per_record_scores_each_record_and_they_add_up(trained, tmp_path):
    texts = ["Why did the cat sit on the mat? It was warm.", "wwww cccc iiii", "Hey, why is the sun bright?"]
    f = tmp_path / "texts.txt"
    f.write_text("\n".join(texts) + "\n")
    rows = [json.loads(line) for line in ok("eval", "--file", f, "--per-record", "--json").stdout.splitlines()]
    assert [r["text"] for r in rows] == texts and [r["index"] for r in rows] == [0, 1, 2]
    total = json.loads(ok("eval", "--file", f, "--json").stdout)
    assert sum(r["tokens"] for r in rows) == total["tokens"]
    # Each record is scored on its own: its score does not depend on the records around it.
    f.write_text("\n".join(texts[::-1]) + "\n")
    reversed_rows = [json.loads(line) for line in ok("eval", "--file", f, "--per-record", "--json").stdout.splitlines()]
    assert [r["log_likelihood"] for r in reversed_rows[::-1]] == pytest.approx([r["log_likelihood"] for r in rows])
    single = tmp_path / "one.txt"
    single.write_text(texts[1] + "\n")
    alone = json.loads(ok("eval", "--file", single, "--json").stdout)  # one record: the stream eval agrees
    assert alone["loss"] * alone["tokens"] == pytest.approx(-rows[1]["log_likelihood"], rel=1e-5)
    f.write_text("\n".join(texts) + "\n")
    plain = ok("eval", "--file", f, "--per-record").stdout.splitlines()
    assert [line.split("\t", 1)[1] for line in plain] == texts and float(plain[1].split("\t")[0]) > 0
    split_rows = ok("eval", "--split", "val", "--per-record", "--json").stdout.splitlines()
    assert len(split_rows) == checkpoint.load("tiny").corpus["records"]["val"]


def test_a_long_scoring_shows_a_bar_on_a_terminal_and_removes_it(monkeypatch):
    import io

    from rich.console import Console

    from lstmgen.cli import output

    screen = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=screen, force_terminal=True, width=80))
    now = [1000.0]  # the meter's clock, moved by hand: a busy machine's pauses must not change what is shown
    monkeypatch.setattr(output, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    with output.Meter("scoring m", after=0.2) as meter:
        now[0] += 0.1
        meter(10, 100)  # a quick start: nothing yet
        assert screen.getvalue() == ""
        now[0] += 0.15
        meter(50, 100)
        meter.progress.refresh()
        assert "scoring m" in screen.getvalue() and "50% eta 0:00:00" in screen.getvalue()
    assert meter.progress is None  # stopped; transient, so the terminal keeps only eval's result
    monkeypatch.setattr(output, "err", Console(file=io.StringIO(), force_terminal=False))
    quiet = output.Meter("scoring m", after=0)
    quiet(50, 100)
    assert quiet.progress is None  # never on a pipe or a log file
