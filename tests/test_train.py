import time

import pytest
import torch

import lstmgen.train as train_mod
from lstmgen import checkpoint, registry
from lstmgen.corpora import load_corpus
from lstmgen.device import cpu_bf16_lstm_works
from lstmgen.errors import LstmgenError
from lstmgen.train import lr_at, train

from .conftest import tiny_config


def weights(name):
    return checkpoint.load(name, "last").state_dict


def test_training_lowers_the_loss_and_writes_both_checkpoints(toy_corpus):
    events = []
    summary = train(tiny_config(max_steps=40, lr=0.01), toy_corpus, on_event=lambda k, d: events.append((k, d)))
    evals = [d["val_loss"] for k, d in events if k == "eval"]
    assert evals[-1] < evals[0]
    assert summary["steps"] == 40 and summary["stop_reason"] == "max_steps" and summary["tokens_per_s"] > 0
    assert summary["best_val_loss"] == pytest.approx(min(evals))
    d = registry.entry_dir("model", "tiny")
    for which in ("best", "last"):  # plain data only: loadable without unpickling code
        payload = torch.load(d / f"{which}.pt", weights_only=True)
        assert payload["vocab"]["kind"] == "char" and payload["config"]["model"]["hidden"] == 16
    assert registry.info("model", "tiny")["steps"] == 40


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_interrupted_then_resumed_run_is_bit_identical(toy_corpus, precision):
    """Model, optimizer, schedule, RNG, data position and carried hidden state are all restored; under bf16
    autocast too, as its master weights and optimizer state are fp32."""
    if precision == "bf16" and not cpu_bf16_lstm_works():
        pytest.skip("this CPU's oneDNN LSTM refuses bf16 (no avx512_bf16/AMX)")
    train(tiny_config(max_steps=13, precision=precision), toy_corpus)
    straight = weights("tiny")

    cfg = tiny_config(max_steps=13, precision=precision)
    cfg.name = "split"
    calls = iter(range(100))
    # Polled before each step and each validation window (one, at step 4): the 8th poll is before step 7.
    first = train(cfg, toy_corpus, should_stop=lambda: next(calls) >= 7)  # Ctrl-C after step 6
    assert first["stop_reason"] == "interrupted" and first["steps"] == 6
    second = train(cfg, toy_corpus, resume=checkpoint.load("split", "last"))
    assert second["steps"] == 13
    resumed = weights("split")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    # The interval's training losses travel in last.pt: the mean over steps 5-8 spans the interruption.
    losses = [[(h["train_loss"], h["val_loss"]) for h in checkpoint.load(n, "last").history] for n in ("tiny", "split")]
    assert losses[0] == losses[1]


def test_a_bf16_run_resumes_in_fp32(toy_corpus):
    """A bf16 run carries a bf16 hidden state; resumed where it runs in fp32 (precision changed, or its last.pt
    copied to a CPU without bf16), that state must be taken, not crash oneDNN's fp32 LSTM."""
    if not cpu_bf16_lstm_works():
        pytest.skip("this CPU's oneDNN LSTM refuses bf16 (no avx512_bf16/AMX)")
    calls = iter(range(100))
    first = train(tiny_config(max_steps=13, precision="bf16"), toy_corpus, should_stop=lambda: next(calls) >= 7)
    assert first["stop_reason"] == "interrupted"
    assert checkpoint.load("tiny", "last").train_state["hidden"][0].dtype == torch.bfloat16
    second = train(tiny_config(max_steps=13, precision="fp32"), toy_corpus, resume=checkpoint.load("tiny", "last"))
    assert second["steps"] == 13 and second["stop_reason"] == "max_steps"


def test_early_stopping_with_patience(toy_corpus, monkeypatch):
    losses = iter([5.0, 4.0, 4.5, 4.6, 4.7, 4.8])
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: (next(losses) * 10, 10))
    summary = train(tiny_config(max_steps=100, patience=2), toy_corpus)
    assert summary["stop_reason"] == "early_stop" and summary["steps"] == 16  # evals at 4, 8, 12, 16
    assert summary["best_val_loss"] == 4.0


def test_time_limit(toy_corpus):
    summary = train(tiny_config(max_steps="null", max_time=2, eval_every=1000, checkpoint_every=1000), toy_corpus)
    assert summary["stop_reason"] == "max_time" and summary["steps"] > 0


def test_max_time_bounds_the_whole_run_its_start_up_final_validation_and_save_included(toy_corpus, monkeypatch):
    # A run whose start-up already took its budget trains no step: an error that says how long start-up took,
    # and no model of 0 steps in the registry.
    with pytest.raises(LstmgenError, match=r"train.max_time: 5 s\) ran out before the first step \(start-up took 1\d"):
        train(tiny_config(max_steps="null", max_time=5), toy_corpus, started=time.perf_counter() - 10)
    assert registry.names("model") == []
    # A slow validation pass (0.6 s here): the loop stops early enough to validate and save once more.
    real = train_mod.evaluate
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: time.sleep(0.6) or real(*a, **k))
    cfg = tiny_config(max_steps="null", max_time=3, eval_every=5, checkpoint_every=5)
    started = time.perf_counter()
    summary = train(cfg, toy_corpus, started=started)
    wall = time.perf_counter() - started
    assert summary["stop_reason"] == "max_time" and summary["steps"] > 5
    # The budget holds to its last save; 15% of slack for a loaded machine's scheduling, not for the design
    # (a loop that did not stop early for its last validation and save would end past 3 + 0.6 s).
    assert summary["elapsed_s"] <= 3.45 and abs(wall - summary["elapsed_s"]) < 0.4  # the real wall time, whole
    assert checkpoint.load("tiny", "last").history[-1]["step"] == summary["steps"]  # validated at its last step


