"""`lstmgen configs`: the packaged configs, one line each."""

import json
from pathlib import Path

from lstmgen.config import load_config, packaged_configs

from .runner import ok


def test_configs_lists_each_packaged_config_with_what_it_is_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # from any directory
    lines = ok("configs").stdout.splitlines()
    assert [line.split()[0] for line in lines] == [c.name for c in packaged_configs()]
    summaries = {c.name: c.summary for c in packaged_configs()}
    assert all(line.split(None, 1)[1] == summaries[line.split()[0]] for line in lines)
    assert "quick start" in summaries["char"]
    listed = json.loads(ok("configs", "--json").stdout)
    assert {c["name"] for c in listed} >= {"char", "word", "bpe"}
    for c in listed:
        assert set(c) == {"name", "path", "command", "summary"} and Path(c["path"]).is_file()
        assert load_config(c["name"]) == load_config(c["path"])  # the name trains what the file says
    assert "lstmgen configs" in ok("train", "--help").stdout  # --config's help points here
