"""How well a model predicts text: NLL over a token stream or per record, perplexity and bits per character,
and `evaluate_model`, the library entry point of `lstmgen eval`."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .batches import IGNORE, eval_lanes, records_of
from .checkpoint import load_for_inference
from .corpora import TextInput
from .corpus import encode_records, n_chars, unk_rate
from .device import pick_device
from .errors import LstmgenError
from .model import LSTMLM


def _window_nll(model: LSTMLM, x: torch.Tensor, y: torch.Tensor, seq_len: int, should_stop=None):
    """NLL (nats) of every target of y, (B, L) fp32 (0 where y is IGNORE), reading x (B, L) in windows of
    seq_len with the state carried; None if `should_stop()` turns true between windows."""
    losses, state = [], None
    for start in range(0, x.size(1), seq_len):
        if should_stop and should_stop():
            return None
        nll, state = model(x[:, start : start + seq_len], state, y[:, start : start + seq_len])  # (B, T)
        losses.append(nll)
    return torch.cat(losses, dim=1)


@torch.no_grad()
def token_nll(
    model: LSTMLM,
    stream: torch.Tensor,
    eor_id: int,
    batch_size: int = 32,
    seq_len: int = 256,
    device=None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor | None:
    """The NLL (nats) of every token of `stream`, (N,) fp32 in stream order, in eval mode, each token
    conditioned on all before it as training saw them (the stream starts after an <eor>).

    None if `should_stop()` turns true midway: a stop request is not kept waiting for a long validation
    pass (a 50k-word softmax over a large split takes minutes on a CPU).
    """
    was_training = model.training
    model.eval()
    x, y = eval_lanes(stream, eor_id, batch_size, device)  # (B, L) each; lanes are consecutive stretches
    nll = _window_nll(model, x, y, seq_len, should_stop)
    model.train(was_training)
    return None if nll is None else nll.flatten()[: stream.numel()]  # the padding sits at the very end


def evaluate(model: LSTMLM, stream: torch.Tensor, eor_id: int, **kw) -> tuple[float, int] | None:
    """Summed NLL (nats) over every token of `stream` and the number of tokens (None if stopped midway)."""
    if stream.numel() == 0:
        return 0.0, 0
    nll = token_nll(model, stream, eor_id, **kw)
    return None if nll is None else (nll.sum().item(), int(stream.numel()))  # one device sync


@torch.no_grad()
def record_nll(
    model: LSTMLM, records: list[list[int]], eor_id: int, batch_size: int = 64, seq_len: int = 256, device=None
) -> list[float]:
    """Summed NLL (nats) of each record's tokens and its closing <eor>, each record read on its own from the
    zero state after an <eor> (as a record starts in training), so its score does not depend on its
    neighbours. Records are batched by length, padded with IGNORE targets."""
    was_training = model.training
    model.eval()
    sums = [0.0] * len(records)
    order = sorted(range(len(records)), key=lambda i: len(records[i]))
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        length = len(records[rows[-1]]) + 1  # the longest in this batch, plus its <eor>
        x = torch.full((len(rows), length), eor_id, dtype=torch.long)
        y = torch.full((len(rows), length), IGNORE, dtype=torch.long)
        for r, i in enumerate(rows):
            ids = torch.tensor(records[i], dtype=torch.long)
            x[r, 1 : len(ids) + 1], y[r, : len(ids)], y[r, len(ids)] = ids, ids, eor_id
        totals = _window_nll(model, x.to(device), y.to(device), seq_len).sum(dim=1)  # long records in windows
        for r, value in zip(rows, totals.tolist(), strict=True):
            sums[r] = value
    model.train(was_training)
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
    name: str, split: str = "test", text: TextInput | None = None, *, skip_unknown: bool = False,
    device: str = "auto", per_record: bool = False,
) -> dict | list[dict]:  # fmt: skip
    """Model `name` on its corpus's held-out `split`, or on `text`: one dict of metrics (model, on, loss,
    perplexity, bits_per_char, tokens, chars, and unk_rate for word models), or with `per_record` one dict
    per record, in input order (index, text, log_likelihood and the same metrics)."""
    dev = pick_device(device)
    loaded = load_for_inference(name, device=dev)
    vocab, ckpt = loaded.vocab, loaded.checkpoint
    if text is not None:
        source = text.open()
        texts, _ = text.read(source)
        if skip_unknown:  # bits/char over the characters actually scored
            texts = [vocab.known(t) for t in texts]
        stream = encode_records(vocab, texts, skip_unknown=skip_unknown, where=source.name)
        chars, where = n_chars(texts), source.name
    else:
        stream, chars, where = ckpt.heldout[split], ckpt.corpus["chars"][split], f"{split} split"
        if stream.numel() == 0:
            raise LstmgenError(
                f"model {name!r} has an empty {split} split; evaluate with --file, or prepare with a larger "
                f"--{split}-frac"
            )
    if per_record:
        ids = records_of(stream, vocab.eor_id)
        if text is None:  # the split's records, read back from their ids
            texts = [vocab.decode(r) for r in ids]
        nlls = record_nll(loaded.model, ids, vocab.eor_id, device=dev)
        return [
            # + 1: each record's end counts as a token and a character, as in the whole-text figures
            {"model": name, "index": i, "text": t, "log_likelihood": -nll, **metrics(nll, len(r) + 1, len(t) + 1)}
            for i, (t, nll, r) in enumerate(zip(texts, nlls, ids, strict=True))
        ]
    nll, n = evaluate(loaded.model, stream, vocab.eor_id, device=dev)
    result = {"model": name, "on": where, **metrics(nll, n, chars)}
    if vocab.unk_id is not None:
        result["unk_rate"] = unk_rate(stream, vocab)
    return result