def test_history_and_progress_show_mean_training_losses_and_fractional_epochs(toy_corpus):
    events = []
    summary = train(tiny_config(max_steps=8, log_every=1), toy_corpus, on_event=lambda k, d: events.append((k, d)))
    per_step = [d["loss"] for k, d in events if k == "step"]  # log_every 1: each step's own loss
    history = checkpoint.load("tiny", "last").history
    assert [h["train_loss"] for h in history] == pytest.approx([sum(per_step[:4]) / 4, sum(per_step[4:]) / 4])
    steps_per_epoch = next(d for k, d in events if k == "start")["steps_per_epoch"]
    epochs = [d["epoch"] for k, d in events if k == "step"]
    assert epochs[:2] == pytest.approx([1 / steps_per_epoch, 2 / steps_per_epoch])
    assert summary["epochs"] == pytest.approx(8 / steps_per_epoch, abs=1e-3)
    assert registry.info("model", "tiny")["epochs"] == round(8 / steps_per_epoch, 1)
    # Each validation pass reports its windows as it reads them (the CLI shows a long pass's progress).
    validating = [(d["step"], d["done"], d["total"]) for k, d in events if k == "validating"]
    assert validating and {s for s, _, _ in validating} == {4, 8}
    assert all(done <= total for _, done, total in validating) and validating[-1][1] == validating[-1][2]


def test_the_registry_lists_validation_bits_per_char_as_eval_measures_them(toy_corpus):
    from lstmgen.evaluate import evaluate_model

    train(tiny_config(max_steps=8), toy_corpus)
    info = registry.info("model", "tiny")
    val = evaluate_model("tiny", "val")  # the best checkpoint on the val split, through ONNX Runtime
    assert val["loss"] == pytest.approx(info["best_val_loss"], abs=1e-4)
    assert info["best_val_bits_per_char"] == pytest.approx(val["bits_per_char"], abs=1e-3)


def test_lr_schedule_warms_up_then_decays():
    cfg = tiny_config(lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    assert lr_at(cfg, 0, 0.0) == 0.25 and lr_at(cfg, 3, 0.0) == 1.0
    assert lr_at(cfg, 10, 0.5) == pytest.approx(0.55) and lr_at(cfg, 10, 1.0) == pytest.approx(0.1)


def test_divergence_keeps_the_last_finite_checkpoint(toy_corpus, monkeypatch):
    train(tiny_config(max_steps=4), toy_corpus)
    saved = weights("tiny")
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(LstmgenError, match="diverged at step 5.*last.pt of step 4 is intact"):
        train(tiny_config(max_steps=8), toy_corpus, resume=checkpoint.load("tiny", "last"))
    assert all(torch.equal(saved[k], v) for k, v in weights("tiny").items())
    # A fresh run over the same name (--overwrite) that diverges before its first save replaces nothing.
    with pytest.raises(LstmgenError, match="nothing was saved, and an earlier model of this name is untouched"):
        train(tiny_config(max_steps=8), toy_corpus)
    assert all(torch.equal(saved[k], v) for k, v in weights("tiny").items())


def test_empty_validation_split_is_refused(tmp_path):
    from lstmgen.corpus import build_corpus
    from lstmgen.sources import read_records, read_source

    p = tmp_path / "t.txt"
    p.write_text("\n".join(f"line {i}" for i in range(40)))
    src = read_source(str(p))
    corpus = build_corpus(src, read_records(src)[0])
    corpus["splits"]["val"] = corpus["splits"]["val"][:0]  # as a corpus of an older lstmgen could have it
    registry.save_corpus("toy", corpus)
    with pytest.raises(LstmgenError, match="empty validation split"):
        train(tiny_config(), load_corpus("toy"))


def test_resume_steps_with_this_runs_optimizer_kernel_not_the_checkpoints(toy_corpus, monkeypatch):
    """A last.pt from before fused AdamW (fused: None in its param groups) resumes with the fused kernel."""
    train(tiny_config(max_steps=4), toy_corpus)
    payload = checkpoint.load("tiny", "last")
    for group in payload.train_state["optimizer"]["param_groups"]:
        group["fused"] = None
    built = []
    real = train_mod.build_optimizer
    monkeypatch.setattr(train_mod, "build_optimizer", lambda *a: built.append(real(*a)) or built[-1])
    train(tiny_config(max_steps=6), toy_corpus, resume=payload)
    assert [g["fused"] for g in built[0].param_groups] == [True, True]


def test_a_stop_request_does_not_wait_for_the_validation_pass(toy_corpus):
    calls = []

    def should_stop():  # polled before each step (4 here), then before each validation window
        calls.append(1)
        return len(calls) >= 5

    summary = train(tiny_config(max_steps=12), toy_corpus, should_stop=should_stop)
    assert summary["stop_reason"] == "interrupted" and summary["steps"] == 4
    payload = checkpoint.load("tiny", "last")
    assert payload.train_state["step"] == 4 and payload.history == []  # the abandoned eval is not recorded


def test_samples_during_training_show_progress_without_changing_the_run(toy_corpus):
    train(tiny_config(max_steps=8), toy_corpus)
    plain = weights("tiny")
    events = []
    cfg = tiny_config(max_steps=8, sample_every=1)
    cfg.name = "watched"
    train(cfg, toy_corpus, on_event=lambda kind, d: events.append((kind, d)))
    samples = [d for kind, d in events if kind == "sample"]
    assert [d["step"] for d in samples] == [4, 8] and all(isinstance(d["text"], str) for d in samples)
    assert all(torch.equal(plain[k], v) for k, v in weights("watched").items())  # training's RNG untouched
