"""Running `lstmgen` in-process for the CLI tests: exit codes, stdout (product) and stderr checked apart."""

from typer.testing import CliRunner

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
