"""Read records (CSV via pandas, or text) and turn them into a corpus: token-id tensors per split + vocab."""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import re
import sys
import tempfile
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path

from .errors import LstmgenError, UsageError
from .tokenize import KINDS, Vocab, build_vocab, check_bpe_vocab_size, code_points

CORPUS_FORMAT = 1
TEXT_COLUMNS = ("joke", "text")  # auto-detected CSV columns, case-insensitive
SPLITS = ("train", "val", "test")
CHUNK_BYTES = 4 << 20  # streaming reads: large enough to amortise Python, small enough to bound memory
# A line read as one record (--records line) may be at most this many characters: a longer one is refused,
# not cut into several records (a text that long is one stream: --records file). Memory holds one such line
# at a time, at up to 4 bytes a character: 64 MB at the default; read_source(max_line_chars=) raises it.
MAX_LINE_CHARS = 16 << 20
# The tokenizers (BPE's trainer and encoder, the word regex) take text in pieces of at most this many
# characters, cut where a run of whitespace starts: no token spans such a cut, so the ids are those of the
# whole text, and memory no longer grows with the longest line (a 20 MB line peaked at 3.3 GB in BPE).
TOKENIZE_CHARS = 1 << 16
ENCODE_BATCH_CHARS = 1 << 20  # characters encoded per tokenizer call (its per-token objects: ~100 B each)
# The BPE trainer learns from the first this many characters of the training split. Its memory grows with the
# distinct pre-tokens it has seen (words, or whole runs of letters in text without spaces): 20 MB of text
# without spaces peaked at 1.2 GB. 16 Mi characters learn a vocabulary of up to 100,000 tokens well; raise it
# here (or through the CLI's option) to learn from more.
BPE_TRAIN_CHARS = 16 << 20


@dataclass
class Source:
    """Raw input, checked (not binary, decodable) and hashed in one streaming pass; its text is read again,
    chunk by chunk, by whoever needs it (`chunks`), so a file larger than memory can be prepared."""

    path: Path  # the file; stdin is spooled to a temporary file first, as it cannot be read twice
    name: str  # file path or "<stdin>"
    sha256: str
    is_csv: bool
    encoding: str = "utf-8"
    max_line_chars: int = MAX_LINE_CHARS  # the longest line a record may be (--records line)

    @property
    def text(self) -> str:
        """The whole text (CSV and small inputs): BOM dropped, line ends normalised to \n."""
        return "".join(self.chunks())

    def chunks(self, on_read: Callable[[bytes], None] | None = None, lines: bool = False) -> Iterator[str]:
        """The text in pieces of about CHUNK_BYTES, each ending at a line end where the text has one: BOM
        dropped, CRLF and CR normalised to a newline. Decoding errors name the line and byte offset.
        `on_read(data)` sees the raw bytes of each read (read_source hashes them in the same pass).
        `lines`: the text is read line by line, so a line is never cut: one longer than max_line_chars is
        refused. Otherwise a line of over 4 chunks is cut at a space (a stream does not mind)."""
        size = CHUNK_BYTES
        decoder = codecs.getincrementaldecoder(self.encoding)()
        carry, offset, first, line_no = "", 0, True, 1  # line_no: of the first line not yet yielded
        with self.path.open("rb") as f:
            while True:
                data = f.read(size)
                if on_read is not None:
                    on_read(data)
                try:
                    text = decoder.decode(data, final=not data)
                except UnicodeDecodeError as e:
                    at = offset - (len(e.object) - len(data)) + e.start  # e.object starts with held bytes
                    f.seek(0)
                    line = 1 + f.read(at).count(b"\n")  # counted only now: a clean file never pays for it
                    raise LstmgenError(
                        f"{self.name} is not valid {self.encoding}: byte {e.object[e.start]:#04x} at line "
                        f"{line} (offset {at}); pass --encoding (for example --encoding latin-1)"
                    ) from None
                except UnicodeError as e:  # codecs such as punycode raise the plain kind, without a position
                    raise LstmgenError(
                        f"{self.name} cannot be read as {self.encoding} ({str(e)[:100]}); pass --encoding (for "
                        "example --encoding utf-8)"
                    ) from None
                offset += len(data)
                if first:
                    text, first = text.removeprefix("\ufeff"), False
                text = carry + text
                if data and text.endswith("\r"):  # a CRLF may straddle two reads
                    text, carry = text[:-1], "\r"
                else:
                    carry = ""
                if "\r" in text:
                    text = text.replace("\r\n", "\n").replace("\r", "\n")
                if not data:
                    if text:
                        if lines:
                            self._check_lines(text, line_no)
                        yield text
                    return
                end = text.rfind("\n") + 1
                if end == 0 and (len(text) < 4 * size or lines):  # one long line so far: read on
                    if lines:
                        self._check_lines(text, line_no)
                    carry = text + carry
                    continue
                end = end or text.rfind(" ") + 1 or len(text)  # a line of over 4 chunks: cut at a space
                carry = text[end:] + carry
                if lines:
                    self._check_lines(text[:end], line_no)
                    line_no += text.count("\n", 0, end)
                yield text[:end]

    def _check_lines(self, text: str, line_no: int) -> None:
        """Refuse a line of `text` (whose first line is line `line_no`) longer than max_line_chars."""
        if len(text) <= self.max_line_chars:  # no line can be longer: the usual case costs nothing
            return
        for i, line in enumerate(text.split("\n")):
            if len(line) > self.max_line_chars:
                raise LstmgenError(
                    f"{self.name}: line {line_no + i:,} is longer than {self.max_line_chars:,} characters, too "
                    "long for one record; read the text as one stream with --records file, or raise the cap "
                    "with --max-line-chars"
                )

