"""The torch-free decoder: a model's ONNX graph run by ONNX Runtime on numpy arrays. Never imports torch.

A graph file (models/NAME/best.onnx beside best.pt, built by lstmgen.onnx_graph) is a plain ONNX model:

    ids (N, T) int64, h (n_layer, N, H) float32, c (n_layer, N, H) float32
        -> scores (N, T, V) float32, h_out (n_layer, N, H), c_out (n_layer, N, H)

N and T are dynamic: the same graph reads a prompt (T = its length) and takes single steps (T = 1). scores
are what LSTMLM returns in eval mode without targets: a linear head's logits, or an adaptive head's
log-probabilities centred per position. Its metadata (the `lstmgen` property, JSON) says which, and holds
the checkpoint fingerprint, the shapes, the special ids and the vocabulary.

An ONNX file is a protobuf of tensors and operator names: loading one runs no code from the file (unlike a
pickle). The graph's last bytes are a checksum of the rest (see `seal`), so a damaged or altered file is
refused before ONNX Runtime parses it; and a graph with anything lstmgen does not write (an operator
outside the dozen it uses, a custom domain, weights stored in another file, which ONNX Runtime would read
from the current directory) is refused too, so loading one reads nothing but the file itself.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import LstmgenError

GRAPH_FORMAT = 1  # the `lstmgen` metadata's layout; bumped when a reader would misread a newer graph
META_KEY = "lstmgen"
SEAL_KEY = "lstmgen.sha256"
INPUTS = ("ids", "h", "c")
OUTPUTS = ("scores", "h_out", "c_out")


class GraphError(LstmgenError):
    """A graph file that cannot be used as it is."""


class GraphMissing(GraphError):
    """No graph beside the checkpoint yet (a model saved before graphs existed): build it."""


class GraphStale(GraphError):
    """The graph was built from another checkpoint of the same model (a save was interrupted between the
    checkpoint and its graph): build it again."""


class GraphDamaged(GraphError):
    """Not a graph lstmgen wrote, or one whose bytes changed since: refused, never rebuilt silently."""


class GraphMismatch(GraphError):
    """A sound graph of another model: refused, never overwritten silently."""


# -- the seal: a checksum of the file's bytes, appended as one more metadata property -------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A protobuf length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def seal_of(digest: str) -> bytes:
    """ModelProto field 14 (metadata_props) holding {SEAL_KEY: digest}, serialised. Protobuf parsers merge
    concatenated messages and append repeated fields, so `body + seal_of(sha256(body))` is still a valid
    model whose metadata gains one entry, and its checksum can be checked without any protobuf library."""
    entry = _field(1, SEAL_KEY.encode()) + _field(2, digest.encode("ascii"))  # StringStringEntryProto
    return _field(14, entry)


SEAL_LEN = len(seal_of("0" * 64))


def seal(body: bytes) -> bytes:
    """Serialized ONNX model -> the bytes of a graph file: the model, then the checksum of the model."""
    return body + seal_of(hashlib.sha256(body).hexdigest())


def unseal(data: bytes) -> bytes | None:
    """The sealed model's bytes, or None when the seal is absent or does not match them."""
    if len(data) <= SEAL_LEN:
        return None
    body, tail = data[:-SEAL_LEN], data[-SEAL_LEN:]
    return body if tail == seal_of(hashlib.sha256(body).hexdigest()) else None


# -- the checkpoint a graph belongs to ----------------------------------------------------------------


def graph_path(checkpoint: Path) -> Path:
    """Where the graph of a checkpoint lives: models/NAME/best.onnx beside best.pt."""
    return Path(checkpoint).with_suffix(".onnx")


