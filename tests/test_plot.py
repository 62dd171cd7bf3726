import pytest

from lstmgen import registry
from lstmgen.errors import LstmgenError
from lstmgen.plot import TRAIN, VAL, loss_chart, save_plot


def history(vals, trains=None):
    trains = trains or [None] * len(vals)
    pairs = enumerate(zip(vals, trains, strict=True))
    return [{"step": 100 * (i + 1), "val_loss": v, "train_loss": t} for i, (v, t) in pairs]


def test_a_falling_validation_loss_runs_from_top_left_to_bottom_right():
    lines = loss_chart(history([3.0, 2.5, 2.0, 1.5]), width=40, height=8)
    rows = lines[:8]
    assert rows[0].startswith("   3.000 ┤" + VAL) and rows[-1].startswith("   1.500 ┤") and rows[-1].endswith(VAL)
    assert lines[-1].split() == ["step", "100", "400"] and all(len(line) <= 80 for line in loss_chart(history([1, 2])))


def test_train_and_validation_marks_and_degenerate_histories():
    lines = loss_chart(history([2.0, 1.0], trains=[2.2, 1.1]))
    assert any(TRAIN in line for line in lines) and any(VAL in line for line in lines)
    assert loss_chart([]) == [] and loss_chart(history([None, None])) == []
    flat = loss_chart(history([1.0]))  # one point, no range: drawn mid-height, not a division by zero
    assert sum(VAL in line for line in flat) == 1


def test_save_plot_writes_the_file_named_in_the_format_its_extension_names(tmp_path):
    pytest.importorskip("matplotlib")
    png = b"\x89PNG"
    for name, magic in (("curves", png), ("curves.PNG", png), ("curves.svg", b"<?xml"), ("c.pdf", b"%PDF")):
        assert save_plot(history([2.0, 1.0], trains=[2.2, 1.1]), str(tmp_path / name), "t") == str(tmp_path / name)
        assert (tmp_path / name).read_bytes().startswith(magic), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pdf", "curves", "curves.PNG", "curves.svg"]


def test_save_plot_refuses_in_one_line_and_writes_nothing(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    entry = registry.home() / "models" / "m"
    entry.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for path, says in (("", "empty path"), (".", "names a folder"), (str(tmp_path), "names a folder"),
                       ("later/", "names a folder"), (str(entry / "p.png"), "is inside the registry"),
                       ("c.txt", "cannot write .txt images"), ("no/c.png", "could not write no/c.png")):  # fmt: skip
        with pytest.raises(LstmgenError, match=says) as e:
            save_plot(history([1.0]), path, "t")
        assert "\n" not in str(e.value)
    assert [p.name for p in tmp_path.iterdir()] == ["home"] and list(entry.iterdir()) == []
