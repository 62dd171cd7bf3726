"""Char, word and byte-level BPE tokenizers, and the Vocab (stoi/itos, special tokens) that travels with every
corpus and model."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from .errors import LstmgenError, UsageError

EOR = "<eor>"  # end of record: ends every record in training, so generation learns where a joke ends
IGNORE = -100  # a target id that counts for nothing (padding); cross_entropy's ignore_index
UNK = "<unk>"  # word models only: any word the vocab lacks
KINDS = ("char", "word", "bpe")
MAX_WORD_VOCAB = 100_000  # above this, prepare asks for an explicit --max-vocab
BPE_VOCAB_SIZE = 1024  # default: 256 bytes + 767 merges + <eor>; short words and common endings become one token
MIN_BPE_VOCAB = 257  # the 256 byte tokens and <eor>: any text encodes, with or without merges
MAX_BPE_VOCAB = 100_000  # as MAX_WORD_VOCAB: an embedding and softmax this wide would dwarf the LSTM

# A number with inner separators ("5.99", "3:30", "1,000"), a word keeping inner apostrophes ("don't",
# "rock'n'roll"), or one punctuation mark.
WORD_RE = re.compile(r"\d+(?:[.,:]\d+)+|\w+(?:['\u2019]\w+)*|[^\w\s]")
QUOTES = {'"', "'"}  # alternate: an opening quote hugs the next token, a closing one the previous
NO_SPACE_BEFORE = set(".,!?;:%)]}\u2026")
NO_SPACE_AFTER = set("([{$")
JOINERS = set("-/")  # glue both sides: "well-known", "and/or"


def tokenize_words(text: str) -> list[str]:
    """Split text into words and punctuation marks (not `split(' ')`)."""
    return WORD_RE.findall(text)


def detokenize_words(tokens: Iterable[str]) -> str:
    """Join word tokens into readable text: no space before closing punctuation, after openers, around joiners."""
    out: list[str] = []
    glue_next = True  # no space before the first token
    open_quote: dict[str, bool] = dict.fromkeys(QUOTES, False)
    for tok in tokens:
        glue = glue_next or tok in NO_SPACE_BEFORE or tok in JOINERS
        glue_next = tok in NO_SPACE_AFTER or tok in JOINERS
        if tok in QUOTES:
            glue = glue or open_quote[tok]  # a closing quote hugs the token before it
            glue_next = not open_quote[tok]  # an opening quote hugs the token after it
            open_quote[tok] = not open_quote[tok]
        out.append(tok if glue else " " + tok)
    return "".join(out)


def code_points(text: str):
    """The text's code points as a numpy array: bytes when it is ASCII (4x less to copy), else uint32."""
    import numpy as np

    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class UnknownTokens(LstmgenError):
    """Text contains characters a char vocab lacks."""

    def __init__(self, unknown: list[str], where: str = "text"):
        self.unknown = unknown
        shown = ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        super().__init__(
            f"{where} has {len(unknown)} character(s) the model's vocabulary lacks: {shown}; "
            "remove them or pass --skip-unknown to drop them"
        )


