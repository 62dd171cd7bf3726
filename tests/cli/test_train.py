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


def test_resume_reads_the_config_it_is_given_instead_of_ignoring_it(trained):
    # --config starts a model that has no checkpoint yet; with one, it must exist and agree, and a setting
    # that differs from the saved config is said to be unused (it once resumed silently, even from no file).
    assert "does not exist" in bad("train", "-c", "/no/such.yaml", "--name", "tiny", "--resume")
    err = bad("train", "-c", "word", "--corpus", "toy", "--name", "tiny", *TINY, "--resume")
    assert err.startswith("error: --config word: cannot resume model 'tiny' with a different")
    r = run("train", "-c", "configs/char.yaml", "--corpus", "toy", "--name", "tiny", *TINY, "--set",
            "train.lr=0.5", "--resume", "--quiet")  # fmt: skip
    assert r.exit_code == 0 and "resumes with its saved config" not in r.stderr  # --set applies on resume
    r = run("train", "-c", "configs/char.yaml", "--corpus", "toy", "--name", "tiny", *TINY[:10], "--resume", "--quiet")
    assert r.exit_code == 0 and "resumes with its saved config; --config configs/char.yaml is used only" in r.stderr


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


def test_epochs_max_steps_and_time_are_shorthands_for_their_config_keys(trained):
    r = ok("train", "-c", "char", "--corpus", "toy", "--name", "s", *TINY, "--max-steps", "3", "--json", "-q")
    assert json.loads(r.stdout)["steps"] == 3
    r = ok("train", "-c", "char", "--corpus", "toy", "--name", "e", *TINY, "--set", "train.max_steps=null",
           "--epochs", "1", "--time", "1h30m", "--json")  # fmt: skip
    summary = json.loads(r.stdout)
    assert summary["stop_reason"] == "max_epochs" and summary["epochs"] == 1.0
    assert checkpoint.load("e").config["train"]["max_time"] == 5400
    assert f"done: {summary['steps']} steps, 1.0 epochs in " in r.stderr  # epochs to one decimal
    for value in ("5min", "1h30", "0s", "soon", "100000000h"):
        err = bad("train", "-c", "char", "--corpus", "toy", "--name", "t2", "--time", value, code=2)
        assert len(err.strip().splitlines()) == 1 and "--time" in err and repr(value) in err
    assert "x>=1" in bad("train", "-c", "char", "--name", "t2", "--epochs", "0", code=2)
    before = sorted(registry.home().rglob("*"))
    err = bad("train", "-c", "char", "--corpus", "toy", "--name", "t2", "--time", "0.001s")  # no model of 0 steps
    assert "the time budget (--time, train.max_time: 0.001 s) ran out before the first step" in err
    assert sorted(registry.home().rglob("*")) == before


def test_a_long_validation_pass_shows_its_progress_on_the_bar(monkeypatch):
    import io
    import re

    from rich.console import Console

    import lstmgen.cli.train as cli_train

    screen = io.StringIO()
    monkeypatch.setattr(cli_train, "err", Console(file=screen, force_terminal=True, width=80))

    def shown() -> str:  # the bar as the terminal shows it now: the last line drawn, escape codes removed
        drawn = re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()))
        return [line for line in drawn if line.strip()][-1]

    reporter = cli_train.TrainReporter()
    reporter("start", {"name": "m", "device": "cpu", "precision": "fp32", "parameters": 10, "steps_per_epoch": 4,
                       "total_steps": 40, "max_time": None, "resumed_step": None, "train_tokens": 64,
                       "world_size": 1})  # fmt: skip
    reporter("step", {"step": 20, "epoch": 5.0, "loss": 1.5, "lr": 0.001, "tokens_per_s": 900.0, "elapsed_s": 10.0,
                      "total_steps": 40, "progress": 0.5})  # fmt: skip
    reporter("validating", {"step": 20, "done": 1, "total": 4, "elapsed_s": 0.5})  # a short pass: not shown
    reporter.progress.refresh()
    assert "validating" not in shown()
    reporter("validating", {"step": 20, "done": 2, "total": 4, "elapsed_s": 3.0})  # 3 s in, half done: 3 s to go
    reporter.progress.refresh()
    assert shown().endswith("validating 50% eta 0:00:03")
    reporter("eval", {"step": 20, "val_loss": 1.25, "best_val_loss": 1.25, "improved": True})
    reporter.close()
    assert shown().startswith("step 20/40 ep 5.0") and "val 1.250" in shown() and shown().endswith("eta 0:00:10")


def test_resuming_after_the_corpus_was_removed_says_how_to_prepare_it_again(jokes_csv, tmp_path, monkeypatch):
    import shlex

    monkeypatch.chdir(tmp_path)
    ok("prepare", jokes_csv, "--name", "jk", "--val-frac", "0.1", "--test-frac", "0.1", "--seed", "3")
    ok("prepare", jokes_csv, "--name", "jk2", "-q")  # a close name: not what resuming needs
    ok("train", "-c", "char", "--corpus", "jk", "--name", "k", *TINY, "-q")
    ok("rm", "jk", "-q")
    err = bad("train", "--name", "k", "--resume", "--max-steps", "12")
    assert "corpus 'jk', which is no longer in" in err and "jk2" not in err and len(err.strip().splitlines()) == 1
    command = err.split("prepare it again as before: ", 1)[1].strip()
    ok(*shlex.split(command)[1:], "-q")  # the very corpus again: same split, so the run resumes on it
    assert json.loads(ok("train", "--name", "k", "--resume", "--max-steps", "12", "--json", "-q").stdout)["steps"] == 12