def checkpoint_fingerprint(checkpoint: Path) -> str:
    """A sha256 that changes whenever the checkpoint file's content does, computed without torch and
    without reading the tensors: torch.save writes a zip archive whose central directory holds each
    record's CRC-32 and size, so this reads that directory (one entry per tensor) and data.pkl, the pickle
    of everything that is not tensor data (step, history, config, vocab). Milliseconds for any file size."""
    checkpoint = Path(checkpoint)
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            records = sorted(archive.infolist(), key=lambda r: r.filename)
            for r in records:
                # torch names the archive's top folder after the file it was saved to ("archive" for a file
                # object, "best" for a path): a copied or renamed checkpoint keeps its fingerprint.
                name = r.filename.partition("/")[2]
                digest.update(f"{name}\0{r.CRC:08x}\0{r.file_size}\n".encode())
                if name == "data.pkl":
                    digest.update(archive.read(r))
    except FileNotFoundError:
        raise GraphMissing(f"{checkpoint} is missing; train the model first") from None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise LstmgenError(
            f"{checkpoint} is corrupt, truncated, or not an lstmgen checkpoint ({type(e).__name__}); "
            "delete it, or train the model again"
        ) from None
    return digest.hexdigest()


# -- the decoder --------------------------------------------------------------------------------------


