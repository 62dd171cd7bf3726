"""`lstmgen prepare` from the command line."""

import json

from .runner import TINY, bad, ok


def test_prepare_from_stdin_and_unconditional_sample():
    lines = "\n".join(f"Why did chicken {i} cross? To get across." for i in range(30))
    r = ok("prepare", "-", "--name", "piped", input=lines)
    assert "prepared corpus piped from <stdin>" in r.stderr
    ok("train", "-c", "char", "--corpus", "piped", "--name", "p", "--quiet", *TINY)
    r = ok("sample", "--seed", "1", "--max-tokens", "20", "--json", input="")  # empty stdin: start of a record
    s = json.loads(r.stdout)
    assert s["prompt"] == "" and s["text"] == s["completion"] and s["stop_reason"] in ("eor", "max_tokens")


def test_prepare_notes_a_split_skewed_by_giant_records(tmp_path):
    p = tmp_path / "skew.txt"
    p.write_text("\n".join(["ab " * 20_000] + [f"short line {i}" for i in range(40)]))
    r = ok("prepare", p, "--seed", "1")
    assert "note: records differ a lot in length" in r.stderr


def test_the_next_hint_is_a_command_that_works_from_any_directory(jokes_csv, tmp_path, monkeypatch):
    import shlex

    monkeypatch.chdir(tmp_path)  # outside the repository: no configs/ here
    r = ok("prepare", jokes_csv, "--name", "toy")
    hint = r.stderr.split("next: ", 1)[1].splitlines()[0]
    assert hint == "lstmgen train --config char --corpus toy --name toy-char"  # not the corpus's name
    ok(*shlex.split(hint)[1:], *TINY, "-q")
    # Followed again after another prepare: a name no model (nor corpus) has yet, never "already exists".
    r = ok("prepare", jokes_csv, "--name", "toy", "--overwrite")
    assert r.stderr.split("next: ", 1)[1].splitlines()[0].endswith("--corpus toy --name toy-char-2")
    r = ok("prepare", jokes_csv, "--name", "toy-word", "--tokenizer", "word")
    assert "next: lstmgen train --config word --corpus toy-word --name toy-word-model" in r.stderr


def write_csv(path, column, texts):
    import csv

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", column])
        w.writerows(enumerate(texts))
    return path


def test_several_inputs_make_one_corpus(jokes_csv, tmp_path):
    from lstmgen import registry

    more = write_csv(tmp_path / "more.csv", "Joke", [f"Why did joke {i} cross? To be told." for i in range(20)])
    both = json.loads(ok("prepare", jokes_csv, more, "--name", "both", "--json").stdout)
    one = json.loads(ok("prepare", jokes_csv, "--name", "one", "--json").stdout)
    assert sum(both["records"].values()) == sum(one["records"].values()) + 20
    assert both["sources"] == [str(jokes_csv.resolve()), str(more.resolve())]
    flipped = json.loads(ok("prepare", more, jokes_csv, "--name", "flipped", "--json").stdout)
    assert len({both["sha256"], one["sha256"], flipped["sha256"]}) == 3  # the hash covers every input, in order
    assert "jokes.csv, more.csv" in ok("list").stdout
    # Text files: a last line without its newline does not run into the next file's first line.
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(f"first file line {i}" for i in range(30)))  # no final newline
    b.write_text("".join(f"second file line {i}\n" for i in range(30)))
    lines = json.loads(ok("prepare", a, b, "--name", "lines", "--json").stdout)
    assert sum(lines["records"].values()) == 60
    # Mixed formats or text columns: one error line, and the registry as it was.
    before = sorted(registry.home().rglob("*"))
    assert "must share one format" in bad("prepare", jokes_csv, b, "--name", "mixed")
    other = write_csv(tmp_path / "other.csv", "text", ["a joke", "another joke"] * 10)
    err = bad("prepare", jokes_csv, other, "--name", "mixed")
    assert "in one column" in err and "'Joke'" in err and "'text'" in err and len(err.strip().splitlines()) == 1
    assert "stdin (-) can be read only once" in bad("prepare", "-", "-", input="x\n")
    assert sorted(registry.home().rglob("*")) == before


def test_vocab_from_a_word_model_reports_the_unk_rate_and_hints_train_from(jokes_csv, tmp_path):
    ok("prepare", jokes_csv, "--name", "w", "--tokenizer", "word", "--min-freq", "1")
    ok("train", "-c", "word", "--corpus", "w", "--name", "wm", "-q", *TINY)
    new = write_csv(tmp_path / "new.csv", "Joke", [f"Why did zebra {i} juggle? Nobody knows." for i in range(20)])
    r = ok("prepare", new, "--name", "w2", "--vocab-from", "wm", "--json")
    meta = json.loads(r.stdout)
    assert meta["tokenizer"] == "word" and meta["vocab_from"]["model"] == "wm"
    assert meta["unk_rate"]["train"] > 0.2  # zebra, juggle, Nobody, knows and the numbers are new words
    assert f"new words become <unk>: {meta['unk_rate']['train']:.1%} of train tokens" in r.stderr
    assert "next: lstmgen train --from wm --corpus w2" in r.stderr
    assert "drop --tokenizer" in bad("prepare", new, "--vocab-from", "wm", "--tokenizer", "word", code=2)
    assert "--vocab-size shape a new one: drop them" in bad("prepare", new, "--vocab-from", "wm", "--vocab-size",
                                                            "300", code=2)  # fmt: skip
    assert "grows a char vocabulary" in bad("prepare", new, "--vocab-from", "wm", "--extend-vocab", code=2)