def test_the_run_clock_starts_with_the_process():
    import subprocess
    import sys

    # The entry point starts train's clock at the process's start: the interpreter and imports count too.
    code = "import time; time.sleep(1.5); from lstmgen.cli.output import process_age; print(process_age())"
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 1.5 <= age < 30


def test_train_from_makes_a_new_model_that_show_traces_to_its_parent(trained, tmp_path):
    b = tmp_path / "b.txt"
    b.write_text("".join(f"Why did the dog sit on the mat {i}? It was warm.\n" for i in range(30)))
    assert "character(s) that the vocabulary of model 'tiny' lacks" in bad("prepare", b, "--vocab-from", "tiny")
    ok("prepare", b, "--name", "b", "--vocab-from", "tiny", "--extend-vocab")
    before = sorted(p.relative_to(registry.home()) for p in registry.home().rglob("*"))
    ok("prepare", b, "--name", "own")  # a vocabulary of its own
    err = bad("train", "--from", "tiny", "--corpus", "own", "--name", "child", *TINY)
    assert "corpus 'own'" in err and "model 'tiny'" in err and "--vocab-from tiny" in err
    assert len(err.strip().splitlines()) == 1
    assert "starts a new model" in bad("train", "--from", "tiny", "--corpus", "b", "--name", "tiny", code=2)
    assert "fix its shape (model.hidden=16)" in bad("train", "--from", "tiny", "--corpus", "b", "--name", "child",
                                                    "--set", "model.hidden=32", code=2)  # fmt: skip
    ok("rm", "own")
    assert sorted(p.relative_to(registry.home()) for p in registry.home().rglob("*")) == before
    ok("train", "--from", "tiny", "--corpus", "b", "--name", "child", "-q", "--max-steps", "4")
    shown = json.loads(ok("show", "child", "--json").stdout)
    assert shown["lineage"] | {"new_symbols": None} == {"parent": "tiny", "parent_step": 8, "parents": ["tiny"],
                                                        "corpora": ["toy", "b"], "new_symbols": None}  # fmt: skip
    assert shown["lineage"]["new_symbols"] > 0  # the digits
    assert "lineage: from tiny at step 8; corpora toy -> b" in ok("show", "child").stdout
    # The first command with --resume appended resumes the child; another parent is refused.
    first = ("train", "--from", "tiny", "--corpus", "b", "--name", "child")
    r = ok(*first, "--max-steps", "6", "--resume", "--json", "-q")
    assert json.loads(r.stdout)["steps"] == 6
    assert "was started from 'tiny', not from 'child'" in bad("train", "--from", "child", "--name", "child",
                                                              "--resume")  # fmt: skip


def test_the_end_of_a_run_shows_bits_per_char_beside_the_unigram_and_the_previous_run(trained):
    before = registry.info("model", "tiny")["best_val_bits_per_char"]
    r = ok("train", "-c", "char", "--corpus", "toy", "--name", "tiny", "--overwrite", "--json", *TINY)
    summary = json.loads(r.stdout)
    line = next(x for x in r.stderr.splitlines() if "bits/char" in x)
    assert line.strip() == (f"val {summary['val_bits_per_char']:.3f} bits/char; unigram "
                            f"{summary['unigram_bits_per_char']:.3f}; previous run "
                            f"{summary['previous_val_bits_per_char']:.3f}")  # fmt: skip
    assert summary["previous_val_bits_per_char"] == before


def test_time_without_a_config_sizes_the_run_and_dry_run_trains_nothing(jokes_csv):
    ok("prepare", jokes_csv, "--name", "toy", "--val-frac", "0.1", "--test-frac", "0.1")
    # The user's keys win over the recipe's. A budget the run cannot reach even on a loaded machine (where a
    # step of this model has taken 1.4 s): the recipe sizes for it, max_steps ends the run.
    small = ["--set", "model.hidden=16", "--set", "train.max_steps=4"]
    r = ok("train", "--corpus", "toy", "--name", "sized", "--time", "10m", "--json", *small)
    why = r.stderr.strip().splitlines()[:2]
    assert why[0].startswith("recipe: ") and why[1].startswith("  because: ")
    assert "yours: model.hidden, train.max_steps" in why[0]
    assert json.loads(r.stdout)["steps"] == 4
    trained = checkpoint.load("sized", "last").config
    # A dry run shows the plan from the same (cached) measurements, and trains and writes nothing.
    before = {p.relative_to(registry.home()): p.stat().st_mtime_ns for p in registry.home().rglob("*")}
    r = ok("train", "--corpus", "toy", "--name", "other", "--time", "10m", "--dry-run", *small)
    assert {p.relative_to(registry.home()): p.stat().st_mtime_ns for p in registry.home().rglob("*")} == before
    # Its first line is the run's; the second's token count differs by the seconds the run spent probing.
    assert r.stderr.strip().splitlines()[0] == why[0]
    import yaml

    planned = yaml.safe_load(r.stdout)  # the config, as a --config file takes it
    assert planned["model"] == trained["model"]
    assert all(planned["train"][k] == trained["train"][k] for k in ("batch_size", "seq_len", "lr", "max_steps"))
    assert planned["model"]["hidden"] == 16 and planned["train"]["max_time"] == 600
    # An existing name is refused before the probes (seconds, and speeds cached in the registry), and a dry
    # run refuses what the run would.
    (registry.home() / "speed.json").unlink()
    before = {p.relative_to(registry.home()): p.stat().st_mtime_ns for p in registry.home().rglob("*")}
    for dry in ([], ["--dry-run"]):
        err = bad("train", "--corpus", "toy", "--name", "sized", "--time", "40s", *dry)
        assert "model 'sized' already exists" in err and "recipe" not in err
    assert {p.relative_to(registry.home()): p.stat().st_mtime_ns for p in registry.home().rglob("*")} == before

