"""The on-disk registry every command shares: where corpora and models live, atomic saves, safe loads, listing.

Layout under the root ($LSTMGEN_HOME, else $XDG_DATA_HOME/lstmgen, else ~/.local/share/lstmgen):

    corpora/NAME/corpus.pt   vocab + token ids per split + metadata
    corpora/NAME/info.json   summary for `list` (read without importing torch)
    models/NAME/best.pt      self-contained: weights, model config, vocab, resolved config, metrics history
    models/NAME/last.pt      the same + optimizer, RNG, data position, hidden state: what --resume needs
    models/NAME/info.json    summary for `list`
    registry.json            {"default_model": NAME} when set with `lstmgen default`
    corpora/.staging-*, .trash-*   an entry being built, or being deleted (never listed; cleared under a lock)

No symbolic link below the root is followed: an entry, a file in one, corpora/ or models/ that is a link is
refused (its row in `list` says so), so no write or deletion can leave the registry.

Every .pt file holds only tensors, numbers, strings, lists and dicts, and is loaded with
`torch.load(weights_only=True)`: loading never runs code from the file. models/NAME/ also holds best.onnx,
last.onnx and heldout.npz (runtime.py, onnx_graph.py).

Long (~720 lines) on purpose for now: every rule about what touches the disk (names, links, locks, atomic
writes, staging, all-or-nothing removal, bounded reads of info.json) is here, where one review sees them
together. The next split would move the atomic-write and safe-load primitives to a storage module.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import itertools
import json
import math
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from .errors import LstmgenError, UsageError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # \Z: "$" would let a last "\n" through
KINDS = ("corpus", "model")
# info.json is about 1 KB; a larger one is damaged or hostile, and is not read (it could be a link to
# /dev/zero, or a 10 GB file): its entry is listed as damaged. Not an option: lstmgen writes these files.
MAX_INFO_BYTES = 64 << 10
# Hidden names beside the entries, in corpora/ and models/ (same filesystem, so renames are atomic; never
# listed, as names start with a letter or digit): an entry being built, and one being deleted.
STAGING, TRASH = ".staging-", ".trash-"


class NotFound(LstmgenError):
    pass


class SaveFailed(LstmgenError):
    """A registry write failed (disk full, permissions); the file it would have replaced is unchanged."""

    def __init__(self, path: Path, reason: str, message: str | None = None):
        self.path, self.reason = path, reason
        super().__init__(message or f"could not save {path} ({reason}); what was there before is unchanged")


class Busy(LstmgenError):
    """Another process holds the entry's lock (training the model, preparing the corpus)."""


def home() -> Path:
    """The registry's folder: $LSTMGEN_HOME, else $XDG_DATA_HOME/lstmgen, else ~/.local/share/lstmgen. Made
    when first written; something there that is not a folder is an error (`list` showed a file as empty)."""
    env = os.environ.get("LSTMGEN_HOME")
    if env:
        found, variable = _home_dir(env, "LSTMGEN_HOME"), "LSTMGEN_HOME"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        found = (_home_dir(xdg, "XDG_DATA_HOME") if xdg else _home_dir("~", "HOME") / ".local" / "share") / "lstmgen"
        variable = "the registry folder"
    if found.exists() and not found.is_dir():
        raise LstmgenError(f"{variable} {found} is not a folder; point LSTMGEN_HOME at a folder, or move it away")
    return found


def _home_dir(path: str, variable: str) -> Path:
    expanded = _expanded(path)
    if str(expanded).startswith("~"):  # no such user, or no HOME: a literal ~ directory here would be a trap
        raise LstmgenError(f"{variable} is {path!r}, whose ~ names no home directory here; set it to an absolute path")
    return expanded


def _expanded(path: str) -> Path:
    """~ and ~user expanded where they can be; Path.expanduser raises on an unknown user (`~nobody/x`)."""
    return Path(os.path.expanduser(path))


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
    path = _expanded(name)
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
    if read_json(home() / "corpora" / made / "info.json").get("source") == str(_expanded(path).resolve()):
        return f"did you mean corpus {made!r}, prepared from it?"
    return f"run `lstmgen prepare {shlex.quote(path)}` first, then name the corpus it makes ({made!r})"


