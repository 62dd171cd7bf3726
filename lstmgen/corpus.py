"""Read records (CSV via pandas, or text) and turn them into a corpus: token-id tensors per split + vocab."""

from __future__ import annotations

import hashlib
import io
import random
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import LstmgenError
from .tokenize import Vocab, build_vocab

CORPUS_FORMAT = 1
TEXT_COLUMNS = ("joke", "text")  # auto-detected CSV columns, case-insensitive
SPLITS = ("train", "val", "test")


@dataclass
class Source:
    """Raw input: its decoded text, a display name and the hash of its bytes."""

    text: str
    name: str  # file path or "<stdin>"
    sha256: str
    is_csv: bool


def read_source(path: str, fmt: str = "auto", encoding: str = "utf-8") -> Source:
    """Read a file (or "-" for stdin) as text, with clear errors for binary or mis-encoded input."""
    if path == "-":
        data, name = sys.stdin.buffer.read(), "<stdin>"
    else:
        p = Path(path)
        if not p.exists():
            raise LstmgenError(f"input file {path} does not exist")
        if p.is_dir():
            raise LstmgenError(f"input {path} is a directory; give a .csv or .txt file")
        data, name = p.read_bytes(), str(p)
    if not data.strip():
        raise LstmgenError(f"{name} is empty; give a file with at least a few records")
    if b"\x00" in data[:65536]:
        raise LstmgenError(f"{name} looks like a binary file (it contains NUL bytes); give a .csv or .txt text file")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LstmgenError(
            f"{name} is not valid {encoding}: byte {data[e.start]:#04x} at line {line} (offset {e.start}); "
            "pass --encoding (for example --encoding latin-1)"
        ) from None
    except LookupError:
        raise LstmgenError(f"unknown --encoding {encoding!r}; try utf-8 or latin-1") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    is_csv = fmt == "csv" or (fmt == "auto" and name.lower().endswith(".csv"))
    return Source(text, name, hashlib.sha256(data).hexdigest(), is_csv)


def read_records(source: Source, column: str | None = None, records: str = "line") -> tuple[list[str], str | None]:
    """Records of a source, and the CSV column they came from (None for text).

    CSV: the `column` given, else a column named Joke/text, else the only text column.
    Text: one record per non-empty line (`records="line"`), or the whole text as one stream ("file").
    """
    if source.is_csv:
        return _read_csv(source, column)
    if column is not None:
        raise LstmgenError(f"--column only applies to CSV input; {source.name} is read as text (pass --format csv)")
    if records == "file":
        return [source.text.strip("\n")], None
    return [line.strip() for line in source.text.split("\n") if line.strip()], None


