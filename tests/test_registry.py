import itertools
import os
import pickle

import pytest
import torch

from lstmgen import checkpoint, registry
from lstmgen.corpora import load_corpus
from lstmgen.errors import LstmgenError


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "a\0b", "..", "x..y", "-lead", "sp ace", "x\n", "~nobody-here/x"])
def test_names_cannot_escape_the_registry(bad):
    with pytest.raises(LstmgenError, match="invalid"):
        registry.check_name(bad)


def test_an_unknown_user_in_lstmgen_home_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("LSTMGEN_HOME", "~nobody-here/reg")
    with pytest.raises(LstmgenError, match=r"^LSTMGEN_HOME is '~nobody-here/reg', whose ~ names no home directory"):
        registry.home()


def test_a_registry_folder_that_is_a_file_is_one_clear_error(monkeypatch, tmp_path):
    (tmp_path / "reg").write_text("")
    monkeypatch.setenv("LSTMGEN_HOME", str(tmp_path / "reg"))  # `list` showed it as an empty registry
    with pytest.raises(LstmgenError, match=r"^LSTMGEN_HOME .*/reg is not a folder; point LSTMGEN_HOME at a folder"):
        registry.list_entries()


def test_not_found_suggests_the_closest_name(tiny_model):
    with pytest.raises(registry.NotFound, match="no model named 'tinny'.*did you mean 'tiny'"):
        registry.require("model", "tinny")


def test_disk_full_while_saving_leaves_the_previous_file(tmp_path, disk_full):
    path = tmp_path / "x.pt"
    registry.save_pt(path, {"a": torch.ones(2)})
    disk_full(after_bytes=100)  # torch.save of 1M floats writes far more than that
    with pytest.raises(registry.SaveFailed, match="no space left on device.*what was there before is unchanged"):
        registry.save_pt(path, {"a": torch.zeros(1_000_000)})
    assert torch.equal(registry.load_pt(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]  # no temp file left behind


def test_a_failed_write_of_any_kind_leaves_no_temp_file(tmp_path):
    path = tmp_path / "x.pt"

    class Boom:
        def __reduce__(self):
            raise ValueError("not serialisable")

    with pytest.raises(ValueError):
        registry.save_pt(path, {"a": Boom()})
    assert list(tmp_path.iterdir()) == []


def test_crafted_pickle_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    d = registry.home() / "models" / "evil"
    d.mkdir(parents=True)
    (d / "best.pt").write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(LstmgenError, match="not an lstmgen file") as e:
        checkpoint.load("evil")
    assert not marker.exists()
    assert "weights_only=False" not in str(e.value)  # never advise the unsafe load








def test_listing_survives_any_subset_of_files_missing(toy_corpus, tiny_model):
    model_dir, corpus_dir = registry.entry_dir("model", "tiny"), registry.entry_dir("corpus", "toy")
    files = sorted([*model_dir.iterdir(), *corpus_dir.iterdir()])
    saved = {f: f.read_bytes() for f in files}
    for r in range(len(files) + 1):
        for gone in itertools.combinations(files, r):
            for f in gone:
                f.unlink()
            listing = registry.list_entries()
            assert [m["name"] for m in listing["models"]] == ["tiny"]
            assert [c["name"] for c in listing["corpora"]] == ["toy"]
            left = {f.stem for f in model_dir.glob("*.pt")}
            assert set(listing["models"][0]["checkpoints"]) == left
            assert listing["default_model"] == ("tiny" if left else None)
            for f in gone:
                f.write_bytes(saved[f])


def test_default_model_is_latest_unless_set(toy_corpus, tiny_model):
    assert registry.default_model() == "tiny"
    from lstmgen.train import train

    from .conftest import tiny_config

    cfg = tiny_config(max_steps=2)
    cfg.name = "newer"
    train(cfg, toy_corpus)
    assert registry.default_model() == "newer"
    registry.set_default_model("tiny")
    assert registry.default_model() == "tiny"
    registry.remove("model", "tiny")
    assert registry.default_model() == "newer"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda c: c | {"format_version": 99}, "format version 99, newer than this lstmgen reads"),
        (lambda c: c | {"format_version": "1"}, "no valid format version"),
        (lambda c: {k: v for k, v in c.items() if k != "splits"}, "metadata or splits are missing"),
        (lambda c: c | {"vocab": {"kind": "char", "itos": [1, 2]}}, "vocabulary is damaged"),
        (lambda c: c | {"splits": c["splits"] | {"val": c["splits"]["val"].long() + 999}}, "outside its vocab"),
        (lambda c: c | {"splits": c["splits"] | {"val": c["splits"]["val"].float()}}, "not a 1-D integer tensor"),
    ],
)
def test_a_damaged_or_newer_corpus_is_one_clear_error(toy_corpus, damage, message):
    path = registry.entry_dir("corpus", "toy") / "corpus.pt"
    registry.save_pt(path, damage(registry.load_pt(path)))
    with pytest.raises(LstmgenError, match=message):
        load_corpus("toy")


def test_damaged_training_ids_are_found_as_training_reads_them(toy_corpus):
    """The train split is memory-mapped and never scanned whole at load: each window is checked as read."""
    from lstmgen.train import train

    from .conftest import tiny_config

    path = registry.entry_dir("corpus", "toy") / "corpus.pt"
    corpus = registry.load_pt(path)
    train_ids = corpus["splits"]["train"].clone()
    train_ids[20] = 250  # a uint8 id past the toy vocabulary, in the second window of the first lane
    registry.save_pt(path, corpus | {"splits": corpus["splits"] | {"train": train_ids}})
    loaded = load_corpus("toy")  # loads: the values are not read yet
    with pytest.raises(LstmgenError, match=r"training window \d+ holds ids outside its vocabulary"):
        train(tiny_config(), loaded)
    assert not registry.entry_dir("model", "tiny").exists()  # failed before its first checkpoint
