"""`lstmgen list`, `show`, `rm` and `default`."""

import json

from lstmgen import checkpoint, registry

from .runner import TINY, bad, ok


def test_unknown_names_suggest_the_closest(trained):
    assert "did you mean 'tiny'" in bad("sample", "Why", "--model", "tinyy")
    assert "did you mean 'toy'" in bad("train", "-c", "char", "--corpus", "toyy", *TINY)
    assert "invalid" in bad("prepare", "configs/char.yaml", "--name", "../evil")


def test_a_corpus_named_where_a_model_is_wanted_says_so(trained):
    for args in (["sample", "Why", "--model", "toy"], ["eval", "--model", "toy"],
                 ["train", "--from", "toy", "--name", "child", "--corpus", "toy", *TINY]):  # fmt: skip
        assert "no model named 'toy'" in (e := bad(*args)) and "'toy' is a corpus (train a model on it" in e
    assert "'tiny' is a model" in bad("train", "-c", "char", "--corpus", "tiny", *TINY)
    assert "no corpus named 'nothere'" in bad("show", "nothere", "--kind", "corpus")  # not an empty "damaged" entry


def test_rm_default_and_show(trained):
    assert ok("default").stdout.strip() == "tiny"
    assert "corpus toy" in ok("show", "toy").stdout
    ok("rm", "tiny")
    assert "no models" in bad("sample", "Why")


def test_show_suggests_a_corpus_or_a_model(trained):
    assert "did you mean corpus 'toy'?" in bad("show", "toi")


def test_show_draws_the_loss_curves(trained):
    lines = ok("show", "tiny").stdout.splitlines()
    at = lines.index("  loss (· mean train, ● validation):")
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


def test_a_path_where_a_name_goes_says_which_name_or_command_was_meant(trained, jokes_csv, tmp_path, monkeypatch):
    from lstmgen import registry

    models = registry.home() / "models"
    for args in (["sample", "Why", "-m", models / "tiny"], ["eval", "-m", models / "tiny" / "best.pt"],
                 ["show", models / "tiny"]):  # fmt: skip
        assert "not given by path; did you mean model 'tiny'?" in bad(*args)
    monkeypatch.chdir(registry.home())
    assert "did you mean model 'tiny'?" in bad("eval", "-m", "./models/tiny")
    # A file where a corpus goes: the command that makes a corpus of it (a corpus of another file is no match).
    err = bad("train", "-c", "char", "--corpus", jokes_csv, "--name", "x", *TINY)
    assert f"run `lstmgen prepare {jokes_csv}` first, then name the corpus it makes ('jokes')" in err
    monkeypatch.chdir(jokes_csv.parent)
    assert "jokes.csv is a file: run `lstmgen prepare jokes.csv` first" in bad("train", "--corpus", "jokes.csv", *TINY)
    ok("prepare", "jokes.csv", "-q")
    assert "did you mean corpus 'jokes', prepared from it?" in bad("train", "--corpus", "jokes.csv", *TINY)
    assert "did you mean corpus 'jokes', prepared from it?" in bad("train", "--corpus", jokes_csv, *TINY)
    assert "`lstmgen list` shows them" in bad("sample", "Why", "-m", tmp_path / "nothing")


def test_deleting_the_default_model_says_which_is_the_default_now(trained):
    ok("train", "-c", "char", "--corpus", "toy", "--name", "older", *TINY, "-q")
    ok("default", "tiny", "-q")
    assert "the default model is now 'older'" in ok("rm", "tiny").stderr
    assert "there is no default model now" in ok("rm", "older").stderr
    ok("train", "-c", "char", "--corpus", "toy", "--name", "a", *TINY, "-q")
    ok("train", "-c", "char", "--corpus", "toy", "--name", "b", *TINY, "-q")
    assert "default model" not in ok("rm", "a").stderr  # b, the latest, was and stays the default
    ok("rm", "b", "-q")
    assert "train one with `lstmgen prepare jokes && lstmgen train --config char`" in bad("default")  # from anywhere


def test_list_and_show_give_epochs_to_one_decimal_and_bits_per_char_beside_each_model(trained):
    import json

    from lstmgen import registry

    def row(name: str) -> dict:
        lines = ok("list").stdout.splitlines()
        lines = lines[lines.index("models") :]
        header = next(line for line in lines if "┃ name" in line)
        cells = [c.strip() for c in next(line for line in lines if line.startswith(f"│ {name}")).split("│")[1:-1]]
        return dict(zip([c.strip() for c in header.split("┃")[1:-1]], cells, strict=True))

    info = registry.info("model", "tiny")
    assert row("tiny")["bits/char"] == f"{info['best_val_bits_per_char']:.3f}"
    assert row("tiny")["epochs"] == f"{info['epochs']:.1f}" and 0 < info["epochs"] < 1  # 8 steps: part of one
    assert f"  epochs: {info['epochs']:.1f}" in ok("show", "tiny").stdout.splitlines()
    # A model trained before bits/char were recorded: "-", not a figure in another unit.
    path = registry.entry_dir("model", "tiny") / "info.json"
    older = {k: v for k, v in json.loads(path.read_text()).items() if k != "best_val_bits_per_char"}
    path.write_text(json.dumps(older | {"epochs": 0}))
    assert row("tiny")["bits/char"] == "-" and row("tiny")["epochs"] == "0.0"
