"""End-to-end through the CLI: exit codes, stdout (product) and stderr (everything else) checked separately."""

import json

import pytest
from typer.testing import CliRunner

from lstmgen import registry
from lstmgen.cli import app

runner = CliRunner()

TINY = [
    "--set",
    "model.embed=8",
    "--set",
    "model.hidden=16",
    "--set",
    "model.n_layer=1",
    "--set",
    "train.batch_size=4",
    "--set",
    "train.seq_len=16",
    "--set",
    "train.max_steps=8",
    "--set",
    "train.max_epochs=null",
    "--set",
    "train.eval_every=4",
    "--set",
    "train.checkpoint_every=4",
    "--set",
    "train.max_time=null",
]


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def ok(*args, input=None):
    r = run(*args, input=input)
    assert r.exit_code == 0, r.stderr + r.stdout
    return r


def bad(*args, code=1, input=None):
    r = run(*args, input=input)
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout and "internal error" not in r.stderr
    assert r.stdout == ""
    return r.stderr


@pytest.fixture
def trained(jokes_csv):
    ok("prepare", jokes_csv, "--name", "toy", "--val-frac", "0.1", "--test-frac", "0.1")
    ok("train", "-c", "configs/char.yaml", "--corpus", "toy", "--name", "tiny", "--quiet", *TINY)


def test_pipeline_prepare_train_sample_eval_list(jokes_csv):
    r = ok("prepare", jokes_csv, "--name", "toy")
    assert r.stdout == "" and "prepared corpus toy" in r.stderr and "records train/val/test" in r.stderr

    r = ok("train", "-c", "configs/char.yaml", "--corpus", "toy", "--name", "tiny", "--json", *TINY)
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


def test_same_seed_same_output(trained):
    a = ok("sample", "Hey", "--seed", "5", "-n", "2", "--max-tokens", "40").stdout
    assert a == ok("sample", "Hey", "--seed", "5", "-n", "2", "--max-tokens", "40").stdout


def test_prompts_from_stdin_one_output_each_in_order(trained):
    r = ok("sample", "-", "--json", "--seed", "2", "--max-tokens", "20", input="Why\nWhat do\nHey, \n")
    assert [json.loads(line)["prompt"] for line in r.stdout.splitlines()] == ["Why", "What do", "Hey, "]
    r = ok("sample", "--seed", "2", "--max-tokens", "20", input="Why\nWhat\n")  # piped stdin, no PROMPT
    assert len(r.stdout.splitlines()) == 2


def test_model_survives_deleting_its_corpus(trained):
    ok("rm", "toy")
    assert ok("sample", "Why", "--seed", "1", "--max-tokens", "10").stdout.startswith("Why")
    assert json.loads(ok("eval", "--json").stdout)["tokens"] > 0


def test_eval_on_another_file(trained, tmp_path):
    f = tmp_path / "more.txt"
    f.write_text("Why did the cat nap?\nWhat is a dog?\n")
    m = json.loads(ok("eval", "--file", f, "--json").stdout)
    assert m["on"].endswith("more.txt") and m["chars"] == len("Why did the cat nap?") + 1 + len("What is a dog?") + 1


def test_resume_continues_from_last_checkpoint(trained):
    r = ok("train", "--name", "tiny", "--resume", "--set", "train.max_steps=12", "--json", "--quiet")
    assert json.loads(r.stdout)["steps"] == 12
    assert "--resume" in bad("train", "-c", "configs/char.yaml", "--corpus", "toy", "--name", "tiny", *TINY)


def test_word_model_maps_unknown_prompt_words_to_unk(jokes_csv):
    ok("prepare", jokes_csv, "--name", "w", "--tokenizer", "word", "--min-freq", "1")
    ok("train", "-c", "configs/word.yaml", "--corpus", "w", "--name", "wm", "--quiet", *TINY)
    r = ok("sample", "Why zyzzyva", "--seed", "1", "--max-tokens", "5")
    assert "zyzzyva" in r.stderr and "<unk>" in r.stderr
    assert r.stdout.startswith("Why zyzzyva")


