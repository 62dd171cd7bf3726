"""`lstmgen list`, `show`, `rm` and `default`."""

import json
from pathlib import Path

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


def test_show_plot_writes_exactly_the_file_named(trained, tmp_path):
    r = ok("show", "tiny", "--plot", tmp_path / "curves")  # no extension: PNG, at that name, not curves.png
    assert f"saved the loss curves to {tmp_path / 'curves'}\n" in r.stderr
    assert (tmp_path / "curves").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "curves.png").exists()
    ok("show", "tiny", "--plot", tmp_path / "curves.svg")
    assert b"<svg" in (tmp_path / "curves.svg").read_bytes()[:1000]


def test_show_plot_refuses_a_folder_an_empty_path_and_the_registry_and_writes_nothing(trained, tmp_path, monkeypatch):
    def files(root):
        return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    home, work = registry.home(), tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "in-registry.png").symlink_to(home / "models" / "tiny" / "q.png")
    monkeypatch.chdir(work)
    before, registry_before = files(tmp_path), files(home)
    for path, says in [
        ("sub", "sub names a folder; --plot takes the image's file name, such as sub/curves.png"),
        ("new/", "new/ names a folder"),
        (".", ". names a folder"),
        ("", "--plot was given an empty path; name the image file, such as curves.png"),  # once wrote ./..png.png
        (home / "models" / "tiny" / "p.png", f"is inside the registry ({home}); save the plot outside it"),
        (home / "p.png", "is inside the registry"),
        ("in-registry.png", "in-registry.png is inside the registry"),  # a link into it
        ("curves.plot", "matplotlib cannot write .plot images; end the name in one of "),
        ("no/such/dir.png", "could not write no/such/dir.png (No such file or directory)"),
    ]:
        e = bad("show", "tiny", "--plot", path)
        assert says in e and e.count("\n") == 1, (path, e)
    if Path("/dev/full").exists():  # writing is tried at exactly that name, and fails: not /dev/full.png
        assert "could not write /dev/full (No space left on device)" in bad("show", "tiny", "--plot", "/dev/full")
        assert not Path("/dev/full.png").exists()
    assert files(tmp_path) == before and files(home) == registry_before and not (tmp_path / "work.png").exists()


def test_list_and_show_print_registry_strings_as_they_are_with_control_characters_visible(tmp_path):
    # Once: rich read "[x].txt" as markup (".txt"), ":cat:" as an emoji code, and show wrote ESC ] 0;title BEL
    # raw, which retitles the terminal.
    names = ["[x].txt", "[bold red]b[not].txt", ":cat:\x1b]0;pwned\x07\u202e.txt"]
    labels = ["[red]l", ":dog:", "x[/]"]  # prepare refuses control characters in labels
    for i, name in enumerate(names):
        rows = "".join(f"{j},Why did the cat sit on the mat? It was warm {j}.,{labels[j % 3]}\n" for j in range(30))
        (tmp_path / name).write_text("id,text,label\n" + rows)
        ok("prepare", tmp_path / name, "--name", f"c{i}", "--format", "csv", "--label-column", "label", "-q")
    listing = ok("list").stdout
    assert "[x].txt" in listing and "[bold red]b[not].txt" in listing
    assert ":cat:\\x1b]0;pwned\\x07\\u202e.txt" in listing and ":dog: 10, [red]l 10, x[/] 10" in listing
    shown = ok("show", "c2").stdout
    assert f"  source: {tmp_path}/:cat:\\x1b]0;pwned\\x07\\u202e.txt\n" in shown
    assert "  labels: :dog: 10, [red]l 10, x[/] 10\n" in shown
    for text in (listing, shown):
        assert not any(ord(c) < 32 and c != "\n" or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in text)
    # --json keeps the exact strings.
    assert json.loads(ok("list", "--json").stdout)["corpora"][2]["source"] == str(tmp_path / names[2])
    assert set(json.loads(ok("show", "c2", "--json").stdout)["labels"]) == set(labels)
