"""A model's decoder as an ONNX graph: built from its weights with onnx.helper, saved beside its checkpoint.

The graph (inputs and outputs in lstmgen/runtime.py) is written by hand, one ONNX LSTM node per layer,
rather than traced with torch.onnx.export. Measured with torch 2.13 on this project's 2-core machine:
the default (dynamo) exporter needs onnxscript and onnx_ir besides onnx, took 2.7 s for a 3x128 model,
prints progress on stdout, and failed its own conversion to opset 17; the TorchScript exporter
(dynamo=False) took 0.2-0.5 s but warns that it "will be removed" and traces the adaptive head's in-place
slice writes into ScatterND/Where chains. Writing the graph takes milliseconds, needs only `onnx`, and
cannot change under us when torch's exporters do.

Opset 17 with IR version 8: every operator used here (LSTM-14, LogSoftmax-13, Gather-13, Split-13 with a
`split` input, ReduceMean-13 with an `axes` attribute) computes there what its latest version computes, and
an exported folder then runs on any ONNX Runtime since 1.13 (2022), not only on the newest; onnx.helper
would otherwise stamp the file with its own, newest IR version, which older runtimes refuse.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from . import __version__, registry
from .checkpoint import Checkpoint
from .errors import LstmgenError
from .model import LSTMLM
from .runtime import (
    GRAPH_FORMAT,
    INPUTS,
    META_KEY,
    OUTPUTS,
    Decoder,
    GraphMissing,
    GraphStale,
    checkpoint_fingerprint,
    graph_path,
    heldout_path,
    heldout_tag,
    open_graph,
    read_meta,
    seal,
)
from .tokenize import Vocab

OPSET = 17
IR_VERSION = 8  # the IR of onnx 1.13, the release that introduced opset 18; ONNX Runtime >= 1.13 reads it


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order: the weights' identity."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
        digest.update(t.flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def describe(
    model: LSTMLM,
    *,
    name: str,
    step: int | None,
    checkpoint: str = "",
    vocab: Vocab | None = None,
    corpus: dict | None = None,
) -> dict:
    """The graph's `lstmgen` metadata: what a decoder needs besides the weights (read by runtime.Decoder).
    `corpus`: the checkpoint's corpus summary (held-out token and character counts, for eval's bits/char)."""
    cfg = model.cfg
    head = "adaptive" if model.adaptive else "tied" if cfg.tie_weights else "linear"
    return {
        "format": GRAPH_FORMAT,
        "name": name,
        "step": step,
        "checkpoint": checkpoint,  # runtime.checkpoint_fingerprint of the file the weights came from
        "weights_sha256": weights_sha256(model.state_dict()),
        "vocab_size": model.vocab_size,
        "n_layer": cfg.n_layer,
        "hidden": cfg.hidden,
        "embed": cfg.embed,
        "eor_id": 0 if vocab is None else vocab.eor_id,  # Vocab puts <eor> first
        "unk_id": None if vocab is None else vocab.unk_id,
        "head": head,
        "cutoffs": list(model.head.cutoffs[:-1]) if model.adaptive else None,
        # What `scores` holds: argmax, softmax and temperature treat both alike.
        "scores": "centred log-probabilities" if model.adaptive else "logits",
        "inputs": {"ids": ["N", "T"], "h": [cfg.n_layer, "N", cfg.hidden], "c": [cfg.n_layer, "N", cfg.hidden]},
        "outputs": {
            "scores": ["N", "T", model.vocab_size],
            "h_out": [cfg.n_layer, "N", cfg.hidden],
            "c_out": [cfg.n_layer, "N", cfg.hidden],
        },  # fmt: skip
        "model_config": asdict(cfg),
        "vocab": None if vocab is None else vocab.to_dict(),
        "corpus": corpus,
        "opset": OPSET,
        "lstmgen_version": __version__,
    }


# One graph, node by node, read top to bottom (embedding, the LSTM layers, the head): split into helpers it
# would hide the order the nodes run in.
def build_graph(model: LSTMLM, meta: dict) -> bytes:
    """The sealed bytes of `model`'s decoder graph (eval mode: dropout is the identity), `meta` stored as
    its `lstmgen` metadata property."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg, V, H, L = model.cfg, model.vocab_size, model.cfg.hidden, model.cfg.n_layer
    weights: list = []
    nodes: list = []

    def const(name: str, array) -> str:
        weights.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str] | str, **attrs) -> str:
        outputs = [outputs] if isinstance(outputs, str) else outputs
        nodes.append(helper.make_node(op, inputs, outputs, name=f"{op}_{len(nodes)}", **attrs))
        return outputs[0]

    def f32(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().float().numpy()

    def gates(t: torch.Tensor) -> torch.Tensor:
        """(4H, ...) in PyTorch's gate order i, f, g, o -> ONNX's i, o, f, c (g is ONNX's c)."""
        i, f, g, o = t.chunk(4, dim=0)
        return torch.cat([i, o, f, g])

    def linear(x: str, weight: str, bias: torch.Tensor | None, out: str) -> str:
        """x (N, T, in) @ weight.T (+ bias): the weight kept as PyTorch stores it, (out, in), so a tied head
        shares the embedding's initializer; ONNX Runtime folds the Transpose once, at load."""
        y = node("MatMul", [x, node("Transpose", [weight], f"{weight}_T", perm=[1, 0])], f"{out}_mm")
        return node("Add", [y, const(f"{out}_bias", f32(bias))], out) if bias is not None else y

    # Embedding, read time-major for the LSTM nodes: (N, T) -> (T, N) -> (T, N, C).
    embed = const("embed.weight", f32(model.embed.weight))
    x = node("Gather", [embed, node("Transpose", ["ids"], "ids_T", perm=[1, 0])], "x0", axis=0)
    # h, c (L, N, H) -> one (1, N, H) slice per layer: ONNX's LSTM is one layer; its state is (dirs, N, H).
    split = const("split_ones", np.ones(L, np.int64))
    hs, cs = [f"h{k}" for k in range(L)], [f"c{k}" for k in range(L)]
    node("Split", ["h", split], hs, axis=0)
    node("Split", ["c", split], cs, axis=0)
    h_outs, c_outs = [], []
    for k in range(L):
        w = const(f"W{k}", f32(gates(getattr(model.lstm, f"weight_ih_l{k}")))[None])  # (1, 4H, in)
        r = const(f"R{k}", f32(gates(getattr(model.lstm, f"weight_hh_l{k}")))[None])  # (1, 4H, H)
        b_ih, b_hh = (gates(getattr(model.lstm, f"bias_{s}_l{k}")) for s in ("ih", "hh"))
        b = const(f"B{k}", f32(torch.cat([b_ih, b_hh]))[None])  # (1, 8H): [Wb, Rb]
        y, h_k, c_k = f"y{k}", f"h_out{k}", f"c_out{k}"
        # Y (T, 1, N, H), Y_h and Y_c (1, N, H). Inputs: X, W, R, B, sequence_lens (none), initial_h, initial_c.
        node("LSTM", [x, w, r, b, "", hs[k], cs[k]], [y, h_k, c_k], hidden_size=H)
        x = node("Squeeze", [y, const(f"axis1_{k}", np.array([1], np.int64))], f"x{k + 1}")  # (T, N, H)
        h_outs.append(h_k)
        c_outs.append(c_k)
    node("Concat", h_outs, "h_out", axis=0)  # (L, N, H)
    node("Concat", c_outs, "c_out", axis=0)
    out = node("Transpose", [x], "out", perm=[1, 0, 2])  # (N, T, H)

    if not model.adaptive:
        weight = embed if cfg.tie_weights else const("head.weight", f32(model.head.weight))  # (V, H)
        linear(out, weight, model.head.bias, "scores")
    else:
        # AdaptiveLogSoftmaxWithLoss.log_prob: the head scores the shortlist and one entry per cluster; a
        # cluster's words get log p(cluster) + their log-softmax within the cluster's own two-layer tail.
        ahead = model.head
        shortlist = ahead.shortlist_size
        head_out = linear(out, const("head.head.weight", f32(ahead.head.weight)), ahead.head.bias, "head_out")
        head_logp = node("LogSoftmax", [head_out], "head_logp", axis=-1)  # (N, T, shortlist + clusters)

        def cols(x: str, start: int, stop: int, name: str) -> str:
            """x[..., start:stop]"""
            bounds = [const(f"{name}_{s}", np.array([v], np.int64)) for s, v in (("s", start), ("e", stop), ("a", -1))]
            return node("Slice", [x, *bounds], name)

        parts = [cols(head_logp, 0, shortlist, "short_logp")]
        for i, tail in enumerate(ahead.tail):
            proj = linear(out, const(f"head.tail.{i}.0.weight", f32(tail[0].weight)), None, f"tail{i}_proj")
            logits = linear(proj, const(f"head.tail.{i}.1.weight", f32(tail[1].weight)), None, f"tail{i}_out")
            within = node("LogSoftmax", [logits], f"tail{i}_logp", axis=-1)  # (N, T, band width)
            cluster = cols(head_logp, shortlist + i, shortlist + i + 1, f"cluster{i}_logp")  # (N, T, 1)
            parts.append(node("Add", [within, cluster], f"band{i}_logp"))
        logp = node("Concat", parts, "logp", axis=-1)  # (N, T, V)
        # Centred as LSTMLM._scores centres them, so the repetition penalty treats both heads alike.
        mean = node("ReduceMean", [logp], "logp_mean", axes=[-1], keepdims=1)
        node("Sub", [logp, mean], "scores")

    state = [L, "N", H]
    graph = helper.make_graph(
        nodes,
        f"lstmgen_{meta.get('name', 'model')}",
        inputs=[
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "T"]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, state),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, state),
        ],
        outputs=[
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", "T", V]),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, state),
            helper.make_tensor_value_info("c_out", TensorProto.FLOAT, state),
        ],
        initializer=weights,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="lstmgen",
        producer_version=__version__,
        doc_string=(
            "lstmgen LSTM language model decoder: ids (N, T) int64, h and c (n_layer, N, hidden) float32 -> "
            "scores (N, T, vocab) float32, h_out, c_out. Feed <eor> + prompt with zero state, then one token "
            "per step with the returned state. Metadata property 'lstmgen' (JSON): vocab, special ids, config."
        ),
    )
    proto.ir_version = IR_VERSION
    if meta.get("step") is not None:
        proto.model_version = int(meta["step"])
    helper.set_model_props(proto, {META_KEY: json.dumps(meta, separators=(",", ":"))})
    assert [i.name for i in graph.input] == list(INPUTS) and [o.name for o in graph.output] == list(OUTPUTS)
    onnx.checker.check_model(proto)
    return seal(proto.SerializeToString())