def _threads() -> int:
    """ONNX Runtime's intra-op threads: 1. A decode step is a few small matrix products: on this project's
    2-core Xeon, a second thread made one stream's steps slower (219 -> 238 us, 2 x 256 char model) and 64
    streams' no faster (1,076 -> 1,082 us; benchmarks/onnx_step.py), and lstmgen often shares the machine
    (a shell loop of samples, a training run)."""
    return 1


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS has one, as under taskset or a container)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Decoder:
    """A model's graph in an ONNX Runtime session: `forward(ids, h, c) -> (scores, h, c)` on numpy arrays.

    meta: the graph's `lstmgen` metadata (name, step, checkpoint fingerprint, vocab_size, n_layer, hidden,
    eor_id, unk_id, head, vocab, model_config, ...). Build it with `load_graph` or `open_graph`."""

    def __init__(self, path: Path, model: bytes, meta: dict, threads: int | None = None):
        import onnxruntime as ort  # deferred: 0.5 s, paid only by commands that decode

        self.path, self.meta = Path(path), meta
        self.vocab_size, self.n_layer, self.hidden = meta["vocab_size"], meta["n_layer"], meta["hidden"]
        self.eor_id = meta["eor_id"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or _threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only: ORT's warnings would land on the user's stderr
        # Idle pool threads must not spin on a machine the user shares (no pool at all with 1 thread).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/... types
            raise GraphDamaged(f"{path} is not a graph ONNX Runtime can run ({_first_line(e)}); {_fix(path)}") from None
        names = ([i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()])
        if names != (list(INPUTS), list(OUTPUTS)):
            raise GraphDamaged(f"{path} has inputs/outputs {names}, not an lstmgen decoder's; {_fix(path)}")

    def zero_state(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(h, c) of zeros for n streams, each (n_layer, n, H) float32: the state before a record."""
        shape = (self.n_layer, n, self.hidden)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def forward(self, ids, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ids (N, T) ints < vocab_size, h and c (n_layer, N, H) -> scores (N, T, V) float32, h, c (n_layer,
        N, H). The state passed in is not modified."""
        feed = {
            "ids": np.ascontiguousarray(ids, dtype=np.int64),
            "h": np.ascontiguousarray(h, dtype=np.float32),
            "c": np.ascontiguousarray(c, dtype=np.float32),
        }
        scores, h_out, c_out = self.session.run(OUTPUTS, feed)
        return scores, h_out, c_out


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:160]


def _fix(path: Path) -> str:
    if Path(path).suffix == ".onnx" and Path(path).parent.parent.name == "models":
        return f"delete it and it is rebuilt from {Path(path).with_suffix('.pt').name} on next use"
    return "export the model again"


def read_meta(path: Path, data: bytes) -> tuple[bytes, dict]:
    """A graph file's bytes -> (the model to hand ONNX Runtime, its lstmgen metadata), checked with a few
    lines of protobuf reading, no parser: the seal first, then the metadata JSON, then the structure (see
    `_foreign_part`)."""
    body = unseal(data)
    if body is None:
        raise GraphDamaged(f"{path} is damaged, truncated or altered (its checksum does not match); {_fix(path)}")
    try:
        meta, foreign = _meta_of(body), _foreign_part(body)
    except (ValueError, IndexError, UnicodeDecodeError):  # a sealed file that is not a protobuf at all
        meta = foreign = None
    if meta is None:
        raise GraphDamaged(f"{path} is not an lstmgen graph (its metadata is missing or malformed); {_fix(path)}")
    if meta["format"] > GRAPH_FORMAT:
        raise GraphDamaged(
            f"{path} was written by a newer lstmgen (graph format {meta['format']}, this one reads "
            f"{GRAPH_FORMAT}); upgrade lstmgen, or {_fix(path)}"
        )
    if foreign:
        raise GraphDamaged(f"{path} is not a graph lstmgen writes (it has {foreign}); {_fix(path)}")
    return body, meta


REQUIRED = {"format": int, "name": str, "checkpoint": str, "vocab_size": int, "n_layer": int, "hidden": int,
            "eor_id": int, "head": str}  # fmt: skip


def _meta_of(body: bytes) -> dict | None:
    """The `lstmgen` metadata property of a serialized model: ModelProto's metadata_props entries are
    top-level field 14, each a (key 1, value 2) message."""
    for number, payload in _fields(body):
        if number != 14:
            continue
        entry = dict(_fields(payload))
        if entry.get(1) == META_KEY.encode():
            try:
                meta = json.loads(bytes(entry.get(2, b"")).decode())
            except ValueError:
                return None
            ok = isinstance(meta, dict) and all(
                isinstance(meta.get(k), t) and not isinstance(meta.get(k), bool) for k, t in REQUIRED.items()
            )
            return meta if ok else None
    return None


# The operators onnx_graph writes. None runs code or reads files; with no custom domains, no subgraphs
# (If, Loop, Scan) and no model-local functions there is nothing else for ONNX Runtime to execute.
OPS = frozenset({"Add", "Concat", "Gather", "LSTM", "LogSoftmax", "MatMul", "ReduceMean", "Slice", "Split",
                 "Squeeze", "Sub", "Transpose"})  # fmt: skip


def _foreign_part(body: bytes) -> str | None:
    """What in a serialized model lstmgen never writes, or None. Handed bytes, ONNX Runtime still reads an
    initializer marked as external data from a file under the current directory: refuse those."""
    graphs = []
    for number, value in _fields(body):
        if number == 8 and bytes(dict(_fields(value)).get(1, b"")):  # opset_import with a domain
            return "operators from a custom domain"
        if number == 25:
            return "model-local functions"
        if number == 7:
            graphs.append(value)
    if len(graphs) != 1:
        return "no graph"
    for number, value in _fields(graphs[0]):
        if number == 1:  # NodeProto: op_type 4, domain 7
            node = dict(_fields(value))
            op = bytes(node.get(4, b"")).decode()
            if op not in OPS or bytes(node.get(7, b"")):
                return f"a {op or 'nameless'} operator"
        elif number == 5:  # TensorProto: external_data 13, data_location 14 (1: EXTERNAL)
            tensor = list(_fields(value))
            if any(n == 13 or (n == 14 and v == 1) for n, v in tensor):
                return "weights stored in another file"
        elif number == 15:
            return "sparse weights"
    return None


def _fields(buf):
    """(field number, value) of a protobuf message's varint (an int) and length-delimited (a memoryview:
    no copy of the weights) fields; fixed-width ones are skipped."""
    buf = memoryview(buf)
    i, end = 0, len(buf)
    while i < end:
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
            yield number, value
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _read_varint(buf, i)
            if i + n > end:
                raise ValueError("truncated field")
            yield number, buf[i : i + n]
            i += n
        else:
            raise ValueError(f"wire type {wire}")


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        byte = buf[i]
        i += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


MAX_GRAPH_BYTES = 4 << 30  # protobuf's own limit is 2 GiB: anything past this is not one of our graphs


def load_graph(path: Path, threads: int | None = None) -> Decoder:
    """The decoder of the graph file at `path` (an exported model.onnx, or one beside a checkpoint), after
    its seal and metadata are checked; GraphDamaged if it is not a sound lstmgen graph."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_GRAPH_BYTES:
            raise GraphDamaged(f"{path} is larger than any lstmgen graph ({path.stat().st_size:,} bytes); {_fix(path)}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise GraphMissing(f"{path} is missing") from None
    except IsADirectoryError:
        raise GraphDamaged(f"{path} is a directory, not a graph file; {_fix(path)}") from None
    except OSError as e:
        raise GraphError(f"cannot read {path} ({e.strerror or e}); check its permissions") from None
    body, meta = read_meta(path, data)
    return Decoder(path, body, meta, threads)


def check_belongs(path: Path, meta: dict, checkpoint: Path) -> None:
    """Raise unless the graph whose metadata is `meta` was built from `checkpoint`: GraphStale when it
    was built from another checkpoint of the same model (rebuild it), GraphMismatch when from another
    model (refuse)."""
    name = Path(checkpoint).parent.name
    if meta["checkpoint"] == checkpoint_fingerprint(checkpoint):
        from .registry import check_owner

        check_owner(path, meta["name"], name)  # graph and checkpoint both another model's: the entry copied
        return
    if meta["name"] != name:
        raise GraphMismatch(
            f"{path} is the graph of model {meta['name']!r}, not of {name!r} ({Path(checkpoint).name} differs); "
            f"delete it and it is rebuilt from {Path(checkpoint).name} on next use"
        )
    raise GraphStale(
        f"{path} was built from an earlier {Path(checkpoint).name} of model {name!r} (step {meta.get('step')}); "
        "delete it and it is rebuilt on next use"
    )


def open_graph(checkpoint: Path, threads: int | None = None) -> Decoder:
    """The decoder of the graph beside `checkpoint`, checked to be built from that exact file.

    GraphMissing / GraphStale: build it (lstmgen.onnx_graph.ensure_graph, which needs torch).
    GraphDamaged / GraphMismatch: refused, with one line naming the file and the fix."""
    checkpoint = Path(checkpoint)
    path = graph_path(checkpoint)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not checkpoint.is_file():
            raise GraphMissing(f"{checkpoint} is missing; train the model first") from None
        raise GraphMissing(f"{path} is missing (the model was saved before lstmgen wrote graphs)") from None
    except OSError as e:
        raise GraphError(f"cannot read {path} ({e.strerror or e}); check its permissions") from None
    body, meta = read_meta(path, data)
    check_belongs(path, meta, checkpoint)
    return Decoder(path, body, meta, threads)


# -- held-out ids, for torch-free `eval` -----------------------------------------------------------------


def heldout_path(checkpoint: Path) -> Path:
    """heldout.npz beside the model's checkpoints: best.pt and last.pt of one run hold the same ids."""
    return Path(checkpoint).parent / "heldout.npz"


def heldout_tag(corpus: dict) -> str:
    """Which corpus split the held-out ids are: its source hash and held-out token counts."""
    tokens = corpus.get("tokens") or {}
    return f"{corpus.get('sha256')}:{tokens.get('val')}:{tokens.get('test')}"


def load_heldout(checkpoint: Path, meta: dict, split: str) -> np.ndarray | None:
    """The held-out `split` ids (N,) int64 of the model whose graph metadata is `meta`, from heldout.npz;
    None when the file is missing or belongs to another run (the caller rebuilds it from the checkpoint).
    np.load with allow_pickle=False: plain arrays only, no code."""
    path = heldout_path(checkpoint)
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["tag"]) != heldout_tag(meta.get("corpus") or {}):
                return None
            ids = f[split]
    # missing, damaged (a truncated zip: BadZipFile, EOFError) or foreign: rebuilt from the checkpoint
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    in_vocab = ids.size == 0 or 0 <= ids.min() <= ids.max() < meta["vocab_size"]
    expected = ((meta.get("corpus") or {}).get("tokens") or {}).get(split)  # the split's size, as trained
    if ids.ndim != 1 or ids.dtype.kind not in "iu" or not in_vocab or expected not in (None, ids.size):
        return None
    return ids.astype(np.int64)
