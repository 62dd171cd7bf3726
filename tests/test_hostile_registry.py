"""The registry under hostile conditions: links out of it, a full disk, deletions that fail midway, and any
damage to an entry's info.json. Each refusal leaves the registry byte for byte as it was."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lstmgen import registry
from lstmgen.cli import app
from lstmgen.errors import LstmgenError

from .conftest import _FullDisk, tiny_config

runner = CliRunner()


def snapshot(root: Path | None = None) -> dict:
    """Every path under the registry (links not followed): a file's hash, "dir", or the link's target."""
    root = root or registry.home()
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                found[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def refused(*args) -> str:
    """Run the CLI; it must fail with exit 1 and one error line, never an internal error."""
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 1, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def ok(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.stderr
    return r


TRAIN = ["--set", "model.embed=8", "--set", "model.hidden=16", "--set", "train.batch_size=2", "--set",
         "train.seq_len=8", "--set", "train.max_steps=2", "--set", "train.max_epochs=null", "--set",
         "train.eval_every=2", "--set", "train.checkpoint_every=2", "--set", "train.device=cpu", "--quiet"]  # fmt: skip


# -- links out of the registry -------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path):
    """A directory outside the registry, with a file in it, that a link will point to."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "corpus.pt").write_bytes(b"not yours")
    (d / "best.pt").write_bytes(b"not yours either")
    return d


@pytest.mark.parametrize("kind", ["corpus", "model"])
def test_a_linked_entry_is_never_written_through(toy_corpus, jokes_csv, outside, kind):
    link = registry.home() / ("corpora" if kind == "corpus" else "models") / "x"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    before, outside_before = snapshot(), snapshot(outside)
    if kind == "corpus":
        line = refused("prepare", jokes_csv, "--name", "x", "--overwrite")
    else:
        line = refused("train", "--corpus", "toy", "--name", "x", "--overwrite", *TRAIN)
    assert f"{link} is a symbolic link (to {outside})" in line and f"rm {link}" in line
    line = refused("rm", "x", "--kind", kind)  # rm says the same: it never deletes through a link
    assert f"delete the link itself (rm {link})" in line
    assert snapshot() == before and snapshot(outside) == outside_before
    with pytest.raises(registry.LinkRefused):  # the library refuses where the paths are made
        registry.lock(kind, "x", "testing").__enter__()


def test_a_linked_file_in_an_entry_is_refused(tiny_model, outside):
    link = registry.home() / "models" / "tiny" / "best.pt"
    link.unlink()
    link.symlink_to(outside / "best.pt")
    before, outside_before = snapshot(), snapshot(outside)
    line = refused("train", "--corpus", "toy", "--name", "tiny", "--overwrite", *TRAIN)
    assert f"{link} is a symbolic link" in line
    assert refused("sample", "Why", "--model", "tiny").startswith(f"error: {link} is a symbolic link")
    assert snapshot() == before and snapshot(outside) == outside_before


