"""Validation NLL in torch, as the trainer scores its held-out split: the NLL is computed inside the model
(an adaptive softmax scores only each target's band). `lstmgen eval` scores through a decoding backend
instead (evaluate.py); tests hold the two to 1e-5."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .evaluate import eval_lanes
from .model import LSTMLM


def _window_nll(model: LSTMLM, x: torch.Tensor, y: torch.Tensor, seq_len: int, should_stop=None, on_progress=None):
    """NLL (nats) of every target of y, (B, L) fp32 (0 where y is IGNORE), reading x (B, L) in windows of
    seq_len with the state carried; None if `should_stop()` turns true between windows. `on_progress(done,
    total)` hears of each window read."""
    losses, state = [], None
    total = -(-x.size(1) // seq_len)
    for start in range(0, x.size(1), seq_len):
        if should_stop and should_stop():
            return None
        nll, state = model(x[:, start : start + seq_len], state, y[:, start : start + seq_len])  # (B, T)
        losses.append(nll)
        if on_progress:
            on_progress(start // seq_len + 1, total)
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
    on_progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor | None:
    """The NLL (nats) of every token of `stream`, (N,) fp32 in stream order, in eval mode, each token
    conditioned on all before it as training saw them (the stream starts after an <eor>).

    None if `should_stop()` turns true midway: a stop request is not kept waiting for a long validation
    pass (a 50k-word softmax over a large split takes minutes on a CPU). `on_progress(done, total)` hears
    of each window of seq_len tokens read (the trainer shows a long pass's progress with it).
    """
    was_training = model.training
    model.eval()
    x, y = (torch.from_numpy(a).to(device) for a in eval_lanes(stream.numpy(), eor_id, batch_size))  # (B, L) each
    nll = _window_nll(model, x, y, seq_len, should_stop, on_progress)
    model.train(was_training)
    return None if nll is None else nll.flatten()[: stream.numel()]  # the padding sits at the very end


def evaluate(model: LSTMLM, stream: torch.Tensor, eor_id: int, **kw) -> tuple[float, int] | None:
    """Summed NLL (nats) over every token of `stream` and the number of tokens (None if stopped midway)."""
    if stream.numel() == 0:
        return 0.0, 0
    nll = token_nll(model, stream, eor_id, **kw)
    return None if nll is None else (nll.sum().item(), int(stream.numel()))  # one device sync
