"""Loss curves for `lstmgen show`: as text lines for the terminal, or as a PNG (matplotlib, an optional extra)."""

from __future__ import annotations

import os

from .errors import LstmgenError

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


def save_png(history: list[dict], path: str, title: str) -> str:
    """Train and validation loss against step, written to `path` (the format follows its extension; none:
    PNG, and ".png" is added, as matplotlib does). Returns the path written."""
    try:
        import matplotlib
    except ImportError:
        raise LstmgenError("--plot needs matplotlib: pip install 'lstmgen[plot]'") from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for key, label, style in (("train_loss", "train", "-"), ("val_loss", "validation", "o-")):
        pts = [(h["step"], h[key]) for h in history if h.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=label, markersize=3)
    ax.set(xlabel="step", ylabel="loss (nats/token)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = path if os.path.splitext(path)[1] else f"{path}.png"  # say the name matplotlib would write
    try:
        fig.savefig(path)
    except (OSError, ValueError) as e:  # a missing folder, an unknown extension
        raise LstmgenError(f"could not write {path}: {e}") from None
    finally:
        plt.close(fig)
    return path
