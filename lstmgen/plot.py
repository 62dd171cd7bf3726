"""Loss curves for `lstmgen show`: as text lines for the terminal, or as an image file (matplotlib, an extra)."""

from __future__ import annotations

import contextlib
import io
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


def save_plot(history: list[dict], path: str, title: str) -> str:
    """Train and validation loss against step, written to exactly `path` (what `show --plot` was given), in the
    format its extension names (.png, .svg, .pdf, ...; PNG when it has none). Refuses, before touching any file,
    an empty path, a folder, a path inside the registry, and an extension matplotlib cannot write. The image is
    drawn in memory first: a failed write removes the file it had created. Returns `path`."""
    if not path:
        raise LstmgenError("--plot was given an empty path; name the image file, such as curves.png")
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise LstmgenError(
            f"{path} names a folder; --plot takes the image's file name, such as {os.path.join(path, 'curves.png')}"
        )
    from .registry import refuse_inside

    refuse_inside(path, "save the plot outside it")
    try:
        import matplotlib
    except ImportError:
        raise LstmgenError("--plot needs matplotlib: pip install 'lstmgen[plot]'") from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    try:
        # matplotlib would add ".png" to a name without an extension and write another file than the one named
        fmt = os.path.splitext(path)[1][1:].lower() or "png"
        known = fig.canvas.get_supported_filetypes()
        if fmt not in known:
            raise LstmgenError(
                f"{path}: matplotlib cannot write .{fmt} images; end the name in one of "
                f"{', '.join('.' + k for k in sorted(known))}"
            )
        for key, label, style in (("train_loss", "train", "-"), ("val_loss", "validation", "o-")):
            pts = [(h["step"], h[key]) for h in history if h.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=label, markersize=3)
        ax.set(xlabel="step", ylabel="loss (nats/token)", title=title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        image = io.BytesIO()
        try:
            fig.savefig(image, format=fmt)
        except (OSError, ValueError, RuntimeError) as e:  # a format whose backend is missing (.pgf needs LaTeX)
            raise LstmgenError(f"could not draw {path} as .{fmt} ({e}); name a .png or .svg file instead") from None
    finally:
        plt.close(fig)
    _write(path, image.getvalue())
    return path


def _write(path: str, data: bytes) -> None:
    existed = os.path.lexists(path)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:  # a missing folder, no permission, a full disk (/dev/full)
        if not existed:  # no half-written image left behind
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise LstmgenError(f"could not write {path} ({e.strerror or e}); choose another --plot path") from None
