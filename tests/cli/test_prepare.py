"""`lstmgen prepare` from the command line."""

import json

from .runner import TINY, ok


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
