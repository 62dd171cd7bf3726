"""The app as a whole: help, exit codes, one error line per failure, pipes, --quiet, completion."""

import json
import sys

import pytest

from lstmgen import registry

from .runner import TINY, bad, ok


def test_version_and_help():
    assert ok("--version").stdout.startswith("lstmgen ")
    for cmd in ("prepare", "train", "sample", "eval", "list", "show", "rm", "default"):
        assert "Example" in ok(cmd, "--help").stdout


def test_installed_entry_point_prints_usage_errors_on_one_line():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "lstmgen", "eval", "--split", "train"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "'train' is not one of" in r.stderr


def test_user_text_is_never_read_as_markup(tmp_path):
    missing = tmp_path / "missing [draft].txt"
    assert f"input file {missing} does not exist" in bad("prepare", missing)
    real = tmp_path / "my jokes [v2].txt"
    real.write_text("\n".join(f"joke number {i}" for i in range(30)))
    assert "prepared corpus my-jokes-v2 from" in ok("prepare", real).stderr  # a valid name from the stem


def run_main(monkeypatch, capsys, *args):
    """The installed entry point (`main`), in-process: exit code and stderr."""
    import signal

    from lstmgen import cli
    from lstmgen.cli import output

    monkeypatch.setattr("sys.argv", ["lstmgen", *map(str, args)])
    # main() notes when the process started (train's budget counts from it) and takes over SIGINT: left
    # behind, every later in-process train would time its budget from pytest's start.
    monkeypatch.setattr(output, "launched", output.launched)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # main() wraps it (output.LosableStream)
    with pytest.raises(SystemExit) as e:
        try:
            cli.main()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
    return e.value.code, capsys.readouterr().err


def test_sigterm_or_sighup_during_export_leaves_no_partial_folder(trained, tmp_path, monkeypatch, capsys):
    """Every command ends on SIGTERM (a supervisor) or SIGHUP (a closed terminal) through its clean-up, as on
    Ctrl-C: export once died of the signal's default action, leaving a hidden folder with half a model."""
    import os
    import signal

    from lstmgen import export as export_mod

    exports = tmp_path / "exports"
    exports.mkdir()
    real_fsync = os.fsync
    for signum in (signal.SIGTERM, signal.SIGHUP):

        def signalled_midway(fd, signum=signum):
            real_fsync(fd)
            os.kill(os.getpid(), signum)  # delivered here, after the folder's first file

        monkeypatch.setattr(export_mod.os, "fsync", signalled_midway)
        code, err = run_main(monkeypatch, capsys, "export", "tiny", "--out", exports / "out")
        monkeypatch.setattr(export_mod.os, "fsync", real_fsync)
        assert code == 128 + signum, err
        assert list(exports.iterdir()) == []  # no out, no .out.*.tmp


def test_out_of_memory_is_one_line_that_says_what_to_shrink(trained, monkeypatch, capsys):
    # The config's caps keep a model this large from being asked for, so the allocator's failure (torch's
    # own words) is raised where the model is built.
    def no_memory(*args, **kwargs):
        raise RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 64000000000 bytes. Error code 12"
        )

    monkeypatch.setattr("lstmgen.model.LSTMLM.__init__", no_memory)
    code, err = run_main(monkeypatch, capsys, "train", "--corpus", "toy", "--name", "huge", "--set",
                         "train.max_steps=1", "--quiet")  # fmt: skip
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "out of memory: one allocation of" in err and "smaller model" in err
    assert not registry.entry_dir("model", "huge").exists()


def test_an_unexpected_exception_is_one_line_not_a_traceback(trained, monkeypatch, capsys):
    import lstmgen.sample

    def boom(*a, **k):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(lstmgen.sample, "sample_many", boom)
    code, err = run_main(monkeypatch, capsys, "sample", "Why")
    assert code == 1 and err.strip().splitlines() == [
        "error: internal error (ValueError: boom); this is a bug in lstmgen, please report it "
        "(LSTMGEN_DEBUG=1 shows the traceback)"
    ]
    monkeypatch.setenv("LSTMGEN_DEBUG", "1")
    with pytest.raises(ValueError, match="boom"):
        run_main(monkeypatch, capsys, "sample", "Why")


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_stdout_is_one_error_line():
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "lstmgen", "list"], stdout=full, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 1 and r.stderr == "error: No space left on device (writing the output?)\n"


