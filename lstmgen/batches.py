"""Token stream -> contiguous lanes -> (x, y) BPTT windows; the hidden state is carried between windows.

No per-item Dataset/DataLoader: one epoch of a (B, L) lane tensor is L / seq_len slices, each a view.
"""

from __future__ import annotations

import math

import torch

from .errors import LstmgenError


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) ids -> (B, N // B): lane b is the b-th contiguous slice, so lane b's windows read in order.

    A view in the stream's own compact dtype, not a copy: a memory-mapped corpus stays on disk, and only
    the windows training reads are paged in (and widened to long by get_batch).
    """
    n_lane = stream.numel() // batch_size
    if n_lane < 2:
        raise LstmgenError(
            f"the training split has {stream.numel()} tokens, too few for train.batch_size={batch_size}; "
            "lower train.batch_size or prepare more text"
        )
    return stream[: batch_size * n_lane].view(batch_size, n_lane)


def num_windows(lanes: torch.Tensor, seq_len: int) -> int:
    """Windows per epoch: every position but the last of each lane is an input once."""
    return math.ceil((lanes.size(1) - 1) / seq_len)


def _block(lanes: torch.Tensor, window: int, seq_len: int) -> torch.Tensor:
    """Window `window`'s inputs and their targets: (B, T + 1), T < seq_len at the end of an epoch."""
    start = window * seq_len
    return lanes[:, start : min(start + seq_len, lanes.size(1) - 1) + 1]


def get_batch(lanes: torch.Tensor, window: int, seq_len: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Window `window` of the epoch: x (B, T) and targets y (B, T) shifted by one, long, on `device`."""
    block = _block(lanes, window, seq_len).to(device=device, dtype=torch.long)
    return block[:, :-1], block[:, 1:]


def check_window(lanes: torch.Tensor, window: int, seq_len: int, vocab_size: int) -> None:
    """Raise if window `window` holds ids outside the vocabulary. The training split of a memory-mapped
    corpus is never scanned whole, so its ids are checked here, as they are read (an embedding lookup out of
    range would crash). Under torchrun every rank checks the whole global window, so all stop together."""
    block = _block(lanes, window, seq_len)
    if block.numel():
        low, high = map(int, torch.aminmax(block))  # as Python ints: uint8 256 would wrap to 0
        if low < 0 or high >= vocab_size:
            raise LstmgenError(
                f"the corpus is damaged: training window {window} holds ids outside its vocabulary of "
                f"{vocab_size}; run `lstmgen prepare` again"
            )
