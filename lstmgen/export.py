"""`lstmgen export`: a model as a folder that needs nothing from lstmgen (ONNX graph, tokenizer, metadata,
README with a sampling example for onnxruntime and numpy alone)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from .checkpoint import Checkpoint, load
from .errors import LstmgenError
from .onnx_graph import graph_of

FILES = ("model.onnx", "metadata.json", "README.md")  # + one of TOKENIZER_FILES
TOKENIZER_FILES = ("vocab.json", "tokenizer.json")  # char and word; bpe
BPE_ID_OFFSET = 1  # our id = the BPE tokenizer's id + 1: id 0 is <eor>, which the tokenizer does not know


def export_model(name: str, out: Path, *, force: bool = False, which: str | None = None) -> Path:
    """Write model `name` (its best checkpoint, else last; or `which`) as a self-contained folder at `out`.

    Refuses an `out` that is a file, in the registry, or a non-empty folder unless `force` and it holds an
    earlier export (then the old folder is replaced whole). The folder is written beside `out` under a
    temporary name and renamed into place only when complete: a failure leaves no partial folder, and
    whatever was at `out` unchanged. Reads the registry, never writes it. Returns `out`."""
    out = Path(out)
    _check_target(out, force)
    ckpt = load(name, which)
    graph, meta = graph_of(ckpt)
    files = {"model.onnx": graph, **_tokenizer_files(meta["vocab"])}
    files["metadata.json"] = (json.dumps(_metadata(ckpt, meta), indent=2) + "\n").encode()
    files["README.md"] = readme(meta, ckpt).encode()

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as e:
        raise LstmgenError(f"cannot write to {out.parent} ({e.strerror or e}); choose another --out") from None
    try:
        for filename, data in files.items():
            with open(tmp / filename, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700: a folder to share should read like any other
        _replace(tmp, out, force)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise LstmgenError(
                f"could not export to {out} ({e.strerror or e}); nothing was written there, fix that and retry"
            ) from None
        raise
    return out


def _check_target(out: Path, force: bool) -> None:
    """Refuse an `out` that export must not write: a file, a folder in the registry, or a non-empty folder
    other than an earlier export (with `force`: --force replaces an export, never a folder of other things,
    since `--out ~ --force` would otherwise delete a home directory)."""
    from .registry import refuse_inside

    if out.is_file() or (out.exists() and not out.is_dir()):
        raise LstmgenError(f"{out} exists and is not a folder; choose another --out")
    refuse_inside(out, "export to a folder outside it")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise LstmgenError(f"{out} exists and is not empty; choose another --out, or pass --force to replace it")
        names = {p.name for p in out.iterdir()}
        others = sorted(names - set(FILES) - set(TOKENIZER_FILES))
        if others or "metadata.json" not in names:
            more = ", ..." if len(others) > 3 else ""
            what = f"holds {', '.join(others[:3])}{more}" if others else "it has no metadata.json"
            raise LstmgenError(
                f"{out} is not an earlier export ({what}); --force replaces only an export's folder: choose "
                "another --out"
            )


def _replace(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished folder to `out`; an existing `out` (empty, or anything with `force`) is moved
    aside first and removed only once the new one is in place."""
    if not out.exists():
        os.rename(tmp, out)
        return
    _check_target(out, force)  # again: it may have changed while we built the graph
    aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    os.rename(out, aside / "old")
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(aside / "old", out)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _tokenizer_files(vocab: dict) -> dict[str, bytes]:
    if vocab["kind"] == "bpe":
        return {"tokenizer.json": vocab["bpe"].encode()}  # HuggingFace `tokenizers` JSON, as trained
    itos = vocab["itos"]
    unk = itos.index("<unk>") if "<unk>" in itos else None
    data = {"kind": vocab["kind"], "itos": itos, "eor_id": itos.index("<eor>"), "unk_id": unk}
    return {"vocab.json": (json.dumps(data, ensure_ascii=False, indent=0) + "\n").encode()}


def _metadata(ckpt: Checkpoint, meta: dict) -> dict:
    kind = meta["vocab"]["kind"]
    history, best = ckpt.history, ckpt.best_val_loss
    return {
        "format": meta["format"],
        "name": meta["name"],
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "lstmgen_version": meta["lstmgen_version"],
        "files": {"model": "model.onnx", "tokenizer": "tokenizer.json" if kind == "bpe" else "vocab.json"},
        "tokenizer": kind,
        "vocab_size": meta["vocab_size"],
        "eor_id": meta["eor_id"],
        "unk_id": meta["unk_id"],
        **({"bpe_id_offset": BPE_ID_OFFSET} if kind == "bpe" else {}),
        "n_layer": meta["n_layer"],
        "hidden": meta["hidden"],
        "embed": meta["embed"],
        "head": meta["head"],
        "scores": meta["scores"],
        "inputs": meta["inputs"],
        "outputs": meta["outputs"],
        "opset": meta["opset"],
        "weights_sha256": meta["weights_sha256"],
        "model_config": meta["model_config"],
        "config": ckpt.config,
        "training": {
            "step": ckpt.step,
            "epoch": ckpt.epoch,
            "best_val_loss": best,  # mean NLL per token, nats
            "best_val_perplexity": math.exp(best) if isinstance(best, (int, float)) and best < 700 else None,
            "last_eval": history[-1] if history else None,
            "corpus": ckpt.corpus,
        },
    }