def _read_csv(source: Source, column: str | None) -> tuple[list[str], str]:
    import pandas as pd  # deferred: keeps `lstmgen --help` fast

    try:
        with warnings.catch_warnings():
            # index_col=False: a row with more fields than the header is an error, not a silent index shift
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                io.StringIO(source.text), keep_default_na=False, index_col=False, dtype_backend="numpy_nullable"
            )
    except pd.errors.ParserWarning:
        _check_delimiter(source, source.text.split("\n", 1)[0])
        raise LstmgenError(
            f"{source.name}: some rows have more fields than the header; quote text that contains commas "
            '(for example 1,"Hi, there")'
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        _check_delimiter(source, source.text.split("\n", 1)[0])
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LstmgenError(f"{source.name} is not a readable CSV: {first}") from None
    if len(df.columns) == 1:
        _check_delimiter(source, str(df.columns[0]))
    text_columns = [c for c in df.columns if pd.api.types.is_string_dtype(df[c]) or df[c].dtype == object]
    if column is not None:
        if column not in df.columns:
            raise LstmgenError(
                f"{source.name} has no column {column!r}; its columns are: {', '.join(map(_shown, df.columns))}"
            )
    else:
        named = [c for c in df.columns if str(c).strip().lower() in TEXT_COLUMNS]
        if named:
            column = named[0]
        elif len(text_columns) == 1:
            column = text_columns[0]
        else:
            cols = ", ".join(map(_shown, df.columns))
            if len(df.columns) == 1:
                hint = " (is the delimiter a comma?)"
            elif text_columns:
                hint = ""
            else:
                hint = " (none holds text)"
            raise LstmgenError(
                f"{source.name}: cannot tell which column holds the text{hint}; columns: {cols}; pass --column NAME"
            )
    records = [str(v).strip() for v in df[column].tolist() if v is not None and str(v).strip()]
    if not records:
        raise LstmgenError(f"{source.name}: column {column!r} has no text")
    return records, str(column)


def _check_delimiter(source: Source, header: str) -> None:
    """A header without commas but with ';', tabs or '|' means another delimiter: say so, not pandas' error."""
    for sep in (";", "\t", "|"):
        if sep in header and "," not in header:
            raise LstmgenError(
                f"{source.name} looks delimited by {sep!r}, not commas (header {header!r}); "
                "save it as a comma-separated CSV, or as .txt with one record per line"
            )


def _shown(column) -> str:
    """A column name for an error line: a quoted header field can hold a line break, which printed raw split
    the one-line error in two (found by tests/test_properties.py), so such names are shown as repr."""
    name = str(column)
    return name if name.isprintable() else repr(name)


def split_records(n: int, val_frac: float, test_frac: float, seed: int) -> dict[str, list[int]]:
    """Record indices per split, chosen by a seeded shuffle; each split keeps the file's order."""
    for name, frac in (("--val-frac", val_frac), ("--test-frac", test_frac)):
        if not 0 <= frac < 1:
            raise LstmgenError(f"{name} must be in [0, 1), got {frac}")
    if val_frac + test_frac >= 1:
        raise LstmgenError(f"--val-frac + --test-frac must leave records to train on, got {val_frac + test_frac}")
    n_val = max(1, round(n * val_frac)) if val_frac > 0 else 0
    n_test = max(1, round(n * test_frac)) if test_frac > 0 else 0
    if n - n_val - n_test < 1:
        raise LstmgenError(
            f"only {n} record(s): too few to split into train/val/test; add records, lower --val-frac/--test-frac, "
            "or read the text as one stream with --records file"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return {
        "val": sorted(order[:n_val]),
        "test": sorted(order[n_val : n_val + n_test]),
        "train": sorted(order[n_val + n_test :]),
    }


def split_stream(text: str, val_frac: float, test_frac: float) -> dict[str, list[str]]:
    """One long stream (a whole file): contiguous train/val/test pieces, cut at line ends (nanoGPT style)."""
    split_records(3, val_frac, test_frac, 0)  # the same checks on the fractions

    def cut(frac: float) -> int:
        at = int(len(text) * frac)
        for sep in ("\n", " "):  # a line end close by, else a word break: a text may be one long line
            end = text.find(sep, at, at + 10_000)
            if end >= 0:
                return end + 1
        return at

    a, b = cut(1 - val_frac - test_frac), cut(1 - test_frac)
    pieces = {"train": text[:a], "val": text[a:b], "test": text[b:]}
    return {k: [v.strip("\n")] if v.strip() else [] for k, v in pieces.items()}


def ids_dtype(vocab_size: int):
    """The smallest integer dtype for the ids: corpora stay compact on disk."""
    import torch

    return torch.uint8 if vocab_size <= 256 else torch.int16 if vocab_size <= 32767 else torch.int32


def encode_records(vocab: Vocab, records: list[str], skip_unknown: bool = False, where: str = "text"):
    """One token stream: each record's ids followed by <eor>. Returns a (N,) compact integer tensor."""
    import torch

    ids: list[int] = []
    for record_ids in vocab.encode_many(records, skip_unknown=skip_unknown, where=where):
        ids.extend(record_ids)
        ids.append(vocab.eor_id)
    return torch.tensor(ids, dtype=ids_dtype(len(vocab)))


def unk_rate(ids, vocab: Vocab) -> float:
    """Share of `ids` that are <unk> (0 for an empty tensor or a vocab without <unk>)."""
    if vocab.unk_id is None or ids.numel() == 0:
        return 0.0
    return round(float((ids == vocab.unk_id).float().mean()), 4)


def n_chars(records: list[str]) -> int:
    """Characters the records stand for, counting each end-of-record as one (a newline): bits/char divide by it."""
    return sum(len(r) + 1 for r in records)


def build_corpus(
    source: Source,
    records: list[str],
    *,
    tokenizer: str = "char",
    stream: bool = False,
    val_frac: float = 0.05,
    test_frac: float = 0.05,
    seed: int = 0,
    min_freq: int = 1,
    max_vocab: int | None = None,
    vocab_size: int | None = None,
    column: str | None = None,
) -> dict:
    """The corpus payload saved in the registry: vocab, one id tensor per split, and metadata."""
    if stream:
        parts = split_stream(records[0], val_frac, test_frac)
    else:
        index = split_records(len(records), val_frac, test_frac, seed)
        parts = {k: [records[i] for i in idx] for k, idx in index.items()}
    for split, frac in (("val", val_frac), ("test", test_frac)):
        if frac > 0 and not parts[split]:
            raise LstmgenError(
                f"the {split} split came out empty: {source.name} is too short for "
                f"--{split}-frac {frac}; give more text or a larger fraction"
            )
    vocab = build_vocab(
        tokenizer, parts["train"], parts["val"] + parts["test"], min_freq=min_freq, max_vocab=max_vocab,
        vocab_size=vocab_size,
    )  # fmt: skip
    splits = {k: encode_records(vocab, parts[k]) for k in SPLITS}
    meta = {
        "source": source.name if source.name == "<stdin>" else str(Path(source.name).resolve()),
        "sha256": source.sha256,
        "column": column,
        "tokenizer": tokenizer,
        "stream": stream,
        "seed": seed,
        "val_frac": val_frac,
        "test_frac": test_frac,
        "min_freq": min_freq,
        "vocab_size": len(vocab),
        "records": {k: len(parts[k]) for k in SPLITS},
        "tokens": {k: int(splits[k].numel()) for k in SPLITS},
        "chars": {k: n_chars(parts[k]) for k in SPLITS},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if vocab.unk_id is not None:
        meta["unk_rate"] = {k: unk_rate(splits[k], vocab) for k in SPLITS}
    return {"format_version": CORPUS_FORMAT, "vocab": vocab.to_dict(), "splits": splits, "meta": meta}