def test_a_linked_models_directory_is_refused(toy_corpus, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (registry.home() / "models").symlink_to(elsewhere)
    before = snapshot()
    line = refused("train", "--corpus", "toy", "--name", "m", *TRAIN)
    assert "models is a symbolic link" in line and "set LSTMGEN_HOME" in line
    assert "models is a symbolic link" in refused("list")
    assert snapshot() == before and list(elsewhere.iterdir()) == []


def test_a_linked_lock_file_is_not_followed(toy_corpus, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    locks = registry.home() / "locks"
    locks.mkdir()
    (locks / "corpus-y.lock").symlink_to(victim)
    with pytest.raises(LstmgenError, match="cannot lock corpus 'y'"):
        with registry.lock("corpus", "y", "testing"):
            pass
    assert victim.read_text() == "precious"  # the lock used to truncate it and write its pid there


def test_a_file_where_the_locks_directory_goes_is_one_error_not_a_spin(tiny_model):
    import threading

    (registry.home() / "locks").write_text("")  # every writer used to retry mkdir for ever at 100% CPU
    before = snapshot()
    for command in (["rm", "tiny"], ["prepare", "jokes", "--name", "j2"]):
        done = {}
        worker = threading.Thread(target=lambda d=done, c=command: d.update(r=runner.invoke(app, c)), daemon=True)
        worker.start()
        worker.join(60)  # a spin fails the test instead of hanging the suite
        r = done["r"]
        assert r.exit_code == 1 and "locks is a file, where lstmgen keeps its lock files; move it away" in r.output
    assert snapshot() == before


def test_a_linked_scratch_directory_is_dropped_not_followed(tmp_path, outside):
    outside_before = snapshot(outside)
    link = registry.home() / ".scratch-corpus-z"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    with registry.scratch("corpus", "z") as d:
        assert not d.is_symlink()
        (d / "f").write_text("scratch")
    assert snapshot(outside) == outside_before and not link.exists()


def test_a_linked_entry_is_listed_as_damaged_and_the_others_work(tiny_model, outside):
    (registry.home() / "models" / "x").symlink_to(outside)
    listing = registry.list_entries()
    rows = {m["name"]: m for m in listing["models"]}
    assert "is a symbolic link" in rows["x"]["damaged"] and rows["tiny"]["damaged"] is None
    assert listing["default_model"] == "tiny" and registry.resolve_model(None) == "tiny"


# -- rm: all or nothing --------------------------------------------------------------------------------


def test_rm_that_cannot_delete_a_file_leaves_no_half_entry(tiny_model, monkeypatch):
    """One file that cannot be deleted (as root, chmod stops nothing, so unlink fails on cue): the entry is
    gone from the registry at once, what is left is out of sight, and a later rm clears it."""
    registry.set_default_model("tiny")
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if str(path).endswith("last.pt"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    r = runner.invoke(app, ["rm", "tiny", "--json"])  # removed: a note on what is left, and exit 0
    assert r.exit_code == 0 and json.loads(r.stdout)["removed"] == "tiny", r.stderr
    assert "note: removed model 'tiny' from the registry, but " in r.stderr and "last.pt" in r.stderr
    listing = registry.list_entries()
    assert listing["models"] == [] and listing["default_model"] is None
    assert not registry.entry_dir("model", "tiny").exists()
    left = list((registry.home() / "models").glob(".trash-*"))
    assert [p.name.split("-", 2)[2] for p in left] == ["tiny"] and (left[0] / "last.pt").exists()

    monkeypatch.setattr(os, "unlink", real_unlink)  # the file can go now: the next removal clears it
    registry.remove("corpus", "toy")
    assert list((registry.home() / "models").iterdir()) == []


def test_rm_that_cannot_move_the_entry_aside_leaves_it_whole(tiny_model, monkeypatch):
    before, real = snapshot(), os.rename

    def rename(src, dst, *args, **kwargs):
        raise OSError(16, "Device or resource busy", str(src))

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(LstmgenError, match="could not remove model 'tiny' .*nothing was removed"):
        registry.remove("model", "tiny")
    monkeypatch.setattr(os, "rename", real)
    assert snapshot() == before
    assert registry.list_entries()["models"][0]["damaged"] is None


def test_rm_failing_midway_in_rmtree_leaves_the_entry_gone_not_half(tiny_model, monkeypatch):
    """shutil.rmtree killed after deleting some files (an exception, not an error it reports)."""
    real = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        next(Path(path).glob("*.pt")).unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    with pytest.raises(KeyboardInterrupt):
        registry.remove("model", "tiny")
    monkeypatch.setattr(shutil, "rmtree", real)
    assert [m["name"] for m in registry.list_entries()["models"]] == []  # gone, not half there
    with registry.lock("model", "tiny", "testing"):  # the next writer of that name clears the leftovers
        pass
    assert list((registry.home() / "models").iterdir()) == []


def test_leftovers_of_a_crash_are_never_listed_and_are_cleared(toy_corpus):
    corpora = registry.home() / "corpora"
    for left in (".trash-0123abcd-toy", ".staging-89abcdef-new", ".trash-00000000-gone"):
        (corpora / left).mkdir()
        (corpora / left / "corpus.pt").write_bytes(b"half")
    assert [c["name"] for c in registry.list_entries()["corpora"]] == ["toy"]
    registry.remove("corpus", "toy")
    assert list(corpora.iterdir()) == []


# -- a full disk while preparing -----------------------------------------------------------------------


def _written_by_prepare(jokes_csv) -> int:
    """Bytes a `prepare` of the toy CSV writes through os.fdopen (scratch files and the entry's files)."""
    unlimited = 2**62
    budget, real = [unlimited], os.fdopen
    os.fdopen = lambda *a, **k: _FullDisk(real(*a, **k), budget)  # never full: it counts what is written
    try:
        ok("prepare", jokes_csv, "--name", "count")
    finally:
        os.fdopen = real
    registry.remove("corpus", "count")
    return unlimited - budget[0]


@pytest.mark.parametrize("previous", [False, True], ids=["new", "overwrite"])
def test_prepare_on_a_full_disk_leaves_the_previous_corpus_or_none(jokes_csv, disk_full, previous):
    total = _written_by_prepare(jokes_csv)
    if previous:
        ok("prepare", jokes_csv, "--name", "jokes", "--seed", "1")
    before = snapshot()
    for budget in sorted({0, 1, 100, total // 4, total // 2, total - 200, total - 1}):
        disk_full(after_bytes=budget)
        line = refused("prepare", jokes_csv, "--name", "jokes", "--overwrite")
        assert "no space left on device" in line and "free some space" in line, line
        assert str(registry.home()) in line and "writing the output" not in line
        assert snapshot() == before, budget
    disk_full(after_bytes=10**9)
    listing = registry.list_entries()
    assert [c["name"] for c in listing["corpora"]] == (["jokes"] if previous else [])
    if previous:
        assert listing["corpora"][0]["seed"] == 1 and listing["corpora"][0]["damaged"] is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a file size limit set in the child (POSIX)")
def test_stdin_that_does_not_end_is_refused_when_its_disk_fills_and_leaves_nothing():
    """stdin is copied to the registry's disk before it is read: a stream that never ends (`yes |`) runs
    until that disk is full, then is one line, with the scratch copy gone. The full disk here is a file
    size limit (RLIMIT_FSIZE, whose signal Python ignores), so writes past 1 MiB fail as they would."""
    import resource
    import subprocess
    import sys

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    endless = subprocess.Popen(["yes", "a joke that never ends"], stdout=subprocess.PIPE)
    try:
        r = subprocess.run([sys.executable, "-m", "lstmgen", "prepare", "-", "--name", "endless"],
                           stdin=endless.stdout, capture_output=True, text=True, timeout=120,
                           preexec_fn=small_disk)  # fmt: skip
    finally:
        endless.kill()
        endless.wait()
        endless.stdout.close()
    assert r.returncode == 1 and r.stdout == "", r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: could not write") and "File too large" in r.stderr
    assert not registry.home().exists() or snapshot() == {}


def test_a_failed_first_save_leaves_no_empty_entry_directory(tmp_path, disk_full):
    path = registry.home() / "models" / "fresh" / "last.pt"
    disk_full(after_bytes=10)
    with pytest.raises(registry.SaveFailed):
        registry.save_pt(path, {"a": list(range(1000))})
    assert not path.parent.exists() and registry.names("model") == []


def test_prepare_interrupted_while_saving_leaves_the_previous_corpus(jokes_csv, monkeypatch):
    ok("prepare", jokes_csv, "--name", "jokes", "--seed", "1")
    before = snapshot()
    real = registry.write_json

    def write_json(path, data):  # corpus.pt of the new corpus is written; Ctrl-C lands before its info.json
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "write_json", write_json)
    r = runner.invoke(app, ["prepare", str(jokes_csv), "--name", "jokes", "--overwrite", "--seed", "2"])
    assert r.exit_code != 0
    monkeypatch.setattr(registry, "write_json", real)
    assert snapshot() == before


def test_prepare_interrupted_while_indexing_leaves_the_previous_corpus_and_its_index(jokes_csv, monkeypatch):
    from lstmgen import novelty

    ok("prepare", jokes_csv, "--name", "jokes", "--seed", "1")
    assert (registry.entry_dir("corpus", "jokes") / novelty.INDEX_DIR / "info.json").is_file()
    before = snapshot()

    def build_index(corpus):  # the last and longest step: the corpus itself is written by now
        raise KeyboardInterrupt

    monkeypatch.setattr(novelty, "build_index", build_index)
    r = runner.invoke(app, ["prepare", str(jokes_csv), "--name", "jokes", "--overwrite", "--seed", "2"])
    assert r.exit_code == 130  # interrupted, and nothing replaced: the new corpus went in with its index or not
    assert snapshot() == before


# -- damaged info.json ---------------------------------------------------------------------------------

# Values an info.json field can be damaged into: wrong types, null, huge, nested.
BAD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, -1, 10**30, 1e308, -1e308, 5e-324, float("inf"), float("nan"), "x" * 5000, [], {},
                     "many", "", {"train": "x"}, {"train": 1, "val": 2}, [1, 2, 3], {"a": {"b": [None]}}]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["train", "val", "test", "x"]), st.one_of(st.integers(), st.text()), max_size=4),
)  # fmt: skip
MISSING = object()