# -- the README ---------------------------------------------------------------------------------------

PROMPTS = ("Hey, ", "The ", "A ", "")  # the example's prompt: the first one the vocabulary covers


def _prompt(meta: dict) -> str:
    vocab = meta["vocab"]
    known = set(vocab["itos"])
    for p in PROMPTS:
        tokens = list(p) if vocab["kind"] == "char" else p.split()
        if all(t in known for t in tokens):
            return p
    return ""


def example(meta: dict) -> str:
    """The README's Python example: sample one text with onnxruntime and numpy alone (tested as written)."""
    kind = meta["vocab"]["kind"]
    if kind == "bpe":
        tokens = """vocab = json.load(open("tokenizer.json", encoding="utf-8"))["model"]["vocab"]
itos = {i + meta["bpe_id_offset"]: t for t, i in vocab.items()}  # id 0 is <eor>
bs = [*range(33, 127), *range(161, 173), *range(174, 256)]  # byte-level BPE: one character per byte
rest = [b for b in range(256) if b not in bs]
byte_of = {chr(c): b for b, c in zip(bs + rest, bs + [256 + n for n in range(len(rest))])}
ids = [meta["eor_id"]]  # a record starts after <eor>; to add a prompt, encode it with the `tokenizers`
# package: ids += [i + 1 for i in Tokenizer.from_file("tokenizer.json").encode(prompt).ids]"""
        decode = 'bytes(byte_of[ch] for i in out for ch in itos[i]).decode("utf-8", "replace")'
    else:
        split = "list(PROMPT)" if kind == "char" else "PROMPT.split()"
        tokens = f"""itos = json.load(open("vocab.json", encoding="utf-8"))["itos"]
stoi = {{t: i for i, t in enumerate(itos)}}
PROMPT = {_prompt(meta)!r}
ids = [meta["eor_id"]] + [stoi[t] for t in {split}]  # a record starts after <eor>"""
        joiner = '""' if kind == "char" else '" "'
        decode = f"PROMPT + {joiner}.join(itos[i] for i in out)"
    glue = "\n# (lstmgen's own detokenizer also glues punctuation and quotes to their words)" if kind == "word" else ""
    ban = '\n    logits[meta["unk_id"]] = -np.inf  # never <unk>' if meta["unk_id"] is not None else ""
    return f"""import json

import numpy as np
import onnxruntime as ort

meta = json.load(open("metadata.json"))
{tokens}
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
rng = np.random.default_rng()
h = c = np.zeros((meta["n_layer"], 1, meta["hidden"]), np.float32)
out = []
for _ in range(500):
    scores, h, c = session.run(None, {{"ids": np.array([ids], np.int64), "h": h, "c": c}})
    logits = scores[0, -1].astype(np.float64) / 0.8  # temperature 0.8{ban}
    p = np.exp(logits - logits.max())
    token = int(rng.choice(len(p), p=p / p.sum()))
    if token == meta["eor_id"]:  # end of record
        break
    out.append(token)
    ids = [token]  # from now on one token per step; h and c carry the rest{glue}
print({decode})
"""


def readme(meta: dict, ckpt: Checkpoint) -> str:
    kind = meta["vocab"]["kind"]
    tokenizer = (
        "`tokenizer.json`: the byte-level BPE tokenizer (HuggingFace `tokenizers` format); our id = its id + 1, "
        "and id 0 is `<eor>`"
        if kind == "bpe"
        else f"`vocab.json`: the {kind} vocabulary, `itos[id]` is a token; `eor_id` and `unk_id` are the special ids"
    )
    scores = (
        "log-probabilities centred per position (an adaptive softmax head), which softmax and argmax treat as logits"
        if meta["head"] == "adaptive"
        else "logits"
    )
    best = ckpt.best_val_loss
    trained = f"step {ckpt.step}" + (f", best validation loss {best:.4f} nats/token" if best else "")
    return f"""# {meta["name"]}: an LSTM text generator

Exported by lstmgen {meta["lstmgen_version"]} ({trained}).
This folder needs nothing from lstmgen or torch: any ONNX runtime runs it.

- `model.onnx`: the decoder (ONNX opset {meta["opset"]}).
  Inputs: `ids` (N, T) int64, `h` and `c` ({meta["n_layer"]}, N, {meta["hidden"]}) float32.
  Outputs: `scores` (N, T, {meta["vocab_size"]}) float32, {scores}; the new state `h_out`, `c_out`.
  N and T are free: read a prompt in one call, then one token per call, passing the returned state back in.
- {tokenizer}.
- `metadata.json`: special ids, shapes, model and training config, training figures.

A text is a record: feed `<eor>` (id {meta["eor_id"]}) then the prompt, starting from a zero state, then
sample until `<eor>` comes out. Run this inside the folder (`pip install onnxruntime numpy`):

```python
{example(meta)}```
"""
