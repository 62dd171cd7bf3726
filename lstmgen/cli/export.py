"""`lstmgen export`: a model as a folder that runs on onnxruntime and numpy alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from .options import MODEL_NAMES, JsonOut, Quiet
from .output import err, out_json, quiet


def export(
    model: Annotated[str, typer.Argument(help="Model name.", autocompletion=MODEL_NAMES)],
    out: Annotated[Optional[Path], typer.Option(help="The folder to write [default: ./MODEL-onnx].")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier export at --out.")] = False,
    quiet_: Quiet = False,
    json_out: JsonOut = False,
):
    """Export a model: its ONNX decoder graph, tokenizer, metadata and a README with a ~25-line Python example
    that samples with onnxruntime and numpy alone (no torch, no lstmgen).

    Examples:

      lstmgen export char

      lstmgen export char --out /srv/models/jokes --force
    """
    quiet(quiet_)
    from ..export import export_model

    path = export_model(model, out if out is not None else Path(f"{model}-onnx"), force=force)
    if json_out:
        out_json({"model": model, "path": str(path), "files": sorted(p.name for p in path.iterdir())})
    err.print(f"exported model {escape(model)} to {escape(str(path))}; see its README.md")