DATA_DIR = Path(__file__).parent / "data"  # the bundled example data: package data, so found from any directory


def find_input(path: str) -> Path:
    """The file an input argument names: an existing path wins; else bundled example data by name (`jokes` or
    `jokes.csv`), so that the quick start runs from any directory; else an LstmgenError naming the examples."""
    p = Path(path)
    if p.exists():
        return p
    bundled = {f.stem: f for f in sorted(DATA_DIR.glob("*.csv"))}
    name = path.removesuffix(".csv")
    if name in bundled:  # a dict lookup: a value such as ../x never reaches outside DATA_DIR
        return bundled[name]
    if p.stem in bundled:  # data/jokes.csv typed outside the repository
        raise LstmgenError(f"input file {path} does not exist; the bundled copy is read from anywhere as {p.stem}")
    raise LstmgenError(f"input file {path} does not exist (bundled example data, by name: {', '.join(bundled)})")


def read_source(
    path: str,
    fmt: str = "auto",
    encoding: str = "utf-8",
    spool_dir: Path | None = None,
    max_line_chars: int = MAX_LINE_CHARS,
) -> Source:
    """Check and hash a file (or "-" for stdin, copied to a file in `spool_dir`), streaming: clear errors for
    binary, empty or mis-encoded input, without holding it in memory. `max_line_chars`: the longest line a
    record read line by line may be."""
    if path == "-":
        p, name = _spool_stdin(spool_dir), "<stdin>"
    else:
        p = find_input(path)
        name = str(path) if p == Path(path) else str(p)  # bundled data goes by its full path
        if p.is_dir():
            raise LstmgenError(f"input {path} is a directory; give a .csv or .txt file")
    try:
        wide = b"\x00" in "a".encode(encoding)  # utf-16 and utf-32 write a NUL byte in every ASCII character
    except (LookupError, UnicodeError):  # unknown, a bytes-to-bytes codec (base64), or "undefined"
        raise LstmgenError(f"unknown --encoding {encoding[:40]!r}; try utf-8 or latin-1") from None
    binary = f"{name} looks like a binary file (it contains NUL bytes); give a .csv or .txt text file"
    if not wide:  # checked before decoding, so a binary file is named as one rather than as mis-encoded
        with p.open("rb") as f:
            if b"\x00" in f.read(65536):
                raise LstmgenError(binary)
    is_csv = fmt == "csv" or (fmt == "auto" and name.lower().endswith(".csv"))
    source = Source(p, name, "", is_csv, encoding, max_line_chars)
    digest, blank, scanned = hashlib.sha256(), True, 0
    for text in source.chunks(digest.update):  # one pass hashes and decodes it all: a bad byte fails first
        blank = blank and not text.strip()
        if scanned < 65536 and "\x00" in text[: 65536 - scanned]:  # a wide encoding's NULs, decoded
            raise LstmgenError(binary)
        scanned += len(text)
    if blank:
        raise LstmgenError(f"{name} is empty; give a file with at least a few records")
    source.sha256 = digest.hexdigest()
    return source