@dataclass
class Vocab:
    kind: str  # "char", "word" or "bpe"
    itos: list[str]  # id -> token; specials first. bpe: <eor>, then the tokenizer's byte-level tokens
    bpe: str | None = None  # bpe only: the HuggingFace `tokenizers` JSON, so sampling never needs the data
    # Record labels (labels.py), in id order: their tokens end itos, after every text token, so the text
    # tokens keep their ids (a BPE id is still its tokenizer's id + 1).
    labels: list[str] = field(default_factory=list)
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @cached_property
    def _bpe(self):
        """The byte-level BPE tokenizer. It knows no special tokens: our id = its id + 1, <eor> is id 0, so a
        literal "<eor>" in a text is just text."""
        from tokenizers import Tokenizer  # deferred: only BPE vocabs pay for the import

        return Tokenizer.from_str(self.bpe)

    @property
    def eor_id(self) -> int:
        return self.stoi[EOR]

    @property
    def unk_id(self) -> int | None:
        return self.stoi.get(UNK)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def n_text(self) -> int:
        """How many tokens are text (all but the label tokens at the end)."""
        return len(self.itos) - len(self.labels)

    @property
    def label_ids(self) -> list[int]:
        return list(range(self.n_text, len(self.itos)))

    def with_labels(self, labels: list[str]) -> Vocab:
        """This vocab with a token for each label appended."""
        from .labels import label_token

        return Vocab(self.kind, [*self.itos[: self.n_text], *map(label_token, labels)], self.bpe, list(labels))

    def tokenize(self, text: str) -> list[str]:
        if self.kind == "bpe":
            return self._bpe.encode(check_utf8(text)).tokens
        return list(text) if self.kind == "char" else tokenize_words(text)

    def detokenize(self, tokens: Iterable[str]) -> str:
        """Text of tokens. bpe: bytes that do not (yet) form a whole UTF-8 character read as U+FFFD."""
        if self.kind == "bpe":
            return self._bpe.decoder.decode(list(tokens))
        return "".join(tokens) if self.kind == "char" else detokenize_words(tokens)

    def unknown(self, text: str) -> list[str]:
        """Tokens of `text` this vocab lacks, each once, in order of appearance."""
        return list(dict.fromkeys(t for t in self.tokenize(text) if t not in self.stoi))

    def known(self, text: str) -> str:
        """`text` without the characters a char vocab lacks (what --skip-unknown reads); word vocabs keep all."""
        return "".join(ch for ch in text if ch in self.stoi) if self.kind == "char" else text

    def encode(self, text: str, skip_unknown: bool = False, where: str = "text") -> list[int]:
        """Token ids of `text`. Unknown words become <unk>; unknown chars raise unless `skip_unknown`; bpe
        encodes any text (byte-level: there is nothing it does not know)."""
        if self.kind == "bpe":
            return [i + 1 for i in self._bpe.encode(check_utf8(text, where)).ids]
        tokens = self.tokenize(text)
        if self.unk_id is not None:
            return [self.stoi.get(t, self.unk_id) for t in tokens]
        if not skip_unknown:
            missing = [t for t in tokens if t not in self.stoi]
            if missing:
                raise UnknownTokens(list(dict.fromkeys(missing)), where)
        return [self.stoi[t] for t in tokens if t in self.stoi]

    def encode_many(self, texts: list[str], skip_unknown: bool = False, where: str = "text") -> list[list[int]]:
        """encode() of each text; bpe encodes them as one batch, in parallel."""
        if self.kind == "bpe":
            return [[i + 1 for i in e.ids] for e in self._bpe.encode_batch([check_utf8(t, where) for t in texts])]
        try:
            return [self.encode(t, skip_unknown=skip_unknown, where=where) for t in texts]
        except UnknownTokens:  # name every missing character of all the texts, and the first text that has one
            first = next(i for i, t in enumerate(texts) if any(c not in self.stoi for c in t))
            unknown = dict.fromkeys(c for t in texts[first:] for c in t if c not in self.stoi)
            raise UnknownTokens(list(unknown), f"{where} (first in record {first + 1})") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, stopping at the first end-of-record; label tokens are not text."""
        tokens, n_text = [], self.n_text
        for i in ids:
            if i == self.eor_id:
                break
            if i < n_text:
                tokens.append(self.itos[i])
        return self.detokenize(tokens)

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "itos": list(self.itos)} | ({"bpe": self.bpe} if self.kind == "bpe" else {})
        return d | ({"labels": list(self.labels)} if self.labels else {})

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        # Checked because d comes from a file: a damaged vocab (itos of ints, or without <eor> first) used to
        # load fine and fail later as a bare KeyError('<eor>') traceback in `eval` and `sample`.
        itos = d.get("itos") if isinstance(d, dict) else None
        if (
            not isinstance(d, dict)
            or d.get("kind") not in KINDS
            or not isinstance(itos, list)
            or not all(isinstance(t, str) and t for t in itos)
            or itos[:1] != [EOR]
        ):
            raise LstmgenError(DAMAGED)
        labels = d.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels) or len(labels) >= len(itos):
            raise LstmgenError(DAMAGED)
        vocab = cls(kind=d["kind"], itos=list(itos), bpe=d.get("bpe"), labels=list(labels))
        if labels and vocab.with_labels(labels).itos != vocab.itos:  # each label's token, in order, at the end
            raise LstmgenError(DAMAGED)
        if vocab.kind == "bpe":
            _check_bpe(vocab)
        return vocab


def check_utf8(text: str, where: str = "text") -> str:
    """`text` as Python read it from argv or a text-mode stdin, where each byte that is not UTF-8 becomes a
    lone surrogate (U+DC80-U+DCFF; shown as '\\udcff' in an error). Refused like a file: the first such byte
    and its offset. `where` names the text ("the prompt", "line 3 of stdin")."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError as e:
        bad = text[e.start]
        at = len(text[: e.start].encode("utf-8", "surrogateescape"))
        what = f"byte {ord(bad) - 0xDC00:#04x}" if "\udc80" <= bad <= "\udcff" else f"character U+{ord(bad):04X}"
        raise LstmgenError(f"{where} is not valid UTF-8: {what} at offset {at}; convert it to UTF-8") from None


