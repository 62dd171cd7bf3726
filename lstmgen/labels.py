"""Record labels (`prepare --label-column`, `sample --label`): a CSV column's value per record becomes a special
token that starts the record, so a model learns what each label's records look like and generation can start
after a chosen one. The rules on label names, their caps and their lookups live here."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter

from .errors import LstmgenError, UsageError

NONE_LABEL = "<none>"  # the label of a record whose label cell is empty
MAX_LABELS = 256  # default --max-labels: distinct labels a corpus may have (one token each)
# The largest --max-labels, and the longest label name: every label and its count are kept in the corpus's
# and the model's info.json (read back capped at 64 KB), 512 x (64 + ~12 JSON) bytes = ~39 KB at most.
LABELS_LIMIT = 512
MAX_LABEL_CHARS = 64
SHOWN_LABELS = 12  # an error line lists this many known labels, then how many more


def label_token(name: str) -> str:
    """The vocabulary token of label `name`. No char, word or byte-level BPE token has this shape (a char
    token is one character; a word or BPE pre-token never mixes '<' and ':' with letters), so a label never
    meets a text token of the same spelling."""
    return f"<label:{name}>"


def record_labels(cells: list[str], column: str, source: str) -> list[str]:
    """Each record's label: its label column's cell (stripped), NONE_LABEL where that is empty. A cell that
    reads NONE_LABEL itself is refused: its records would silently merge with the unlabelled ones."""
    if NONE_LABEL in cells:
        row = cells.index(NONE_LABEL) + 1
        raise LstmgenError(
            f"{source}: label column {column!r} holds {NONE_LABEL!r} (record {row:,}), the name lstmgen gives "
            "records with an empty cell; rename that value, or empty those cells"
        )
    return [cell or NONE_LABEL for cell in cells]


def check_max_labels(max_labels: int) -> None:
    if not 1 <= max_labels <= LABELS_LIMIT:
        raise UsageError(f"--max-labels must be between 1 and {LABELS_LIMIT} (got {max_labels})")


def count_labels(labels: list[str], column: str, source: str, max_labels: int = MAX_LABELS) -> dict[str, int]:
    """{label: records}, most frequent first, of a label column's values (empty ones already NONE_LABEL).
    Refuses a name longer than MAX_LABEL_CHARS, one with a line break or other control character, and more than
    `max_labels` distinct labels: each label is a token, and a column of ids or free text would make thousands."""
    counts = Counter(labels)
    if len(counts) > max_labels:
        raise LstmgenError(
            f"{source}: label column {column!r} has {len(counts):,} distinct values, more than --max-labels "
            f"{max_labels}; pick a column of categories, or raise --max-labels (at most {LABELS_LIMIT})"
        )
    long = next((name for name in counts if len(name) > MAX_LABEL_CHARS), None)
    if long is not None:
        raise LstmgenError(
            f"{source}: label {shown(long)} in column {column!r} is longer than {MAX_LABEL_CHARS} characters; "
            "shorten the column's values"
        )
    broken = next((name for name in counts if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name)), None)
    if broken is not None:  # a quoted CSV cell may hold one; printed, it would split every one-line label listing
        raise LstmgenError(
            f"{source}: label {shown(broken)} in column {column!r} holds a line break or other control character; "
            "labels are one-line categories: clean the column's values"
        )
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def shown(name: str) -> str:
    """A label for an error line: quoted, with a line break or other control character escaped."""
    return repr(name[:MAX_LABEL_CHARS + 3])


def known_labels(labels: list[str]) -> str:
    """The known labels for an error line: the first SHOWN_LABELS, then how many more."""
    more = f", ... and {len(labels) - SHOWN_LABELS} more" if len(labels) > SHOWN_LABELS else ""
    return ", ".join(map(shown, labels[:SHOWN_LABELS])) + more


def label_id(vocab, name: str, model: str) -> int:
    """The token id of label `name` in `vocab` (model `model`'s): one line naming the known labels when it has
    no such label, or none at all."""
    if not vocab.labels:
        raise LstmgenError(
            f"model {model!r} was trained without labels, so --label has nothing to choose; prepare its corpus "
            "with --label-column COLUMN and train on it"
        )
    token = label_token(name)
    if token not in vocab.stoi:
        raise LstmgenError(f"model {model!r} has no label {shown(name)}; its labels: {known_labels(vocab.labels)}")
    return vocab.stoi[token]


def parse_labelled(line: str, where: str) -> tuple[str, str | None]:
    """One line of `sample --label -`'s stdin: a JSON object {"label": L, "prompt": P} -> (prompt, label).
    A missing prompt samples from the record's start; a missing or null label samples without one."""
    try:
        obj = json.loads(line)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise LstmgenError(
            f'{where} is not a JSON object; with --label -, give one per line: {{"label": "a", "prompt": "Hi"}}'
        )
    label, prompt = obj.get("label"), obj.get("prompt", "")
    if not (label is None or isinstance(label, str)) or not isinstance(prompt, str):
        raise LstmgenError(f'{where}: "label" and "prompt" must be strings (or "label" null, for none)')
    return prompt, label
