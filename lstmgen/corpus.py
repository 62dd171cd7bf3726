"""Records -> a corpus: the vocabulary, and token ids per split (train/val/test), built in bounded memory."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path

from .errors import LstmgenError, UsageError
from .labels import MAX_LABELS, NONE_LABEL, check_max_labels, count_labels
from .lineage import VocabFrom, fit_vocab
from .sources import Source, write_failed
from .tokenize import KINDS, Vocab, build_vocab, check_bpe_vocab_size, code_points

CORPUS_FORMAT = 1
SPLITS = ("train", "val", "test")
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
# (split, texts, whether each text ends a record, each text's label index into vocab.labels or None)
Piece = tuple[str, list[str], bool, "list[int] | None"]


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

    tokenizer: str | None = None  # char | word | bpe; None: char, or the --vocab-from model's own
    val_frac: float = 0.05  # fractions of records held out (of the text, with stream)
    test_frac: float = 0.05
    seed: int = 0  # of the record split
    min_freq: int = 2  # word: rarer words become <unk>
    max_vocab: int | None = None  # word: keep at most this many tokens
    vocab_size: int | None = None  # bpe: tokens to learn, <eor> included [default BPE_VOCAB_SIZE]
    max_labels: int = MAX_LABELS  # --label-column: refuse a column with more distinct labels

    def __post_init__(self):
        if self.tokenizer is not None and self.tokenizer not in KINDS:
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
        if self.vocab_size is not None and self.tokenizer not in ("bpe", None):  # None: checked once it is known
            raise UsageError(
                "--vocab-size sets the size of a --tokenizer bpe vocabulary (a word vocabulary is capped by "
                "--max-vocab)"
            )
        if self.vocab_size is not None:
            check_bpe_vocab_size(self.vocab_size)
        check_max_labels(self.max_labels)


def build_corpus(
    source: Source,
    records: list[str] | None = None,
    options: PrepareOptions = PrepareOptions(),  # noqa: B008 - frozen: one shared default is safe
    *,
    stream: bool = False,
    column: str | None = None,
    work_dir: Path | None = None,
    vocab_from: VocabFrom | None = None,
    labels: list[str] | None = None,
    label_column: str | None = None,
) -> dict:
    """The corpus payload saved in the registry: vocab, one id tensor per split, and metadata.

    `records` are the texts read by read_records (a CSV, or a small text); None streams the source text
    itself, in bounded memory whatever its size: one pass counts the records, one builds the vocabulary,
    one encodes, each over chunks of a few MB. The ids go to temporary files in `work_dir` (the registry's
    scratch directory; default: the system's) and come back memory-mapped, so saving copies disk to disk.
    `stream`: the text is one stream, cut into contiguous train/val/test pieces at line ends (nanoGPT style)
    instead of split by record. `vocab_from`: encode with that model's vocabulary (lineage.fit_vocab says how
    a char text's new characters are met) instead of building one.
    `labels`: each record's label (sources.read_labelled), from CSV column `label_column`: each becomes a
    token (labels.py) that starts its record, before the text.
    """

    o = options
    if o.tokenizer is None:
        o = dataclasses.replace(o, tokenizer="char")  # checked again: --vocab-size means nothing to char
    tokenizer, val_frac, test_frac, seed = o.tokenizer, o.val_frac, o.test_frac, o.seed
    label_counts, label_of = {}, None
    if labels is not None:
        if records is None or len(labels) != len(records):
            raise ValueError("labels come one per record, with the records")
        label_counts = count_labels(labels, str(label_column), source.name, o.max_labels)
        index = {name: k for k, name in enumerate(label_counts)}
        label_of = [index[name] for name in labels]
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
        splits = split_labels(sum(map(len, record_batches())), val_frac, test_frac, seed)

        def pieces() -> Iterator[Piece]:
            return _labelled(record_batches(), splits, label_of)

    # The vocabulary: chars of every split (an alphabet is no held-out secret; a piece's texts are joined,
    # as only which chars occur matters); words and BPE merges from the training split only.
    if tokenizer == "char":
        texts = ("".join(group) for _, group, _, _ in pieces())
    else:
        texts = (p for split, group, *_ in pieces() if split == "train" for t in group for p in cut_at_spaces(t))
        if tokenizer == "bpe":
            texts = _first_chars(texts, BPE_TRAIN_CHARS)
    if vocab_from is not None and vocab_from.vocab.kind != "char":
        vocab = vocab_from.vocab  # word: new words become <unk> (meta's unk_rate); bpe: encodes any text
    else:
        vocab = build_vocab(tokenizer, texts, min_freq=o.min_freq, max_vocab=o.max_vocab, vocab_size=o.vocab_size)
        vocab = fit_vocab(vocab_from, vocab) if vocab_from is not None else vocab
    if label_counts:  # never with vocab_from (corpora.prepare refuses it)
        vocab = vocab.with_labels(list(label_counts))
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
    if vocab_from is not None:
        meta["vocab_from"] = vocab_from.meta(vocab)
    if label_counts:
        meta["label_column"] = label_column
        meta["labels"] = label_counts  # {label: records}, most frequent first
        meta["unlabelled"] = label_counts.get(NONE_LABEL, 0)  # records with an empty label cell
    if vocab.unk_id is not None:  # counted while encoding: a large split is not read again
        meta["unk_rate"] = {k: round(encoded[k]["unk"] / max(1, meta["tokens"][k]), 4) for k in SPLITS}
    return {"format_version": CORPUS_FORMAT, "vocab": vocab.to_dict(), "splits": splits, "meta": meta}


def _line_records(chunk: str) -> list[str]:
    """The records of a chunk of text read one per line: its non-empty lines, stripped."""
    return [line for line in map(str.strip, chunk.split("\n")) if line]


def _labelled(batches: Iterator[list[str]], splits, label_of: list[int] | None = None) -> Iterator[Piece]:
    """Batches of records -> each batch's records grouped by split, every one ending a record, with their
    label indices when `label_of` (one per record) is given."""
    first = 0
    for batch in batches:
        mine = splits[first : first + len(batch)]
        for label, split in enumerate(SPLITS):
            rows = (mine == label).nonzero()[0].tolist()
            if rows:
                tags = [label_of[first + r] for r in rows] if label_of is not None else None
                yield split, list(map(batch.__getitem__, rows)), True, tags  # a C loop: millions of records
        first += len(batch)


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
            yield SPLITS[part], [held + body], False, None
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
                yield SPLITS[part], [""], True, None  # the piece's <eor>
            fragment, pos = fragment[end:], pos + end
            part, held, started = part + 1, "", False
            targets = [max(t, pos) for t in targets]
        yield from piece(fragment)
        pos += len(fragment)
    if started:
        yield SPLITS[part], [""], True, None


def _encode_pieces(vocab: Vocab, pieces: Iterator[Piece], work_dir: Path | None) -> dict[str, dict]:
    """Encode pieces into one compact id stream per split, each text followed by <eor> when it ends a
    record, and preceded by its label's token when the piece has labels. Returns {split: {"ids": (N,) tensor,
    "records": n, "chars": n}}; chars count each <eor> as one (a newline), since bits/char divide by them,
    and a label token as none (it is no text)."""
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
            raise write_failed(e, work_dir) from None
        for split, texts, ends, tags in pieces:
            o = out[split]
            first_ids = None if tags is None else [vocab.n_text + k for k in tags]  # each text's label token
            if table is not None:  # chars: one vectorised lookup for the whole piece
                ids = table[code_points("".join(texts))]
                if ends:  # <eor> after each text
                    lengths = np.array([len(t) for t in texts], dtype=np.int64)
                    where, values = np.cumsum(lengths), [vocab.eor_id] * len(texts)
                    if first_ids is not None:  # and its label before it: where one text ends, the next starts
                        where = np.concatenate([where, where - lengths])  # ends first: a stable insert puts
                        values = values + first_ids  # a text's <eor> before the next one's label
                    ids = np.insert(ids, where, values)
                parts = [ids]
            else:  # in bounded calls: a 20 MB line is many small texts to the tokenizer
                parts = (np.fromiter(chain.from_iterable(b), dtype=np.int64)
                         for b in _encoded(vocab, texts, ends, first_ids))  # fmt: skip
            for ids in parts:
                try:
                    o["file"].write(ids.astype(np_dtype).tobytes())
                except OSError as e:
                    raise write_failed(e, work_dir) from None
                o["tokens"] += ids.size
                o["unk"] += int((ids == vocab.unk_id).sum()) if vocab.unk_id is not None else 0
            o["records"] += len(texts) if ends else 0
            o["chars"] += sum(map(len, texts)) + (len(texts) if ends else 0)
        for o in out.values():
            try:
                o["file"].close()  # flushes: a full disk can fail here too
            except OSError as e:
                raise write_failed(e, work_dir) from None
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


def _encoded(
    vocab: Vocab, texts: list[str], ends: bool, first_ids: list[int] | None = None
) -> Iterator[list[list[int]]]:
    """encode_many over `texts` cut at spaces, in calls of about ENCODE_BATCH_CHARS: lists of id lists, in
    order, with <eor> after each text's last piece when `ends`, and first_ids[t] (a label) before text t."""
    batch, size = [], 0
    for t, text in enumerate(texts):
        pieces = list(cut_at_spaces(text)) if len(text) > TOKENIZE_CHARS else [text]
        for i, piece in enumerate(pieces):
            first = first_ids[t] if first_ids is not None and i == 0 else None
            batch.append((piece, ends and i == len(pieces) - 1, first))
            size += len(piece)
            if size >= ENCODE_BATCH_CHARS:
                yield _encode_batch(vocab, batch)
                batch, size = [], 0
    if batch:
        yield _encode_batch(vocab, batch)


def _encode_batch(vocab: Vocab, batch: list[tuple[str, bool, int | None]]) -> list[list[int]]:
    encoded = vocab.encode_many([piece for piece, _, _ in batch])
    return [
        ([] if first is None else [first]) + e + ([vocab.eor_id] if eor else [])
        for e, (_, eor, first) in zip(encoded, batch, strict=True)
    ]


def _char_table(vocab: Vocab, dtype):
    """code point -> id, as a numpy array of `dtype` (every char of the text is in the vocab)."""
    import numpy as np

    chars = vocab.itos[1 : vocab.n_text]  # after <eor>, before any labels: single characters
    table = np.zeros(max([255, *map(ord, chars)]) + 1, dtype=dtype)
    table[[ord(c) for c in chars]] = np.arange(1, len(chars) + 1)
    return table