def _damage(kind: str, name: str, field: str, value) -> None:
    path = registry.home() / ("corpora" if kind == "corpus" else "models") / name / "info.json"
    data = json.loads(path.read_text())
    if value is MISSING:
        data.pop(field, None)
    else:
        data[field] = value
    path.write_text(json.dumps(data))  # Python's json writes NaN and Infinity, as a hand edit could


@pytest.fixture
def two_models(tiny_model, toy_corpus):
    """Models 'tiny' (to damage) and 'ok' (trained later, so the latest), and corpora 'toy' and 'toy2'."""
    from lstmgen.train import train

    cfg = tiny_config(max_steps=2)
    cfg.name = "ok"
    train(cfg, toy_corpus)
    registry.save_corpus("toy2", registry.load_pt(registry.entry_dir("corpus", "toy") / "corpus.pt"))
    return {k: (registry.home() / d / n / "info.json").read_bytes()
            for k, d, n in (("model", "models", "tiny"), ("corpus", "corpora", "toy"))}  # fmt: skip


def _check_damaged(kind: str, field: str, value, saved: dict) -> None:
    name = "tiny" if kind == "model" else "toy"
    (registry.home() / ("corpora" if kind == "corpus" else "models") / name / "info.json").write_bytes(saved[kind])
    _damage(kind, name, field, value)
    listing = registry.list_entries()
    rows = {r["name"]: r for r in listing["models" if kind == "model" else "corpora"]}
    valid = value is not MISSING and registry._typed(value, registry.INFO_FIELDS[kind][field])
    required = field in registry.REQUIRED[kind]
    if valid or (value is MISSING and not required):
        assert rows[name]["damaged"] is None
    else:
        assert rows[name]["damaged"] and "\n" not in rows[name]["damaged"] and "lstmgen rm" in rows[name]["damaged"]
        assert field not in rows[name]  # dropped: the CLI shows "-" there
    other = rows["ok" if kind == "model" else "toy2"]
    assert other["damaged"] is None  # the other entry is untouched by its neighbour's damage
    assert registry.default_model() in ("tiny", "ok") and registry.resolve_model(None) in ("tiny", "ok")
    json.dumps(listing)  # `list --json` can print it
    r = runner.invoke(app, ["list"])  # and the table renders
    assert r.exit_code == 0 and "internal error" not in r.stderr, r.stderr


