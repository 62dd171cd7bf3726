"""Corpora in the registry: `prepare` one from a file (the library entry point of `lstmgen prepare`), and load
one back, checked."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import registry
from .corpus import CORPUS_FORMAT, SPLITS, PrepareOptions, build_corpus
from .errors import LstmgenError, UsageError
from .lineage import VocabFrom
from .sources import MAX_LINE_CHARS, Source, read_labelled, read_records, read_source
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
    label_column: str | None = None  # CSV: each record's label (labels.py)

    def open(self, spool_dir: Path | None = None) -> Source:
        return read_source(self.path, self.format, self.encoding, spool_dir, self.max_line_chars)

    def read(self, source: Source) -> tuple[list[str], str | None]:
        """The records, and the CSV column they came from."""
        return read_records(source, self.column, self.records)

    def read_labelled(self, source: Source) -> tuple[list[str], list[str], str]:
        """The records, their labels (from label_column), and the CSV column the text came from."""
        return read_labelled(source, self.column, self.label_column, self.records)

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


def prepare(
    name: str | None,
    text: TextInput | Sequence[TextInput],
    options: PrepareOptions,
    overwrite: bool = False,
    vocab_from: str | None = None,
    extend_vocab: bool = False,
) -> Prepared:
    """Tokenize `text` into corpus `name` (default: the first file's stem) in the registry. Several inputs
    make one corpus: their records one after another, as if they were one file (see read_inputs).

    Two prepares of one name never interleave (the entry's lock). The token ids go through a scratch
    directory in the registry (on the disk the corpus goes to; /tmp may be RAM), removed however this ends.

    `vocab_from`: encode with that model's vocabulary and tokenizer, so that `train --from` can continue it on
    this text (`extend_vocab`: a char vocabulary grows by the text's new characters; see lineage.fit_vocab).
    """
    inputs = [text] if isinstance(text, TextInput) else list(text)
    name = registry.check_name(name if name is not None else inputs[0].default_name(), "corpus name")
    base = None
    if vocab_from is not None:
        if options.tokenizer is not None:
            raise UsageError("--vocab-from encodes with that model's own tokenizer; drop --tokenizer")
        default = PrepareOptions()
        if (options.min_freq, options.max_vocab, options.vocab_size) != (default.min_freq, None, None):
            raise UsageError(
                f"--vocab-from encodes with model {vocab_from!r}'s vocabulary; --min-freq, --max-vocab and "
                "--vocab-size shape a new one: drop them"
            )
        if inputs[0].label_column is not None:
            raise UsageError(
                "--label-column cannot be combined with --vocab-from yet: a model's label tokens are its own; "
                "prepare the labelled file without --vocab-from and train a new model on it"
            )
        base = VocabFrom.load(registry.check_name(vocab_from, "model name"), extend_vocab)
        if extend_vocab and base.vocab.labels:
            raise UsageError(
                f"--extend-vocab cannot grow model {vocab_from!r}'s vocabulary: it has label tokens after its "
                "characters; remove the new characters from the text instead"
            )
        options = dataclasses.replace(options, tokenizer=base.vocab.kind)
    elif extend_vocab:
        raise UsageError("--extend-vocab grows the vocabulary of --vocab-from MODEL; name the model")
    else:
        options = dataclasses.replace(options, tokenizer=options.tokenizer or "char")
    with registry.lock("corpus", name, "preparing it"), registry.scratch("corpus", name) as work_dir:
        if not overwrite and (registry.entry_dir("corpus", name) / "corpus.pt").exists():
            raise LstmgenError(f"corpus {name!r} already exists; replace it with --overwrite or pick another --name")
        source, texts, column, labels = read_inputs(inputs, work_dir)
        stream = inputs[0].records == "file" and not source.is_csv
        corpus = build_corpus(source, texts, options, stream=stream, column=column, work_dir=work_dir,
                              vocab_from=base, labels=labels, label_column=inputs[0].label_column)  # fmt: skip
        if isinstance(source, Joined):  # each file, for `list`, `show` and the hint to prepare it again
            corpus["meta"]["sources"] = source.paths()
            corpus["meta"]["source"] = ", ".join(source.paths())
        index_notes: list[str] = []  # built into the staged entry: the index arrives with the corpus, or neither

        def add_index(staged: Path) -> None:
            index_notes.extend(_novelty_index(staged, corpus))

        path = registry.save_corpus(name, corpus, also=add_index)
        notes = _skew_notes(corpus["meta"], options) + _label_notes(corpus["meta"]) + index_notes
    return Prepared(name, path, source.name, column, corpus["meta"], notes)


def _novelty_index(path: Path, corpus: dict) -> list[str]:
    """Build the corpus's novelty index (lstmgen.novelty) into its directory; a note when it cannot be."""
    from . import novelty

    try:
        novelty.save_index(path, novelty.build_index(corpus))
    except novelty.NoIndex as e:
        return [f"no novelty index: {e}; `sample --novel` cannot check this corpus's models"]
    except OSError as e:
        return [f"could not save the novelty index ({e.strerror or e}); `sample --json` builds it when first asked"]
    return []


def read_inputs(
    inputs: Sequence[TextInput], work_dir: Path | None = None
) -> tuple[Source, list[str] | None, str | None, list[str] | None]:
    """The source build_corpus reads, the records when they are read whole, the CSV column they came from,
    and each record's label when the inputs have a label_column.

    A CSV is parsed whole by pandas; a text file streams through in chunks, in bounded memory. Several inputs
    must be of one format (all CSV with the same text column, or all text): their records are concatenated
    in order, and the source's hash covers them all."""
    if sum(t.path == "-" for t in inputs) > 1:
        raise LstmgenError("stdin (-) can be read only once; give it as one input")
    sources = [t.open(spool_dir=work_dir) for t in inputs]
    kinds = {s.is_csv for s in sources}
    if len(kinds) > 1:
        csv, text = (next(s.name for s in sources if s.is_csv is k) for k in (True, False))
        raise LstmgenError(
            f"the inputs of one corpus must share one format, and {csv} is CSV while {text} is text; convert one "
            "of them, or prepare them as two corpora"
        )
    first = inputs[0]
    if not (sources[0].is_csv or first.column or first.label_column):
        return (sources[0] if len(sources) == 1 else Joined(sources)), None, None, None
    texts, columns, labels = [], [], []
    for t, source in zip(inputs, sources, strict=True):
        if t.label_column is not None:
            records, tags, column = t.read_labelled(source)
            labels += tags
        else:
            records, column = t.read(source)
        texts += records
        columns.append((source.name, column))
    differ = [(n, c) for n, c in columns if c != columns[0][1]]
    if differ:
        raise LstmgenError(
            f"the inputs of one corpus must have their text in one column, and {columns[0][0]} has it in "
            f"{columns[0][1]!r} while {differ[0][0]} has it in {differ[0][1]!r}; rename one column"
        )
    return (sources[0] if len(sources) == 1 else Joined(sources)), texts, columns[0][1], (
        labels if first.label_column is not None else None
    )


class Joined(Source):
    """Several checked sources read as one, each ending at a line end (the last record of one file never runs
    into the first of the next), hashed together."""

    def __init__(self, parts: list[Source]):
        digest = hashlib.sha256("\n".join(p.sha256 for p in parts).encode())
        super().__init__(parts[0].path, ", ".join(p.name for p in parts), digest.hexdigest(), parts[0].is_csv,
                         parts[0].encoding, parts[0].max_line_chars)  # fmt: skip
        self.parts = parts

    def paths(self) -> list[str]:
        return [p.name if p.name == "<stdin>" else str(Path(p.name).resolve()) for p in self.parts]

    def chunks(self, on_read: Callable[[bytes], None] | None = None, lines: bool = False) -> Iterator[str]:
        for part in self.parts:
            last = ""
            for last in part.chunks(on_read, lines):
                yield last
            if not last.endswith("\n"):
                yield "\n"


def model_name_for(corpus: str, tokenizer: str) -> str:
    """A free name for a first model of `corpus`, as prepare's hint suggests it: jokes -> jokes-char (jokes-word
    -> jokes-word-model), numbered on (jokes-char-2) while a corpus or model has it, so that following the hint
    never meets "already exists" and `show NAME` needs no --kind."""
    base = corpus[:90] + ("-model" if corpus.endswith(f"-{tokenizer}") else f"-{tokenizer}")
    taken = {n for kind in registry.KINDS for n in registry.names(kind)}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


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


def _label_notes(meta: dict) -> list[str]:
    """A note on records whose label cell was empty: they train under <none>."""
    n = meta.get("unlabelled", 0)
    if not n:
        return []
    total = sum(meta["records"].values())
    return [f"{n:,} of {total:,} records have an empty {meta['label_column']!r} cell; they are labelled <none>"]


def load_corpus(name: str) -> dict:
    """A registry corpus: {"vocab", "splits": {split: ids}, "meta"}, its parts checked."""
    path = registry.require("corpus", name) / "corpus.pt"
    corpus = registry.load_pt(path)
    registry.check_version(corpus, path, CORPUS_FORMAT, "run `lstmgen prepare` again")
    fix = "run `lstmgen prepare` again"
    if not isinstance(corpus.get("meta"), dict) or not isinstance(corpus.get("splits"), dict):
        raise LstmgenError(f"{path} is damaged (its metadata or splits are missing); {fix}")
    info, _ = registry.read_json_checked(path.parent / "info.json")  # written with corpus.pt, from its meta
    if info and any(info.get(k) != corpus["meta"].get(k) for k in ("sha256", "tokens")):
        raise LstmgenError(
            f"{path} does not match its entry's info.json (copied in from another corpus?); prepare {name!r} "
            "again with --overwrite"
        )
    n_vocab = len(Vocab.from_dict(corpus.get("vocab")))
    for split in SPLITS:
        # Scanning the train split would page a whole memory-mapped corpus in; training checks each window.
        registry.check_ids(corpus["splits"].get(split), n_vocab, split, path, fix, values=split != "train")
    return corpus
