"""How well a model predicts text: NLL over a token stream or per record, perplexity and bits per character,
and `evaluate_model`, the library entry point of `lstmgen eval`. Scores come from a decoding backend (ONNX
Runtime on the CPU), so this never imports torch."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .corpora import TextInput
from .corpus import encode_records, n_chars, unk_rate
from .decoding import Backend
from .errors import LstmgenError
from .inference import load_for_inference
from .runtime import usable_cores
from .tokenize import IGNORE

SCORES_PER_CALL = 1 << 22  # (B, T, V) scores per forward call: 16 MB of float32, whatever the vocabulary
PROGRESS_STEPS = 100  # with on_progress, a long text is read in about this many calls, each reported

Progress = Callable[[int, int], None]  # (tokens scored so far, tokens in all)


def eval_lanes(stream: np.ndarray, eor_id: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every token of a held-out stream as a target, conditioned the way training saw it.

    The stream is prefixed with <eor> (so its first record starts like any other), cut into at most
    `batch_size` lanes, and padded: padded targets are IGNORE, so the sum of NLL covers each token once.
    Returns x, y, each (B, L) int64.
    """
    ids = np.concatenate([[eor_id], np.asarray(stream, dtype=np.int64)])
    x, y = ids[:-1], ids[1:]
    n = y.size
    # Each lane starts from a zero state mid-text, which costs a little accuracy; lanes of at least 4,096
    # tokens make that negligible (a single lane for held-out splits of ordinary size).
    b = max(1, min(batch_size, n // 4096))
    length = math.ceil(n / b)
    pad = b * length - n
    x = np.concatenate([x, np.full(pad, eor_id)]).reshape(b, length)
    y = np.concatenate([y, np.full(pad, IGNORE)]).reshape(b, length)
    return x, y


def records_of(stream, eor_id: int) -> list[list[int]]:
    """A token stream back into its records' ids, each without its closing <eor>."""
    records, current = [], []
    for t in np.asarray(stream).tolist():
        if t == eor_id:
            records.append(current)
            current = []
        else:
            current.append(t)
    return records


def lane_nll(backend: Backend, x: np.ndarray, y: np.ndarray, on_progress: Progress | None = None) -> np.ndarray:
    """NLL (nats) of every target of y, (B, L) float64 (0 where y is IGNORE), reading x (B, L) from the zero
    state with the state carried. The calls are cut to SCORES_PER_CALL scores and, with `on_progress`, to
    max(256, L / PROGRESS_STEPS) positions, each call reported as on_progress(positions read, L); with the
    state carried, neither changes a result."""
    b, length = x.shape
    h, c = backend.zero_state(b)
    width = max(1, SCORES_PER_CALL // max(1, b * backend.vocab_size))
    if on_progress is not None:
        width = min(width, max(256, -(-length // PROGRESS_STEPS)))
    out = np.zeros((b, length))
    for start in range(0, length, width):
        scores, h, c = backend.forward(x[:, start : start + width], h, c)  # (B, T, V)
        targets = y[:, start : start + width]
        top = scores.max(axis=-1, keepdims=True)
        logz = (np.log(np.exp(scores - top).sum(axis=-1)) + top[..., 0]).astype(np.float64)  # (B, T)
        picked = np.take_along_axis(scores, np.maximum(targets, 0)[..., None], axis=-1)[..., 0]
        out[:, start : start + width] = np.where(targets == IGNORE, 0.0, logz - picked)
        if on_progress is not None:
            on_progress(min(start + width, length), length)
    return out


def stream_nll(
    backend: Backend, stream: np.ndarray, eor_id: int, batch_size: int = 32, on_progress: Progress | None = None
) -> tuple[float, int]:
    """Summed NLL (nats) over every token of `stream` (the stream starts after an <eor>), and its length.
    `on_progress(tokens scored, tokens in all)` hears of each part read."""
    if len(stream) == 0:
        return 0.0, 0
    x, y = eval_lanes(stream, eor_id, batch_size)
    lanes = x.shape[0]
    report = (lambda done, _: on_progress(min(done * lanes, len(stream)), len(stream))) if on_progress else None
    return float(lane_nll(backend, x, y, report).sum()), int(len(stream))


def record_nll(
    backend: Backend, records: list[list[int]], eor_id: int, batch_size: int = 64, on_progress: Progress | None = None,
    given: int = 0,
) -> list[float]:
    """Summed NLL (nats) of each record's tokens and its closing <eor>, each record read on its own from the
    zero state after an <eor> (as a record starts in training), so its score does not depend on its
    neighbours. Records are batched by length, padded with IGNORE targets. `on_progress(tokens scored,
    tokens in all)` hears of each batch. The first `given` tokens of each record are read but not scored
    (a record's label: the text is scored given it)."""
    sums = [0.0] * len(records)
    total, done = sum(len(r) + 1 for r in records), 0
    order = sorted(range(len(records)), key=lambda i: len(records[i]))
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        length = len(records[rows[-1]]) + 1  # the longest in this batch, plus its <eor>
        x = np.full((len(rows), length), eor_id, dtype=np.int64)
        y = np.full((len(rows), length), IGNORE, dtype=np.int64)
        for r, i in enumerate(rows):
            ids = records[i]
            x[r, 1 : len(ids) + 1], y[r, : len(ids)], y[r, len(ids)] = ids, ids, eor_id
            y[r, : min(given, len(ids))] = IGNORE
        for r, nll in zip(rows, lane_nll(backend, x, y).sum(axis=1).tolist(), strict=True):
            sums[r] = nll
        done += sum(len(records[i]) + 1 for i in rows)
        if on_progress is not None:
            on_progress(done, total)
    return sums


def metrics(nll: float, n_tokens: int, n_chars: int) -> dict:
    """Mean cross-entropy, perplexity and bits per character (comparable across tokenizers)."""
    loss = nll / max(n_tokens, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700)),
        "bits_per_char": nll / math.log(2) / max(n_chars, 1),
        "tokens": n_tokens,
        "chars": n_chars,
    }


def evaluate_model(
    name: str, split: str | None = None, text: TextInput | None = None, *, skip_unknown: bool = False,
    device: str = "cpu", per_record: bool = False, per_label: bool = False, on_note=None,
    on_progress: Progress | None = None,
) -> dict | list[dict]:  # fmt: skip
    """Model `name` on its corpus's held-out `split` (default test), or on `text`: one dict of metrics (model, on, loss,
    perplexity, bits_per_char, tokens, chars, and unk_rate for word models), or with `per_record` one dict
    per record, in input order (index, text, log_likelihood and the same metrics). `on_note` hears of a
    decoding graph built for an older model; `on_progress(tokens scored, tokens in all)` of the scoring.
    `per_label`: one dict per label of the split's records (label, records and the same metrics), each
    record's text scored given its label, so the label's own token counts for nothing."""
    # Scoring runs long sequences, where a thread per core pays (unlike single decoding steps).
    if split is not None and text is not None:  # one would be dropped in silence
        raise LstmgenError(f"--split {split} names a held-out split of the model's corpus, and --file scores a file "
                           "instead; drop one of them")
    split = split or "test"
    if per_label and (text is not None or per_record):
        raise LstmgenError(
            "--per-label scores the held-out split, whose records carry their labels; drop --file and --per-record"
        )
    loaded = load_for_inference(name, device=device, on_note=on_note, threads=usable_cores())
    vocab = loaded.vocab
    if per_label and not vocab.labels:
        raise LstmgenError(
            f"model {name!r} was trained without labels, so --per-label has nothing to group by; prepare its "
            "corpus with --label-column COLUMN and train on it"
        )
    if text is not None:
        source = text.open()
        texts, _ = text.read(source)
        if skip_unknown:  # bits/char over the characters actually scored
            texts = [vocab.known(t) for t in texts]
        stream = encode_records(vocab, texts, skip_unknown=skip_unknown, where=source.name)
        chars, where = n_chars(texts), source.name
    else:
        stream, chars, where = loaded.heldout(split), loaded.corpus["chars"][split], f"{split} split"
        if stream.size == 0:
            raise LstmgenError(
                f"model {name!r} has an empty {split} split; evaluate with --file, or prepare with a larger "
                f"--{split}-frac"
            )
    if per_label:
        return _per_label(loaded, stream, on_progress)
    if per_record:
        ids = records_of(stream, vocab.eor_id)
        if text is None:  # the split's records, read back from their ids
            texts = [vocab.decode(r) for r in ids]
        nlls = record_nll(loaded.backend, ids, vocab.eor_id, on_progress=on_progress)
        return [
            # + 1: each record's end counts as a token and a character, as in the whole-text figures
            {"model": name, "index": i, "text": t, "log_likelihood": -nll, **metrics(nll, len(r) + 1, len(t) + 1)}
            for i, (t, nll, r) in enumerate(zip(texts, nlls, ids, strict=True))
        ]
    nll, n = stream_nll(loaded.backend, stream, vocab.eor_id, on_progress=on_progress)
    result = {"model": name, "on": where, **metrics(nll, n, chars)}
    if vocab.unk_id is not None:
        result["unk_rate"] = unk_rate(stream, vocab)
    return result


def _per_label(loaded, stream: np.ndarray, on_progress: Progress | None) -> list[dict]:
    """Metrics per label over a split's records (each starts with its label's token), in the vocab's label
    order (most frequent in the corpus first); labels without records in the split are left out."""
    vocab = loaded.vocab
    ids = records_of(stream, vocab.eor_id)
    if any(not r or r[0] < vocab.n_text for r in ids):
        # A --from child of a labelled model, trained on a corpus prepared without --label-column: its vocab has
        # labels, its records none (and given=1 would take each one's first text token as given, unscored).
        raise LstmgenError(
            f"the held-out records of model {loaded.name!r} carry no labels (its corpus "
            f"{loaded.corpus.get('name')!r} was prepared without --label-column), so --per-label has nothing to "
            "group by; drop --per-label"
        )
    nlls = record_nll(loaded.backend, ids, vocab.eor_id, on_progress=on_progress, given=1)
    groups: dict[int, list[int]] = {}  # label id -> indices of its records
    for i, r in enumerate(ids):
        groups.setdefault(r[0], []).append(i)
    out = []
    for k in sorted(groups):
        rows = groups[k]
        nll = sum(nlls[i] for i in rows)
        tokens = sum(len(ids[i]) for i in rows)  # the text's tokens and the <eor>, not the label
        chars = sum(len(vocab.decode(ids[i])) + 1 for i in rows)
        label = vocab.labels[k - vocab.n_text]
        out.append({"model": loaded.name, "label": label, "records": len(rows), **metrics(nll, tokens, chars)})
    return out
