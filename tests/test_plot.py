from lstmgen.plot import TRAIN, VAL, loss_chart


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
