"""`lstmgen train` from the command line: resume, overwrite, refusals."""

import json

from lstmgen import checkpoint, registry

from .runner import TINY, bad, ok, run


def test_resume_continues_from_last_checkpoint(trained):
    r = ok("train", "--name", "tiny", "--resume", "--set", "train.max_steps=12", "--json", "--quiet")
    assert json.loads(r.stdout)["steps"] == 12
    assert "--resume" in bad("train", "-c", "char", "--corpus", "toy", "--name", "tiny", *TINY)


def test_word_model_with_an_adaptive_softmax_trains_evaluates_and_samples(jokes_csv):
    ok("prepare", jokes_csv, "--name", "w", "--tokenizer", "word", "--min-freq", "1")
    ok("train", "-c", "word", "--corpus", "w", "--name", "wa", "-q", *TINY,
       "--set", "model.adaptive_softmax=[8, 20]")  # fmt: skip
    assert checkpoint.load("wa").state_dict["head.head.weight"].shape == (8 + 2, 16)  # 8 + 2 bands
    ev = json.loads(ok("eval", "--model", "wa", "--json").stdout)
    assert 1 < ev["perplexity"] < 1e4
    r = ok("sample", "Why", "--model", "wa", "--seed", "1", "-n", "2", "--max-tokens", "8")
    assert r.stdout.count("Why") == 2


def test_an_adaptive_softmax_on_a_char_corpus_is_refused(trained):
    before = sorted(p.relative_to(registry.home()) for p in registry.home().rglob("*"))
    err = bad("train", "-c", "char", "--corpus", "toy", "--name", "ca", *TINY,
              "--set", "model.adaptive_softmax=[8]")  # fmt: skip
    assert "model.adaptive_softmax needs a word corpus" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.relative_to(registry.home()) for p in registry.home().rglob("*")) == before


def test_the_original_command_with_resume_appended_resumes(trained):
    # It names the model's own corpus and batch layout again: only values that differ are refused.
    ok("train", "-c", "configs/char.yaml", "--corpus", "toy", "--name", "tiny", "--quiet", *TINY, "--resume")
    assert "with a different corpus" in bad("train", "-c", "configs/char.yaml", "--corpus", "other", "--name", "tiny",
                                            *TINY, "--resume")  # fmt: skip


def test_failed_overwrite_keeps_the_old_model(trained):
    before = (registry.entry_dir("model", "tiny") / "last.pt").read_bytes()
    assert "too few" in bad(
        "train",
        "-c",
        "char",
        "--corpus",
        "toy",
        "--name",
        "tiny",
        "--overwrite",
        *TINY,
        "--set",
        "train.batch_size=60000",  # within its range, far above the toy corpus
    )
    assert (registry.entry_dir("model", "tiny") / "last.pt").read_bytes() == before


def test_resume_on_a_different_corpus_is_refused(trained, jokes_csv):
    assert "already exists" in bad("prepare", jokes_csv, "--name", "toy")
    ok("prepare", jokes_csv, "--name", "toy", "--overwrite", "--seed", "5", "--val-frac", "0.1", "--test-frac", "0.1")
    assert "not the one model 'tiny' started training on" in bad("train", "--name", "tiny", "--resume")


def test_resume_takes_a_whole_section_override_unless_it_changes_the_layout(trained):
    assert "different train.seq_len" in bad("train", "--name", "tiny", "--resume", "--set", "train={seq_len: 8}")
    ok("train", "--name", "tiny", "--resume", "--set", "train={max_steps: 12}", "--quiet")


def test_duplicate_config_keys_are_refused(trained, tmp_path):
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("corpus: toy\nmodel:\n  hidden: 32\n  hidden: 64\n")
    assert "invalid YAML at line 4, column 3: duplicate key 'hidden'" in bad("train", "-c", cfg)


def test_resume_refuses_set_name_and_a_lost_last_checkpoint(trained, tmp_path):
    assert "not --set name=" in bad("train", "--name", "tiny", "--resume", "--set", "name=other", code=2)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("corpus: toy\nname: tiny\n")
    (registry.entry_dir("model", "tiny") / "last.pt").unlink()  # best.pt is of step 12, checkpoint_every 4
    assert "has no last.pt to resume from, but has a best.pt" in bad("train", "-c", cfg, "--resume")
    assert (registry.entry_dir("model", "tiny") / "best.pt").exists()


def test_a_sigterm_after_the_last_save_is_a_clean_exit(trained, monkeypatch):
    import os
    import signal

    from lstmgen.cli import train as train_command

    real_end = train_command.TrainReporter.on_end

    def end_then_sigterm(self, d):  # the run has saved last.pt: now the signal lands
        real_end(self, d)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train_command.TrainReporter, "on_end", end_then_sigterm)
    r = run("train", "--name", "tiny", "--resume", "--set", "train.max_steps=12")
    assert r.exit_code == 0, r.stderr
    assert "stopping" not in r.stderr and "interrupted" not in r.stderr
    assert checkpoint.load("tiny", "last").step == 12


def test_a_checkpoint_copied_from_another_model_is_not_resumed(trained):
    import shutil

    ok("train", "-c", "char", "--corpus", "toy", "--name", "other", "--quiet", *TINY)
    mine = registry.entry_dir("model", "tiny")
    before = (mine / "last.pt").read_bytes()
    shutil.copy(registry.entry_dir("model", "other") / "last.pt", mine / "last.pt")
    assert "saved by model 'other'" in bad("train", "--name", "tiny", "--resume")
    (mine / "last.pt").write_bytes(before)
    ok("train", "--name", "tiny", "--resume", "--quiet")  # its own last.pt resumes as ever
