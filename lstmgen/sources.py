"""Input text as lstmgen reads it: a file, stdin or bundled example data, checked (not binary, decodable,
lines within a cap) and hashed in one streaming pass, then read again chunk by chunk, or as the records of
a CSV column (pandas) or of a text's lines."""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import LstmgenError

TEXT_COLUMNS = ("joke", "text")  # auto-detected CSV columns, case-insensitive
BINARY_LOOK = 1 << 16  # a NUL in the first 64 KiB (bytes, or characters of a wide encoding): a binary file
CHUNK_BYTES = 4 << 20  # streaming reads: large enough to amortise Python, small enough to bound memory
# A line read as one record (--records line) may be at most this many characters: a longer one is refused,
# not cut into several records (a text that long is one stream: --records file). Memory holds one such line
# at a time, at up to 4 bytes a character: 64 MB at the default; read_source(max_line_chars=) raises it.
MAX_LINE_CHARS = 16 << 20


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
    try:
        wide = b"\x00" in "a".encode(encoding)  # utf-16 and utf-32 write a NUL byte in every ASCII character
    except (LookupError, UnicodeError):  # unknown, a bytes-to-bytes codec (base64), or "undefined"
        raise LstmgenError(f"unknown --encoding {encoding[:40]!r}; try utf-8 or latin-1") from None
    if path == "-":
        name = "<stdin>"
        # Checked as it arrives: `< /dev/urandom` is refused at once, not after filling the disk.
        p = _spool_stdin(spool_dir, check_nul=not wide)
    else:
        p = find_input(path)
        name = str(path) if p == Path(path) else str(p)  # bundled data goes by its full path
        if p.is_dir():
            raise LstmgenError(f"input {path} is a directory; give a .csv or .txt file")
    binary = _binary_message(name)
    if not wide and path != "-":  # checked before decoding, so a binary file is named as one, not as mis-encoded
        with p.open("rb") as f:
            _refuse_binary(name, f.read(BINARY_LOOK))
    is_csv = fmt == "csv" or (fmt == "auto" and name.lower().endswith(".csv"))
    source = Source(p, name, "", is_csv, encoding, max_line_chars)
    digest, blank, scanned = hashlib.sha256(), True, 0
    for text in source.chunks(digest.update):  # one pass hashes and decodes it all: a bad byte fails first
        blank = blank and not text.strip()
        if scanned < BINARY_LOOK and "\x00" in text[: BINARY_LOOK - scanned]:  # a wide encoding's NULs, decoded
            raise LstmgenError(binary)
        scanned += len(text)
    if blank:
        raise LstmgenError(f"{name} is empty; give a file with at least a few records")
    source.sha256 = digest.hexdigest()
    return source


def _refuse_binary(name: str, head: bytes) -> None:
    """Refuse input whose first bytes (up to BINARY_LOOK) hold a NUL: text in UTF-16 or UTF-32, known by its
    byte-order mark (Windows' "Unicode" text files), is named with the --encoding to pass; else binary."""
    if b"\x00" not in head:
        return
    for bom, encoding in ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                          (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):  # fmt: skip
        if head.startswith(bom):
            raise LstmgenError(
                f"{name} is {encoding.upper()} text (it starts with a byte-order mark); pass --encoding {encoding}"
            )
    raise LstmgenError(_binary_message(name))


def _binary_message(name: str) -> str:
    return f"{name} looks like a binary file (it contains NUL bytes); give a .csv or .txt text file"


def _spool_stdin(spool_dir: Path | None, check_nul: bool) -> Path:
    """stdin copied to a temporary file (deleted at exit), in bounded memory. `check_nul`: refuse a NUL byte
    in the first 64 KiB (the same look a file gets) as it comes, before the rest is copied."""
    import atexit

    try:
        fd, tmp = tempfile.mkstemp(prefix=".stdin.", suffix=".tmp", dir=spool_dir)
    except OSError as e:
        raise write_failed(e, spool_dir) from None
    atexit.register(Path(tmp).unlink, missing_ok=True)
    head = b""  # the first BINARY_LOOK bytes, however the pipe splits them
    with open(fd, "wb", buffering=0) as f:  # unbuffered: a full disk fails in write(), caught here
        while data := sys.stdin.buffer.read1(CHUNK_BYTES):  # read1: what has come, not a wait for 4 MiB
            if check_nul and len(head) < BINARY_LOOK:
                head += data[: BINARY_LOOK - len(head)]
                _refuse_binary("<stdin>", head)
            try:
                f.write(data)
            except OSError as e:
                raise write_failed(e, spool_dir) from None
    return Path(tmp)


def write_failed(e: OSError, where: Path | None) -> LstmgenError:
    """A failed write of prepare's scratch files (a full disk, mostly), as one line naming where."""
    from .registry import write_error

    return write_error(e, where if where is not None else Path(tempfile.gettempdir()))


def read_records(source: Source, column: str | None = None, records: str = "line") -> tuple[list[str], str | None]:
    """Records of a source, and the CSV column they came from (None for text).

    CSV: the `column` given, else a column named Joke/text, else the only text column.
    Text: one record per non-empty line (`records="line"`), or the whole text as one stream ("file").
    """
    if source.is_csv:
        _rows_are_records(source, records)
        return _read_csv(source, column)[:2]
    if column is not None:
        raise LstmgenError(f"--column only applies to CSV input; {source.name} is read as text (pass --format csv)")
    if records == "file":
        return [source.text.strip("\n")], None
    text = "".join(source.chunks(lines=True))  # refuses a line over source.max_line_chars
    return [line.strip() for line in text.split("\n") if line.strip()], None


