"""`lstmgen prepare`: a CSV or text file -> a corpus in the registry."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape

from .options import MAX_LINE_CHARS, MODEL_NAMES, Format, JsonOut, MaxLineChars, Quiet, Records, Tokenizer
from .output import err, labels_line, out_json, quiet


# Long only in its options and help text: the body parses, makes one library call and renders.
def prepare(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="A .csv or .txt file, or - for stdin; several files of one format make one corpus.",
            metavar="INPUT...",
            show_default=False,
        ),
    ],
    name: Annotated[
        Optional[str], typer.Option(help="Corpus name in the registry [default: the first file's stem].")
    ] = None,
    tokenizer: Annotated[
        Optional[Tokenizer],
        typer.Option(help="Split text into characters, words, or byte-level BPE subwords [default: char].",
                     show_default=False),
    ] = None,
    column: Annotated[
        Optional[str], typer.Option(help="CSV column with the text [default: Joke/text, or the only text column].")
    ] = None,
    label_column: Annotated[
        Optional[str],
        typer.Option(help="CSV column whose value labels each record: `sample --label` then picks one."),
    ] = None,
    max_labels: Annotated[
        int, typer.Option(help="Refuse a --label-column with more distinct values (each is a token; at most 512).")
    ] = 256,
    records: Annotated[
        Records, typer.Option(help="Text input: one record per line, or the whole file as one stream.")
    ] = Records.line,
    format: Annotated[
        Format, typer.Option(help="Input format: auto goes by file extension; stdin is txt.")
    ] = Format.auto,
    encoding: Annotated[str, typer.Option(help="Text encoding of the input.")] = "utf-8",
    max_line_chars: MaxLineChars = MAX_LINE_CHARS,
    val_frac: Annotated[float, typer.Option(help="Fraction of records held out for validation.")] = 0.05,
    test_frac: Annotated[float, typer.Option(help="Fraction of records held out for testing.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the record split.")] = 0,
    min_freq: Annotated[int, typer.Option(help="Word tokenizer: words seen fewer times become <unk>.")] = 2,
    max_vocab: Annotated[
        Optional[int],
        typer.Option(help="Word tokenizer: keep at most this many tokens [default: all, refused above 100,000]."),
    ] = None,
    vocab_size: Annotated[
        Optional[int], typer.Option(help="BPE tokenizer: tokens to learn, <eor> included [default: 1024].")
    ] = None,
    vocab_from: Annotated[
        Optional[str],
        typer.Option(help="Encode with this model's vocabulary and tokenizer, to continue it: train --from MODEL.",
                     autocompletion=MODEL_NAMES),
    ] = None,
    extend_vocab: Annotated[
        bool, typer.Option("--extend-vocab", help="With --vocab-from, a char model: add the text's new characters.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing corpus of the same name.")
    ] = False,
    quiet_: Quiet = False,
    json_out: JsonOut = False,
):
    """Tokenize a CSV or text file into a corpus: token ids per split (train/val/test, by record) + vocab.

    Every record ends with an end-of-record token, so a model learns where a text ends. --tokenizer bpe
    learns byte-level BPE subwords (HuggingFace tokenizers) from the training split; the tokenizer is saved
    with the corpus and every model, and encodes any text: no <unk>. `jokes` names the bundled example data,
    found from any directory.

    Examples:

      lstmgen prepare jokes

      lstmgen prepare jokes --tokenizer word --name jokes-word

      lstmgen prepare jokes --tokenizer bpe --vocab-size 1024 --name jokes-bpe

      lstmgen prepare my-posts.csv --column body

      lstmgen prepare reviews.csv --column text --label-column rating

      lstmgen prepare shakespeare.txt --records file

      lstmgen prepare jokes.csv more-jokes.csv --name all-jokes

      cat lines.txt | lstmgen prepare - --name mylines --overwrite

      lstmgen prepare more-jokes.csv --vocab-from char --extend-vocab
    """
    quiet(quiet_)
    from ..corpora import TextInput, model_name_for
    from ..corpora import prepare as prepare_corpus
    from ..corpus import PrepareOptions

    kind = tokenizer.value if tokenizer else None  # none: char, or with --vocab-from the model's own
    options = PrepareOptions(kind, val_frac, test_frac, seed, min_freq, max_vocab, vocab_size, max_labels)
    texts = [TextInput(path, format.value, encoding, column, records.value, max_line_chars, label_column)
             for path in inputs]  # fmt: skip
    done = prepare_corpus(name, texts, options, overwrite, vocab_from, extend_vocab)
    meta = done.meta
    if json_out:
        out_json({"name": done.name, "path": str(done.path), **meta})
    rec, tok = meta["records"], meta["tokens"]
    err.print(
        f"prepared corpus [bold]{done.name}[/] from {escape(done.source)}"
        + (f" (column {escape(done.column)})" if done.column else "")
        + ": "
        f"{meta['tokenizer']} vocab {meta['vocab_size']:,}; records train/val/test "
        f"{rec['train']:,}/{rec['val']:,}/{rec['test']:,}; tokens {tok['train']:,}/{tok['val']:,}/{tok['test']:,}"
        + (f"; <unk> in val {meta['unk_rate']['val']:.1%}" if "unk_rate" in meta else "")
    )
    if meta.get("labels"):
        err.print(f"  labels (column {escape(meta['label_column'])}): {escape(labels_line(meta['labels']))}")
    start = f"--config {meta['tokenizer']}"
    if "vocab_from" in meta:
        vf = meta["vocab_from"]
        added = f"; added {vf['new_symbols']:,} character(s): {escape(' '.join(map(repr, vf['added'])))}" + (
            " ..." if vf["new_symbols"] > len(vf["added"]) else "") if vf["new_symbols"] else ""  # fmt: skip
        unk = meta.get("unk_rate")
        unk = f"; new words become <unk>: {unk['train']:.1%} of train tokens, {unk['val']:.1%} of val" if unk else ""
        err.print(f"  vocabulary of model {escape(vf['model'])} (step {vf['step']:,}){added}{unk}")
        start = f"--from {vf['model']}"
    err.print(
        f"  saved to {escape(str(done.path))}; next: lstmgen train {start} "
        f"--corpus {done.name} --name {model_name_for(done.name, meta['tokenizer'])}"
    )
    for line in done.notes:
        err.print(f"  note: {escape(line)}")