def test_word_model_with_an_adaptive_softmax_trains_evaluates_and_samples(jokes_csv):
    ok("prepare", jokes_csv, "--name", "w", "--tokenizer", "word", "--min-freq", "1")
    ok("train", "-c", "configs/word.yaml", "--corpus", "w", "--name", "wa", "-q", *TINY,
       "--set", "model.adaptive_softmax=[8, 20]")  # fmt: skip
    assert registry.load_model_payload("wa")["state_dict"]["head.head.weight"].shape == (8 + 2, 16)  # 8 + 2 bands
    ev = json.loads(ok("eval", "--model", "wa", "--json").stdout)
    assert 1 < ev["perplexity"] < 1e4
    r = ok("sample", "Why", "--model", "wa", "--seed", "1", "-n", "2", "--max-tokens", "8")
    assert r.stdout.count("Why") == 2


def test_an_adaptive_softmax_on_a_char_corpus_is_refused(trained):
    before = sorted(p.relative_to(registry.home()) for p in registry.home().rglob("*"))
    err = bad("train", "-c", "configs/char.yaml", "--corpus", "toy", "--name", "ca", *TINY,
              "--set", "model.adaptive_softmax=[8]")  # fmt: skip
    assert "model.adaptive_softmax needs a word corpus" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.relative_to(registry.home()) for p in registry.home().rglob("*")) == before


def test_char_model_names_unknown_prompt_chars(trained):
    err = bad("sample", "Why \u00e9\u00e9 \u4e2d", "--max-tokens", "5")
    assert "'\u00e9'" in err and "'\u4e2d'" in err and "--skip-unknown" in err and len(err.strip().splitlines()) == 1
    r = ok("sample", "Why \u00e9", "--skip-unknown", "--max-tokens", "5", "--seed", "1")
    assert "dropped 1" in r.stderr and r.stdout.startswith("Why ") and "\u00e9" not in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "0"], "--temperature must be a number > 0"),
        (["--temperature", "-1"], "--temperature must be a number > 0"),
        (["--temperature", "nan"], "--temperature must be a number > 0"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--top-k", "-3"], "--top-k must be at least 1"),
        (["--max-tokens", "0"], "--max-tokens must be at least 1"),
    ],
)
def test_bad_sampling_options_are_usage_errors(trained, args, message):
    err = bad("sample", "Why", *args, code=2)
    assert message in err and len(err.strip().splitlines()) == 1


def test_empty_prompt_is_refused(trained):
    assert "prompt is empty" in bad("sample", "", code=2)


def test_unknown_names_suggest_the_closest(trained):
    assert "did you mean 'tiny'" in bad("sample", "Why", "--model", "tinyy")
    assert "did you mean 'toy'" in bad("train", "-c", "configs/char.yaml", "--corpus", "toyy", *TINY)
    assert "invalid" in bad("prepare", "configs/char.yaml", "--name", "../evil")


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
    assert "already exists" in bad("train", "-c", "configs/char.yaml", "--corpus", "toy", "--name", "tiny", *TINY)
    after = sorted(p.relative_to(registry.home()) for p in registry.home().rglob("*"))
    assert before == after


def test_rm_default_and_show(trained):
    assert ok("default").stdout.strip() == "tiny"
    assert "corpus toy" in ok("show", "toy").stdout
    ok("rm", "tiny")
    assert "no models" in bad("sample", "Why")


def test_version_and_help():
    assert ok("--version").stdout.startswith("lstmgen ")
    for cmd in ("prepare", "train", "sample", "eval", "list", "show", "rm", "default"):
        assert "Example" in ok(cmd, "--help").stdout