def graph_of(ckpt: Checkpoint) -> tuple[bytes, dict]:
    """(the sealed graph, its metadata) of a loaded checkpoint; the fingerprint of the file it was loaded
    from (ckpt.path) ties the graph to it (no path: a graph tied to no file, e.g. in tests)."""
    model, vocab = ckpt.build_model(), ckpt.make_vocab()
    meta = describe(
        model,
        name=ckpt.name,
        step=ckpt.step,
        checkpoint=checkpoint_fingerprint(ckpt.path) if ckpt.path is not None else "",
        vocab=vocab,
        corpus=ckpt.corpus,
    )
    return build_graph(model, meta), meta


def save_graph(ckpt: Checkpoint) -> Path:
    """Build the graph of `ckpt`, the checkpoint just saved at ckpt.path, and write it beside it
    (best.pt -> best.onnx) atomically: readers see the old graph or the new one, never part of one. With it,
    the held-out ids (heldout.npz), which torch-free `eval` reads. Training calls this after each best/final
    save, under the model's lock; SaveFailed if a write fails (the old files, if any, are unchanged)."""
    path = graph_path(ckpt.path)
    data, _ = graph_of(ckpt)
    save_heldout(ckpt)
    registry.atomic_write(path, lambda f: f.write(data))
    return path