def name_from(stem: str) -> str:
    """A valid registry name from a file stem: "my jokes (v2)" -> "my-jokes-v2"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).replace("..", ".").strip("-.") or "corpus"


_DIRS = {"corpus": "corpora", "model": "models"}


class LinkRefused(LstmgenError):
    """A path inside the registry is a symbolic link: lstmgen never follows one (it could lead writes, deletions
    or reads out of the registry)."""


def entry_dir(kind: str, name: str) -> Path:
    """The entry's directory. Refuses (LinkRefused) when it, its corpora/ or models/ directory, or a file in
    it is a symbolic link: `prepare --overwrite` and `train --overwrite` write there, and `rm` deletes it."""
    check_name(name, f"{kind} name")
    d = _kind_dir(kind) / name
    _refuse_link(d)
    if d.is_dir():
        with os.scandir(d) as files:
            for f in files:
                if f.is_symlink():
                    _refuse_link(Path(f.path))
    return d


def _kind_dir(kind: str) -> Path:
    root = home() / _DIRS[kind]
    _refuse_link(root)
    return root


def _refuse_link(path: Path) -> None:
    """Raise LinkRefused if `path` (somewhere under home()) is a symbolic link. home() itself may be one: it
    is the user's choice of where the registry lives."""
    if not path.is_symlink():
        return
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    keep = "set LSTMGEN_HOME to a registry there" if path.parent == home() else "move it into its place"
    raise LinkRefused(
        f"{path} is a symbolic link (to {target}); lstmgen never follows links inside its registry: to use "
        f"what it points to, {keep}; to drop it, delete the link itself (rm {path})"
    )


def names(kind: str) -> list[str]:
    """The entries of `kind`, damaged ones included (a link, a directory without its files): `list` shows
    each, and says what is wrong with it."""
    root = _kind_dir(kind)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p.is_dir() or p.is_symlink()) and NAME_RE.match(p.name))


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
    if kind:
        require(kind, name)  # the named kind must have it: `show x --kind corpus` of no corpus x is an error
        return kind
    kinds = [k for k in KINDS if entry_dir(k, name).is_dir()]
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
        other = "model" if kind == "corpus" else "corpus"
        if kind == "corpus" and Path(name).is_file():  # --corpus jokes.csv: a valid name, and a file here
            hint = f"; {name} is a file: {_file_hint(name)}"
        elif entry_dir(other, name).is_dir():  # --from jokes, --model jokes: the other kind of entry
            hint = f"; {name!r} is a {other}" + (
                f" (train a model on it: lstmgen train --corpus {name})" if other == "corpus" else ""
            )
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


def same_entry(saved_by, name: str) -> bool:
    """Whether a file that names its entry `saved_by` belongs to entry `name`. Without case: a case-insensitive
    file system (macOS, Windows) finds `Jokes` under models/jokes."""
    return isinstance(saved_by, str) and saved_by.casefold() == name.casefold()


def check_owner(path: Path | str, saved_by, name: str) -> None:
    """Refuse a model file (checkpoint or graph) that another model saved: copied in by hand, or the whole
    entry copied, it would sample, score and export under the wrong name."""
    if not same_entry(saved_by, name):
        raise LstmgenError(
            f"{path} was saved by model {saved_by!r}, not {name!r} (copied in? an entry cannot be copied or "
            f"renamed by hand); put back the file model {name!r} saved, or `lstmgen rm {name}` and train it again"
        )


def refuse_inside(path: Path | str, what: str) -> None:
    """Refuse to write `path` inside the registry, where a stray file would sit in an entry (export's --out,
    show's --plot). Links are followed: a link into the registry is refused. `what`: the fix, such as
    "export to a folder outside it"."""
    try:
        inside = Path(path).resolve().is_relative_to(home().resolve())
    except (OSError, RuntimeError) as e:  # a loop of links
        raise LstmgenError(f"could not follow {path} ({e}); choose another path") from None
    if inside:
        raise LstmgenError(f"{path} is inside the registry ({home()}); {what}")


# -- locks ---------------------------------------------------------------------------------------------


