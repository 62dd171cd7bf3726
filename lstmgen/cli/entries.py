"""The registry's entries: `lstmgen list`, `show`, `rm` and `default`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape

from .. import registry
from ..errors import LstmgenError, UsageError
from .options import ALL_NAMES, MODEL_NAMES, Kind, Quiet
from .output import err, labels_line, note, out, out_json, printable, quiet

LISTED_LABELS, SHOWN_LABELS = 3, 64  # labels named in a row of `list`, and in `show` (then how many more)


def _fmt(v, spec: str = "") -> str:
    """A field for a table: "-" when missing, control characters made visible. Every field formatted here is
    typed by registry.info, which drops a damaged one, so `spec` always fits."""
    return "-" if v is None else printable(format(v, spec))


def _when(iso: str | None) -> str:
    return iso[:16].replace("T", " ") if iso else "-"  # minutes are enough in a table


def _source(meta: dict) -> str:
    """The corpus's input files by name: jokes.csv, or more.csv, jokes.csv for one prepared from several."""
    sources = meta.get("sources") if isinstance(meta.get("sources"), list) else [meta.get("source")]
    return printable(", ".join(Path(str(s)).name for s in sources if s) or "-")


def list_(json_out: Annotated[bool, typer.Option("--json", help="Print the listing as JSON.")] = False):
    """List corpora and models in the registry.

    Examples:

      lstmgen list

      lstmgen list --json | jq '.models[].name'
    """
    entries = registry.list_entries()
    if json_out:
        out_json(entries)
        return
    from rich.table import Table

    # Off a terminal there is no width to fit: keep each row on one line rather than wrap at 80 columns.
    # Every string shown comes from the registry or its inputs (a source named "[x].txt" or ":cat:.txt"): no
    # markup and no emoji codes, so each shows as it is, and printable() makes its control characters visible.
    console = Console(highlight=False, markup=False, emoji=False, width=None if sys.stdout.isatty() else 200)
    corpora = Table(title=f"corpora in {printable(entries['home'])}", title_justify="left")
    for col in ("name", "tokenizer", "vocab", "records", "train tokens", "labels", "source", "created"):
        corpora.add_column(col)
    for c in entries["corpora"]:
        corpora.add_row(
            printable(c["name"]) + (" !" if c.get("damaged") else ""),
            _fmt(c.get("tokenizer")),
            _fmt(c.get("vocab_size"), ","),
            _fmt(sum((c.get("records") or {}).values()) or None, ","),
            _fmt((c.get("tokens") or {}).get("train"), ","),
            printable(labels_line(c["labels"], LISTED_LABELS)) if c.get("labels") else "-",
            _source(c),
            _when(c.get("created")),
        )
    models = Table(title="models", title_justify="left")
    # val bits/char: the best validation loss per character, comparable across char, word and BPE models
    # (nats per token are not); "-" for models trained before it was recorded.
    for col in ("name", "tokenizer", "parameters", "steps", "epochs", "val loss", "bits/char", "status", "corpus",
                "updated"):  # fmt: skip
        models.add_column(col, justify="right" if col in ("parameters", "steps", "epochs", "val loss", "bits/char")
                          else "left")  # fmt: skip
    for m in entries["models"]:
        mark = (" *" if m["name"] == entries["default_model"] else "") + (" !" if m.get("damaged") else "")
        models.add_row(
            printable(m["name"]) + mark,
            _fmt(m.get("tokenizer")),
            _fmt(m.get("parameters"), ","),
            _fmt(m.get("steps"), ","),
            _fmt(m.get("epochs"), ".1f"),
            _fmt(m.get("best_val_loss"), ".4f"),
            _fmt(m.get("best_val_bits_per_char"), ".3f"),
            _fmt(m.get("status")),
            _fmt(m.get("corpus")),
            _when(m.get("updated")),
        )
    with console.capture() as captured:  # rendered first, then written by out(): `| head` ends quietly
        console.print(corpora)
        console.print(models)
        if entries["default_model"]:
            console.print(f"* default model: {printable(entries['default_model'])}")
        for e in entries["corpora"] + entries["models"]:  # one damaged entry spoils only its own row
            if e.get("damaged"):
                console.print(printable(f"! {e['kind']} {e['name']}: {e['damaged']}"))
    out("\n".join(line.rstrip() for line in captured.get().rstrip("\n").split("\n")))  # no padding at line ends