@pytest.mark.parametrize("field", sorted(registry.INFO_FIELDS["model"]))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(BAD, st.just(MISSING)))
def test_any_damage_to_a_model_info_field_degrades_only_its_row(two_models, field, value):
    _check_damaged("model", field, value, two_models)


@pytest.mark.parametrize("field", sorted(registry.INFO_FIELDS["corpus"]))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(BAD, st.just(MISSING)))
def test_any_damage_to_a_corpus_info_field_degrades_only_its_row(two_models, field, value):
    _check_damaged("corpus", field, value, two_models)


@pytest.mark.parametrize(
    "kind, field, value",
    [("model", "steps", "x"), ("model", "best_val_loss", []), ("model", "updated", 5), ("model", "status", None),
     ("model", "parameters", 10**30), ("model", "epochs", float("nan")), ("corpus", "records", "many"),
     ("corpus", "tokens", {"train": 1}), ("corpus", "created", None), ("corpus", "source", ["a"]),
     ("corpus", "vocab_size", True), ("model", "steps", MISSING), ("corpus", "records", MISSING),
     ("model", "best_val_bits_per_char", "high"), ("model", "lineage", {"parent": "a", "parent_step": "x"}),
     ("model", "lineage", {"parent": "a", "corpora": 5})],
)  # fmt: skip
def test_the_damage_the_tester_did_is_named(two_models, kind, field, value):
    name = "tiny" if kind == "model" else "toy"
    _damage(kind, name, field, value)
    listing = registry.list_entries()
    row = {r["name"]: r for r in listing["models" if kind == "model" else "corpora"]}[name]
    what = f"info.json lacks {field}" if value is MISSING else f"info.json's {field} is damaged"
    assert row["damaged"].startswith(what) and field not in row
    assert listing["default_model"] == "ok"
    for command in (["list"], ["show", name, "--kind", kind]):  # the tables and the entry's own page
        r = runner.invoke(app, command)
        assert r.exit_code == 0 and name in r.stdout, r.stderr