LOCK_RETRIES = 1000  # a locks dir removed by releasing holders between our mkdir and open: each retry is new


@contextmanager
def lock(kind: str, name: str, doing: str):
    """Hold the entry's lock while writing it (train, prepare, rm); raise Busy if another process holds it.

    An advisory flock on locks/KIND-NAME.lock: the kernel releases it when the holder exits, however it
    exits (kill -9 included), so a crash never leaves a stale lock. Readers (`sample`, `eval`, `list`) take
    no lock: atomic writes already show them the last complete file. The lock file names its holder and
    is deleted on release, so a command that fails leaves the registry as it found it.
    """
    path = home() / "locks" / f"{kind}-{check_name(name, f'{kind} name')}.lock"
    d = entry_dir(kind, name)  # refuses a linked entry before anything is written
    for attempt in itertools.count():
        try:
            _refuse_link(path.parent)
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_NOFOLLOW: a lock file replaced by a link must not make us truncate the file it points to
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except (FileNotFoundError, FileExistsError):  # a releasing process removed the locks dir meanwhile
            if _is_file(path.parent):  # a file in its place: that never clears
                raise LstmgenError(
                    f"cannot lock {kind} {name!r}: {path.parent} is a file, where lstmgen keeps its lock files; "
                    "move it away"
                ) from None
            if attempt >= LOCK_RETRIES:
                raise LstmgenError(f"cannot lock {kind} {name!r}: {path.parent} keeps vanishing") from None
            continue
        except OSError as e:
            raise LstmgenError(f"cannot lock {kind} {name!r}: {e.strerror or e} ({path})") from None
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
        clear_partial(d)  # a writer killed mid-save left these; none can be live now
        for left in _leftovers(kind, name):  # nor this entry's staging or trash directories
            _delete_tree(left, strict=False)
        yield
    finally:
        if os.name != "nt":  # Windows cannot delete a file that is open; its lock file stays (harmless)
            path.unlink(missing_ok=True)  # while still holding it: see the samestat check above
        os.close(fd)  # closing releases the lock
        try:
            path.parent.rmdir()
        except OSError:  # other locks are held, or it is gone already
            pass


def _is_file(path: Path) -> bool:
    """Whether something other than a directory is at `path`, in one stat: two calls (exists, is_dir) would
    see a directory another process removes between them as a file."""
    try:
        return not stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


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
    if d.is_symlink():  # lstmgen's own hidden directory: a link there is dropped, never followed
        d.unlink()
    shutil.rmtree(d, ignore_errors=True)
    try:
        d.mkdir(parents=True)
    except OSError as e:
        raise write_error(e, d) from None
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


def atomic_write(path: Path, write) -> None:
    """Call write(file) on a temp file beside `path`, fsync, then rename over `path`: readers see old or new.

    A process killed at any moment leaves `path` complete, old or new, plus at worst a `.NAME.*.tmp` file
    that `clear_partial` removes.
    """
    tmp, made = None, not path.parent.exists()
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
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if made:  # a first save that failed (a full disk) leaves no empty entry directory for `list` to show
            try:
                path.parent.rmdir()
            except OSError:
                pass
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


def save_pt(path: Path, payload: dict) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(payload, f))


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
    """The JSON object in `path`, or {} when it is missing or unreadable (see read_json_checked)."""
    return read_json_checked(path)[0]