def _spool_stdin(spool_dir: Path | None) -> Path:
    """stdin copied to a temporary file (deleted at exit), in bounded memory."""
    import atexit

    try:
        fd, tmp = tempfile.mkstemp(prefix=".stdin.", suffix=".tmp", dir=spool_dir)
    except OSError as e:
        raise _write_failed(e, spool_dir) from None
    atexit.register(Path(tmp).unlink, missing_ok=True)
    with open(fd, "wb", buffering=0) as f:  # unbuffered: a full disk fails in write(), caught here
        while data := sys.stdin.buffer.read(CHUNK_BYTES):
            try:
                f.write(data)
            except OSError as e:
                raise _write_failed(e, spool_dir) from None
    return Path(tmp)


def _write_failed(e: OSError, where: Path | None) -> LstmgenError:
    """A failed write of prepare's scratch files (a full disk, mostly), as one line naming where."""
    from .registry import write_error

    return write_error(e, where if where is not None else Path(tempfile.gettempdir()))


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
    text = "".join(source.chunks(lines=True))  # refuses a line over source.max_line_chars
    return [line.strip() for line in text.split("\n") if line.strip()], None


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
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise LstmgenError(f"{source.name} is not a readable CSV: {first}") from None
    if len(df.columns) == 1:
        _check_delimiter(source, str(df.columns[0]))
    text_columns = [c for c in df.columns if pd.api.types.is_string_dtype(df[c]) or df[c].dtype == object]
    if column is not None:
        if column not in df.columns:
            raise LstmgenError(
                f"{source.name} has no column {_shown(column, quote=True)}; its columns are: {_columns(df.columns)}"
            )
    else:
        named = [c for c in df.columns if str(c).strip().lower() in TEXT_COLUMNS]
        if named:
            column = named[0]
        elif len(text_columns) == 1:
            column = text_columns[0]
        else:
            cols = _columns(df.columns)
            if len(df.columns) == 1:
                hint = " (is the delimiter a comma?)"
            elif text_columns:
                hint = ""
            else:
                hint = " (none holds text)"
            raise LstmgenError(
                f"{source.name}: cannot tell which column holds the text{hint}; columns: {cols}; pass --column NAME"
            )
    _check_unique(source, list(df.columns), column)
    records = [str(v).strip() for v in df[column].tolist() if v is not None and str(v).strip()]
    if not records:
        raise LstmgenError(f"{source.name}: column {_shown(column, quote=True)} has no text")
    return records, str(column)


def _check_unique(source: Source, columns: list, column) -> None:
    """Refuse a text column whose header name is given twice or more: pandas renames the second "Joke" to
    "Joke.1", and which one the user meant is a guess. Duplicates among the other columns do not matter."""
    import pandas as pd

    try:  # the header row as written: names as given, not as pandas made them unique
        first = pd.read_csv(io.StringIO(source.text), header=None, nrows=1, dtype=str, keep_default_na=False,
                            index_col=False)  # fmt: skip
        header = [str(v) for v in first.iloc[0].tolist()]
    except Exception:  # noqa: BLE001 - the full read above succeeded; a header it cannot re-read is not a duplicate
        return
    if len(header) != len(columns):
        return
    name = header[columns.index(column)]
    count = header.count(name)
    if name.strip() and count > 1:
        raise LstmgenError(
            f"{source.name}: {count} columns are named {_shown(name, quote=True)}; rename them so that the text "
            "column's name is unique"
        )


def _check_delimiter(source: Source, header: str) -> None:
    """A header without commas but with ';', tabs or '|' means another delimiter: say so, not pandas' error."""
    for sep in (";", "\t", "|"):
        if sep in header and "," not in header:
            raise LstmgenError(
                f"{source.name} looks delimited by {sep!r}, not commas (header {_shown(header, quote=True)}); "
                "save it as a comma-separated CSV, or as .txt with one record per line"
            )


SHOWN_COLUMNS, SHOWN_CHARS = 8, 40  # an error line lists this many column names, each cut to this length


def _shown(column, quote: bool = False) -> str:
    """A column name for an error line: a quoted header field can hold a line break, which printed raw split
    the one-line error in two (found by tests/test_properties.py), so such names are shown as repr; a long
    one is cut short."""
    name = str(column)
    cut = name if len(name) <= SHOWN_CHARS else name[: SHOWN_CHARS - 3] + "..."
    return repr(cut) if quote or not name.isprintable() else cut