@pytest.mark.parametrize(
    "content, reason",
    [
        (None, "info.json is missing"),
        (b"", "info.json is not valid JSON"),
        (b"[1, 2]", "info.json is not a JSON object"),
        (b"{" + b'"steps": ' + b"9" * 5000 + b"}", "info.json is not valid JSON"),  # int() refuses > 4300 digits
        (b"[" * 60_000, "info.json is not valid JSON"),  # nested past Python's recursion limit
        (b'{"a": "' + b"x" * registry.MAX_INFO_BYTES + b'"}', "info.json is larger than"),
        (b"\xff\xfe{}", "info.json is not valid JSON"),
    ],
)
def test_an_unreadable_info_json_degrades_only_its_row(two_models, content, reason):
    path = registry.home() / "models" / "tiny" / "info.json"
    path.unlink()
    if content is not None:
        path.write_bytes(content)
    rows = {m["name"]: m for m in registry.list_entries()["models"]}
    assert rows["tiny"]["damaged"].startswith(reason) and "--resume` rewrites info.json" in rows["tiny"]["damaged"]
    assert rows["ok"]["damaged"] is None and registry.default_model() == "ok"


def test_an_info_json_that_is_a_fifo_or_a_link_to_dev_zero_is_not_read(two_models):
    path = registry.home() / "models" / "tiny" / "info.json"
    path.unlink()
    os.mkfifo(path)  # opening it to read would wait for a writer forever
    assert "not a regular file" in {m["name"]: m for m in registry.list_entries()["models"]}["tiny"]["damaged"]
    path.unlink()
    path.symlink_to("/dev/zero")  # read whole, it would fill memory
    assert "is a symbolic link" in {m["name"]: m for m in registry.list_entries()["models"]}["tiny"]["damaged"]


def test_an_entry_without_its_main_file_is_listed_as_damaged(two_models):
    (registry.home() / "corpora" / "toy" / "corpus.pt").unlink()
    for p in (registry.home() / "models" / "tiny").glob("*.pt"):
        p.unlink()
    listing = registry.list_entries()
    corpora = {c["name"]: c for c in listing["corpora"]}
    models = {m["name"]: m for m in listing["models"]}
    damaged = corpora["toy"]["damaged"]
    assert damaged.startswith("it has no corpus.pt") and "prepare it again" in damaged
    assert models["tiny"]["damaged"].startswith("it has no best.pt or last.pt")
    assert listing["default_model"] == "ok"


def test_a_damaged_registry_json_does_not_break_the_default(two_models):
    (registry.home() / "registry.json").write_text('{"default_model": ["tiny"]}')
    assert registry.default_model() == "ok"
    (registry.home() / "registry.json").write_text("[" * 100_000)
    assert registry.default_model() == "ok"


