"""The one owner of the model checkpoint format: build, validate, save and load (weights-only), the resume
rules, and loading a model for inference.

A checkpoint is self-contained: weights, the resolved config (its `model` section builds the network), the
vocabulary, the metrics history, a summary of the corpus it trained on and that corpus's held-out ids (so
`eval` works after the corpus is deleted). last.pt adds `train_state`, everything --resume needs. On disk it
holds only tensors, numbers, strings, lists and dicts, loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import registry
from .config import Config, ConfigError, ModelConfig, load_config
from .errors import LstmgenError
from .model import LSTMLM
from .tokenize import Vocab

# 2: the model's shape lives in config["model"] alone (1 also kept a copy, model_config, which 2 still reads).
MODEL_FORMAT = 2
REQUIRED = ("vocab", "config", "state_dict", "history", "corpus", "heldout")
# Loop counters train_state carries for --resume (with optimizer, RNG and hidden state).
RESUMED = ("step", "epoch", "window", "elapsed", "tokens", "best_val", "bad_evals")
# The training losses summed since the last validation (the history records their mean). A last.pt written
# before they were saved resumes with them at zero: only that interval's mean covers fewer steps.
RESUMED_IF_SAVED = {"loss_sum": 0.0, "loss_steps": 0}


def bits_per_char(val_loss: float | None, corpus: dict) -> float | None:
    """A validation loss (nats per token) as bits per character of the validation split of `corpus` (a
    corpus's meta, or a checkpoint's copy of it), each record's end counting as one character (as in `lstmgen
    eval`). None without the split's counts."""
    tokens, chars = ((corpus.get(k) or {}).get("val") for k in ("tokens", "chars"))
    if val_loss is None or not isinstance(tokens, int) or not isinstance(chars, int) or chars <= 0:
        return None
    return round(val_loss * tokens / chars / math.log(2), 4)


@dataclass
class Checkpoint:
    name: str
    created: str
    vocab: dict  # Vocab.to_dict()
    config: dict  # Config.to_dict(): the resolved config of the run
    state_dict: dict  # parameter name -> CPU tensor
    history: list[dict]  # one row per validation: step, epoch, train_loss, val_loss, lr, elapsed_s
    step: int
    epoch: int
    best_val_loss: float | None
    corpus: dict  # the corpus it trained on: name, source, sha256, tokenizer, chars, records, tokens
    heldout: dict  # {"val": ids, "test": ids}, 1-D integer tensors
    train_state: dict | None = None  # last.pt only: RESUMED counters, optimizer, RNG, hidden, world_size
    # A `train --from` model's: parent, parent_step, parents and corpora (oldest first), new_symbols (lineage.py)
    lineage: dict | None = None
    path: Path | None = field(default=None, compare=False)  # where it was loaded from

    # -- views -------------------------------------------------------------------------------------------

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(**self.config["model"])

    def make_vocab(self) -> Vocab:
        return Vocab.from_dict(self.vocab)

    def build_model(self, device="cpu") -> LSTMLM:
        """The network with these weights, in eval mode, on `device` (a model trained on a GPU loads anywhere).
        The caller's random state is untouched (training builds its decoding graph mid-run, and --resume is
        bit-exact), though a new module draws its initial weights before these replace them."""
        try:
            with torch.random.fork_rng(devices=[]):
                model = LSTMLM(len(self.make_vocab()), self.model_config)
            model.load_state_dict(self.state_dict)
        except (TypeError, ValueError, RuntimeError, KeyError) as e:
            first = str(e).strip().splitlines()[0][:160]
            raise LstmgenError(
                f"model {self.name!r} has weights that do not fit its config ({first}); train it again"
            ) from None
        return model.to(device).eval()

    def summary(self, status: str, parameters: int, updated: str, epochs: float | None = None) -> dict:
        """The model's info.json: what `list` shows without loading a .pt file. `epochs`: passes over the
        training split with the current one's fraction (default: the whole ones)."""
        return {
            "kind": "model",
            "name": self.name,
            "corpus": self.corpus.get("name"),
            "corpus_sha256": self.corpus.get("sha256"),  # whose validation split a later run's figure may meet
            "tokenizer": self.vocab.get("kind"),
            "vocab_size": len(self.vocab.get("itos", ())),
            "parameters": parameters,
            "steps": self.step,
            "epochs": self.epoch if epochs is None else round(epochs, 1),
            "best_val_loss": self.best_val_loss,
            "best_val_bits_per_char": self.bits_per_char(self.best_val_loss),
            "status": status,
            "created": self.created,
            "updated": updated,
            "model": self.config["model"],
        } | ({"lineage": self.lineage} if self.lineage else {}) | (
            {"labels": self.corpus["labels"]} if self.corpus.get("labels") else {}
        )

    def bits_per_char(self, val_loss: float | None) -> float | None:
        """A validation loss (nats per token) as bits per character of the validation split, comparable
        across tokenizers: loss * tokens / chars / ln 2, each record's end counting as one character (as in
        `lstmgen eval`). None without the split's counts."""
        return bits_per_char(val_loss, self.corpus)

    # -- the file ----------------------------------------------------------------------------------------

    def to_payload(self) -> dict:
        payload = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("path", "train_state", "lineage")}
        payload["format_version"] = MODEL_FORMAT
        if self.train_state is not None:
            payload["train_state"] = self.train_state
        if self.lineage is not None:  # only a --from model's: the others' files stay as they were
            payload["lineage"] = self.lineage
        return payload

    def save(self, path: Path) -> None:
        """Atomically (see registry.atomic_write); raises registry.SaveFailed with the reason."""
        registry.save_pt(path, self.to_payload())

    @classmethod
    def from_payload(cls, payload: dict, path: Path) -> Checkpoint:
        """A loaded .pt file as a Checkpoint, after checking every part's type and range, so that a damaged
        or hostile file is one error line here, not a traceback deep inside sample, eval, show or resume."""
        missing = [k for k in REQUIRED if k not in payload]
        if missing:
            raise LstmgenError(f"{path} is not a complete lstmgen model (missing {', '.join(missing)}); train it again")
        registry.check_version(payload, path, MODEL_FORMAT, "train it again")
        _check_parts(payload, path)
        fields = {f.name for f in dataclasses.fields(cls)} - {"path"}
        known = {k: payload.get(k) for k in fields}
        known["name"] = str(payload.get("name") or path.parent.name)
        known["created"] = str(payload.get("created") or "")
        for key in ("step", "epoch"):
            known[key] = payload.get(key) if isinstance(payload.get(key), int) else 0
        if not isinstance(known["best_val_loss"], (int, float)):
            known["best_val_loss"] = None
        return cls(**known, path=path)


def _check_parts(payload: dict, path: Path) -> None:
    fix = "train the model again"

    def damaged(what: str):
        raise LstmgenError(f"{path} is damaged ({what}); {fix}")

    for key, kind in (("vocab", dict), ("config", dict), ("state_dict", dict), ("history", list),
                      ("corpus", dict), ("heldout", dict)):  # fmt: skip
        if not isinstance(payload[key], kind):
            damaged(f"{key} is not a {kind.__name__}")
    if "model_config" in payload:  # format 1 kept the model's shape twice: the copy must agree
        if payload["model_config"] != (payload["config"].get("model") or payload["model_config"]):
            damaged("its two copies of the model config differ")
        payload["config"].setdefault("model", payload["model_config"])
    n_vocab = len(Vocab.from_dict(payload["vocab"]))
    try:
        load_config(None, [], base=payload["config"])
    except ConfigError as e:
        damaged(f"its saved config: {e}")
    if not all(isinstance(k, str) and registry.is_plain_tensor(v) for k, v in payload["state_dict"].items()):
        damaged("state_dict holds something other than named tensors")
    if not all(bool(v.isfinite().all()) for v in payload["state_dict"].values() if v.is_floating_point()):
        damaged("its weights hold NaN or infinity")
    counts = [payload["corpus"].get(k) for k in ("chars", "tokens")]
    if not all(isinstance(c, dict) and all(isinstance(c.get(s), int) for s in ("val", "test")) for c in counts):
        damaged("its corpus summary lacks held-out token and character counts")
    if not isinstance(payload.get("lineage"), (dict, type(None))):
        damaged("its lineage is not a dict")
    numbers = (int, float, type(None))
    for h in payload["history"]:
        if not (isinstance(h, dict) and isinstance(h.get("step"), int)
                and all(isinstance(h.get(k), numbers) for k in ("train_loss", "val_loss"))):  # fmt: skip
            damaged("its metrics history is malformed")
    for split in ("val", "test"):
        registry.check_ids(payload["heldout"].get(split), n_vocab, f"held-out {split}", path, fix)


def load(name: str, which: str | None = None) -> Checkpoint:
    """A registry model's `which` checkpoint ("best" or "last"; None: best, else last), checked, and saved by
    this model: a file copied in from another would sample, score and export under the wrong name."""
    path = registry.model_file(name, which)
    ckpt = Checkpoint.from_payload(registry.load_pt(path), path)
    registry.check_owner(path, ckpt.name, name)
    return ckpt


def latest(name: str) -> Checkpoint:
    """last.pt where there is one (it has the whole history; best.pt stops at its best step), else best.pt."""
    has_last = (registry.entry_dir("model", name) / "last.pt").is_file()
    return load(name, "last" if has_last else None)


# -- resume rules --------------------------------------------------------------------------------------


def check_same_layout(ckpt: Checkpoint, cfg: Config) -> None:
    """A run resumes with what lays out its weights, data position and carried hidden state unchanged: the
    model's shape, the corpus, batch_size and seq_len. Values equal to the saved ones are fine."""
    registry.check_owner(ckpt.path or "the checkpoint", ckpt.name, cfg.name)  # a library caller's, of another model
    saved, now = ckpt.config, cfg.to_dict()
    layout = [
        f"{sec}.{k}"
        for sec, keys in (("model", now["model"]), ("train", ("batch_size", "seq_len")))
        for k in keys
        if (saved.get(sec) or {}).get(k) != now[sec][k]
    ]
    if saved.get("corpus") != now["corpus"]:
        layout.insert(0, "corpus")
    if layout:
        raise LstmgenError(
            f"cannot resume model {cfg.name!r} with a different {', '.join(layout)} (it lays out the weights, "
            "the data position and the carried state); drop that setting, or start over with --overwrite"
        )


def check_resumable(ckpt: Checkpoint, corpus: dict, cfg: Config) -> None:
    """check_same_layout, and the very corpus the run started on: the same source bytes, vocabulary, token
    counts and held-out records."""
    check_same_layout(ckpt, cfg)
    meta = corpus["meta"]
    try:
        same = (
            ckpt.corpus.get("sha256") == meta.get("sha256")
            and ckpt.corpus.get("tokens") == meta.get("tokens")
            and ckpt.vocab == corpus["vocab"]
            and all(torch.equal(ckpt.heldout[k], corpus["splits"][k]) for k in ("val", "test"))
        )
    except (KeyError, TypeError, AttributeError, RuntimeError):  # a damaged checkpoint cannot vouch for its corpus
        same = False
    if not same:
        raise LstmgenError(
            f"corpus {cfg.corpus!r} is not the one model {cfg.name!r} started training on (its "
            "vocabulary or split differs); prepare it as before, or train a new model"
        )


def check_world_size(ckpt: Checkpoint, cfg: Config, world: int) -> None:
    """A run resumes on as many processes as it trained on: each rank's lanes, hidden state and dropout RNG
    are laid out by the world size."""
    saved = ckpt.train_state.get("world_size", 1) if isinstance(ckpt.train_state, dict) else 1
    if saved != world:
        how = "plain `lstmgen train`" if saved == 1 else f"--nproc {saved} (or torchrun --nproc-per-node {saved})"
        raise LstmgenError(
            f"model {cfg.name!r} was training on {saved} process(es), and this run has {world}: the world "
            f"size lays out each process's data and state; resume it with {how}, or start over with --overwrite"
        )


def died_before_first_checkpoint(name: str) -> bool:
    """No last.pt: is this a run killed before its first one (nothing, or only an early best.pt of its own)?

    The trainer writes best.pt before last.pt at a step that has both (train.Trainer.after_step), so a kill
    in between leaves a best.pt no later than checkpoint_every. A later best.pt means last.pt was lost some
    other way: not ours to replace.
    """
    if not (registry.entry_dir("model", name) / "best.pt").is_file():
        return True
    try:
        best = load(name, "best")
    except LstmgenError:
        return False
    return best.step <= best.config["train"]["checkpoint_every"]
