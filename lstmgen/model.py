"""The LSTM language model: embedding -> multi-layer nn.LSTM -> dropout -> linear head."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (n_layer, B, hidden)


class LSTMLM(nn.Module):
    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        self.vocab_size, self.cfg = vocab_size, cfg
        self.embed = nn.Embedding(vocab_size, cfg.embed)
        self.drop = nn.Dropout(cfg.dropout)
        # Plain nn.LSTM (no proj_size) so CPUs get oneDNN's fused kernel and GPUs get cuDNN.
        self.lstm = nn.LSTM(
            cfg.embed, cfg.hidden, cfg.n_layer, batch_first=True, dropout=cfg.dropout if cfg.n_layer > 1 else 0.0
        )
        self.head = nn.Linear(cfg.hidden, vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embed.weight  # (V, C): the same matrix reads and writes tokens

    def forward(self, idx: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """idx (B, T) token ids, state from the previous window or None for zeros -> logits (B, T, V), new state."""
        x = self.drop(self.embed(idx))  # (B, T, C)
        out, state = self.lstm(x, state)  # (B, T, H); h and c are (n_layer, B, H), not (B, ...)
        return self.head(self.drop(out)), state

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