def test_a_closed_stdout_is_refused_before_any_work_and_a_closed_stdin_reads_as_empty(trained, jokes_csv):
    import subprocess
    import sys

    from lstmgen import registry

    def shell(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(f"{sys.executable} -m lstmgen {command}", shell=True, executable="/bin/bash",
                              capture_output=True, text=True)  # fmt: skip

    before = sorted(p.name for p in registry.home().rglob("*"))
    for command in ("list", f"prepare {jokes_csv} --name closed --json", "rm tiny --json", "sample Hey --json"):
        r = shell(f"{command} >&-")  # nothing may be done whose report would be lost
        assert r.returncode == 2 and r.stderr == "error: stdout is closed; give lstmgen somewhere to write " \
            "(> /dev/null to discard)\n", (command, r.stderr)  # fmt: skip
    assert sorted(p.name for p in registry.home().rglob("*")) == before
    r = shell("sample --max-tokens 5 --seed 1 <&-")  # as with < /dev/null: one sample from a record's start
    assert r.returncode == 0 and r.stdout == shell("sample --max-tokens 5 --seed 1 < /dev/null").stdout, r.stderr
    r = shell("prepare - --name closed <&-")
    assert r.returncode == 1 and r.stderr == "error: <stdin> is empty; give a file with at least a few records\n"
    r = shell("sample Hey --max-tokens 5 2>&-")  # nothing to say on stderr anyway: the sample still comes
    assert r.returncode == 0 and r.stdout.startswith("Hey")


def test_help_into_a_closed_pipe_exits_0():
    import subprocess
    import sys

    r = subprocess.run(f"{sys.executable} -m lstmgen --help | head -1; exit ${{PIPESTATUS[0]}}", shell=True,
                       executable="/bin/bash", capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and r.stdout.startswith("Usage:") and r.stderr == ""


def test_quiet_leaves_only_errors_on_stderr(trained, jokes_csv):
    assert ok("prepare", jokes_csv, "--name", "q", "-q").stderr == ""
    assert "already exists" in bad("prepare", jokes_csv, "--name", "q", "--quiet")
    assert ok("sample", "Why \u00a7", "-q", "--max-tokens", "5", "--skip-unknown", "--seed", "1").stderr == ""
    assert ok("rm", "q", "-q").stderr == "" and ok("default", "tiny", "-q").stderr == ""
    assert "dropped 1 prompt character" in ok("sample", "Why \u00a7", "--max-tokens", "5", "--skip-unknown").stderr


def test_tab_completion_offers_commands_and_registry_names(trained):
    import os
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(sys.executable), "lstmgen")  # completion keys on the program name

    def complete(words: str) -> list[str]:
        env = {**os.environ, "_LSTMGEN_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split(" ")) - 1)}  # fmt: skip
        r = subprocess.run([script], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert complete("lstmgen sa") == ["sample"]
    assert complete("lstmgen sample -m ") == ["tiny"]
    assert complete("lstmgen show t") == ["tiny", "toy"]  # corpora and models
    # Typer finds the user's shell from the process tree, which a test run need not have (a detached job's
    # has no shell: "Shell  not supported"); with detection off, --show-completion takes the shell named.
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    shown = subprocess.run([script, "--show-completion", "bash"], capture_output=True, text=True, env=env)
    assert "complete -o default -F _lstmgen_completion lstmgen" in shown.stdout


@pytest.mark.parametrize(
    "args", [["sample", "Why", "-m", ""], ["eval", "--model", ""], ["default", ""], ["train", "--name", "", *TINY]]
)
def test_an_empty_name_is_invalid_not_the_default(trained, args):
    assert "invalid" in bad(*args) and "''" in bad(*args)


def test_pipeline_prepare_train_sample_eval_list(jokes_csv):
    r = ok("prepare", jokes_csv, "--name", "toy")
    assert r.stdout == "" and "prepared corpus toy" in r.stderr and "records train/val/test" in r.stderr

    r = ok("train", "-c", "char", "--corpus", "toy", "--name", "tiny", "--json", *TINY)
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["name"] == "tiny" and summary["steps"] == 8 and summary["tokens_per_s"] > 0
    assert {"epochs", "elapsed_s", "best_val_loss"} <= set(summary)
    assert "training tiny" in r.stderr and "eval step 4" in r.stderr  # plain progress lines off a terminal

    r = ok("sample", "Why", "--seed", "1", "--max-tokens", "30")
    assert r.stdout.startswith("Why") and r.stderr == ""  # the default model is the one just trained

    r = ok("sample", "Why", "--model", "tiny", "-n", "3", "--seed", "1", "--max-tokens", "30", "--json")
    samples = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(samples) == 3
    assert all(s["prompt"] == "Why" and s["text"].startswith("Why") and s["seed"] == 1 for s in samples)
    assert all(s["stop_reason"] in ("eor", "max_tokens") and s["tokens"] <= 30 for s in samples)

    r = ok("eval", "--json")
    m = json.loads(r.stdout)
    assert m["model"] == "tiny" and m["on"] == "test split" and m["bits_per_char"] > 0
    assert m["perplexity"] == pytest.approx(2.718281828 ** m["loss"], rel=1e-6)
    assert ok("eval", "--split", "val").stdout.startswith("tiny on val split: loss")

    listing = json.loads(ok("list", "--json").stdout)
    assert [c["name"] for c in listing["corpora"]] == ["toy"]
    assert listing["models"][0]["name"] == "tiny" and listing["models"][0]["steps"] == 8
    assert listing["default_model"] == "tiny"
    assert "tiny *" in ok("list").stdout

    shown = json.loads(ok("show", "tiny", "--json").stdout)
    assert shown["config"]["model"]["hidden"] == 16
    assert [h["step"] for h in shown["history"]] == [4, 8]  # the whole run, not just up to the best step


def test_model_survives_deleting_its_corpus(trained):
    ok("rm", "toy")
    assert ok("sample", "Why", "--seed", "1", "--max-tokens", "10").stdout.startswith("Why")
    assert json.loads(ok("eval", "--json").stdout)["tokens"] > 0


def test_bad_inputs_leave_the_registry_unchanged(trained, tmp_path):
    before = sorted(p.relative_to(registry.home()) for p in registry.home().rglob("*"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "is empty" in bad("prepare", empty)
    semi = tmp_path / "semi.csv"
    semi.write_text("ID;Joke\n1;a joke\n2;another\n")
    assert "delimited by ';'" in bad("prepare", semi)
    assert "no column 'Body'" in bad("prepare", "data/jokes.csv", "--column", "Body")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("corpus: toy\nmodel: {hidden: -1}\n")
    assert "model.hidden must be in [1, " in bad("train", "-c", cfg)
    cfg.write_text("corpus: toy\ntrain: {epochs: 3}\n")
    assert "unknown config key train.epochs" in bad("train", "-c", cfg)
    assert "already exists" in bad("train", "-c", "char", "--corpus", "toy", "--name", "tiny", *TINY)
    after = sorted(p.relative_to(registry.home()) for p in registry.home().rglob("*"))
    assert before == after


COMMANDS = ("prepare", "train", "sample", "eval", "list", "show", "rm", "default", "export", "configs")


def test_help_text_reads_cleanly_and_its_hints_work_from_any_directory():
    import re

    from lstmgen.config import packaged_configs

    packaged = {c.name for c in packaged_configs()}
    root = ok("--help").stdout
    assert "$XDG_DATA_HOME/lstmgen" in root and "lstmgen prepare jokes" in root and "configs" in root
    for cmd in COMMANDS:
        text = ok(cmd, "--help").stdout
        usage = text.splitlines()[0]
        assert "{" not in usage and "}" not in usage, usage  # typer's {name} placeholders
        assert "''" not in text
        # One "[default: ...]" per option at most, whether typer or the help text writes it.
        for entry in re.split(r"\n  (?=-)", text.split("Options:", 1)[-1]):
            assert entry.count("[default:") <= 1, entry
        for helped in (text, root):  # hints and examples name packaged configs and bundled data, never paths
            assert "configs/" not in helped and "data/" not in helped
            assert set(re.findall(r"--config ([a-z]\S*)", helped)) <= packaged
    assert ok("prepare", "--help").stdout.splitlines()[0].endswith(" prepare [OPTIONS] INPUT...")
    assert ok("show", "--help").stdout.splitlines()[0].endswith(" show [OPTIONS] NAME")


@pytest.mark.parametrize(
    "args, hint",
    [
        (["sample", "Why", "--temp", "1"], "did you mean --temperature?"),
        (["sample", "Why", "--Temperature", "1"], "did you mean --temperature?"),
        (["sample", "Why", "--length", "9"], "did you mean --max-tokens?"),
        (["sample", "Why", "--epochs", "3"], "--epochs is an option of `lstmgen train`, not of `lstmgen sample`"),
        (["train", "--skip-unknown"], "--skip-unknown is an option of `lstmgen sample`, `lstmgen eval`, not of "),
        (["default", "--json"], "--json is an option of `lstmgen prepare`, `lstmgen train`, `lstmgen sample`, "
                                "`lstmgen eval` and more, not of `lstmgen default`"),  # not one, as if its own
        (["train", "--max_steps", "5"], "did you mean --max-steps?"),
        (["train", "--steps", "5"], "did you mean --max-steps?"),
        (["train", "--epoch", "5"], "did you mean --epochs?"),
        (["train", "--max-time", "5m"], "did you mean --time?"),
        (["train", "--lr", "0.1"], "train.lr is a config key: --set train.lr=VALUE"),
        (["train", "--hidden", "512"], "model.hidden is a config key: --set model.hidden=VALUE"),
        (["train", "--model", "x"], "did you mean --name?"),
        (["eval", "--name", "x"], "did you mean --model?"),
        (["prepare", "x.csv", "--force"], "did you mean --overwrite?"),
        (["show", "x", "--jsn"], "did you mean --json?"),
    ],
)
def test_a_misspelt_option_suggests_what_was_meant(args, hint):
    typed = next(a for a in args if a.startswith("--"))
    assert f"No such option: {typed}; {hint}" in bad(*args, code=2)


def test_a_misspelt_option_is_one_line_from_the_installed_entry_point(monkeypatch, capsys):
    import re

    code, err = run_main(monkeypatch, capsys, "sample", "--temp", "1")
    assert code == 2 and len(err.splitlines()) == 1
    assert re.fullmatch(r"error: No such option: --temp; did you mean --temperature\? \(see `.*sample --help`\)\n", err)
    code, err = run_main(monkeypatch, capsys, "sample", "--xyzzy")
    assert code == 2 and re.fullmatch(r"error: No such option: --xyzzy \(see `.*sample --help`\)\n", err)


def test_ctrl_c_that_surfaces_as_another_error_is_still_interrupted(trained, monkeypatch, capsys):
    """Ctrl-C while numpy or onnxruntime is being imported comes out as ImportError("initialization failed"):
    it is an interruption (130), not an internal error."""
    import importlib
    import os
    import signal
    import time

    app_module = importlib.import_module("lstmgen.cli.app")  # the module (lstmgen.cli.app is also the Typer)

    def importing(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # handled by the entry point's own handler
            time.sleep(5)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None

    monkeypatch.setattr("lstmgen.registry.resolve_model", importing)  # sample's first library call
    previous = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(app_module, "_sigint_seen", False)
    monkeypatch.setattr(app_module, "_said_interrupted", False)
    try:
        code, err = run_main(monkeypatch, capsys, "sample", "Hey")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130 and err == "interrupted\n", err