DAMAGED = (
    "the saved vocabulary is damaged (expected a char, word or bpe vocab of strings, <eor> first); "
    "prepare the corpus or train the model again"
)


def _check_bpe(vocab: Vocab) -> None:
    """A bpe vocab's tokenizer must be the one _train_bpe builds (byte-level BPE, no normaliser, no added or
    post-processing tokens) and agree with its itos, or ids would decode to other text than was encoded."""
    try:
        spec = json.loads(vocab.bpe)
        hf = vocab._bpe
        agrees = (
            spec["model"]["type"] == "BPE"
            and spec["pre_tokenizer"]["type"] == spec["decoder"]["type"] == "ByteLevel"
            and spec["normalizer"] is None
            and spec["post_processor"] is None
            and not spec["added_tokens"]
            and hf.get_vocab_size() == vocab.n_text - 1
            and all(hf.id_to_token(i) == t for i, t in enumerate(vocab.itos[1 : vocab.n_text]))
        )
    except Exception:  # noqa: BLE001 - bad JSON, missing keys, and the Rust parser's errors alike
        agrees = False
    if not agrees:
        raise LstmgenError(DAMAGED)


def build_vocab(
    kind: str,
    texts: Iterable[str],
    min_freq: int = 1,
    max_vocab: int | None = None,
    vocab_size: int | None = None,
) -> Vocab:
    """A vocab for `kind` from `texts`, which the caller picks: every split's for char (the alphabet is not
    a held-out secret, and a char model has no <unk>), the training split's for word and BPE.

    Char: every character of the texts. Word: words seen at least `min_freq` times, most frequent first, at
    most `max_vocab` entries in all; the rest map to <unk>, so held-out perplexity stays honest.
    BPE: byte-level BPE (GPT-2's pre-tokenizer), `vocab_size` tokens with <eor> (default BPE_VOCAB_SIZE);
    it starts from all 256 bytes, so no text ever needs an <unk>.
    """
    if kind == "bpe":
        return _train_bpe(texts, vocab_size or BPE_VOCAB_SIZE)
    if kind == "char":
        import numpy as np

        seen = np.zeros(0x110000, dtype=bool)  # by code point
        for text in texts:  # an iterable: a streamed corpus is never in memory
            seen[code_points(text)] = True  # vectorised: 100 MB of text in well under a second
        return Vocab("char", [EOR, *map(chr, seen.nonzero()[0].tolist())])
    if kind != "word":
        raise LstmgenError(f"unknown tokenizer {kind!r}; use one of {', '.join(KINDS)}")
    counts = Counter()
    for text in texts:
        counts.update(tokenize_words(text))
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    if max_vocab is None and len(words) + 2 > MAX_WORD_VOCAB:
        # An embedding and a softmax this wide would dwarf the LSTM (and usually mean the "words" are ids,
        # hashes or noise): make the user choose the cap.
        raise LstmgenError(
            f"the word vocabulary would hold {len(words) + 2:,} entries (words seen at least {min_freq} times), "
            f"more than {MAX_WORD_VOCAB:,}; cap it with --max-vocab (say 50000: rarer words become <unk>), "
            "raise --min-freq, or use --tokenizer char"
        )
    if max_vocab is not None:
        words = words[: max(0, max_vocab - 2)]
    return Vocab("word", [EOR, UNK, *words])


def check_bpe_vocab_size(vocab_size: int) -> None:
    if not MIN_BPE_VOCAB <= vocab_size <= MAX_BPE_VOCAB:
        raise UsageError(
            f"--vocab-size must be between {MIN_BPE_VOCAB} (the 256 byte tokens and <eor>) and {MAX_BPE_VOCAB:,}, "
            f"got {vocab_size}"
        )


def _train_bpe(train_texts: Iterable[str], vocab_size: int) -> Vocab:
    check_bpe_vocab_size(vocab_size)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # no normalizer: decoding is lossless
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,  # <eor> is ours, outside the tokenizer
        min_frequency=2,  # a merge seen once would only memorise
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(train_texts, trainer)
    itos = [EOR, *(hf.id_to_token(i) for i in range(hf.get_vocab_size()))]
    return Vocab("bpe", itos, bpe=hf.to_str())
