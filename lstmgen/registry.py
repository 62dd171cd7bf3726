"""The on-disk registry every command shares: where corpora and models live, atomic saves, safe loads, listing.

Layout under the root ($LSTMGEN_HOME, else $XDG_DATA_HOME/lstmgen, else ~/.local/share/lstmgen):

    corpora/NAME/corpus.pt   vocab + token ids per split + metadata
    corpora/NAME/info.json   summary for `list` (read without importing torch)
    models/NAME/best.pt      self-contained: weights, model config, vocab, resolved config, metrics history
    models/NAME/last.pt      the same + optimizer, RNG, data position, hidden state: what --resume needs
    models/NAME/info.json    summary for `list`
    registry.json            {"default_model": NAME} when set with `lstmgen default`

Every .pt file holds only tensors, numbers, strings, lists and dicts, and is loaded with
`torch.load(weights_only=True)`: loading never runs code from the file.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

from .errors import LstmgenError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
KINDS = ("corpus", "model")
MODEL_FORMAT = 1


class NotFound(LstmgenError):
    pass


def home() -> Path:
    env = os.environ.get("LSTMGEN_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "lstmgen"


def check_name(name: str, what: str = "name") -> str:
    if not NAME_RE.match(name or "") or ".." in name:
        raise LstmgenError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' or '-' "
            "(no '/', '..' or spaces), up to 100 characters"
        )
    return name


def name_from(stem: str) -> str:
    """A valid registry name from a file stem: "my jokes (v2)" -> "my-jokes-v2"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).replace("..", ".").strip("-.") or "corpus"


def entry_dir(kind: str, name: str) -> Path:
    check_name(name, f"{kind} name")
    return home() / ("corpora" if kind == "corpus" else "models") / name


def names(kind: str) -> list[str]:
    root = home() / ("corpora" if kind == "corpus" else "models")
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name))


def require(kind: str, name: str) -> Path:
    """The entry's directory, or a NotFound that suggests the closest existing name."""
    d = entry_dir(kind, name)
    if not d.is_dir():
        existing = names(kind)
        close = difflib.get_close_matches(name, existing, n=1, cutoff=0.5)
        if close:
            hint = f"; did you mean {close[0]!r}?"
        elif existing:
            hint = f"; existing {kind} names: {', '.join(existing[:8])}"
        else:
            hint = (
                " (the registry has none yet: run `lstmgen prepare` first)"
                if kind == "corpus"
                else (" (the registry has none yet: run `lstmgen train` first)")
            )
        raise NotFound(f"no {kind} named {name!r} in {home()}{hint}")
    return d


# -- atomic writes -------------------------------------------------------------------------------------


def atomic_write(path: Path, write) -> None:
    """Call write(file) on a temp file beside `path`, fsync, then rename over `path`: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pt(path: Path, payload: dict) -> None:
    import torch

    try:
        atomic_write(path, lambda f: torch.save(payload, f))
    except OSError as e:
        raise LstmgenError(f"could not save {path} ({e.strerror or e}); the previous file is unchanged") from None


def load_pt(path: Path) -> dict:
    """Load a registry file without unpickling code (`weights_only=True`), onto the CPU."""
    import pickle

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about foreign pickles; our error line says it all
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NotFound(f"{path} is missing") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError):
        # Not torch's message: it suggests weights_only=False, which is exactly what must never happen.
        raise LstmgenError(
            f"{path} is corrupt, truncated, or not an lstmgen file (only plain tensors and data load, and "
            "loading never runs code from the file); delete it, or prepare/train again"
        ) from None
    if not isinstance(payload, dict):
        raise LstmgenError(f"{path} is not an lstmgen file")
    return payload


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# -- corpora -------------------------------------------------------------------------------------------


def save_corpus(name: str, corpus: dict) -> Path:
    d = entry_dir("corpus", name)
    save_pt(d / "corpus.pt", corpus)
    write_json(d / "info.json", {"kind": "corpus", "name": name, **corpus["meta"]})
    return d


def load_corpus(name: str) -> dict:
    from .corpus import CORPUS_FORMAT

    path = require("corpus", name) / "corpus.pt"
    corpus = load_pt(path)
    version = corpus.get("format_version")
    if not isinstance(version, int) or version > CORPUS_FORMAT:
        raise LstmgenError(
            f"corpus {name!r} has format version {version}, newer than this lstmgen reads ({CORPUS_FORMAT}); "
            "upgrade lstmgen or run `lstmgen prepare` again"
        )
    return corpus


# -- models --------------------------------------------------------------------------------------------


def model_file(name: str, which: str | None = None) -> Path:
    """best.pt, else last.pt (a model still in its first evaluation interval has only last.pt)."""
    d = require("model", name)
    for candidate in [which] if which else ["best", "last"]:
        p = d / f"{candidate}.pt"
        if p.is_file():
            return p
    raise NotFound(f"model {name!r} has no {which or 'saved'} checkpoint yet in {d}; train it first")


MODEL_KEYS = ("vocab", "model_config", "config", "state_dict", "history", "corpus", "heldout")


def load_model_payload(name: str, which: str | None = None) -> dict:
    path = model_file(name, which)
    payload = load_pt(path)
    missing = [k for k in MODEL_KEYS if k not in payload]
    if missing:
        raise LstmgenError(f"{path} is not a complete lstmgen model (missing {', '.join(missing)}); train it again")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > MODEL_FORMAT:
        raise LstmgenError(
            f"model {name!r} has format version {version}, newer than this lstmgen reads ({MODEL_FORMAT})"
        )
    return payload


def default_model() -> str | None:
    """The model set with `lstmgen default`, else the most recently trained one."""
    return _default_of([info("model", n) for n in names("model")])


def _default_of(models: list[dict]) -> str | None:
    """Among `info()` dicts: the one chosen with `lstmgen default`, else the latest with a checkpoint."""
    chosen = read_json(home() / "registry.json").get("default_model")
    if chosen and any(m["name"] == chosen for m in models):
        return chosen
    trained = [m for m in models if m["checkpoints"]]
    return max(trained, key=lambda m: (m.get("updated", ""), m["name"]))["name"] if trained else None


def set_default_model(name: str) -> None:
    require("model", name)
    path = home() / "registry.json"
    write_json(path, read_json(path) | {"default_model": name})


def resolve_model(name: str | None) -> str:
    if name:
        return name
    chosen = default_model()
    if chosen is None:
        raise NotFound(f"no models in {home()} yet: train one with `lstmgen train --config configs/char.yaml`")
    return chosen


# -- listing and removal -------------------------------------------------------------------------------


def info(kind: str, name: str) -> dict:
    """The entry's summary; tolerates a missing or damaged info.json."""
    d = entry_dir(kind, name)
    data = read_json(d / "info.json")
    data.update(name=name, kind=kind, path=str(d))
    if kind == "model":
        data["checkpoints"] = sorted(p.stem for p in d.glob("*.pt"))
    return data


def list_entries() -> dict:
    models = [info("model", n) for n in names("model")]  # each info.json read once
    return {
        "home": str(home()),
        "default_model": _default_of(models),
        "corpora": [info("corpus", n) for n in names("corpus")],
        "models": models,
    }


def remove(kind: str, name: str) -> Path:
    d = require(kind, name)
    shutil.rmtree(d)
    reg = home() / "registry.json"
    data = read_json(reg)
    if kind == "model" and data.get("default_model") == name:
        data.pop("default_model")
        write_json(reg, data)
    return d
