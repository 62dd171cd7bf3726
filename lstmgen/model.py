"""The LSTM language model: embedding -> multi-layer nn.LSTM -> dropout -> a full or adaptive softmax head."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .config import ADAPTIVE_SHRINK, ModelConfig
from .tokenize import IGNORE

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (n_layer, B, hidden)


class FastDropout(nn.Dropout):
    """nn.Dropout, but on CPU with its mask drawn as uniforms compared in place: torch.dropout's bernoulli_
    draw took 2.9 ms of a 40 ms step for each of the word config's (64, 32, 128) activations on a 2-core
    EPYC; this takes under half of torch.dropout's time, backward included, and the whole step 1.11x
    faster (benchmarks/word_step.py). Elsewhere, torch's own fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        scale = torch.rand_like(x).ge_(self.p).mul_(1 / (1 - self.p))  # (same as x): 0 or 1 / (1 - p)
        return x * scale


def adaptive_cutoffs(cfg: ModelConfig, vocab_size: int) -> list[int]:
    """The adaptive softmax's cutoffs that fall inside this vocabulary: a band past its end is empty, so one
    config serves small and large vocabularies alike. None left: a full softmax."""
    return [c for c in cfg.adaptive_softmax or [] if c < vocab_size]


class LSTMLM(nn.Module):
    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        self.vocab_size, self.cfg = vocab_size, cfg
        self.embed = nn.Embedding(vocab_size, cfg.embed)
        self.drop = FastDropout(cfg.dropout)
        # Plain nn.LSTM (no proj_size) so CPUs get oneDNN's fused kernel and GPUs get cuDNN.
        self.lstm = nn.LSTM(
            cfg.embed, cfg.hidden, cfg.n_layer, batch_first=True, dropout=cfg.dropout if cfg.n_layer > 1 else 0.0
        )
        cutoffs = adaptive_cutoffs(cfg, vocab_size)
        self.adaptive = bool(cutoffs)
        if self.adaptive:
            # A word vocabulary's ids run from most to least frequent, so the cutoffs split it into a shortlist
            # and ever rarer bands. Training scores only each target's own band: over 5,034 words with
            # [500, 2000], 3.6x the tokens/s of the full softmax for a 1 x 128 LSTM (benchmarks/word_step.py).
            self.head = nn.AdaptiveLogSoftmaxWithLoss(cfg.hidden, vocab_size, cutoffs, div_value=ADAPTIVE_SHRINK)
        else:
            self.head = nn.Linear(cfg.hidden, vocab_size)
            if cfg.tie_weights:
                self.head.weight = self.embed.weight  # (V, C): the same matrix reads and writes tokens

    def forward(
        self, idx: torch.Tensor, state: State | None = None, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """idx (B, T) token ids, state from the previous window or None for zeros -> (logits (B, T, V), new
        state): log-probabilities up to a constant per position. With targets (B, T): (NLL (B, T) fp32 nats,
        0 where the target is IGNORE, new state) instead; the loss is computed here, inside forward, so
        that DDP's wrapper sees it."""
        x = self.drop(self.embed(idx))  # (B, T, C)
        out, state = self.lstm(x, state)  # (B, T, H); h and c are (n_layer, B, H), not (B, ...)
        out = self.drop(out)
        if targets is None:
            return self._scores(out), state
        return self._nll(out, targets), state

    def _scores(self, out: torch.Tensor) -> torch.Tensor:
        if not self.adaptive:
            return self.head(out)
        with self._fp32(out) as rows:
            logp = self.head.log_prob(rows)  # (B * T, V)
        # Centred like a linear head's logits: the repetition penalty divides positive logits and multiplies
        # negative ones, and on log-probabilities (all <= 0) it would barely touch a near-certain repeat.
        return (logp - logp.mean(dim=-1, keepdim=True)).view(*out.shape[:2], self.vocab_size)

    def _nll(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        flat = targets.flatten()  # (B * T,)
        if not self.adaptive:
            logits = self.head(out).flatten(0, 1).float()  # (B * T, V)
            return F.cross_entropy(logits, flat, ignore_index=IGNORE, reduction="none").view_as(targets)
        ignored = flat == IGNORE
        with self._fp32(out) as rows:
            # The head takes no ignore_index: padded positions score a real id, then count for nothing.
            target_logp = self.head(rows, flat.masked_fill(ignored, 0)).output  # (B * T,)
        return (-target_logp).masked_fill(ignored, 0.0).view_as(targets)

    @contextmanager
    def _fp32(self, out: torch.Tensor):
        """(B, T, H) -> (B * T, H) fp32 rows, for the adaptive head run outside autocast: under CUDA's bf16
        autocast its log_softmax returns fp32 into a bf16 buffer and index_copy_ fails (pytorch#44724)."""
        with torch.autocast(out.device.type, enabled=False):
            yield out.flatten(0, 1).float()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


@contextmanager
def native_lstm_kernel():
    """Single-step LSTM calls are bound by per-call overhead, which PyTorch's native CPU kernel halves
    against oneDNN's (0.32 vs 0.62 ms per step for the quick-start model on a 2-core EPYC, and no
    primitive set-up on the first calls); the results agree to float precision."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration")  # flags() noise on CPU-only builds
        with torch.backends.mkldnn.flags(enabled=False):
            yield


class TorchDecoder:
    """A model as decoding.generate's backend: numpy in and out, the arithmetic in torch on the model's
    device (a GPU, or the CPU for training's previews and benchmarks), in eval mode."""

    def __init__(self, model: LSTMLM):
        self.model = model
        self.device = next(model.parameters()).device
        self.n_layer, self.hidden, self.vocab_size = model.cfg.n_layer, model.cfg.hidden, model.vocab_size

    def zero_state(self, n: int):
        import numpy as np

        shape = (self.n_layer, n, self.hidden)
        return np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)

    @torch.no_grad()
    def forward(self, ids, h, c):
        self.model.eval()
        state = (torch.from_numpy(h).to(self.device), torch.from_numpy(c).to(self.device))
        with native_lstm_kernel():
            scores, (h, c) = self.model(torch.from_numpy(ids).to(self.device), state)
        return scores.float().cpu().numpy(), h.float().cpu().numpy(), c.float().cpu().numpy()
