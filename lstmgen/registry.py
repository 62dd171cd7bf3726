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
import errno
import json
import os
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from .errors import LstmgenError, UsageError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
KINDS = ("corpus", "model")


class NotFound(LstmgenError):
    pass


class SaveFailed(LstmgenError):
    """A registry write failed (disk full, permissions); the file it would have replaced is unchanged."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"could not save {path} ({reason}); what was there before is unchanged")


class Busy(LstmgenError):
    """Another process holds the entry's lock (training the model, preparing the corpus)."""


def home() -> Path:
    env = os.environ.get("LSTMGEN_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "lstmgen"


def check_name(name: str, what: str = "name") -> str:
    if not NAME_RE.match(name or "") or ".." in name:
        shown = repr(name) if len(name or "") <= 60 else repr(name[:60]) + "..."
        raise LstmgenError(
            f"invalid {what} {shown}: "
            + (
                _path_hint(name, what)
                or "use letters, digits, '.', '_' or '-', starting with a letter or digit "
                "(no '/', '..' or spaces), up to 100 characters"
            )
        )
    return name


def _path_hint(name: str, what: str) -> str | None:
    """What to type instead when a path was given where a registry name goes (`-m ~/.local/share/lstmgen/models/x`,
    `--corpus data/jokes.csv`), or None when `name` does not look like a path."""
    if not name or not ("/" in name or os.sep in name or name.startswith(("~", "."))):
        return None
    kind = what.split()[0] if what.split()[0] in KINDS else None
    path = Path(name).expanduser()
    for k in [kind] if kind else KINDS:
        for part in (path.name, path.parent.name):  # models/x, or models/x/best.pt
            if NAME_RE.match(part) and ".." not in part and (home() / _DIRS[k] / part).is_dir():
                return f"{_DIRS[k]} are named in the registry, not given by path; did you mean {k} {part!r}?"
    if kind == "corpus" and path.is_file():
        return f"a corpus is named in the registry, not given as a file; {_file_hint(name)}"
    named = _DIRS[kind] if kind else "corpora and models"
    return f"{named} are named in the registry, not given by path; `lstmgen list` shows them"


def _file_hint(path: str) -> str:
    """For a corpus given as the file it comes from: the corpus prepared from it, or how to prepare it."""
    import shlex

    made = name_from(Path(path).stem)
    if read_json(home() / "corpora" / made / "info.json").get("source") == str(Path(path).expanduser().resolve()):
        return f"did you mean corpus {made!r}, prepared from it?"
    return f"run `lstmgen prepare {shlex.quote(path)}` first, then name the corpus it makes ({made!r})"


def name_from(stem: str) -> str:
    """A valid registry name from a file stem: "my jokes (v2)" -> "my-jokes-v2"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).replace("..", ".").strip("-.") or "corpus"


_DIRS = {"corpus": "corpora", "model": "models"}


def entry_dir(kind: str, name: str) -> Path:
    check_name(name, f"{kind} name")
    return home() / _DIRS[kind] / name


def names(kind: str) -> list[str]:
    root = home() / ("corpora" if kind == "corpus" else "models")
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name))


def require_any(name: str) -> str:
    """The kind of the entry called `name`, or a NotFound that suggests the closest corpus or model."""
    for kind in KINDS:
        if entry_dir(kind, name).is_dir():
            return kind
    existing = [(kind, n) for kind in KINDS for n in names(kind)]
    close = difflib.get_close_matches(name, [n for _, n in existing], n=1, cutoff=0.5)
    if close:
        kind = next(k for k, n in existing if n == close[0])
        raise NotFound(f"no corpus or model named {name!r} in {home()}; did you mean {kind} {close[0]!r}?")
    raise NotFound(f"no corpus or model named {name!r} in {home()}")


def find_kind(name: str, kind: str | None = None) -> str:
    """Which kind of entry `name` is ("corpus" or "model"); `kind` settles a name both kinds use."""
    check_name(name)
    kinds = [kind] if kind else [k for k in KINDS if entry_dir(k, name).is_dir()]
    if not kinds:
        require_any(name)  # raises NotFound with the closest corpus or model name
    if len(kinds) > 1:
        raise UsageError(f"{name!r} is both a corpus and a model; add --kind corpus or --kind model")
    return kinds[0]


def require(kind: str, name: str) -> Path:
    """The entry's directory, or a NotFound that suggests the closest existing name."""
    d = entry_dir(kind, name)
    if not d.is_dir():
        existing = names(kind)
        close = difflib.get_close_matches(name, existing, n=1, cutoff=0.5)
        if kind == "corpus" and Path(name).is_file():  # --corpus jokes.csv: a valid name, and a file here
            hint = f"; {name} is a file: {_file_hint(name)}"
        elif close:
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


# -- locks ---------------------------------------------------------------------------------------------


@contextmanager
def lock(kind: str, name: str, doing: str):
    """Hold the entry's lock while writing it (train, prepare, rm); raise Busy if another process holds it.

    An advisory flock on locks/KIND-NAME.lock: the kernel releases it when the holder exits, however it
    exits (kill -9 included), so a crash never leaves a stale lock. Readers (`sample`, `eval`, `list`) take
    no lock: atomic writes already show them the last complete file. The lock file names its holder and
    is deleted on release, so a command that fails leaves the registry as it found it.
    """
    path = home() / "locks" / f"{kind}-{check_name(name, f'{kind} name')}.lock"
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except (FileNotFoundError, FileExistsError):  # a releasing process removed the locks dir meanwhile
            continue
        if not _try_lock(fd):
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another lstmgen process"
            os.close(fd)
            raise Busy(f"{kind} {name!r} is busy ({holder}); wait for it to finish, or use another name")
        try:
            same_file = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # we locked a file its holder had just deleted on release: try again
    try:
        os.ftruncate(fd, 0)
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        os.write(fd, f"pid {os.getpid()} {doing} since {started}".encode())
        clear_partial(entry_dir(kind, name))  # a writer killed mid-save left these; none can be live now
        yield
    finally:
        if os.name != "nt":  # Windows cannot delete a file that is open; its lock file stays (harmless)
            path.unlink(missing_ok=True)  # while still holding it: see the samestat check above
        os.close(fd)  # closing releases the lock
        try:
            path.parent.rmdir()
        except OSError:  # other locks are held, or it is gone already
            pass


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows (untested): lock one byte past the holder text, which stays readable
        import msvcrt

        os.lseek(fd, 4096, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def scratch(kind: str, name: str):
    """A directory inside the registry for an entry's large intermediate files, removed on exit. Take it
    under the entry's lock: what a killed run of the same entry left there is cleared first."""
    d = home() / f".scratch-{kind}-{check_name(name, f'{kind} name')}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- atomic writes -------------------------------------------------------------------------------------


class _RecordingWriter:
    """A file wrapper that remembers the OSError of a failed write.

    torch.save reports a failed write (say, a full disk) as "RuntimeError: unexpected pos 704 vs 598";
    the OSError it swallowed is the message the user needs.
    """

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def atomic_write(path: Path, write, before_replace=None) -> None:
    """Call write(file) on a temp file beside `path`, fsync, then rename over `path`: readers see old or new.

    `before_replace()` runs after the new bytes are safely on disk and before the rename (train uses it to
    drop an older run's files only once the new checkpoint exists). A process killed at any moment
    leaves `path` complete, old or new, plus at worst a `.NAME.*.tmp` file that `clear_partial` removes.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            writer = _RecordingWriter(f)
            try:
                write(writer)
            except RuntimeError:
                if writer.error is None:
                    raise
                raise writer.error from None
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise SaveFailed(path, reason) from None
        raise
    _fsync_dir(path.parent)  # the rename itself survives a power cut


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # Windows cannot open directories; its renames are journaled anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clear_partial(d: Path) -> None:
    """Remove the temp files a process killed mid-write left in `d` (`lock` calls it once it holds the lock)."""
    for tmp in d.glob(".*.tmp") if d.is_dir() else ():
        tmp.unlink(missing_ok=True)


def save_pt(path: Path, payload: dict, before_replace=None) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(payload, f), before_replace)


def load_pt(path: Path) -> dict:
    """Load a registry file without unpickling code (`weights_only=True`), onto the CPU."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about foreign pickles; our error line says it all
            # mmap: tensors stay in the file and are paged in as read, so a corpus larger than memory
            # trains; map_location: a checkpoint saved on a GPU loads on any machine.
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise NotFound(f"{path} is missing") from None
    except Exception:  # noqa: BLE001 - damaged bytes make the unpickler raise anything (TypeError, KeyError, ...)
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


def check_version(payload: dict, path: Path, newest: int, fix: str) -> None:
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise LstmgenError(f"{path} has no valid format version ({version!r}): it is not an lstmgen file; {fix}")
    if version > newest:
        raise LstmgenError(
            f"{path} has format version {version}, newer than this lstmgen reads ({newest}); upgrade lstmgen or {fix}"
        )


def check_ids(ids, n_vocab: int, what: str, path: Path, fix: str, values: bool = True) -> None:
    """A split's token ids: a 1-D integer tensor inside the vocabulary (an embedding lookup would crash).
    `values=False` checks the type only: training checks a memory-mapped split's values window by window."""

    if not is_plain_tensor(ids) or ids.dim() != 1 or ids.is_floating_point() or ids.is_complex():
        raise LstmgenError(f"{path} is damaged ({what} ids are not a 1-D integer tensor); {fix}")
    if values and ids.numel() and not (0 <= int(ids.min()) and int(ids.max()) < n_vocab):
        raise LstmgenError(f"{path} is damaged ({what} ids fall outside its vocabulary of {n_vocab}); {fix}")


def is_plain_tensor(t) -> bool:
    """An ordinary dense CPU tensor (a file can also hold meta, sparse or quantized ones)."""
    import torch

    return isinstance(t, torch.Tensor) and t.layout == torch.strided and t.device.type == "cpu" and not t.is_quantized


# -- models --------------------------------------------------------------------------------------------


def model_file(name: str, which: str | None = None) -> Path:
    """best.pt, else last.pt (a model still in its first evaluation interval has only last.pt)."""
    d = require("model", name)
    for candidate in [which] if which else ["best", "last"]:
        p = d / f"{candidate}.pt"
        if p.is_file():
            return p
    raise NotFound(f"model {name!r} has no {which or 'saved'} checkpoint yet in {d}; train it first")


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
    if name is not None:
        return name
    chosen = default_model()
    if chosen is None:
        raise NotFound(
            f"no models in {home()} yet: train one with `lstmgen prepare jokes && lstmgen train --config char`"
        )
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
    with lock(kind, name, "removing it"):
        shutil.rmtree(d)
    reg = home() / "registry.json"
    data = read_json(reg)
    if kind == "model" and data.get("default_model") == name:
        data.pop("default_model")
        write_json(reg, data)
    return d