def read_json_checked(path: Path) -> tuple[dict, str | None]:
    """(the JSON object in `path`, None), or ({}, why it could not be read): missing, not a regular file (a
    link is not followed, a FIFO not waited on), over MAX_INFO_BYTES, not JSON, or not an object."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return {}, "is missing"
    except OSError as e:
        return {}, "is a symbolic link" if path.is_symlink() else f"cannot be read ({e.strerror or e})"
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return {}, "is not a regular file"
            raw = f.read(MAX_INFO_BYTES + 1)
    except OSError as e:
        return {}, f"cannot be read ({e.strerror or e})"
    if len(raw) > MAX_INFO_BYTES:
        return {}, f"is larger than {MAX_INFO_BYTES >> 10} KB"
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8 or JSON, an int of over 4,300 digits, 10,000 nested [
        return {}, "is not valid JSON"
    return (data, None) if isinstance(data, dict) else ({}, "is not a JSON object")


# -- corpora -------------------------------------------------------------------------------------------


def save_corpus(name: str, corpus: dict, also: Callable[[Path], None] | None = None) -> Path:
    """Write the corpus entry whole, then put it in place: `list` and `train` see the previous corpus of this
    name or the new one, never a half-written one (a full disk, an exception or a signal midway leaves the
    previous entry, or none). `also(staged_dir)` adds more to the entry before it is put in place."""
    d = entry_dir("corpus", name)
    existed = d.exists()

    def write(staged: Path) -> None:
        save_pt(staged / "corpus.pt", corpus)
        write_json(staged / "info.json", {"kind": "corpus", "name": name, **corpus["meta"]})
        if also is not None:
            also(staged)

    try:
        put_entry(d, write)
    except SaveFailed as e:
        kept = "the previous corpus of this name is unchanged" if existed else "nothing was saved"
        fix = "free some space" if e.reason == "no space left on device" else "fix that"
        raise SaveFailed(
            d,
            e.reason,
            f"could not save corpus {name!r} in {d.parent} ({e.reason}); {kept}; {fix}, then prepare it again",
        ) from None
    return d


def write_error(e: OSError, where: Path) -> SaveFailed:
    """An OSError from writing under `where`, as the SaveFailed a command reports in one line."""
    reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    fix = "free some space" if e.errno == errno.ENOSPC else "fix that"
    return SaveFailed(where, reason, f"could not write {where} ({reason}); {fix}, then run the command again")


def put_entry(d: Path, write: Callable[[Path], None]) -> None:
    """Build an entry with write(staging_dir) in a hidden directory beside `d`, then rename it into place
    (after moving an older `d` aside, and deleting that once the new one is in). A failure before the renames
    leaves `d` as it was; a crash between the two renames leaves no entry, never a half one; the staging or
    trash directory it leaves is cleared under the entry's next lock."""
    parent = d.parent
    staged = parent / f"{STAGING}{secrets.token_hex(4)}-{d.name}"
    made_parent = not parent.exists()  # models/ or corpora/ for the first entry: gone again if nothing arrives
    try:
        staged.mkdir(parents=True)
        write(staged)
        _fsync_dir(staged)
    except BaseException as e:
        _delete_tree(staged, strict=False)
        if made_parent:
            with contextlib.suppress(OSError):
                parent.rmdir()
        if isinstance(e, OSError):
            raise write_error(e, parent) from None
        raise
    old = parent / f"{TRASH}{secrets.token_hex(4)}-{d.name}" if d.exists() else None
    try:
        if old is not None:
            os.rename(d, old)
        try:
            os.rename(staged, d)
        except OSError:
            if old is not None:
                os.rename(old, d)  # put the previous entry back
            raise
    except OSError as e:
        _delete_tree(staged, strict=False)
        raise write_error(e, parent) from None
    _fsync_dir(parent)
    if old is not None:
        _delete_tree(old, strict=False)  # what is left is cleared under the next lock


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

# What lstmgen writes in each kind's info.json, and the type `list`, `show` and default_model() rely on.
# A field with another type (hand-edited, damaged) is dropped at the read and its entry marked damaged;
# REQUIRED fields must be there. Fields not named here are kept as they are (the file is capped).
_INT, _NUMBER, _TEXT, _SPLITS, _LABELS, _LINEAGE = "int", "number", "text", "splits", "labels", "lineage"
INFO_FIELDS = {
    "corpus": {"source": _TEXT, "sha256": _TEXT, "column": (_TEXT, None), "tokenizer": _TEXT, "stream": bool,
               "seed": _INT, "val_frac": _NUMBER, "test_frac": _NUMBER, "min_freq": (_INT, None),
               "vocab_size": _INT, "records": _SPLITS, "tokens": _SPLITS, "chars": _SPLITS, "unk_rate": _SPLITS,
               "created": _TEXT, "vocab_from": dict, "label_column": _TEXT, "labels": _LABELS, "unlabelled": _INT},
    "model": {"corpus": _TEXT, "tokenizer": _TEXT, "vocab_size": _INT, "parameters": _INT, "steps": _INT,
              "epochs": _NUMBER, "best_val_loss": (_NUMBER, None), "status": _TEXT, "created": _TEXT,
              "updated": _TEXT, "model": dict, "lineage": _LINEAGE, "labels": _LABELS,
              "best_val_bits_per_char": (_NUMBER, None), "unigram_bits_per_char": (_NUMBER, None)},
}  # fmt: skip
REQUIRED = {
    "corpus": ("tokenizer", "vocab_size", "records", "tokens", "created"),
    "model": ("corpus", "tokenizer", "parameters", "steps", "status", "updated"),
}
MAIN_FILE = {"corpus": "corpus.pt", "model": "best.pt or last.pt"}
_MAX_TEXT = 4096  # a path, a hash, a timestamp: longer is damage