def _rows_are_records(source: Source, records: str) -> None:
    if records == "file":  # dropped in silence, it would train on rows when one stream was asked for
        raise LstmgenError(
            f"--records file reads a text file as one stream, and {source.name} is read as a CSV, whose records "
            "are its rows; drop --records, or pass --format txt"
        )


def read_labelled(
    source: Source, column: str | None, label_column: str, records: str = "line"
) -> tuple[list[str], list[str], str]:
    """A CSV's records, each one's label (the `label_column` cell, stripped; labels.NONE_LABEL where empty),
    and the text column, as read_records picks it."""
    if not source.is_csv:
        raise LstmgenError(
            f"--label-column reads a CSV column; {source.name} is read as text (pass --format csv for a CSV)"
        )
    _rows_are_records(source, records)
    records, column, labels = _read_csv(source, column, label_column)
    return records, labels, column


def _read_csv(
    source: Source, column: str | None, label_column: str | None = None
) -> tuple[list[str], str, list[str] | None]:
    import pandas as pd  # deferred: keeps `lstmgen --help` fast

    text = source.text  # decoded once here: each read of the property decodes the file again
    _check_quoting(source, text)
    try:
        with warnings.catch_warnings():
            # index_col=False: a row with more fields than the header is an error, not a silent index shift
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                io.StringIO(text), keep_default_na=False, index_col=False, dtype_backend="numpy_nullable"
            )
    except pd.errors.ParserWarning:
        _check_delimiter(source, text.split("\n", 1)[0])
        raise LstmgenError(
            f"{source.name}: some rows have more fields than the header; quote text that contains commas "
            '(for example 1,"Hi, there")'
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        _check_delimiter(source, text.split("\n", 1)[0])
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
    _check_unique(source, text, list(df.columns), column)
    texts = [str(v).strip() if v is not None else "" for v in df[column].tolist()]
    for row, t in enumerate(texts, 1):  # the cap a text line has, for a record from a cell
        if len(t) > source.max_line_chars:
            raise LstmgenError(
                f"{source.name}: row {row:,}'s {_shown(column, quote=True)} is longer than {source.max_line_chars:,} "
                "characters, too long for one record; split it, or raise the cap with --max-line-chars"
            )
    records = [t for t in texts if t]
    if not records:
        raise LstmgenError(f"{source.name}: column {_shown(column, quote=True)} has no text")
    labels = None
    if label_column is not None:
        from .labels import record_labels

        if label_column not in df.columns:
            raise LstmgenError(
                f"{source.name} has no label column {_shown(label_column, quote=True)}; its columns are: "
                f"{_columns(df.columns)}"
            )
        if label_column == column:
            raise LstmgenError(
                f"{source.name}: --label-column {_shown(label_column, quote=True)} is the text column; pick the "
                "column that holds each record's category"
            )
        _check_unique(source, text, list(df.columns), label_column)
        cells = [str(v).strip() if v is not None else "" for v in df[label_column].tolist()]
        kept = [label for label, t in zip(cells, texts, strict=True) if t]  # the records' rows
        labels = record_labels(kept, str(label_column), source.name)
    return records, str(column), labels


AFTER_CLOSING_QUOTE = re.compile(r'"[ \t]+(?=,|\n|$)')  # spaces pandas reads past: no quoting error


def _check_quoting(source: Source, text: str) -> None:
    """Refuse a quote that is opened and not closed where a field ends: pandas reads such a field on into the
    next rows, so records vanish into one another with their IDs inside the text (a guess, not an error).
    Python's csv module in strict mode is the RFC 4180 reading: within quotes, a quote is doubled or ends the
    field; spaces after a closing quote are let through first, as pandas reads them. About 1 s per 100 MB."""
    import csv

    if AFTER_CLOSING_QUOTE.search(text):
        text = AFTER_CLOSING_QUOTE.sub('"', text)
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # long cells are the record cap's to refuse (a C long: 32 bits on Windows)
    reader = csv.reader(io.StringIO(text), strict=True)
    opened = 1
    try:
        for _ in reader:
            opened = reader.line_num + 1  # where the next row starts
    except csv.Error as e:
        _check_delimiter(source, text.split("\n", 1)[0])  # a ';' file with quoted fields: say that instead
        where = f"line {reader.line_num:,}" if reader.line_num == opened else (
            f"the field quoted on line {opened:,} runs on to line {reader.line_num:,}")  # fmt: skip
        raise LstmgenError(
            f"{source.name} is not a readable CSV: {where}, {e}; close each quoted field with a quote before the "
            'next comma or line end, and double a quote inside one ("")'
        ) from None
    finally:
        csv.field_size_limit(limit)  # process-wide state: a library caller's own setting is left as it was


def _check_unique(source: Source, text: str, columns: list, column) -> None:
    """Refuse a text column whose header name is given twice or more: pandas renames the second "Joke" to
    "Joke.1", and which one the user meant is a guess. Duplicates among the other columns do not matter."""
    import pandas as pd

    try:  # the header row as written: names as given, not as pandas made them unique
        first = pd.read_csv(io.StringIO(text), header=None, nrows=1, dtype=str, keep_default_na=False,
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