def _columns(columns) -> str:
    """Column names for an error line: the first SHOWN_COLUMNS, then how many more (a 10,000-column CSV
    made a 69 KB error line)."""
    names = list(columns)
    shown = ", ".join(map(_shown, names[:SHOWN_COLUMNS]))
    return shown + (f", ... and {len(names) - SHOWN_COLUMNS:,} more" if len(names) > SHOWN_COLUMNS else "")


def split_labels(n: int, val_frac: float, test_frac: float, seed: int):
    """Each record's split, (n,) uint8 (TRAIN, VAL or TEST), by a seeded shuffle; one byte per record, so
    millions of records split in bounded memory."""
    import numpy as np

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
    held_out = np.random.default_rng(seed).choice(n, n_val + n_test, replace=False)  # memory ~ held-out only
    labels = np.full(n, TRAIN, dtype=np.uint8)
    labels[held_out[:n_val]] = VAL
    labels[held_out[n_val:]] = TEST
    return labels


TRAIN, VAL, TEST = range(3)  # split labels, in SPLITS order
BATCH = 4096  # in-memory records handled per piece
Piece = tuple[str, list[str], bool]  # (split, texts, whether each text ends a record)


def ids_dtype(vocab_size: int):
    """The smallest integer dtype for the ids: corpora stay compact on disk."""
    import torch

    return torch.uint8 if vocab_size <= 256 else torch.int16 if vocab_size <= 32767 else torch.int32


def encode_records(vocab: Vocab, records: list[str], skip_unknown: bool = False, where: str = "text"):
    """One token stream: each record's ids followed by <eor>, (N,) int64 numpy."""
    import numpy as np

    ids: list[int] = []
    for record_ids in vocab.encode_many(records, skip_unknown=skip_unknown, where=where):
        ids.extend(record_ids)
        ids.append(vocab.eor_id)
    return np.array(ids, dtype=np.int64)


def unk_rate(ids, vocab: Vocab) -> float:
    """Share of `ids` (an array or tensor) that are <unk> (0 when empty, or for a vocab without <unk>)."""
    import numpy as np

    ids = np.asarray(ids)
    if vocab.unk_id is None or ids.size == 0:
        return 0.0
    return round(float((ids == vocab.unk_id).mean()), 4)


def n_chars(records: list[str]) -> int:
    """Characters the records stand for, counting each end-of-record as one (a newline): bits/char divide by it."""
    return sum(len(r) + 1 for r in records)


@dataclass(frozen=True)
class PrepareOptions:
    """How `prepare` turns records into a corpus; checked when made, so every caller gets the same errors."""

    tokenizer: str = "char"  # char | word | bpe
    val_frac: float = 0.05  # fractions of records held out (of the text, with stream)
    test_frac: float = 0.05
    seed: int = 0  # of the record split
    min_freq: int = 2  # word: rarer words become <unk>
    max_vocab: int | None = None  # word: keep at most this many tokens
    vocab_size: int | None = None  # bpe: tokens to learn, <eor> included [default BPE_VOCAB_SIZE]

    def __post_init__(self):
        if self.tokenizer not in KINDS:
            raise UsageError(f"--tokenizer must be one of {', '.join(KINDS)}, got {self.tokenizer!r}")
        if not 0 < self.val_frac < 1:  # NaN fails this too
            raise UsageError(
                f"--val-frac must be above 0 and below 1 (got {self.val_frac}): validation picks the best "
                "checkpoint and stops training early"
            )
        if not 0 <= self.test_frac < 1 or self.val_frac + self.test_frac >= 1:
            raise UsageError(
                f"--test-frac must be 0 or more, and --val-frac + --test-frac below 1 (got {self.val_frac} + "
                f"{self.test_frac})"
            )
        if not 0 <= self.seed < 2**32:
            raise UsageError(f"--seed must be between 0 and 2^32 - 1 (got {self.seed})")
        if self.min_freq < 1:
            raise UsageError(f"--min-freq must be at least 1, got {self.min_freq}")
        if self.max_vocab is not None and self.max_vocab < 3:
            raise UsageError(f"--max-vocab must be at least 3, got {self.max_vocab}")
        if self.tokenizer == "bpe" and (self.max_vocab is not None or self.min_freq != 2):
            raise UsageError(
                "--max-vocab and --min-freq shape a word vocabulary; a bpe vocabulary's size is --vocab-size"
            )
        if self.vocab_size is not None and self.tokenizer != "bpe":
            raise UsageError(
                "--vocab-size sets the size of a --tokenizer bpe vocabulary (a word vocabulary is capped by "
                "--max-vocab)"
            )
        if self.vocab_size is not None:
            check_bpe_vocab_size(self.vocab_size)


