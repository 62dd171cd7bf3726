"""The ONNX decoder graph: parity with LSTMLM, the torch-free runtime, damaged and foreign graphs, rebuilding
stale ones, and `export`."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest
import torch

from lstmgen import checkpoint, registry
from lstmgen import export as export_mod
from lstmgen.config import Config, ModelConfig
from lstmgen.export import export_model
from lstmgen.model import LSTMLM
from lstmgen.onnx_graph import build_graph, describe, ensure_graph, save_graph
from lstmgen.runtime import (
    Decoder,
    GraphDamaged,
    GraphMismatch,
    GraphMissing,
    GraphStale,
    checkpoint_fingerprint,
    graph_path,
    load_graph,
    open_graph,
    read_meta,
    seal,
    unseal,
)
from lstmgen.tokenize import Vocab, build_vocab

from .conftest import JOKES

ROOT = Path(__file__).resolve().parent.parent

# name -> (vocab size, config): a char-like full head, a tied head, a word adaptive head whose third cutoff
# falls past the vocabulary (so two bands remain), and three layers with a full head.
MODELS = {
    "full": (30, ModelConfig(embed=8, hidden=16, n_layer=2)),
    "tied": (30, ModelConfig(embed=16, hidden=16, n_layer=1, tie_weights=True)),
    "adaptive": (300, ModelConfig(embed=8, hidden=64, n_layer=2, adaptive_softmax=[20, 100, 1000])),
    "three_layers": (50, ModelConfig(embed=12, hidden=16, n_layer=3)),
}


def tiny_lstm(kind: str, seed: int = 0) -> LSTMLM:
    torch.manual_seed(seed)
    vocab_size, cfg = MODELS[kind]
    model = LSTMLM(vocab_size, cfg).eval()
    with torch.no_grad():  # biases away from PyTorch's init, so a bias swapped between gates would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def decoder_of(model: LSTMLM, tmp_path: Path) -> Decoder:
    path = tmp_path / "g.onnx"
    path.write_bytes(build_graph(model, describe(model, name="t", step=1)))
    return load_graph(path)


def random_state(model: LSTMLM, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (model.cfg.n_layer, n, model.cfg.hidden)
    return torch.randn(shape, generator=g) * 0.5, torch.randn(shape, generator=g) * 0.5


def assert_close(onnx_out: np.ndarray, torch_out: torch.Tensor) -> None:
    np.testing.assert_allclose(onnx_out, torch_out.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("n, t", [(1, 1), (1, 6), (3, 1), (3, 6)])
def test_graph_matches_torch_forward(kind, n, t, tmp_path):
    model = tiny_lstm(kind)
    dec = decoder_of(model, tmp_path)
    ids = torch.randint(0, model.vocab_size, (n, t), generator=torch.Generator().manual_seed(2))
    h, c = random_state(model, n)
    with torch.no_grad():
        scores, (h_new, c_new) = model(ids, (h, c))
    got = dec.forward(ids.numpy(), h.numpy(), c.numpy())
    assert got[0].shape == (n, t, model.vocab_size) and got[0].dtype == np.float32
    for mine, theirs in zip(got, (scores, h_new, c_new), strict=True):
        assert_close(mine, theirs)


@pytest.mark.parametrize("kind", ["full", "adaptive"])
def test_one_graph_reads_a_prompt_then_steps_with_the_carried_state(kind, tmp_path):
    """What sampling does: a prompt of 5 in one call from a zero state, then 4 single steps feeding the state
    back, gives the scores of one torch forward over all 9 tokens."""
    model = tiny_lstm(kind)
    dec = decoder_of(model, tmp_path)
    ids = torch.randint(0, model.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole, (h_end, c_end) = model(ids)
    scores, h, c = dec.forward(ids[:, :5].numpy(), *dec.zero_state(2))
    steps = [scores]
    for i in range(5, 9):
        scores, h, c = dec.forward(ids[:, i : i + 1].numpy(), h, c)
        steps.append(scores)
    assert_close(np.concatenate(steps, axis=1), whole)
    assert_close(h, h_end)
    assert_close(c, c_end)


def test_graph_metadata_says_how_to_use_it(tmp_path):
    model = tiny_lstm("adaptive")
    vocab = Vocab("word", ["<eor>", "<unk>", *(f"w{i}" for i in range(298))])
    dec = decoder_of(model, tmp_path)
    meta = describe(model, name="w", step=7, checkpoint="abc", vocab=vocab)
    assert (meta["vocab_size"], meta["n_layer"], meta["hidden"]) == (300, 2, 64)
    assert (meta["eor_id"], meta["unk_id"], meta["head"], meta["cutoffs"]) == (0, 1, "adaptive", [20, 100])
    assert Vocab.from_dict(meta["vocab"]) == vocab
    assert dec.meta["step"] == 1 and dec.meta["scores"] == "centred log-probabilities"
    import onnx

    proto = onnx.load(tmp_path / "g.onnx")
    onnx.checker.check_model(proto, full_check=True)  # shapes infer through every node
    assert proto.opset_import[0].version == 17 and proto.ir_version == 8
    assert {p.key for p in proto.metadata_props} == {"lstmgen", "lstmgen.sha256"}


def test_a_tied_head_stores_its_matrix_once(tmp_path):
    """The embedding and the head share one initializer: the file is not twice the size it needs."""
    tied = build_graph(model := tiny_lstm("tied"), describe(model, name="t", step=0))
    untied_model = LSTMLM(30, ModelConfig(embed=16, hidden=16, n_layer=1))
    untied = build_graph(untied_model, describe(untied_model, name="u", step=0))
    assert len(untied) - len(tied) >= 30 * 16 * 4


# -- the runtime needs no torch -------------------------------------------------------------------------


def run_without_torch(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python where `import torch` fails, as on a machine without it."""
    prelude = 'import sys\nsys.modules["torch"] = None  # any import of torch now raises ImportError\n'
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_runtime_decodes_without_torch(tmp_path):
    model = tiny_lstm("adaptive")
    dec_path = tmp_path / "g.onnx"
    dec_path.write_bytes(build_graph(model, describe(model, name="t", step=1)))
    ids = torch.randint(0, 300, (2, 4), generator=torch.Generator().manual_seed(4))
    h, c = random_state(model, 2)
    np.savez(tmp_path / "in.npz", ids=ids.numpy(), h=h.numpy(), c=c.numpy())
    proc = run_without_torch(
        """
        import numpy as np
        from lstmgen.runtime import load_graph

        dec = load_graph(sys.argv[1])
        x = np.load(sys.argv[2])
        scores, h, c = dec.forward(x["ids"], x["h"], x["c"])
        np.savez(sys.argv[3], scores=scores, h=h, c=c)
        print(sorted(m for m in sys.modules if m.startswith("torch") and sys.modules[m] is not None))
        """,
        str(dec_path), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    out = np.load(tmp_path / "out.npz")
    with torch.no_grad():
        scores, (h_new, c_new) = model(ids, (h, c))
    assert_close(out["scores"], scores)
    assert_close(out["h"], h_new)
    assert_close(out["c"], c_new)


# -- graphs beside registry checkpoints ---------------------------------------------------------------


def save_model(name: str, kind: str = "full", *, seed: int = 0, step: int = 5, vocab: Vocab | None = None) -> Path:
    """A complete model file at models/NAME/best.pt, as training writes it, with random weights."""
    model = tiny_lstm(kind, seed)
    vocab = vocab or Vocab("char", ["<eor>", *(chr(ord("a") + i) for i in range(model.vocab_size - 1))])
    if len(vocab) != model.vocab_size:
        model = LSTMLM(len(vocab), model.cfg).eval()
    config = Config(corpus="toy", name=name, model=model.cfg)
    config.train.device, config.train.precision = "cpu", "fp32"
    ckpt = checkpoint.Checkpoint(
        name=name,
        created="2026-11-30T00:00:00+00:00",
        vocab=vocab.to_dict(),
        config=config.to_dict(),
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        history=[{"step": step, "train_loss": 2.0, "val_loss": 2.5}],
        step=step,
        epoch=1,
        best_val_loss=2.5,
        corpus={"name": "toy", "tokenizer": vocab.kind, "chars": {"val": 9, "test": 9},
                "tokens": {"val": 9, "test": 9}},  # fmt: skip
        heldout={"val": torch.zeros(9, dtype=torch.long), "test": torch.zeros(9, dtype=torch.long)},
    )
    path = registry.entry_dir("model", name) / "best.pt"
    ckpt.save(path)
    return path


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_save_graph_writes_it_beside_the_checkpoint_and_it_opens(registry_home):
    ckpt = save_model("m")
    payload = checkpoint.load("m")
    path = save_graph(payload)
    assert path == ckpt.parent / "best.onnx" == graph_path(ckpt)
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["best.onnx", "best.pt", "heldout.npz"]  # no temp file
    dec = open_graph(ckpt)
    assert (dec.meta["name"], dec.meta["step"]) == ("m", 5)
    assert dec.meta["checkpoint"] == checkpoint_fingerprint(ckpt)
    assert dec.meta["corpus"] == payload.corpus  # eval's held-out character counts
    assert Vocab.from_dict(dec.meta["vocab"]) == Vocab.from_dict(payload.vocab)


def test_open_graph_checks_the_checkpoint_without_torch(registry_home):
    ckpt = save_model("m")
    save_graph(checkpoint.load("m"))
    proc = run_without_torch(
        """
        from lstmgen.runtime import open_graph

        dec = open_graph(sys.argv[1])
        scores, h, c = dec.forward([[0, 1, 2]], *dec.zero_state(1))
        print(dec.meta["name"], scores.shape)
        """,
        str(ckpt),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["m", "(1,", "3,", "30)"]


def test_fingerprint_follows_the_checkpoint_content_not_its_name(registry_home, tmp_path):
    ckpt = save_model("m")
    copy = tmp_path / "copy.pt"
    shutil.copy(ckpt, copy)
    assert checkpoint_fingerprint(copy) == checkpoint_fingerprint(ckpt)
    before = checkpoint_fingerprint(ckpt)
    save_model("m", step=6)  # same weights, later step: another checkpoint
    assert checkpoint_fingerprint(ckpt) != before
    after = checkpoint_fingerprint(ckpt)
    save_model("m", seed=1, step=6)  # other weights only
    assert checkpoint_fingerprint(ckpt) != after


def test_ensure_graph_builds_a_missing_graph_once_and_says_so(registry_home):
    ckpt = save_model("m", "adaptive")
    payload = checkpoint.load("m")
    dec, note = ensure_graph(payload)
    assert note is not None and str(ckpt.parent / "best.onnx") in note and "\n" not in note
    assert (ckpt.parent / "best.onnx").is_file()
    again, note = ensure_graph(payload)
    assert note is None
    ids = np.array([[0, 5, 17, 250]])
    np.testing.assert_array_equal(dec.forward(ids, *dec.zero_state(1))[0], again.forward(ids, *again.zero_state(1))[0])


def test_a_stale_graph_is_rebuilt_from_the_new_checkpoint(registry_home):
    ckpt = save_model("m", seed=0)
    save_graph(checkpoint.load("m"))
    ckpt = save_model("m", seed=1, step=9)  # a later best.pt whose graph was never written (killed between)
    with pytest.raises(GraphStale):
        open_graph(ckpt)
    payload = checkpoint.load("m")
    dec, note = ensure_graph(payload)
    assert note is not None and "earlier checkpoint" in note
    assert open_graph(ckpt).meta["step"] == 9
    new = tiny_lstm("full", seed=1)
    ids = torch.tensor([[0, 3, 4, 5]])
    with torch.no_grad():
        assert_close(dec.forward(ids.numpy(), *dec.zero_state(1))[0], new(ids)[0])


def test_a_graph_of_another_model_is_refused_and_left_alone(registry_home):
    mine = save_model("mine", seed=0)
    theirs = save_model("theirs", seed=1)
    save_graph(checkpoint.load("theirs"))
    shutil.copy(graph_path(theirs), graph_path(mine))
    before = snapshot(registry_home)
    with pytest.raises(GraphMismatch) as e:
        open_graph(mine)
    message = str(e.value)
    assert "\n" not in message and str(graph_path(mine)) in message and "'theirs'" in message
    assert "delete it" in message
    with pytest.raises(GraphMismatch):
        ensure_graph(checkpoint.load("mine"))
    assert snapshot(registry_home) == before


def foreign_onnx() -> bytes:
    """A valid ONNX model that is not an lstmgen decoder (Identity of one input)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def damage(kind: str, good: bytes, ckpt: Path) -> bytes:
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "one byte flipped":  # inside the weights: ONNX Runtime itself would load this silently
        middle = len(good) // 2
        return good[:middle] + bytes([good[middle] ^ 0x01]) + good[middle + 1 :]
    if kind == "empty":
        return b""
    if kind == "text":
        return b"not a model\n"
    if kind == "a checkpoint":
        return ckpt.read_bytes()
    if kind == "foreign onnx":
        return foreign_onnx()
    if kind == "foreign onnx, sealed":  # checksum fine, but not our graph
        return seal(foreign_onnx())
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["truncated", "one byte flipped", "empty", "text", "a checkpoint", "foreign onnx", "foreign onnx, sealed"],
)
def test_a_damaged_or_foreign_graph_is_refused_with_one_line(kind, registry_home):
    ckpt = save_model("m")
    payload = checkpoint.load("m")
    path = save_graph(payload)
    path.write_bytes(damage(kind, path.read_bytes(), ckpt))
    before = snapshot(registry_home)
    for attempt in (lambda: open_graph(ckpt), lambda: load_graph(path), lambda: ensure_graph(payload)):
        with pytest.raises(GraphDamaged) as e:
            attempt()
        message = str(e.value)
        assert "\n" not in message and str(path) in message
        assert "delete it and it is rebuilt from best.pt" in message
    assert snapshot(registry_home) == before


def external_weights(proto, folder: Path) -> bytes:
    """Our graph with its weights moved to weights.bin beside it, where ONNX Runtime would look for them."""
    import onnx

    onnx.save(proto, folder / "tmp.onnx", save_as_external_data=True, location="weights.bin", size_threshold=1024)
    return (folder / "tmp.onnx").read_bytes()


def custom_operator(proto, folder: Path) -> bytes:
    proto.graph.node[0].domain = "com.example"
    proto.opset_import.add(domain="com.example", version=1)
    return proto.SerializeToString()


def a_loop(proto, folder: Path) -> bytes:
    proto.graph.node[0].op_type = "Loop"
    return proto.SerializeToString()


@pytest.mark.parametrize("change", [external_weights, custom_operator, a_loop])
def test_a_graph_with_parts_lstmgen_never_writes_is_refused(change, tmp_path, monkeypatch):
    """Even sealed again, as only a deliberate forger would: handed bytes, ONNX Runtime would still read
    external weights from the current directory."""
    import onnx

    model = tiny_lstm("full")
    proto = onnx.load_from_string(unseal(build_graph(model, describe(model, name="t", step=1))))
    del proto.metadata_props[1:]  # the old seal; the lstmgen metadata stays
    path = tmp_path / "model.onnx"
    path.write_bytes(seal(change(proto, tmp_path)))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GraphDamaged, match="not a graph lstmgen writes") as e:
        load_graph(path)
    assert "\n" not in str(e.value)


def test_a_graph_from_a_newer_lstmgen_is_refused(tmp_path):
    model = tiny_lstm("full")
    path = tmp_path / "model.onnx"
    path.write_bytes(build_graph(model, describe(model, name="t", step=1) | {"format": 99}))
    with pytest.raises(GraphDamaged, match="newer lstmgen"):
        load_graph(path)


def test_a_missing_graph_says_so(registry_home, tmp_path):
    ckpt = save_model("m")
    with pytest.raises(GraphMissing):
        open_graph(ckpt)
    with pytest.raises(GraphMissing):
        load_graph(tmp_path / "nothing.onnx")


def test_a_graph_that_cannot_be_saved_still_serves_from_memory(registry_home, disk_full):
    ckpt = save_model("m")
    payload = checkpoint.load("m")
    disk_full(after_bytes=0)
    dec, note = ensure_graph(payload)
    assert "could not save" in note and "no space left" in note
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["best.pt"]  # nothing half-written
    assert dec.forward([[0, 1]], *dec.zero_state(1))[0].shape == (1, 2, 30)


def test_a_reader_never_saves_a_graph_while_the_model_trains_or_its_checkpoint_changes(registry_home):
    """A reader builds a missing graph, but saves it only under the model's lock and only for the file its
    weights came from: a training run saving a new best meanwhile keeps its own graph."""
    ckpt = save_model("m")
    with registry.lock("model", "m", "training it"):  # as `lstmgen train` holds it
        dec, note = ensure_graph(checkpoint.load("m"))
    assert "in memory" in note and "being trained" in note and not graph_path(ckpt).exists()
    assert dec.forward([[0, 1]], *dec.zero_state(1))[0].shape == (1, 2, 30)
    before = checkpoint_fingerprint(ckpt)
    loaded = checkpoint.load("m")
    save_model("m", seed=1, step=9)  # a new best.pt lands between the read and the save
    dec, note = ensure_graph(loaded, loaded_from=before)
    assert "in memory" in note and "changed" in note and not graph_path(ckpt).exists()
    dec, note = ensure_graph(checkpoint.load("m"), loaded_from=checkpoint_fingerprint(ckpt))
    assert note.startswith("built ") and graph_path(ckpt).exists()


def test_read_meta_finds_the_metadata_without_protobuf(tmp_path):
    """The runtime reads the metadata with its own few-line protobuf walk; onnx's parser must agree."""
    import onnx

    model = tiny_lstm("tied")
    data = build_graph(model, describe(model, name="t", step=3))
    _, meta = read_meta(tmp_path / "x.onnx", data)
    parsed = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert json.loads(parsed["lstmgen"]) == meta


# -- export -------------------------------------------------------------------------------------------


def word_vocab() -> Vocab:
    return build_vocab("word", JOKES)


def bpe_vocab() -> Vocab:
    return build_vocab("bpe", JOKES, vocab_size=300)


def saved(name: str, tokenizer: str) -> Path:
    if tokenizer == "char":
        return save_model(name, "full", vocab=build_vocab("char", JOKES))
    if tokenizer == "word":
        return save_model(name, "adaptive", vocab=word_vocab())
    return save_model(name, "three_layers", vocab=bpe_vocab())


def test_export_writes_a_folder_that_needs_nothing_from_lstmgen(registry_home, tmp_path):
    save_model("m", "adaptive", vocab=word_vocab())
    out = export_model("m", tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "metadata.json", "model.onnx", "vocab.json"]
    meta = json.loads((out / "metadata.json").read_text())
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab["itos"] == word_vocab().itos and (vocab["eor_id"], vocab["unk_id"]) == (0, 1)
    assert (meta["eor_id"], meta["unk_id"], meta["tokenizer"], meta["head"]) == (0, 1, "word", "adaptive")
    assert meta["training"]["step"] == 5 and meta["training"]["best_val_loss"] == 2.5
    assert meta["inputs"]["h"] == [2, "N", 64] and meta["config"]["name"] == "m"
    dec = load_graph(out / "model.onnx")
    payload = checkpoint.load("m")
    model = LSTMLM(len(word_vocab()), payload.model_config)
    model.load_state_dict(payload.state_dict)
    ids = torch.tensor([[0, 7, 9]])
    with torch.no_grad():
        assert_close(dec.forward(ids.numpy(), *dec.zero_state(1))[0], model.eval()(ids)[0])
    assert not (registry.entry_dir("model", "m") / "best.onnx").exists()  # export reads the registry only


def test_export_of_a_bpe_model_ships_its_tokenizer_json(registry_home, tmp_path):
    saved("b", "bpe")
    out = export_model("b", tmp_path / "out")
    assert json.loads((out / "tokenizer.json").read_text()) == json.loads(bpe_vocab().bpe)
    assert json.loads((out / "metadata.json").read_text())["bpe_id_offset"] == 1


def test_export_refuses_a_non_empty_folder_unless_forced(registry_home, tmp_path):
    save_model("m")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(export_mod.LstmgenError, match="not empty.*--force"):
        export_model("m", out)
    # --force replaces an earlier export, never a folder of other things (`--out ~ --force`).
    with pytest.raises(export_mod.LstmgenError, match=r"out is not an earlier export \(holds mine.txt\)"):
        export_model("m", out, force=True)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    with pytest.raises(export_mod.LstmgenError, match="is inside the registry"):
        export_model("m", registry_home / "models" / "m" / "out")
    out = tmp_path / "again"
    export_model("m", out)
    (out / "metadata.json").write_text("{}")  # a different earlier export: replaced whole
    export_model("m", out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "metadata.json", "model.onnx", "vocab.json"]
    assert json.loads((out / "metadata.json").read_text())["name"] == "m"
    (tmp_path / "empty").mkdir()
    export_model("m", tmp_path / "empty")  # an empty folder is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "empty", "home", "out"]  # no temp folders left


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_export_leaves_no_partial_folder(existing, registry_home, tmp_path, monkeypatch):
    save_model("m")
    out = tmp_path / "out"
    if existing:  # an earlier export, which --force replaces
        out.mkdir()
        (out / "metadata.json").write_text("old")
    calls = []

    def fsync_fails_on_the_third_file(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod.os, "fsync", fsync_fails_on_the_third_file)
    with pytest.raises(export_mod.LstmgenError, match="No space left"):
        export_model("m", out, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["home", "out"] if existing else ["home"])
    if existing:
        assert [p.name for p in out.iterdir()] == ["metadata.json"] and (out / "metadata.json").read_text() == "old"


def readme_example(folder: Path) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 1
    assert len(blocks[0].splitlines()) <= 32
    return blocks[0]


def test_readme_example_runs_in_a_fresh_venv_without_torch_or_lstmgen(registry_home, tmp_path):
    """The README's own example, extracted from its text, in a virtualenv holding only onnxruntime and
    numpy; skipped only when pip cannot reach a package index."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)  # no system site-packages: torch and lstmgen stay out of reach
    python = env_dir / "bin" / "python"
    for _ in range(2):  # a second try: a package index's hiccup must not fail the suite
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "onnxruntime", "numpy"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if pip.returncode == 0:
            break
    if pip.returncode != 0:
        offline = ("No matching distribution", "Could not find a version", "NewConnectionError",
                   "Temporary failure in name resolution", "Network is unreachable", "ConnectTimeout",
                   "ReadTimeoutError", "ProtocolError", "ProxyError", "SSLError", "Connection broken",
                   "ConnectionResetError", "HTTPSConnectionPool", "HTTPConnectionPool")  # fmt: skip
        if any(marker in pip.stderr for marker in offline):
            pytest.skip(f"pip cannot install onnxruntime and numpy (no package index): {pip.stderr.strip()[-200:]}")
        pytest.fail(f"pip install failed: {pip.stderr}")
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    check = subprocess.run([str(python), "-c", "import torch"], capture_output=True, env=clean_env)
    assert check.returncode != 0  # the example cannot lean on torch
    for tokenizer in ("char", "word", "bpe"):
        saved(tokenizer, tokenizer)
        out = export_model(tokenizer, tmp_path / f"export-{tokenizer}")
        script = tmp_path / f"example-{tokenizer}.py"
        script.write_text(readme_example(out))
        run = subprocess.run(
            [str(python), str(script)], cwd=out, capture_output=True, text=True, env=clean_env, timeout=120
        )
        assert run.returncode == 0, run.stderr
        text = run.stdout.rstrip("\n")
        assert text.strip(), f"{tokenizer}: the example printed no text"
        if tokenizer == "char":
            assert text.startswith("Hey, ") and set(text) <= set(build_vocab("char", JOKES).itos)


@pytest.mark.parametrize("tokenizer", ["char", "word", "bpe"])
def test_readme_example_decodes_ids_as_lstmgen_does(tokenizer, registry_home, tmp_path, monkeypatch):
    """The example's own tokenizer lines and print expression, run on the ids of a known text: its
    numpy-only decoding (a byte table for BPE) gives lstmgen's text back."""
    vocab = {"char": lambda: build_vocab("char", JOKES), "word": word_vocab, "bpe": bpe_vocab}[tokenizer]()
    saved("m", tokenizer)
    out = export_model("m", tmp_path / "out")
    code = readme_example(out)
    setup, printed = code[: code.index("session = ")], re.search(r"^print\((.*)\)$", code, flags=re.M).group(1)
    monkeypatch.chdir(out)
    scope: dict = {}
    exec(setup, scope)
    # BPE: every byte value valid UTF-8 uses: all of 1..0x7ff, then one character per 3- and 4-byte lead
    leads = [0x800, *range(0x1000, 0x10000, 0x1000), *range(0x10000, 0x110000, 0x40000)]  # E0..EF, F0..F4
    every_byte = "".join(map(chr, [*range(1, 0x800), *leads]))
    text = {"char": "Why did the cat sit?", "word": "Why did the cat sit ?", "bpe": "Hey, café 🎉" + every_byte}
    scope["out"] = vocab.encode(text[tokenizer])
    assert eval(printed, scope) == scope.get("PROMPT", "") + text[tokenizer]