def save_heldout(ckpt: Checkpoint) -> None:
    """The checkpoint's held-out ids as numpy arrays beside it, tagged with the corpus they came from."""
    arrays = {k: ckpt.heldout[k].numpy() for k in ("val", "test")}
    tag = np.array(heldout_tag(ckpt.corpus))
    buffer = io.BytesIO()  # zipfile seeks: written whole, then atomically
    np.savez(buffer, tag=tag, **arrays)
    registry.atomic_write(heldout_path(ckpt.path), lambda f: f.write(buffer.getvalue()))


def ensure_graph(ckpt: Checkpoint, threads: int | None = None, loaded_from: str | None = None):
    """The decoder of the graph beside ckpt.path, built first when it is missing or stale. Returns (decoder,
    note): note is None when the graph was current, else one line for stderr saying what was built (the
    caller prints it; this never prints). GraphDamaged / GraphMismatch: refused; the registry is left as it
    was. `loaded_from`: checkpoint_fingerprint of the file as it was before `ckpt` was read from it.

    A reader saves the graph only under the model's lock, and only while the checkpoint is still the file
    the weights came from: otherwise a training run saving a new best meanwhile could find its new graph
    replaced by one of the older weights. Whenever it cannot save (the model is being trained, the file
    changed, a read-only registry, a full disk), the graph serves this run from memory and the note says so."""
    checkpoint = Path(ckpt.path)
    path = graph_path(checkpoint)
    try:
        return open_graph(checkpoint, threads), None
    except (GraphMissing, GraphStale) as e:
        why = "once: it had none yet" if isinstance(e, GraphMissing) else "its graph was from an earlier checkpoint"
    data, meta = graph_of(ckpt)
    body, _ = read_meta(path, data)
    in_memory = f"built the CPU decoding graph in memory ({why}); not saved"
    try:
        with registry.lock("model", checkpoint.parent.name, "saving its decoding graph"):
            current = checkpoint_fingerprint(checkpoint) == meta["checkpoint"] == (loaded_from or meta["checkpoint"])
            if current:
                save_heldout(ckpt)
                registry.atomic_write(path, lambda f: f.write(data))
        note = f"built {path} for fast CPU decoding ({why})" if current else f"{in_memory}: {checkpoint} changed"
    except registry.Busy:
        note = f"{in_memory}: the model is being trained, and training saves its graphs"
    except registry.SaveFailed as e:
        note = f"{in_memory}: could not save {path} ({e.reason})"
    except LstmgenError as e:  # no lock to be had: a read-only registry
        note = f"{in_memory}: {e}"
    return Decoder(path, body, meta, threads), note
