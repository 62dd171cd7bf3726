"""`lstmgen list`, `show`, `rm` and `default`."""

import json

from lstmgen import checkpoint, registry

from .runner import TINY, bad, ok


def test_unknown_names_suggest_the_closest(trained):
    assert "did you mean 'tiny'" in bad("sample", "Why", "--model", "tinyy")
    assert "did you mean 'toy'" in bad("train", "-c", "char", "--corpus", "toyy", *TINY)
    assert "invalid" in bad("prepare", "configs/char.yaml", "--name", "../evil")


def test_rm_default_and_show(trained):
    assert ok("default").stdout.strip() == "tiny"
    assert "corpus toy" in ok("show", "toy").stdout
    ok("rm", "tiny")
    assert "no models" in bad("sample", "Why")


def test_show_suggests_a_corpus_or_a_model(trained):
    assert "did you mean corpus 'toy'?" in bad("show", "toi")


def test_show_draws_the_loss_curves(trained):
    lines = ok("show", "tiny").stdout.splitlines()
    at = lines.index("  loss (· train, ● validation):")
    steps = [h["step"] for h in checkpoint.load("tiny", "last").history]
    assert "┤" in lines[at + 1] and lines[-1].split() == ["step", f"{steps[0]:,}", f"{steps[-1]:,}"]


def test_show_plot_writes_a_png_or_says_what_is_missing(trained, tmp_path, monkeypatch):
    png = tmp_path / "curves.png"
    ok("show", "tiny", "--plot", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "could not write" in bad("show", "tiny", "--plot", tmp_path / "no" / "such" / "dir.png")
    assert "--plot draws a model's loss curves" in bad("show", "toy", "--kind", "corpus", "--plot", png, code=2)
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if lstmgen[plot] were not installed
    assert "--plot needs matplotlib: pip install 'lstmgen[plot]'" in bad("show", "tiny", "--plot", png)


def test_a_damaged_entry_is_marked_in_its_own_row_and_the_rest_still_lists(trained):
    info = registry.entry_dir("model", "tiny") / "info.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "steps": "x", "status": None}))
    r = ok("list")
    assert "tiny * !" in r.stdout and "! model tiny:" in r.stdout and "toy" in r.stdout
    assert ok("default").stdout.strip() == "tiny"  # the default model still resolves


def test_show_plot_reports_the_file_it_wrote(trained, tmp_path):
    r = ok("show", "tiny", "--plot", tmp_path / "curves")
    assert f"saved the loss curves to {tmp_path / 'curves.png'}" in r.stderr and (tmp_path / "curves.png").is_file()
