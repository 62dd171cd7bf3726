"""`lstmgen eval`: how well a model predicts held-out text."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .options import MAX_LINE_CHARS, Format, InferenceDevice, MaxLineChars, ModelName, Quiet, Records, Split
from .output import Meter, note, out, out_json, quiet


def eval_(
    model: ModelName = None,
    split: Annotated[
        Optional[Split], typer.Option(help="Held-out split of the model's corpus.  [default: test]")
    ] = None,
    file: Annotated[
        Optional[str], typer.Option(help="Evaluate on this .csv/.txt file (or -) instead of a split.")
    ] = None,
    column: Annotated[Optional[str], typer.Option(help="CSV column with the text (with --file).")] = None,
    records: Annotated[
        Records, typer.Option(help="Text file: one record per line, or one stream (with --file).")
    ] = Records.line,
    format: Annotated[Format, typer.Option(help="Input format of --file.")] = Format.auto,
    encoding: Annotated[str, typer.Option(help="Text encoding of --file.")] = "utf-8",
    max_line_chars: MaxLineChars = MAX_LINE_CHARS,
    skip_unknown: Annotated[
        bool, typer.Option("--skip-unknown", help="Char models: drop characters the vocab lacks.")
    ] = False,
    device: InferenceDevice = "cpu",
    per_record: Annotated[
        bool,
        typer.Option("--per-record", help="One line per record (bits/char, then the text; JSON with --json)."),
    ] = False,
    per_label: Annotated[
        bool,
        typer.Option("--per-label", help="Bits/char of the split's records per label (a model trained with labels)."),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object.")] = False,
    quiet_: Quiet = False,
):
    """Measure a model on held-out text: cross-entropy (nats/token), perplexity and bits per character.

    Bits per character divide the total by the text's characters, so char and word models compare.
    --per-record scores each record on its own, so texts can be ranked or filtered by the model.

    Examples:

      lstmgen eval

      lstmgen eval --model char --split val --json

      lstmgen eval --model char --file more_jokes.csv

      lstmgen eval --file texts.txt --per-record --json | jq -s 'sort_by(.bits_per_char)[0].text'

      lstmgen eval --model reviews-char --per-label
    """
    quiet(quiet_)
    from .. import registry
    from ..corpora import TextInput
    from ..evaluate import evaluate_model

    if file is None:  # these describe --file: without it they would be dropped in silence
        file_options = {"--column": column is not None, "--records": records != Records.line,
                        "--format": format != Format.auto, "--encoding": encoding != "utf-8",
                        "--max-line-chars": max_line_chars != MAX_LINE_CHARS}  # fmt: skip
        given = [flag for flag, on in file_options.items() if on]
        if given:
            verb = "describes" if len(given) == 1 else "describe"
            raise UsageError(f"{', '.join(given)} {verb} --file, and no --file was given; add --file or drop them")
    name = registry.resolve_model(model)
    text = None if file is None else TextInput(file, format.value, encoding, column, records.value, max_line_chars)
    with Meter(f"scoring {name}") as meter:  # a long text shows its progress on a terminal
        result = evaluate_model(name, split and split.value, text, skip_unknown=skip_unknown, device=device,
                                per_record=per_record, per_label=per_label, on_note=note,
                                on_progress=meter)  # fmt: skip
    if per_label:
        for r in result:
            out_json(r) if json_out else out(
                f"{r['bits_per_char']:.4f} bits/char  {r['records']:>6,} records  {r['label']}"
            )
    elif per_record:
        for r in result:
            out_json(r) if json_out else out(f"{r['bits_per_char']:.4f}\t{r['text']}")
    elif json_out:
        out_json(result)
    else:
        m = result
        out(
            f"{name} on {m['on']}: loss {m['loss']:.4f} nats/token, perplexity {m['perplexity']:.2f}, "
            f"{m['bits_per_char']:.4f} bits/char ({m['tokens']:,} tokens, {m['chars']:,} chars"
            + (f", {m['unk_rate']:.1%} <unk>)" if "unk_rate" in m else ")")
        )