def test_prepare_from_stdin_and_unconditional_sample():
    lines = "\n".join(f"Why did chicken {i} cross? To get across." for i in range(30))
    r = ok("prepare", "-", "--name", "piped", input=lines)
    assert "prepared corpus piped from <stdin>" in r.stderr
    ok("train", "-c", "configs/char.yaml", "--corpus", "piped", "--name", "p", "--quiet", *TINY)
    r = ok("sample", "--seed", "1", "--max-tokens", "20", "--json", input="")  # empty stdin: start of a record
    s = json.loads(r.stdout)
    assert s["prompt"] == "" and s["text"] == s["completion"] and s["stop_reason"] in ("eor", "max_tokens")


def test_resume_refuses_to_change_the_data_layout(trained):
    assert "drop train.batch_size=8" in bad(
        "train", "--name", "tiny", "--resume", "--set", "train.batch_size=8", code=2
    )


def test_failed_overwrite_keeps_the_old_model(trained):
    before = (registry.entry_dir("model", "tiny") / "last.pt").read_bytes()
    assert "too few" in bad(
        "train",
        "-c",
        "configs/char.yaml",
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


def test_each_stdin_prompt_gets_its_own_seed(trained):
    r = ok("sample", "-", "--json", "--seed", "1", "--max-tokens", "5", input="Why\nWhy\n")
    assert [json.loads(line)["seed"] for line in r.stdout.splitlines()] == [1, 2]


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


def test_resume_refuses_whole_section_overrides(trained):
    assert "drop train={max_steps: 40}" in bad(
        "train", "--name", "tiny", "--resume", "--set", "train={max_steps: 40}", code=2
    )


def test_out_of_range_seed_is_a_usage_error(trained):
    assert "--seed must be between 0 and 2^63 - 1" in bad("sample", "Why", "--seed", str(2**64), code=2)


def run_main(monkeypatch, capsys, *args):
    """The installed entry point (`main`), in-process: exit code and stderr."""
    from lstmgen import cli

    monkeypatch.setattr("sys.argv", ["lstmgen", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    return e.value.code, capsys.readouterr().err


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


def test_help_into_a_closed_pipe_exits_0():
    import subprocess
    import sys

    r = subprocess.run(f"{sys.executable} -m lstmgen --help | head -1; exit ${{PIPESTATUS[0]}}", shell=True,
                       executable="/bin/bash", capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and r.stdout.startswith("Usage:") and r.stderr == ""


def test_empty_stdin_with_dash_is_a_usage_error(trained):
    assert "no prompts on stdin" in bad("sample", "-", input="", code=2)


@pytest.mark.parametrize(
    "args", [["sample", "Why", "-m", ""], ["eval", "--model", ""], ["default", ""], ["train", "--name", "", *TINY]]
)
def test_an_empty_name_is_invalid_not_the_default(trained, args):
    assert "invalid" in bad(*args) and "''" in bad(*args)


def test_show_suggests_a_corpus_or_a_model(trained):
    assert "did you mean corpus 'toy'?" in bad("show", "toi")


def test_duplicate_config_keys_are_refused(trained, tmp_path):
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("corpus: toy\nmodel:\n  hidden: 32\n  hidden: 64\n")
    assert "invalid YAML at line 4, column 3: duplicate key 'hidden'" in bad("train", "-c", cfg)


def test_prepare_notes_a_split_skewed_by_giant_records(tmp_path):
    p = tmp_path / "skew.txt"
    p.write_text("\n".join(["ab " * 20_000] + [f"short line {i}" for i in range(40)]))
    r = ok("prepare", p, "--seed", "1")
    assert "note: records differ a lot in length" in r.stderr


def test_resume_refuses_set_name_and_a_lost_last_checkpoint(trained, tmp_path):
    assert "not --set name=" in bad("train", "--name", "tiny", "--resume", "--set", "name=other", code=2)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("corpus: toy\nname: tiny\n")
    (registry.entry_dir("model", "tiny") / "last.pt").unlink()  # best.pt is of step 12, checkpoint_every 4
    assert "has no last.pt to resume from, but has a best.pt" in bad("train", "-c", cfg, "--resume")
    assert (registry.entry_dir("model", "tiny") / "best.pt").exists()


def test_generation_controls_from_the_command_line(trained):
    r = ok("sample", "Why", "--stop", " ", "--no-repeat-ngram", "3", "--repetition-penalty", "1.2", "-n", "4",
           "--seed", "1", "--json", "--temperature", "1.5")  # fmt: skip
    samples = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(samples) == 4 and all(" " not in s["completion"] for s in samples)
    assert {s["stop_reason"] for s in samples} <= {"stop", "eor", "loop", "max_tokens"}
    assert "--no-repeat-ngram must be 0" in bad("sample", "Why", "--no-repeat-ngram", "-1", code=2)
    assert "--repetition-penalty must be a number > 0" in bad("sample", "Why", "--repetition-penalty", "0", code=2)
    assert "--stop needs a non-empty string" in bad("sample", "Why", "--stop", "", code=2)


def test_stream_prints_the_same_text_as_a_plain_sample(trained):
    for extra in ([], ["--stop", "e"]):
        plain = ok("sample", "Why", "--seed", "4", "--max-tokens", "40", *extra).stdout
        streamed = ok("sample", "Why", "--seed", "4", "--max-tokens", "40", "--stream", *extra).stdout
        assert streamed == plain and plain.startswith("Why")
    assert "--stream prints one sample" in bad("sample", "Why", "--stream", "-n", "2", code=2)


def test_stream_hands_out_each_piece_once_and_holds_back_a_possible_stop(trained):
    from lstmgen.sample import load_model, sample

    pieces = []
    (s,) = sample(load_model("tiny"), "Why", max_tokens=60, seed=2, temperature=1.3, stop=("the",),
                  on_text=pieces.append)  # fmt: skip
    assert "".join(pieces) == s.completion and "the" not in s.completion
    assert len(pieces) > 1  # it streamed, not one piece at the end


def test_eval_per_record_scores_each_record_and_they_add_up(trained, tmp_path):
    texts = ["Why did the cat sit on the mat? It was warm.", "wwww cccc iiii", "Hey, why is the sun bright?"]
    f = tmp_path / "texts.txt"
    f.write_text("\n".join(texts) + "\n")
    rows = [json.loads(line) for line in ok("eval", "--file", f, "--per-record", "--json").stdout.splitlines()]
    assert [r["text"] for r in rows] == texts and [r["index"] for r in rows] == [0, 1, 2]
    total = json.loads(ok("eval", "--file", f, "--json").stdout)
    assert sum(r["tokens"] for r in rows) == total["tokens"]
    # Each record is scored on its own: its score does not depend on the records around it.
    f.write_text("\n".join(texts[::-1]) + "\n")
    reversed_rows = [json.loads(line) for line in ok("eval", "--file", f, "--per-record", "--json").stdout.splitlines()]
    assert [r["log_likelihood"] for r in reversed_rows[::-1]] == pytest.approx([r["log_likelihood"] for r in rows])
    single = tmp_path / "one.txt"
    single.write_text(texts[1] + "\n")
    alone = json.loads(ok("eval", "--file", single, "--json").stdout)  # one record: the stream eval agrees
    assert alone["loss"] * alone["tokens"] == pytest.approx(-rows[1]["log_likelihood"], rel=1e-5)
    f.write_text("\n".join(texts) + "\n")
    plain = ok("eval", "--file", f, "--per-record").stdout.splitlines()
    assert [line.split("\t", 1)[1] for line in plain] == texts and float(plain[1].split("\t")[0]) > 0
    split_rows = ok("eval", "--split", "val", "--per-record", "--json").stdout.splitlines()
    assert len(split_rows) == registry.load_model_payload("tiny")["corpus"]["records"]["val"]


def test_show_draws_the_loss_curves(trained):
    lines = ok("show", "tiny").stdout.splitlines()
    at = lines.index("  loss (· train, ● validation):")
    steps = [h["step"] for h in registry.load_model_payload("tiny", "last")["history"]]
    assert "┤" in lines[at + 1] and lines[-1].split() == ["step", f"{steps[0]:,}", f"{steps[-1]:,}"]


def test_show_plot_writes_a_png_or_says_what_is_missing(trained, tmp_path, monkeypatch):
    png = tmp_path / "curves.png"
    ok("show", "tiny", "--plot", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "could not write" in bad("show", "tiny", "--plot", tmp_path / "no" / "such" / "dir.png")
    assert "--plot draws a model's loss curves" in bad("show", "toy", "--kind", "corpus", "--plot", png, code=2)
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if lstmgen[plot] were not installed
    assert "--plot needs matplotlib: pip install 'lstmgen[plot]'" in bad("show", "tiny", "--plot", png)


def test_stdin_prompts_are_batched_and_printed_in_order(trained, monkeypatch):
    import lstmgen.sample

    batches, real = [], lstmgen.sample.sample_many
    monkeypatch.setattr(lstmgen.sample, "sample_many", lambda loaded, prompts, **kw: batches.append(len(prompts))
                        or real(loaded, prompts, **kw))  # fmt: skip
    nouns = "cat dog sun moo fish road plant bread mat pup school eyes joke duck cow loaf story warm bright grow"
    prompts = [f"{a} {b}" for a in ("Why", "What", "Hey", "I told", "The") for b in nouns.split()]  # 100
    r = ok("sample", "-", "--json", "--seed", "3", "--max-tokens", "8", input="\n".join(prompts) + "\n")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [s["prompt"] for s in lines] == prompts and [s["seed"] for s in lines] == list(range(3, 103))
    assert batches == [64, 36]  # two batched decodes, not 100 single ones
    alone = json.loads(ok("sample", prompts[70], "--json", "--seed", "73", "--max-tokens", "8").stdout)
    assert alone["text"] == lines[70]["text"]  # batching changes nothing a user sees
    batches.clear()
    ok("sample", "-", "-n", "40", "--seed", "3", "--max-tokens", "8", input="Why\nHey\nWhat\n")
    assert batches == [1, 1, 1]  # 40 samples fill a batch on their own


def test_a_slow_writer_gets_each_answer_before_sending_more(trained):
    """`tail -f prompts | lstmgen sample -`: a prompt is answered as soon as no more input is waiting."""
    import os
    import select
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "lstmgen", "sample", "-", "-m", "tiny", "--max-tokens", "5"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ)  # fmt: skip
    try:
        proc.stdin.write("Why\n")
        proc.stdin.flush()
        assert select.select([proc.stdout], [], [], 60)[0], "no answer while stdin stayed open"
        assert proc.stdout.readline().startswith("Why")
        proc.stdin.write("Hey\n")
        proc.stdin.close()
        assert proc.stdout.readline().startswith("Hey") and proc.wait(timeout=60) == 0
    finally:
        proc.kill()


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
    shown = subprocess.run([script, "--show-completion", "bash"], capture_output=True, text=True)
    assert "complete -o default -F _lstmgen_completion lstmgen" in shown.stdout


def test_a_prompt_the_model_cannot_read_fails_after_the_ones_before_it(trained):
    r = run("sample", "-", "--seed", "1", "--max-tokens", "5", input="Why\nWhat\ncaf\u00e9\nHey\n")
    lines = r.stdout.splitlines()
    assert r.exit_code == 1 and len(lines) == 2 and lines[0].startswith("Why") and lines[1].startswith("What")
    assert "line 3 of stdin has 1 character(s) the model's vocabulary lacks" in r.stderr