def test_an_entry_that_is_a_file_or_holds_a_directory_for_a_checkpoint(jokes_csv, tiny_model):
    corpora = registry.home() / "corpora"
    (corpora / "f").write_text("a file where an entry directory should be")
    assert [c["name"] for c in registry.list_entries()["corpora"]] == ["toy"]  # not an entry
    ok("prepare", jokes_csv, "--name", "f", "--overwrite")
    assert (corpora / "f" / "corpus.pt").is_file() and [p.name for p in corpora.iterdir() if p.name[0] == "."] == []
    best = registry.home() / "models" / "tiny" / "best.pt"
    best.unlink()
    best.mkdir()  # a directory named like a checkpoint
    row = registry.list_entries()["models"][0]
    assert row["checkpoints"] == ["last"] and row["damaged"] is None


@pytest.mark.parametrize("command", [["list", "--json"], ["show", "tiny", "--json"]])
def test_json_output_stays_strict_json_whatever_a_hand_edit_put_in_info_json(two_models, command):
    """Python's json writes NaN/Infinity as bare words other readers refuse; nested ones must come out null."""
    path = registry.home() / "models" / "tiny" / "info.json"
    data = json.loads(path.read_text())
    data["notes"] = {"loss": float("nan"), "curve": [1.0, float("inf"), -float("inf")]}  # nested, untyped
    path.write_text(json.dumps(data))
    r = runner.invoke(app, command)
    assert r.exit_code == 0, r.stderr
    printed = json.loads(r.stdout, parse_constant=lambda word: pytest.fail(f"{word} in --json output"))
    assert printed


# -- files copied between entries -----------------------------------------------------------------------


def test_files_copied_in_from_another_entry_are_named_not_used(two_models, jokes_csv):
    """A best.pt, info.json or corpus.pt from another entry used to sample, list or train under this name."""
    home = registry.home()
    (home / "models" / "tiny" / "best.pt").write_bytes((home / "models" / "ok" / "best.pt").read_bytes())
    for command in (["sample", "Why", "--model", "tiny"], ["eval", "--model", "tiny"], ["export", "tiny"]):
        r = runner.invoke(app, command)
        assert r.exit_code == 1 and "best.pt was saved by model 'ok', not 'tiny' (copied in?" in r.output, r.output
    (home / "models" / "tiny" / "info.json").write_bytes((home / "models" / "ok" / "info.json").read_bytes())
    row = {m["name"]: m for m in registry.list_entries()["models"]}["tiny"]
    assert row["damaged"].startswith("info.json belongs to model 'ok' (copied in?)") and "steps" not in row
    ok("prepare", str(jokes_csv), "--name", "words", "--tokenizer", "word")
    (home / "corpora" / "toy" / "corpus.pt").write_bytes((home / "corpora" / "words" / "corpus.pt").read_bytes())
    before = snapshot()
    r = runner.invoke(app, ["train", "-c", "char", "--corpus", "toy", "--name", "new", "--max-steps", "2"])
    assert r.exit_code == 1 and "toy/corpus.pt does not match its entry's info.json (copied in" in r.output
    assert snapshot() == before


def test_a_whole_model_entry_copied_by_hand_is_refused_on_every_path(two_models):
    """`cp -r models/ok models/copy`: graph and checkpoint agree with each other, so only their saved name
    tells; the ONNX Runtime path (sample, eval) used to serve it under the copy's name."""
    home = registry.home()
    shutil.copytree(home / "models" / "ok", home / "models" / "copy")
    for command in (["sample", "Why", "--model", "copy"], ["eval", "--model", "copy"], ["export", "copy"],
                    ["train", "--name", "copy", "--resume"]):  # fmt: skip
        r = runner.invoke(app, command)
        assert r.exit_code == 1 and "was saved by model 'ok', not 'copy' (copied in?" in r.output, (command, r.output)
    row = {m["name"]: m for m in registry.list_entries()["models"]}["copy"]
    assert row["damaged"] == ("info.json belongs to model 'ok' (copied in?): `lstmgen rm copy`, or train it again "
                              "with --overwrite")  # fmt: skip
    assert runner.invoke(app, ["rm", "copy"]).exit_code == 0  # the fix it names works


def test_an_empty_info_json_is_damaged(two_models):
    (registry.home() / "models" / "tiny" / "info.json").write_text("{}")
    row = {m["name"]: m for m in registry.list_entries()["models"]}["tiny"]
    assert row["damaged"].startswith("info.json lacks ")
