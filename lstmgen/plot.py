"""Loss curves drawn with text characters, for `lstmgen show` in a terminal. Pure: returns lines, never prints."""

from __future__ import annotations

TRAIN, VAL = "·", "●"


def loss_chart(history: list[dict], width: int = 60, height: int = 10) -> list[str]:
    """Train (·) and validation (●) loss against step: `height` rows of `width` columns plus a y-axis
    labelled with the highest and lowest loss and an x-axis labelled with the first and last step.
    Fits 80 columns at the defaults. Empty when the history holds no losses."""
    series = {
        mark: [(h["step"], h[key]) for h in history if h.get(key) is not None]
        for mark, key in ((TRAIN, "train_loss"), (VAL, "val_loss"))
    }
    points = [p for pts in series.values() for p in pts]
    if not points:
        return []
    first, last = min(s for s, _ in points), max(s for s, _ in points)
    low, high = min(v for _, v in points), max(v for _, v in points)
    grid = [[" "] * width for _ in range(height)]
    for mark, pts in series.items():  # validation last: where both fall on one cell, it shows
        for step, value in pts:
            col = round((step - first) / (last - first) * (width - 1)) if last > first else 0
            row = round((high - value) / (high - low) * (height - 1)) if high > low else height // 2
            grid[row][col] = mark
    labels = {0: f"{high:.3f}", height - 1: f"{low:.3f}"}
    lines = [
        f"{labels.get(r, ''):>8} {'┤' if r in labels else '│'}{''.join(row)}".rstrip() for r, row in enumerate(grid)
    ]
    lines.append(" " * 9 + "└" + "─" * width)
    steps = f"step {first:,}"
    lines.append(" " * 10 + steps + f"{last:,}".rjust(width - len(steps)))
    return lines