def show(
    name: Annotated[str, typer.Argument(help="Corpus or model name.", autocompletion=ALL_NAMES)],
    kind: Annotated[Optional[Kind], typer.Option(help="When a corpus and a model share the name.")] = None,
    plot: Annotated[
        Optional[str],
        typer.Option(
            # click.Path(): file-name completion, and the text exactly as typed ("" stays "", not Path("") == ".")
            click_type=click.Path(),
            metavar="PATH",
            help="Also save the loss curves to this file, in the format its extension names (.png, .svg, .pdf, "
            "...; PNG without one). Needs lstmgen[plot].",
        ),
    ] = None,
    quiet_: Quiet = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
):
    """Show one corpus or model: its metadata, config, metrics history and loss curves.

    Examples:

      lstmgen show char

      lstmgen show char --plot curves.png

      lstmgen show jokes --kind corpus --json
    """
    quiet(quiet_)
    k = registry.find_kind(name, kind.value if kind else None)
    data = registry.info(k, name)
    if k == "model":
        from ..checkpoint import latest

        ckpt = latest(name)
        data |= {"config": ckpt.config, "history": ckpt.history, "trained_on": ckpt.corpus}
        if plot is not None:
            from ..plot import save_plot

            written = save_plot(ckpt.history, plot, f"lstmgen model {name}")
            err.out(f"saved the loss curves to {printable(written)}")  # out(): no markup, no emoji codes
    elif plot is not None:
        raise UsageError(f"--plot draws a model's loss curves; {name!r} is a corpus")
    if json_out:
        out_json(data)
        return
    for line in _page(k, name, data):
        out(printable(line))  # sources, labels, config values come from the inputs: show their control characters


def _page(k: str, name: str, data: dict) -> list[str]:
    """The lines of `show` for a person, as they are (printable() is applied when they are written)."""
    lines = [f"{k} {name}  ({data['path']})"]
    for key, value in data.items():
        if key in ("name", "kind", "path", "history", "config"):
            continue
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        if key == "labels" and isinstance(value, dict):
            shown = labels_line(value, SHOWN_LABELS)
        if key == "epochs" and isinstance(shown, (int, float)):
            shown = f"{shown:.1f}"
        if key == "lineage":
            shown = _lineage(value)
        lines.append(f"  {key}: {round(shown, 4) if isinstance(shown, float) else shown}")
    if k == "model":
        lines.append("  config:")
        lines += [f"    {line}" for line in _flatten(data["config"])]
        hist = data["history"]
        if hist:
            lines.append("  history (step, mean train loss since the last validation, val loss):")
            for h in hist[-10:]:
                lines.append(f"    {h['step']:>7}  {_fmt(h['train_loss'], '.4f')}  {_fmt(h['val_loss'], '.4f')}")
            from ..plot import TRAIN, VAL, loss_chart

            chart = loss_chart(hist)
            if chart:
                lines.append(f"  loss ({TRAIN} mean train, {VAL} validation):")
                lines += chart
    return lines


def rm(
    name: Annotated[str, typer.Argument(help="Corpus or model name.", autocompletion=ALL_NAMES)],
    kind: Annotated[Optional[Kind], typer.Option(help="When a corpus and a model share the name.")] = None,
    quiet_: Quiet = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print what was removed as JSON.")] = False,
):
    """Delete a corpus or model from the registry. Models keep working after their corpus is deleted.

    Examples:

      lstmgen rm old-model

      lstmgen rm jokes --kind corpus
    """
    quiet(quiet_)
    k = registry.find_kind(name, kind.value if kind else None)
    was_default = k == "model" and registry.default_model() == name
    try:
        path = registry.remove(k, name)
    except registry.PartlyRemoved as e:  # removed; only some files wait to be cleared
        path = e.path
        note(str(e), always=True)
    now = registry.default_model()
    if json_out:
        out_json({"removed": name, "kind": k, "path": str(path), "default_model": now})
    moved = ""
    if was_default:  # sample and eval without --model now take another model, or none: say which
        moved = f"; the default model is now {now!r}" if now else "; there is no default model now"
    err.print(f"removed {k} {name} ({escape(str(path))}){moved}")


def default(
    name: Annotated[
        Optional[str], typer.Argument(help="Model to make the default.", autocompletion=MODEL_NAMES)
    ] = None,
    quiet_: Quiet = False,
):
    """Show or set the model `sample` and `eval` use when --model is not given.

    Examples:

      lstmgen default char
    """
    quiet(quiet_)
    if name is not None:
        registry.set_default_model(name)
        err.print(f"default model: {name}")
    else:
        chosen = registry.default_model()
        if chosen is None:
            raise LstmgenError("no models yet: train one with `lstmgen prepare jokes && lstmgen train --config char`")
        out(chosen)


def _lineage(lineage: dict) -> str:
    """A --from model's origin: from char at step 1,200; corpora jokes -> more-jokes (3 new symbols)."""
    new = lineage.get("new_symbols")
    corpora = " -> ".join(map(str, lineage.get("corpora") or []))
    added = f" ({new:,} new symbols)" if isinstance(new, int) and new else ""
    return f"from {lineage.get('parent')} at step {_fmt(lineage.get('parent_step'), ',')}; corpora {corpora}{added}"


def _flatten(d: dict, prefix: str = "") -> list[str]:
    """{"train": {"lr": 0.1}} -> ["train.lr=0.1"] (values as YAML scalars)."""
    items = []
    for k, v in d.items():
        if isinstance(v, dict):
            items += _flatten(v, f"{prefix}{k}.")
        else:
            items.append(f"{prefix}{k}={json.dumps(v)}")
    return items