def _typed(value, kind) -> bool:
    """Whether an info.json value has the type `kind` (a tuple: any of them; None: null)."""
    if isinstance(kind, tuple):
        return any(_typed(value, k) for k in kind)
    if kind is None:
        return value is None
    if kind == _INT:  # not bool; in int64, as the CLI formats it with `:,` and torch would hold it
        return type(value) is int and 0 <= value < 2**63
    if kind == _NUMBER:
        return type(value) in (int, float) and math.isfinite(value) and abs(value) < 2**63
    if kind == _TEXT:
        return isinstance(value, str) and len(value) <= _MAX_TEXT
    if kind == _SPLITS:  # {"train": n, "val": n, "test": n}
        return (
            isinstance(value, dict)
            and set(value) == {"train", "val", "test"}
            and all(_typed(v, _NUMBER) for v in value.values())
        )
    if kind == _LABELS:  # {label: records}, as labels.count_labels makes it
        return isinstance(value, dict) and all(_typed(v, _INT) for v in value.values())
    if kind == _LINEAGE:  # as lineage.start_from makes it; `show` formats these
        fields = {"parent": _TEXT, "parent_step": _INT, "new_symbols": _INT}
        return (
            isinstance(value, dict)
            and all(_typed(value.get(k), (t, None)) for k, t in fields.items())
            and all(isinstance(v, list) and all(_typed(x, _TEXT) for x in v)
                    for v in (value.get("corpora", []), value.get("parents", [])))
        )  # fmt: skip
    return isinstance(value, kind)


def info(kind: str, name: str) -> dict:
    """The entry's summary: its info.json, checked field by field. A damaged entry (a bad or missing field,
    an unreadable info.json, a symbolic link, no main file) gets `damaged`: one line saying what is wrong and
    how to repair it; its bad fields are left out. Nothing here raises for a damaged entry, so one entry
    never breaks `list`, nor default_model() for the others."""
    path = _kind_dir(kind) / check_name(name, f"{kind} name")
    data = {"name": name, "kind": kind, "path": str(path)} | ({"checkpoints": []} if kind == "model" else {})
    try:
        d = entry_dir(kind, name)
    except LinkRefused as e:
        return data | {"damaged": str(e)}
    raw, unreadable = read_json_checked(d / "info.json")
    problems = [f"info.json {unreadable}"] if unreadable else []
    owner = (raw.get("kind", kind), raw.get("name", name))
    foreign = owner[0] != kind or not same_entry(owner[1], name)
    if foreign:  # another entry's figures: none of them is shown under this name
        problems.append(f"info.json belongs to {_shown_owner(*owner)} (copied in?)")
        raw = {}
    for key, value in raw.items():
        expected = INFO_FIELDS[kind].get(key)
        if key in data or key == "damaged":
            continue  # computed here, not read
        if expected is not None and not _typed(value, expected):
            problems.append(f"info.json's {key} is damaged")
            continue
        data[key] = value
    if not unreadable and not foreign:
        problems += [f"info.json lacks {key}" for key in REQUIRED[kind] if key not in raw]
    if kind == "model":
        data["checkpoints"] = sorted(p.stem for p in d.glob("*.pt") if p.stem in ("best", "last") and p.is_file())
    if not (data["checkpoints"] if kind == "model" else (d / "corpus.pt").is_file()):
        problems.insert(0, f"it has no {MAIN_FILE[kind]}")
    if problems:
        fix = (
            f"prepare it again with --overwrite, or `lstmgen rm {name}`"
            if kind == "corpus"
            else f"`lstmgen rm {name}`, or train it again with --overwrite"
            if foreign  # the copy's checkpoints are another model's too, most likely: resuming is refused
            else f"`lstmgen train --name {name} --resume` rewrites info.json, or `lstmgen rm {name}`"
            if data["checkpoints"]
            else f"train it again with --overwrite, or `lstmgen rm {name}`"
        )
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        data["damaged"] = f"{shown}: {fix}"
    return data