def build_corpus(
    source: Source,
    records: list[str] | None = None,
    options: PrepareOptions = PrepareOptions(),  # noqa: B008 - frozen: one shared default is safe
    *,
    stream: bool = False,
    column: str | None = None,
    work_dir: Path | None = None,
) -> dict:
    """The corpus payload saved in the registry: vocab, one id tensor per split, and metadata.

    `records` are the texts read by read_records (a CSV, or a small text); None streams the source text
    itself, in bounded memory whatever its size: one pass counts the records, one builds the vocabulary,
    one encodes, each over chunks of a few MB. The ids go to temporary files in `work_dir` (the registry's
    scratch directory; default: the system's) and come back memory-mapped, so saving copies disk to disk.
    `stream`: the text is one stream, cut into contiguous train/val/test pieces at line ends (nanoGPT style)
    instead of split by record.
    """

    o = options
    tokenizer, val_frac, test_frac, seed = o.tokenizer, o.val_frac, o.test_frac, o.seed
    # Each pass reads the input again: the records in batches (in memory: slices of the list), or one
    # stream's text in fragments.
    def record_batches() -> Iterator[list[str]]:
        if records is not None:
            return (records[i : i + BATCH] for i in range(0, len(records), BATCH))
        return map(_line_records, source.chunks(lines=True))

    def fragments() -> Iterator[str]:
        return iter(records) if records is not None else source.chunks()

    if stream:
        extent = _extent(fragments())
        _stream_cuts(extent, val_frac, test_frac)  # checks the fractions before the passes

        def pieces() -> Iterator[Piece]:
            return _stream_pieces(fragments(), extent, val_frac, test_frac)
    else:
        labels = split_labels(sum(map(len, record_batches())), val_frac, test_frac, seed)

        def pieces() -> Iterator[Piece]:
            return _labelled(record_batches(), labels)

    # The vocabulary: chars of every split (an alphabet is no held-out secret; a piece's texts are joined,
    # as only which chars occur matters); words and BPE merges from the training split only.
    if tokenizer == "char":
        texts = ("".join(group) for _, group, _ in pieces())
    else:
        texts = (p for split, group, _ in pieces() if split == "train" for t in group for p in cut_at_spaces(t))
        if tokenizer == "bpe":
            texts = _first_chars(texts, BPE_TRAIN_CHARS)
    vocab = build_vocab(tokenizer, texts, min_freq=o.min_freq, max_vocab=o.max_vocab, vocab_size=o.vocab_size)
    encoded = _encode_pieces(vocab, pieces(), work_dir)
    for split, frac in (("val", val_frac), ("test", test_frac)):
        if frac > 0 and not encoded[split]["records"]:
            raise LstmgenError(
                f"the {split} split came out empty: {source.name} is too short for "
                f"--{split}-frac {frac}; give more text or a larger fraction"
            )
    splits = {k: encoded[k]["ids"] for k in SPLITS}
    meta = {
        "source": source.name if source.name == "<stdin>" else str(Path(source.name).resolve()),
        "sha256": source.sha256,
        "column": column,
        "tokenizer": tokenizer,
        "stream": stream,
        "seed": seed,
        "val_frac": val_frac,
        "test_frac": test_frac,
        "min_freq": o.min_freq,
        "vocab_size": len(vocab),
        "records": {k: encoded[k]["records"] for k in SPLITS},
        "tokens": {k: int(splits[k].numel()) for k in SPLITS},
        "chars": {k: encoded[k]["chars"] for k in SPLITS},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if vocab.unk_id is not None:  # counted while encoding: a large split is not read again
        meta["unk_rate"] = {k: round(encoded[k]["unk"] / max(1, meta["tokens"][k]), 4) for k in SPLITS}
    return {"format_version": CORPUS_FORMAT, "vocab": vocab.to_dict(), "splits": splits, "meta": meta}


def _line_records(chunk: str) -> list[str]:
    """The records of a chunk of text read one per line: its non-empty lines, stripped."""
    return [line for line in map(str.strip, chunk.split("\n")) if line]


def _labelled(batches: Iterator[list[str]], labels) -> Iterator[Piece]:
    """Batches of records -> each batch's records grouped by split, every one ending a record."""
    first = 0
    for batch in batches:
        mine = labels[first : first + len(batch)]
        first += len(batch)
        for label, split in enumerate(SPLITS):
            rows = (mine == label).nonzero()[0].tolist()
            if rows:
                yield split, list(map(batch.__getitem__, rows)), True  # a C loop: millions of records


def _extent(fragments: Iterator[str]) -> tuple[int, int]:
    """(start, length) of a text's part between its leading and trailing newlines, from its fragments."""
    total, lead, trail = 0, None, 0
    for fragment in fragments:
        body = fragment.strip("\n")
        if body:
            lead = total + fragment.index(body[0]) if lead is None else lead
            trail = len(fragment) - len(fragment.rstrip("\n"))
        else:
            trail += len(fragment)
        total += len(fragment)
    return (0, 0) if lead is None else (lead, total - trail - lead)


def _stream_cuts(extent: tuple[int, int], val_frac: float, test_frac: float) -> tuple[int, int]:
    """Where val and test begin in a stream whose text spans `extent` (before moving to a line end)."""
    split_labels(3, val_frac, test_frac, 0)  # the same checks on the fractions
    start, length = extent
    return start + int(length * (1 - val_frac - test_frac)), start + int(length * (1 - test_frac))


def _stream_pieces(fragments: Iterator[str], extent, val_frac: float, test_frac: float) -> Iterator[Piece]:
    """One long text, in fragments -> contiguous train, val and test pieces, each cut at a line end close to
    its share (else a word break: a text may be one long line), stripped of blank lines at its ends, and
    each ending one record."""
    targets = list(_stream_cuts(extent, val_frac, test_frac))
    pos, part, held, started = 0, 0, "", False

    def piece(text: str) -> Iterator[Piece]:
        nonlocal held, started
        if not started:
            text = text.lstrip("\n")
        body = text.rstrip("\n")
        if body:  # newlines at a fragment's end are held back: they may end the piece
            yield SPLITS[part], [held + body], False
            held, started = text[len(body) :], True
        else:
            held += text if started else ""

    text_end = extent[0] + extent[1]  # before the trailing newlines: a cut there would leave a piece empty
    for fragment in fragments:
        while part < 2 and pos + len(fragment) > targets[part]:
            at = max(0, targets[part] - pos)
            near = min(at + 10_000, text_end - pos)
            end = next((i + 1 for sep in ("\n", " ") if (i := fragment.find(sep, at, near)) >= 0), at)
            yield from piece(fragment[:end])
            if started:
                yield SPLITS[part], [""], True  # the piece's <eor>
            fragment, pos = fragment[end:], pos + end
            part, held, started = part + 1, "", False
            targets = [max(t, pos) for t in targets]
        yield from piece(fragment)
        pos += len(fragment)
    if started:
        yield SPLITS[part], [""], True


def _encode_pieces(vocab: Vocab, pieces: Iterator[Piece], work_dir: Path | None) -> dict[str, dict]:
    """Encode pieces into one compact id stream per split, each text followed by <eor> when it ends a
    record. Returns {split: {"ids": (N,) tensor, "records": n, "chars": n}}; chars count each <eor> as one
    (a newline), since bits/char divide by them."""
    import numpy as np
    import torch

    dtype = ids_dtype(len(vocab))
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    table = _char_table(vocab, np_dtype) if vocab.kind == "char" else None
    out = {}
    try:
        try:  # writes only: an OSError reading the input is not the scratch disk's
            for split in SPLITS:
                fd, path = tempfile.mkstemp(dir=work_dir, prefix=f".{split}.", suffix=".ids.tmp")
                out[split] = {"path": path, "tokens": 0, "records": 0, "chars": 0, "unk": 0}
                out[split]["file"] = os.fdopen(fd, "wb")
        except OSError as e:
            raise _write_failed(e, work_dir) from None
        for split, texts, ends in pieces:
            o = out[split]
            if table is not None:  # chars: one vectorised lookup for the whole piece
                ids = table[code_points("".join(texts))]
                if ends:  # <eor> after each text
                    ids = np.insert(ids, np.cumsum([len(t) for t in texts]), vocab.eor_id)
                parts = [ids]
            else:  # in bounded calls: a 20 MB line is many small texts to the tokenizer
                parts = (np.fromiter(chain.from_iterable(b), dtype=np.int64) for b in _encoded(vocab, texts, ends))
            for ids in parts:
                try:
                    o["file"].write(ids.astype(np_dtype).tobytes())
                except OSError as e:
                    raise _write_failed(e, work_dir) from None
                o["tokens"] += ids.size
                o["unk"] += int((ids == vocab.unk_id).sum()) if vocab.unk_id is not None else 0
            o["records"] += len(texts) if ends else 0
            o["chars"] += sum(map(len, texts)) + (len(texts) if ends else 0)
        for o in out.values():
            try:
                o["file"].close()  # flushes: a full disk can fail here too
            except OSError as e:
                raise _write_failed(e, work_dir) from None
            o["ids"] = (
                torch.from_file(o["path"], shared=False, size=o["tokens"], dtype=dtype)
                if o["tokens"]
                else torch.empty(0, dtype=dtype)
            )  # memory-mapped: it stays on disk, in the page cache, not in this process's heap
    finally:
        for o in out.values():
            if "file" in o:
                try:
                    o["file"].close()
                except OSError:  # a failed flush, reported above
                    pass
            Path(o["path"]).unlink(missing_ok=True)  # the mapping keeps the data until the tensor goes
    return {k: {key: v[key] for key in ("ids", "records", "chars", "unk")} for k, v in out.items()}


def cut_at_spaces(text: str, limit: int | None = None) -> Iterator[str]:
    """`text` in pieces of at most `limit` (default TOKENIZE_CHARS) characters, each cut just before a run of
    whitespace (a space, tab or newline after a non-space), where no word or BPE pre-token (GPT-2's " word",
    "  ", "\\n") can span the cut: tokenizing the pieces one by one gives the tokens of the whole. A stretch of
    over `limit` characters with no such place is cut where it must be (its tokens may differ at that cut)."""
    limit = limit or TOKENIZE_CHARS
    start, n = 0, len(text)
    while n - start > limit:
        end = start + limit
        last = deque(_RUN_START.finditer(text, start + 1, end + 1), maxlen=1)  # the last in the window
        cut = last[0].start() if last else end
        yield text[start:cut]
        start = cut
    yield text[start:]


_RUN_START = re.compile(r"(?<=\S)[ \t\n]")


def _first_chars(texts: Iterator[str], limit: int) -> Iterator[str]:
    """The texts until `limit` characters have gone by (the last one cut short)."""
    for text in texts:
        if len(text) >= limit:
            yield text[:limit]
            return
        limit -= len(text)
        yield text


def _encoded(vocab: Vocab, texts: list[str], ends: bool) -> Iterator[list[list[int]]]:
    """encode_many over `texts` cut at spaces, in calls of about ENCODE_BATCH_CHARS: lists of id lists, in
    order, with <eor> after each text's last piece when `ends`."""
    batch, size = [], 0
    for text in texts:
        pieces = list(cut_at_spaces(text)) if len(text) > TOKENIZE_CHARS else [text]
        for i, piece in enumerate(pieces):
            batch.append((piece, ends and i == len(pieces) - 1))
            size += len(piece)
            if size >= ENCODE_BATCH_CHARS:
                yield _encode_batch(vocab, batch)
                batch, size = [], 0
    if batch:
        yield _encode_batch(vocab, batch)


def _encode_batch(vocab: Vocab, batch: list[tuple[str, bool]]) -> list[list[int]]:
    encoded = vocab.encode_many([piece for piece, _ in batch])
    return [[*e, vocab.eor_id] if eor else e for e, (_, eor) in zip(encoded, batch, strict=True)]


def _char_table(vocab: Vocab, dtype):
    """code point -> id, as a numpy array of `dtype` (every char of the text is in the vocab)."""
    import numpy as np

    chars = vocab.itos[1:]  # after <eor>: single characters
    table = np.zeros(max([255, *map(ord, chars)]) + 1, dtype=dtype)
    table[[ord(c) for c in chars]] = np.arange(1, len(chars) + 1)
    return table
