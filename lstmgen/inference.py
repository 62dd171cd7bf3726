"""A registry model ready to generate or score text: its decoding backend and vocabulary.

On the CPU (the default) the backend is the model's ONNX graph on ONNX Runtime, and nothing here imports
torch: `lstmgen sample` starts in a fraction of torch's import time. A model saved before graphs existed
gets its graph built once, with torch, and a note saying so. Any other device runs the torch model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import registry
from .decoding import Backend
from .tokenize import Vocab


@dataclass
class Loaded:
    backend: Backend  # decoding.Backend: (ids, h, c) -> (scores, h, c) on numpy arrays
    vocab: Vocab
    name: str
    corpus: dict  # the corpus it trained on: held-out token and character counts, sha256, ...
    path: Path | None = None  # the checkpoint the backend came from
    checkpoint: object | None = None  # the loaded checkpoint.Checkpoint on the torch path

    def heldout(self, split: str) -> np.ndarray:
        """The held-out `split` ids (N,) int64 of the corpus the model trained on (kept with the model, so
        `eval` works after the corpus is deleted)."""
        if self.checkpoint is None:
            from .runtime import load_heldout

            ids = load_heldout(self.path, self.backend.meta, split)
            if ids is not None:
                return ids
            self.checkpoint = _rebuild_heldout(self.path)  # a model saved before heldout.npz existed
        return self.checkpoint.heldout[split].numpy().astype(np.int64)


def _rebuild_heldout(path: Path):
    from .checkpoint import Checkpoint
    from .onnx_graph import save_heldout

    ckpt = Checkpoint.from_payload(registry.load_pt(path), path)
    try:
        save_heldout(ckpt)
    except registry.SaveFailed:  # a read-only registry: this run reads them from the checkpoint
        pass
    return ckpt


def load_for_inference(
    name: str,
    which: str | None = None,
    device: str = "cpu",
    on_note: Callable[[str], None] | None = None,
    threads: int | None = None,
) -> Loaded:
    """Model `name`'s `which` checkpoint (None: best, else last) for decoding on `device`.

    cpu: its ONNX graph (built once from the checkpoint if it has none, or an outdated one: `on_note` hears
    of it), on `threads` ONNX Runtime threads (default 1: right for decoding steps, see runtime._threads).
    auto, cuda, cuda:N, mps: the torch model on that device (auto picks the CPU's ONNX path when there is
    no GPU)."""
    path = registry.model_file(name, which)
    if device == "auto":
        from .device import pick_device

        device = pick_device("auto").type
    if device == "cpu":
        from .runtime import GraphMissing, GraphStale, checkpoint_fingerprint, open_graph

        try:
            decoder = open_graph(path, threads)
        except (GraphMissing, GraphStale):
            from .checkpoint import load
            from .onnx_graph import ensure_graph

            before = checkpoint_fingerprint(path)  # the file the weights are read from, unless it changes
            decoder, note = ensure_graph(load(name, which), threads, loaded_from=before)
            if note and on_note:
                on_note(note)
        meta = decoder.meta
        return Loaded(decoder, Vocab.from_dict(meta["vocab"]), name, meta.get("corpus") or {}, path)
    return load_torch(name, which, device)


def load_torch(name: str, which: str | None = None, device: str = "cpu") -> Loaded:
    """The torch model itself as the backend, on `device` (the CPU too: tests and benchmarks compare the
    two backends there)."""
    from .checkpoint import load
    from .device import pick_device
    from .model import TorchDecoder

    ckpt = load(name, which)
    backend = TorchDecoder(ckpt.build_model(pick_device(device)))
    return Loaded(backend, ckpt.make_vocab(), name, ckpt.corpus, ckpt.path, ckpt)