def _shown_owner(kind, name) -> str:
    return f"{kind} {name!r}"[:120] if isinstance(kind, str) and isinstance(name, str) else "another entry"


def list_entries() -> dict:
    """Every corpus and model with info() (each has `damaged`: None, or what is wrong with it)."""
    models = [{"damaged": None} | info("model", n) for n in names("model")]  # each info.json read once
    return {
        "home": str(home()),
        "default_model": _default_of(models),
        "corpora": [{"damaged": None} | info("corpus", n) for n in names("corpus")],
        "models": models,
    }


class PartlyRemoved(LstmgenError):
    """The entry is gone from the registry (from `path`), but some of its files could not be deleted (they
    are cleared later): the removal happened, and `rm` reports this as a note, not a failure."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


def remove(kind: str, name: str) -> Path:
    """Remove an entry, all or nothing: it is renamed aside (one atomic step: listed whole, or not at all),
    then deleted. If the deletion fails midway, the entry is already gone and PartlyRemoved says where its
    files are; they are cleared under that name's next lock, or by the next `remove`."""
    d = require(kind, name)
    with lock(kind, name, "removing it"):
        trash = d.parent / f"{TRASH}{secrets.token_hex(4)}-{name}"
        try:
            os.rename(d, trash)
        except OSError as e:
            raise LstmgenError(
                f"could not remove {kind} {name!r} ({e.strerror or e}: {d}); nothing was removed"
            ) from None
        _fsync_dir(d.parent)
        reg = home() / "registry.json"
        data = read_json(reg)
        if kind == "model" and data.get("default_model") == name:
            data.pop("default_model")
            write_json(reg, data)
        error = _delete_tree(trash)
    for other in KINDS:  # what earlier removals or crashed writes left, wherever no one holds the lock
        for left in _leftovers(other):
            try:
                with lock(other, left.name.split("-", 2)[2], "clearing what a removal left"):
                    pass  # lock() clears the entry's leftovers once it holds it
            except LstmgenError:
                pass
    if error is not None:
        raise PartlyRemoved(
            f"removed {kind} {name!r} from the registry, but some of its files could not be deleted ({error}); "
            f"they are in {trash}, which lstmgen clears later (or delete it yourself)",
            d,
        )
    return d


def _leftovers(kind: str, name: str | None = None) -> list[Path]:
    """Staging and trash directories in `kind`'s directory (of entry `name`, or of all)."""
    root = _kind_dir(kind)
    if not root.is_dir():
        return []
    pattern = "????????-" + (name if name is not None else "?*")  # the token is 8 hex digits; names have no glob chars
    return [p for prefix in (STAGING, TRASH) for p in root.glob(prefix + pattern)]


def _delete_tree(path: Path, strict: bool = True) -> str | None:
    """Delete a directory tree (a link: the link only). Returns None, or the first error as "reason: path";
    files already gone (another process clearing the same leftovers) are not errors."""
    errors: list[str] = []

    def note(func, p, exc):
        e = exc if isinstance(exc, BaseException) else exc[1]
        if not isinstance(e, FileNotFoundError):
            errors.append(f"{e.strerror or e}: {p}" if isinstance(e, OSError) else str(e))

    if path.is_symlink() or path.is_file():
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            note(None, path, e)
    elif sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=note)
    else:
        shutil.rmtree(path, onerror=note)
    return errors[0] if errors and strict else None
