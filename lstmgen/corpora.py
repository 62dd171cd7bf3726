"""Corpora in the registry: `prepare` one from a file (the library entry point of `lstmgen prepare`), and load
one back, checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import registry
from .corpus import CORPUS_FORMAT, SPLITS, PrepareOptions, build_corpus
from .errors import LstmgenError
from .sources import MAX_LINE_CHARS, Source, read_records, read_source
from .tokenize import Vocab


@dataclass(frozen=True)
class TextInput:
    """A text file as `prepare` and `eval --file` read it."""

    path: str  # a .csv or .txt file, or "-" for stdin
    format: str = "auto"  # auto (by extension; stdin is txt) | csv | txt
    encoding: str = "utf-8"
    column: str | None = None  # CSV: the text column [default: Joke/text, or the only text column]
    records: str = "line"  # text: one record per line, or the whole file as one stream ("file")
    max_line_chars: int = MAX_LINE_CHARS  # a longer line is refused, not cut into several records

    def open(self, spool_dir: Path | None = None) -> Source:
        return read_source(self.path, self.format, self.encoding, spool_dir, self.max_line_chars)

    def read(self, source: Source) -> tuple[list[str], str | None]:
        """The records, and the CSV column they came from."""
        return read_records(source, self.column, self.records)

    def default_name(self) -> str:
        return "stdin" if self.path == "-" else registry.name_from(Path(self.path).stem)


@dataclass
class Prepared:
    name: str
    path: Path
    source: str  # the input as named to the user
    column: str | None
    meta: dict  # the corpus metadata (records, tokens, vocab_size, ...)
    notes: list[str]


def prepare(name: str | None, text: TextInput, options: PrepareOptions, overwrite: bool = False) -> Prepared:
    """Tokenize `text` into corpus `name` (default: the file's stem) in the registry.

    Two prepares of one name never interleave (the entry's lock). The token ids go through a scratch
    directory in the registry (on the disk the corpus goes to; /tmp may be RAM), removed however this ends.
    """
    name = registry.check_name(name if name is not None else text.default_name(), "corpus name")
    with registry.lock("corpus", name, "preparing it"), registry.scratch("corpus", name) as work_dir:
        if not overwrite and (registry.entry_dir("corpus", name) / "corpus.pt").exists():
            raise LstmgenError(f"corpus {name!r} already exists; replace it with --overwrite or pick another --name")
        source = text.open(spool_dir=work_dir)
        # A CSV is parsed whole by pandas; a text file streams through in chunks, in bounded memory.
        texts, column = text.read(source) if source.is_csv or text.column else (None, None)
        stream = text.records == "file" and not source.is_csv
        corpus = build_corpus(source, texts, options, stream=stream, column=column, work_dir=work_dir)
        path = registry.save_corpus(name, corpus)
    return Prepared(name, path, source.name, column, corpus["meta"], _skew_notes(corpus["meta"], options))


def _skew_notes(meta: dict, options: PrepareOptions) -> list[str]:
    """A note when the splits' shares of tokens are far from their shares of records: a few giant records."""
    tok = meta["tokens"]
    skewed = []
    fracs = (("train", 1 - options.val_frac - options.test_frac), ("val", options.val_frac),
             ("test", options.test_frac))  # fmt: skip
    for split, frac in fracs:
        share = tok[split] / max(1, sum(tok.values()))
        if frac > 0 and abs(share - frac) > 0.02 and not 1 / 3 < share / frac < 3:
            skewed.append(f"{split} holds {share:.1%} of the tokens for {frac:.0%} of the records")
    if not skewed:
        return []
    return [f"records differ a lot in length ({', '.join(skewed)}); consider --records file, or splitting the long "
            "records"]  # fmt: skip


def load_corpus(name: str) -> dict:
    """A registry corpus: {"vocab", "splits": {split: ids}, "meta"}, its parts checked."""
    path = registry.require("corpus", name) / "corpus.pt"
    corpus = registry.load_pt(path)
    registry.check_version(corpus, path, CORPUS_FORMAT, "run `lstmgen prepare` again")
    fix = "run `lstmgen prepare` again"
    if not isinstance(corpus.get("meta"), dict) or not isinstance(corpus.get("splits"), dict):
        raise LstmgenError(f"{path} is damaged (its metadata or splits are missing); {fix}")
    n_vocab = len(Vocab.from_dict(corpus.get("vocab")))
    for split in SPLITS:
        # Scanning the train split would page a whole memory-mapped corpus in; training checks each window.
        registry.check_ids(corpus["splits"].get(split), n_vocab, split, path, fix, values=split != "train")
    return corpus

