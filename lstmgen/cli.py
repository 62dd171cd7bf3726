"""The `lstmgen` command line: parse, call the library, render. Data goes to stdout, everything else to stderr.

torch and pandas are imported inside the commands that need them, so `lstmgen --help` and `lstmgen list`
start instantly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import signal
import sys
from dataclasses import asdict
from enum import Enum
from itertools import chain
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__, registry
from .errors import LstmgenError

app = typer.Typer(
    help="Train LSTM text generators from a CSV or text file, then sample and evaluate them.\n\n"
    "Everything lives in one registry ($LSTMGEN_HOME, default ~/.local/share/lstmgen): after `prepare`, "
    "name corpora and models, never paths.",
    epilog="Quick start: lstmgen prepare data/jokes.csv; lstmgen train --config configs/char.yaml; "
    'lstmgen sample "Hey, "; lstmgen eval.  Exit codes: 0 ok, 1 error, 2 usage error, 130/143 interrupted '
    "(Ctrl-C/SIGTERM). NO_COLOR turns colour off; --quiet leaves only errors on stderr. Tab completion, "
    "registry names included: lstmgen --install-completion.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: rich's renders cost ~170 ms of the 0.25 s budget of `--help`
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# stderr: `err` for progress, notes and summaries (silenced by --quiet), `problems` for what must always be
# seen (errors, interruptions). rich colours only on a terminal and honours NO_COLOR. soft_wrap: one line
# stays one line in logs.
err = Console(stderr=True, highlight=False, soft_wrap=True)
problems = Console(stderr=True, highlight=False, soft_wrap=True)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stderr but errors.")]


def _names(*kinds: str):
    """Tab completion of registry names (after `lstmgen --install-completion`)."""

    def complete(incomplete: str) -> list[str]:
        return sorted({n for k in kinds for n in registry.names(k) if n.startswith(incomplete)})

    return complete


MODEL_NAMES, CORPUS_NAMES, ALL_NAMES = _names("model"), _names("corpus"), _names("corpus", "model")

EXIT_ERROR, EXIT_USAGE = 1, 2


class Tokenizer(str, Enum):
    char = "char"
    word = "word"
    bpe = "bpe"


class Records(str, Enum):
    line = "line"
    file = "file"


class Format(str, Enum):
    auto = "auto"
    csv = "csv"
    txt = "txt"


class Split(str, Enum):
    test = "test"
    val = "val"


class Kind(str, Enum):
    model = "model"
    corpus = "corpus"


def fail(message: str, code: int = EXIT_ERROR):
    """One clear line on stderr, then a non-zero exit."""
    problems.print(f"[bold red]error:[/] {_origin}{escape(message)}")  # user text such as "[draft].txt" is not markup
    raise typer.Exit(code)


_origin = ""  # "rank N: " in the processes torchrun starts beside rank 0, so their errors say whose they are


def _prefix_errors(origin: str) -> None:
    global _origin
    _origin = f"{origin}: "


def usage(message: str):
    fail(message, EXIT_USAGE)


def user_errors(fn):
    """Turn library errors into `fail` lines instead of tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LstmgenError as e:
            fail(str(e))

    return wrapper


def out(line: str = "", end: str = "\n") -> None:
    """Write product to stdout, flushed; a closed pipe (`| head -1`) ends the program quietly."""
    try:
        sys.stdout.write(line + end)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()  # the reader left (`| head -1`): end quietly
        raise typer.Exit(0) from None


def out_json(obj) -> None:
    out(json.dumps(obj, ensure_ascii=False, default=str))


def version_callback(value: bool):
    if value:
        out(f"lstmgen {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version and exit."),
    ] = None,
):
    err.quiet = False  # each command's --quiet sets it again (in-process callers run several commands)


# -- prepare -------------------------------------------------------------------------------------------


@app.command()
@user_errors
def prepare(
    input: Annotated[str, typer.Argument(help="A .csv or .txt file, or - for stdin.")],
    name: Annotated[Optional[str], typer.Option(help="Corpus name in the registry [default: the file's stem].")] = None,
    tokenizer: Annotated[
        Tokenizer, typer.Option(help="Split text into characters, words, or byte-level BPE subwords.")
    ] = Tokenizer.char,
    column: Annotated[
        Optional[str], typer.Option(help="CSV column with the text [default: Joke/text, or the only text column].")
    ] = None,
    records: Annotated[
        Records, typer.Option(help="Text input: one record per line, or the whole file as one stream.")
    ] = Records.line,
    format: Annotated[
        Format, typer.Option(help="Input format [default: by file extension; stdin is txt].")
    ] = Format.auto,
    encoding: Annotated[str, typer.Option(help="Text encoding of the input.")] = "utf-8",
    val_frac: Annotated[float, typer.Option(help="Fraction of records held out for validation.")] = 0.05,
    test_frac: Annotated[float, typer.Option(help="Fraction of records held out for testing.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the record split.")] = 0,
    min_freq: Annotated[int, typer.Option(help="Word tokenizer: words seen fewer times become <unk>.")] = 2,
    max_vocab: Annotated[
        Optional[int],
        typer.Option(help="Word tokenizer: keep at most this many tokens [default: all, refused above 100,000]."),
    ] = None,
    vocab_size: Annotated[
        Optional[int], typer.Option(help="BPE tokenizer: tokens to learn, <eor> included [default: 1024].")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing corpus of the same name.")
    ] = False,
    quiet: Quiet = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the corpus summary as JSON on stdout.")] = False,
):
    """Tokenize a CSV or text file into a corpus: token ids per split (train/val/test, by record) + vocab.

    Every record ends with an end-of-record token, so a model learns where a text ends. --tokenizer bpe
    learns byte-level BPE subwords (HuggingFace tokenizers) from the training split; the tokenizer is saved
    with the corpus and every model, and encodes any text: no <unk>.

    Examples:

      lstmgen prepare data/jokes.csv

      lstmgen prepare data/jokes.csv --tokenizer word --name jokes-word

      lstmgen prepare data/jokes.csv --tokenizer bpe --vocab-size 1024 --name jokes-bpe

      lstmgen prepare shakespeare.txt --records file

      cat lines.txt | lstmgen prepare - --name mylines --overwrite
    """
    err.quiet = quiet
    from .corpus import build_corpus, read_records, read_source
    from .tokenize import MIN_BPE_VOCAB

    name = registry.check_name(
        name if name is not None else ("stdin" if input == "-" else registry.name_from(Path(input).stem)),
        "corpus name",
    )
    if val_frac <= 0:
        usage("--val-frac must be above 0: validation picks the best checkpoint and stops training early")
    if min_freq < 1:
        usage(f"--min-freq must be at least 1, got {min_freq}")
    if max_vocab is not None and max_vocab < 3:
        usage(f"--max-vocab must be at least 3, got {max_vocab}")
    if tokenizer == Tokenizer.bpe and (max_vocab is not None or min_freq != 2):
        usage("--max-vocab and --min-freq shape a word vocabulary; a bpe vocabulary's size is --vocab-size")
    if vocab_size is not None and tokenizer != Tokenizer.bpe:
        usage("--vocab-size sets the size of a --tokenizer bpe vocabulary (a word vocabulary is capped by --max-vocab)")
    if vocab_size is not None and vocab_size < MIN_BPE_VOCAB:
        usage(f"--vocab-size must be at least {MIN_BPE_VOCAB} (the 256 byte tokens and <eor>), got {vocab_size}")
    # Two prepares of one name never interleave. The token ids go through a scratch directory in the
    # registry (on the disk the corpus goes to; /tmp may be RAM), removed however prepare ends.
    with (
        registry.lock("corpus", name, "preparing it"),
        registry.scratch("corpus", name) as work_dir,
        _exit_on_sigterm(),
    ):
        if not overwrite and (registry.entry_dir("corpus", name) / "corpus.pt").exists():
            fail(f"corpus {name!r} already exists; replace it with --overwrite or pick another --name")
        source = read_source(input, format.value, encoding, spool_dir=work_dir)
        # A CSV is parsed whole by pandas; a text file streams through in chunks, in bounded memory.
        texts, col = read_records(source, column, records.value) if source.is_csv or column else (None, None)
        corpus = build_corpus(
            source,
            texts,
            tokenizer=tokenizer.value,
            stream=records == Records.file and not source.is_csv,
            val_frac=val_frac,
            test_frac=test_frac,
            seed=seed,
            min_freq=min_freq,
            max_vocab=max_vocab,
            vocab_size=vocab_size,
            column=col,
            work_dir=work_dir,
        )
        path = registry.save_corpus(name, corpus)
    meta = corpus["meta"]
    if json_out:
        out_json({"name": name, "path": str(path), **meta})
    rec, tok = meta["records"], meta["tokens"]
    err.print(
        f"prepared corpus [bold]{name}[/] from {escape(source.name)}"
        + (f" (column {escape(col)})" if col else "")
        + ": "
        f"{meta['tokenizer']} vocab {meta['vocab_size']:,}; records train/val/test "
        f"{rec['train']:,}/{rec['val']:,}/{rec['test']:,}; tokens {tok['train']:,}/{tok['val']:,}/{tok['test']:,}"
        + (f"; <unk> in val {meta['unk_rate']['val']:.1%}" if "unk_rate" in meta else "")
    )
    err.print(
        f"  saved to {escape(str(path))}; next: lstmgen train --config configs/{meta['tokenizer']}.yaml --corpus {name}"
    )
    skewed = []  # splits whose share of tokens is far from their share of records: a few giant records
    for split, frac in (("train", 1 - val_frac - test_frac), ("val", val_frac), ("test", test_frac)):
        share = tok[split] / sum(tok.values())
        if frac > 0 and abs(share - frac) > 0.02 and not 1 / 3 < share / frac < 3:
            skewed.append(f"{split} holds {share:.1%} of the tokens for {frac:.0%} of the records")
    if skewed:
        err.print(
            f"  note: records differ a lot in length ({', '.join(skewed)}); consider --records file, "
            "or splitting the long records"
        )


@contextlib.contextmanager
def _exit_on_sigterm():
    """SIGTERM ends the command like Ctrl-C does, through every `finally`: scratch files go, locks are freed."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- train ---------------------------------------------------------------------------------------------


class TrainReporter:
    """Renders train() events on stderr: a rich progress bar on a terminal, plain lines otherwise, nothing
    with --quiet (err.quiet)."""

    def __init__(self, progress: bool = True):
        self.live = not err.quiet and progress and err.is_terminal  # a bar only where someone watches it
        self.progress = None
        self.val = None

    def __call__(self, kind: str, d: dict) -> None:
        if err.quiet:
            return
        getattr(self, f"on_{kind}", lambda d: None)(d)

    def on_start(self, d):
        resumed = f", resumed at step {d['resumed_step']:,}" if d["resumed_step"] is not None else ""
        limit = f"{d['total_steps']:,} steps" if d["total_steps"] else "time-limited"
        # Two short lines rather than one long one: each fits an 80-column terminal without wrapping.
        where = f"{d['world_size']} processes on {d['device'].split(':')[0]}" if d["world_size"] > 1 else d["device"]
        err.print(f"training [bold]{d['name']}[/]: {d['parameters']:,} parameters on {where} ({d['precision']})")
        err.print(f"  {d['train_tokens']:,} train tokens, {d['steps_per_epoch']:,} steps/epoch, {limit}{resumed}")
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            # One line within 80 columns: "step 1,400/10,000 ep 36 ━━━━ loss 1.049 val 1.532 10,452 tok/s eta 0:00:14"
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=10),
                TextColumn("{task.fields[stats]}"),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=err,
                transient=False,
            )
            self.task = self.progress.add_task("step 0", total=1000, stats="")
            self.progress.start()

    def stats(self, d) -> str:
        val = f" val {self.val:.3f}" if self.val is not None else ""
        return f"loss {d['loss']:.3f}{val} {d['tokens_per_s']:,.0f} tok/s"

    def on_step(self, d):
        total = f"/{d['total_steps']:,}" if d["total_steps"] else ""
        desc = f"step {d['step']:,}{total} ep {d['epoch']}"
        if self.progress:
            self.progress.update(
                self.task, description=desc, stats=self.stats(d), completed=1000 * min(d["progress"], 1)
            )
        else:
            eta = (d["elapsed_s"] / d["progress"] * (1 - d["progress"])) if d["progress"] > 0 else None
            err.print(f"{desc} {self.stats(d)} lr {d['lr']:.2e}" + (f" eta {eta:.0f}s" if eta is not None else ""))

    def on_eval(self, d):
        self.val = d["val_loss"]
        if not self.progress:
            mark = " (best)" if d["improved"] else ""
            err.print(f"eval step {d['step']:,}: val loss {d['val_loss']:.4f}{mark}")

    def on_sample(self, d):
        text = d["text"].replace("\n", " ")
        # On a terminal, one row ending in "…" (the full text is in `lstmgen sample`); in logs, all of it.
        crop = {"soft_wrap": False, "no_wrap": True, "overflow": "ellipsis"} if err.is_terminal else {}
        err.print(f"sample at step {d['step']:,}: {escape(text)}", highlight=False, **crop)

    def on_end(self, d):
        self.close()
        best = f"{d['best_val_loss']:.4f}" if d["best_val_loss"] is not None else "n/a"
        rate = f"{d['tokens_per_s']:,} tok/s"
        err.print(f"done: {d['steps']:,} steps, {d['epochs']} epochs in {d['elapsed_s']:.1f}s, {rate}")
        err.print(f"  best val loss {best} ({d['stop_reason'].replace('_', ' ')})")

    def close(self):
        if self.progress:
            self.progress.stop()
            self.progress = None


@app.command()
@user_errors
def train(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (see configs/).")] = None,
    corpus: Annotated[
        Optional[str], typer.Option(help="Corpus name (overrides the config's `corpus`).", autocompletion=CORPUS_NAMES)
    ] = None,
    name: Annotated[
        Optional[str], typer.Option(help="Model name (overrides the config's `name`).", autocompletion=MODEL_NAMES)
    ] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override one key: --set train.max_steps=30 (repeatable).")
    ] = None,
    device: Annotated[
        Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps (overrides train.device).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the model from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing model of the same name.")] = False,
    nproc: Annotated[
        int,
        typer.Option(
            help="Train in N processes on this machine (torchrun --standalone; DDP over gloo on CPU, NCCL on GPUs). "
            "train.batch_size is the global batch; each process gets cores / N threads.",
            min=1,
        ),
    ] = 1,
    quiet: Quiet = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="A live progress bar on a terminal (else plain lines).")
    ] = True,
    json_out: Annotated[
        bool, typer.Option("--json", help="End with one JSON line summarising the run on stdout.")
    ] = False,
):
    """Train an LSTM language model on a prepared corpus, with validation, early stopping and checkpoints.

    Config precedence: built-in defaults, then the YAML file, then --set, then --corpus/--name/--device.
    Ctrl-C or SIGTERM saves a checkpoint first; continue later with --resume.

    Examples:

      lstmgen train --config configs/char.yaml

      lstmgen train --config configs/char.yaml --set train.max_steps=200 --name quick

      lstmgen train --name char --resume --set train.max_epochs=40

      lstmgen train --config configs/char.yaml --nproc 2

      torchrun --nproc-per-node 4 -m lstmgen train --config configs/char.yaml
    """
    from .distributed import Group

    group = Group.from_env()  # rank and world size when torchrun started this process
    err.quiet = quiet or not group.main  # rank 0 reports for all; the others print only their errors
    if not group.main:
        _prefix_errors(f"rank {group.rank}")
    from .config import load_config

    if resume and overwrite:
        usage("--resume and --overwrite contradict each other; pick one")
    if resume and any(o.split("=")[0].strip() == "name" for o in set_ or []):
        usage("--resume names the model with --name (or the --config's name:), not --set name=")
    # JSON strings are YAML scalars that stay strings: "" stays "" (an invalid name), cuda:0 stays cuda:0.
    given = {"corpus": corpus, "name": name, "train.device": device}
    flags = [f"{k}={json.dumps(v)}" for k, v in given.items() if v is not None]
    overrides = list(set_ or []) + flags
    cfg = None if resume else load_config(config, overrides)
    model_name = registry.check_name(cfg.name if cfg else _resume_name(config, name), "model name")
    if nproc > 1:
        if group.active:
            usage("--nproc starts torchrun itself; under torchrun, set the number of processes there")
        _check_before_launch(cfg, model_name, resume, overwrite, nproc)
        from .distributed import launch

        # Each process runs this same command, without --nproc.
        options = {"--config": config and str(config), "--corpus": corpus, "--name": name, "--device": device}
        switches = {"--resume": resume, "--overwrite": overwrite, "--quiet": quiet, "--no-progress": not progress,
                    "--json": json_out}  # fmt: skip
        worker_args = [
            *chain.from_iterable([k, v] for k, v in options.items() if v),
            *chain.from_iterable(["--set", o] for o in set_ or []),
            *[s for s, on in switches.items() if on],
        ]
        raise typer.Exit(launch(nproc, worker_args))
    # One writer per model: a second `train` of this name refuses instead of interleaving checkpoints. Under
    # torchrun rank 0 holds it for the group (the ranks are one writer).
    with registry.lock("model", model_name, "training it") if group.main else contextlib.nullcontext():
        payload = None
        if resume:
            cfg, payload = _resume_config(config, model_name, overrides)
        from .train import train as run_training

        data = registry.load_corpus(cfg.corpus)
        if not resume and not overwrite:
            _refuse_existing(cfg.name)

        reporter = TrainReporter(progress)
        signals = _StopSignals(announce=group.main)
        try:
            with signals:
                summary = run_training(
                    cfg, data, resume=payload, on_event=reporter, should_stop=signals.requested, group=group
                )
        finally:
            reporter.close()
    if json_out and group.main:
        out_json(summary)
    if summary["stop_reason"] == "interrupted":
        code = 128 + (signals.signum or signal.SIGTERM)  # a rank that got no signal stops with those that did
        if not group.main:
            raise typer.Exit(code)
        problems.print(
            f"interrupted at step {summary['steps']:,}: checkpoint saved; continue with "
            f"`lstmgen train --name {cfg.name} --resume`"
        )
        raise typer.Exit(code)


RESUME_FIXED = ("model.", "corpus", "train.batch_size", "train.seq_len")


def _refuse_existing(model_name: str) -> None:
    if any(registry.entry_dir("model", model_name).glob("*.pt")):
        fail(
            f"model {model_name!r} already exists; continue it with --resume, replace it with --overwrite, "
            "or pick another --name"
        )


def _check_before_launch(cfg, model_name: str, resume: bool, overwrite: bool, nproc: int) -> None:
    """The usual mistakes, caught once here as one line, before torchrun starts N processes that would each
    report them."""
    from .config import load_config
    from .distributed import Group
    from .train import check_world_size

    group = Group(rank=0, world=nproc)
    if resume:
        try:
            payload = registry.load_model_payload(model_name, "last")
        except registry.NotFound:
            return  # the ranks start from step 0 (with --config) or say there is nothing to resume
        cfg = load_config(None, [], base=payload["config"])
        check_world_size(payload, cfg, group)
    else:
        registry.require("corpus", cfg.corpus)
        if not overwrite:
            _refuse_existing(model_name)
    group.per_rank(cfg.train.batch_size)
    group.device(cfg.train.device)


def _resume_name(config: Path | None, name: str | None) -> str:
    from .config import load_config

    model_name = name or (load_config(config).name if config else None)
    if not model_name:
        usage("--resume needs the model: pass --name NAME (or the --config it was trained with)")
    return model_name


def _resume_config(config: Path | None, model_name: str, overrides: list[str]):
    """The saved config of the model to resume, with `overrides` on top, and its last.pt payload.

    A run killed before its first checkpoint has nothing to resume: with --config it starts from step 0
    (so a job script can always say --resume), without one it fails.
    """
    from .config import load_config

    try:
        payload = registry.load_model_payload(model_name, "last")
    except registry.NotFound:
        if config is None:
            fail(f"model {model_name!r} has no checkpoint to resume from; start it with --config")
        if not _died_before_first_checkpoint(model_name):
            fail(
                f"model {model_name!r} has no last.pt to resume from, but has a best.pt of a run that got further; "
                "start it again with --overwrite"
            )
        # Shown even with --quiet: a job script that says --resume should know it started over. Once per run.
        if not _origin:
            problems.print(f"note: model {model_name!r} has no checkpoint to resume from yet; starting it from step 0")
        return load_config(config, overrides), None
    # The data position and carried hidden state are laid out by these: they cannot change mid-run.
    keys = [o.split("=")[0].strip() for o in overrides]
    fixed = [o for o, k in zip(overrides, keys, strict=True) if k.startswith(RESUME_FIXED) or k in ("model", "train")]
    if fixed:
        usage(f"--resume keeps the model's shape, corpus, batch_size and seq_len; drop {', '.join(fixed)}")
    if "train_state" not in payload:
        fail(f"model {model_name!r} has no resumable checkpoint (its last.pt lacks the training state)")
    return load_config(None, overrides, base=payload["config"]), payload


def _died_before_first_checkpoint(model_name: str) -> bool:
    """No last.pt: is this a run killed before its first one (nothing, or only an early best.pt of its own)?

    best.pt is written before last.pt at a step that has both, so a kill in between leaves a best.pt no
    later than checkpoint_every. A later best.pt means last.pt was lost some other way: not ours to replace.
    """
    d = registry.entry_dir("model", model_name)
    if not (d / "best.pt").is_file():
        return True
    try:
        best = registry.load_model_payload(model_name, "best")
    except LstmgenError:
        return False
    return best["step"] <= best["config"]["train"]["checkpoint_every"]


def _flatten(d: dict, prefix: str = "") -> list[str]:
    """{"train": {"lr": 0.1}} -> ["train.lr=0.1"] (values as YAML scalars)."""
    items = []
    for k, v in d.items():
        if isinstance(v, dict):
            items += _flatten(v, f"{prefix}{k}.")
        else:
            items.append(f"{prefix}{k}={json.dumps(v)}")
    return items


class _StopSignals:
    """While active, the first Ctrl-C/SIGTERM asks training to stop after the current step; a second one aborts."""

    def __init__(self, announce: bool = True):
        self.signum = 0
        self.previous = {}
        self.announce = announce  # under torchrun, rank 0 says it for every rank

    def requested(self) -> bool:
        return self.signum != 0

    def _handle(self, signum, frame):
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum
        if not self.announce:
            return
        newline = "\n" if problems.is_terminal and not err.quiet else ""  # end the progress bar's line
        problems.print(f"{newline}stopping after this step and saving a checkpoint (press Ctrl-C again to abort)")

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: no handlers, training runs to its limits
                pass
        return self

    def __exit__(self, *exc):
        for s, h in self.previous.items():
            signal.signal(s, h)


# -- sample --------------------------------------------------------------------------------------------


@app.command()
@user_errors
def sample(
    prompt: Annotated[
        Optional[str], typer.Argument(help="Seed text; - (or piped stdin) reads one prompt per line.")
    ] = None,
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", help="Model name [default: the registry's default].", autocompletion=MODEL_NAMES),
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Stop after this many tokens if no end-of-record came.")] = 300,
    temperature: Annotated[float, typer.Option(help="Below 1: safer, above 1: wilder.")] = 0.8,
    top_k: Annotated[Optional[int], typer.Option(help="Sample only from the k most likely tokens.")] = None,
    top_p: Annotated[
        Optional[float], typer.Option(help="Sample only from the smallest set with this much probability.")
    ] = None,
    greedy: Annotated[
        bool, typer.Option("--greedy", help="Always take the most likely token (tends to loop).")
    ] = False,
    num_samples: Annotated[
        int, typer.Option("--num-samples", "-n", help="Samples per prompt (one batched forward per step).")
    ] = 1,
    seed: Annotated[Optional[int], typer.Option(help="Random seed, for reproducible output [default: random].")] = None,
    skip_unknown: Annotated[
        bool, typer.Option("--skip-unknown", help="Char models: drop prompt characters the vocab lacks.")
    ] = False,
    stop: Annotated[
        Optional[list[str]],
        typer.Option("--stop", help="End a sample before this string (repeatable), besides end-of-record."),
    ] = None,
    no_repeat_ngram: Annotated[int, typer.Option(help="Never repeat an n-gram of this many tokens (0: off).")] = 0,
    repetition_penalty: Annotated[
        float, typer.Option(help="Above 1: make tokens already used less likely (1: off; 1.2 is mild).")
    ] = 1.0,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the text as it is generated (one sample per prompt).")
    ] = False,
    quiet: Quiet = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per sample on stdout.")] = False,
):
    """Generate text from a trained model, continuing PROMPT until an end-of-record token or --max-tokens.

    Decoding is stateful: the prompt is read once, then each token costs one step with the carried LSTM
    state. Prompts from stdin are decoded together, up to 64 streams per batched step, and printed in
    order; each is answered as soon as no more input is waiting. With no PROMPT on a terminal, samples
    start from the beginning of a record.

    Examples:

      lstmgen sample "Hey, " --temperature 0.8

      lstmgen sample "Why did" -n 5 --top-p 0.9 --seed 1

      lstmgen sample "Why did" --greedy --no-repeat-ngram 3 --stop "?"

      printf 'Why\\nWhat do you call\\n' | lstmgen sample - --json
    """
    err.quiet = quiet
    if not 0 < temperature < math.inf:  # NaN fails this too
        usage(f"--temperature must be a number > 0 (got {temperature}); use --greedy for argmax decoding")
    if top_k is not None and top_k < 1:
        usage(f"--top-k must be at least 1 (got {top_k})")
    if top_p is not None and not 0 < top_p <= 1:
        usage(f"--top-p must be in (0, 1] (got {top_p})")
    if max_tokens < 1:
        usage(f"--max-tokens must be at least 1 (got {max_tokens})")
    if num_samples < 1:
        usage(f"--num-samples must be at least 1 (got {num_samples})")
    if no_repeat_ngram < 0:
        usage(f"--no-repeat-ngram must be 0 (off) or more (got {no_repeat_ngram})")
    if not 0 < repetition_penalty < math.inf:
        usage(f"--repetition-penalty must be a number > 0, 1 for none (got {repetition_penalty})")
    if stop and not all(stop):
        usage("--stop needs a non-empty string")
    if stream and (json_out or num_samples > 1):
        usage("--stream prints one sample as text as it grows; drop --json and --num-samples")
    if prompt == "":
        usage("the prompt is empty; give seed text, or omit PROMPT to sample from the start of a record")
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    if not 0 <= seed < 2**63:
        usage(f"--seed must be between 0 and 2^63 - 1 (got {seed})")
    from .sample import load_model, sample_many

    name = registry.resolve_model(model)
    loaded = load_model(name)  # before reading stdin: the first prompt is answered as soon as it comes
    vocab = loaded.vocab
    from_stdin = prompt == "-" or (prompt is None and not sys.stdin.isatty())
    # Streams per batched forward: different prompts share each decoding step (one prompt with more
    # --num-samples is still one batch). --stream shows one sample at a time.
    per_batch = 1 if stream else max(1, SAMPLE_BATCH // num_samples)
    batches = _prompt_batches(per_batch) if from_stdin else iter([[prompt or ""]])
    first = next(batches, None)
    if first is None:
        if prompt == "-":
            usage("no prompts on stdin (PROMPT is -): pipe one prompt per line, or give PROMPT as an argument")
        first = [""]  # piped but empty: one sample from a record's start, as with no stdin at all
    done = 0  # prompts so far: prompt i draws from seed + i, reproducible from --seed whatever the batching
    for prompts in chain([first], batches):
        unreadable = None  # a prompt the model cannot read: the ones before it are answered first
        for k, p in enumerate(prompts):
            where = f"line {done + k + 1} of stdin" if from_stdin else "the prompt"
            try:
                vocab.encode(p, skip_unknown=skip_unknown, where=where)
            except LstmgenError as e:
                unreadable, prompts = e, prompts[:k]
                break
            _note_unknown(name, vocab, p, skip_unknown)
        if not prompts:
            raise unreadable
        if stream:  # the prompt as read, then the completion as it grows
            out(vocab.known(prompts[0]) if skip_unknown else prompts[0], end="")
        samples = sample_many(
            loaded,
            prompts,
            num_samples=num_samples,
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            greedy=greedy,
            seeds=[(seed + done + i) % 2**63 for i in range(len(prompts))],
            skip_unknown=skip_unknown,
            stop=tuple(stop or ()),
            no_repeat_ngram=no_repeat_ngram,
            repetition_penalty=repetition_penalty,
            on_text=functools.partial(out, end="") if stream else None,
        )
        done += len(prompts)
        if stream:
            out()  # the streamed completion's line end
        else:
            for s in chain.from_iterable(samples):
                out_json({"model": name, **asdict(s)}) if json_out else out(s.text)
        if unreadable is not None:
            raise unreadable


SAMPLE_BATCH = 64  # streams decoded together: per-step overhead, not arithmetic, bounds decoding speed


def _prompt_batches(size: int):
    """Lists of at most `size` prompts from stdin, one per line (a blank line: a sample from a record's start).

    A batch is also handed over when no more input is waiting, so an interactive or slow writer
    (`tail -f log | lstmgen sample -`) gets each answer at once rather than when `size` prompts came.
    """
    batch: list[str] = []
    for line in sys.stdin:
        batch.append(line.rstrip("\r\n"))
        if len(batch) >= size or not _input_waiting():
            yield batch
            batch = []
    if batch:
        yield batch


def _input_waiting() -> bool:
    """Whether stdin's pipe or terminal has more to read (or its end) right now; True where that cannot be
    asked (no file descriptor, Windows pipes). Lines already in Python's buffer do not count: at worst a
    batch is handed over early."""
    import select

    try:
        return bool(select.select([sys.stdin], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _note_unknown(name: str, vocab, prompt: str, skip_unknown: bool) -> None:
    """A note on stderr for prompt words a word model reads as <unk>, or characters --skip-unknown drops."""
    if vocab.kind == "bpe":
        return  # byte-level: nothing is unknown
    missing = vocab.unknown(prompt)
    if missing and vocab.kind == "word":
        err.print(
            f"note: {len(missing)} prompt word(s) not in {name!r}'s vocabulary, read as <unk>: "
            + escape(", ".join(missing[:10]))
        )
    elif missing and skip_unknown:
        err.print(
            f"note: dropped {len(missing)} prompt character(s) that model {name!r} does not know: "
            + escape(", ".join(repr(m) for m in missing[:10]))
        )


# -- eval ----------------------------------------------------------------------------------------------


@app.command("eval")
@user_errors
def eval_(
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", help="Model name [default: the registry's default].", autocompletion=MODEL_NAMES),
    ] = None,
    split: Annotated[Split, typer.Option(help="Held-out split of the model's corpus.")] = Split.test,
    file: Annotated[
        Optional[str], typer.Option(help="Evaluate on this .csv/.txt file (or -) instead of a split.")
    ] = None,
    column: Annotated[Optional[str], typer.Option(help="CSV column with the text (with --file).")] = None,
    records: Annotated[
        Records, typer.Option(help="Text file: one record per line, or one stream (with --file).")
    ] = Records.line,
    format: Annotated[Format, typer.Option(help="Input format of --file.")] = Format.auto,
    encoding: Annotated[str, typer.Option(help="Text encoding of --file.")] = "utf-8",
    skip_unknown: Annotated[
        bool, typer.Option("--skip-unknown", help="Char models: drop characters the vocab lacks.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    per_record: Annotated[
        bool,
        typer.Option("--per-record", help="One line per record (bits/char, then the text; JSON with --json)."),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object.")] = False,
):
    """Measure a model on held-out text: cross-entropy (nats/token), perplexity and bits per character.

    Bits per character divide the total by the text's characters, so char and word models compare.
    --per-record scores each record on its own, so texts can be ranked or filtered by the model.

    Examples:

      lstmgen eval

      lstmgen eval --model char --split val --json

      lstmgen eval --model char --file more_jokes.csv

      lstmgen eval --file texts.txt --per-record --json | jq -s 'sort_by(.bits_per_char)[0].text'
    """
    from .corpus import encode_records, n_chars, read_records, read_source, unk_rate
    from .sample import load_model
    from .train import evaluate, metrics, pick_device, record_nll

    name = registry.resolve_model(model)
    dev = pick_device(device)
    loaded = load_model(name, device=dev)
    vocab = loaded.vocab
    if file is not None:
        source = read_source(file, format.value, encoding)
        texts, _ = read_records(source, column, records.value)
        if skip_unknown:  # bits/char over the characters actually scored
            texts = [vocab.known(t) for t in texts]
        stream = encode_records(vocab, texts, skip_unknown=skip_unknown, where=source.name)
        chars, where = n_chars(texts), source.name
    else:
        stream = loaded.payload["heldout"][split.value]
        chars, where = loaded.payload["corpus"]["chars"][split.value], f"{split.value} split"
        if stream.numel() == 0:
            fail(
                f"model {name!r} has an empty {split.value} split; evaluate with --file, or prepare with a larger "
                f"--{split.value}-frac"
            )
    if per_record:
        from .batches import records_of

        records_ids = records_of(stream, vocab.eor_id)
        if file is None:  # the split's records, read back from their ids
            texts = [vocab.decode(r) for r in records_ids]
        nll = record_nll(loaded.model, records_ids, vocab.eor_id, device=dev)
        _print_per_record(name, texts, nll, [len(r) + 1 for r in records_ids], json_out)
        return
    nll, n = evaluate(loaded.model, stream, vocab.eor_id, device=dev)
    m = metrics(nll, n, chars)
    result = {"model": name, "on": where, **m}
    if vocab.unk_id is not None:
        result["unk_rate"] = unk_rate(stream, vocab)
    if json_out:
        out_json(result)
    else:
        out(
            f"{name} on {where}: loss {m['loss']:.4f} nats/token, perplexity {m['perplexity']:.2f}, "
            f"{m['bits_per_char']:.4f} bits/char ({m['tokens']:,} tokens, {m['chars']:,} chars"
            + (f", {result['unk_rate']:.1%} <unk>)" if "unk_rate" in result else ")")
        )


def _print_per_record(name: str, texts: list[str], nlls: list[float], counts: list[int], json_out: bool) -> None:
    """One line per record, in input order: how well the model predicts it, and its text."""
    from .train import metrics

    for i, (text, nll, tokens) in enumerate(zip(texts, nlls, counts, strict=True)):
        m = metrics(nll, tokens, len(text) + 1)  # + 1: the record's end counts as a character, as in eval
        if json_out:
            out_json({"model": name, "index": i, "text": text, "log_likelihood": -nll, **m})
        else:
            out(f"{m['bits_per_char']:.4f}\t{text}")


# -- registry commands ---------------------------------------------------------------------------------


def _fmt(v, spec: str = "") -> str:
    return "-" if v is None else format(v, spec)


def _when(iso: str | None) -> str:
    return iso[:16].replace("T", " ") if iso else "-"  # minutes are enough in a table


@app.command("list")
@user_errors
def list_(json_out: Annotated[bool, typer.Option("--json", help="Print the listing as JSON.")] = False):
    """List corpora and models in the registry.

    Examples:

      lstmgen list

      lstmgen list --json | jq '.models[].name'
    """
    entries = registry.list_entries()
    if json_out:
        out_json(entries)
        return
    from rich.table import Table

    # Off a terminal there is no width to fit: keep each row on one line rather than wrap at 80 columns.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    corpora = Table(title=f"corpora in {entries['home']}", title_justify="left")
    for col in ("name", "tokenizer", "vocab", "records", "train tokens", "source", "created"):
        corpora.add_column(col)
    for c in entries["corpora"]:
        corpora.add_row(
            c["name"],
            _fmt(c.get("tokenizer")),
            _fmt(c.get("vocab_size"), ","),
            _fmt(sum((c.get("records") or {}).values()) or None, ","),
            _fmt((c.get("tokens") or {}).get("train"), ","),
            Path(c["source"]).name if c.get("source") else "-",
            _when(c.get("created")),
        )
    models = Table(title="models", title_justify="left")
    for col in ("name", "tokenizer", "parameters", "steps", "best val loss", "status", "corpus", "updated"):
        models.add_column(col)
    for m in entries["models"]:
        mark = " *" if m["name"] == entries["default_model"] else ""
        models.add_row(
            m["name"] + mark,
            _fmt(m.get("tokenizer")),
            _fmt(m.get("parameters"), ","),
            _fmt(m.get("steps"), ","),
            _fmt(m.get("best_val_loss"), ".4f"),
            _fmt(m.get("status")),
            _fmt(m.get("corpus")),
            _when(m.get("updated")),
        )
    with console.capture() as captured:  # rendered first, then written by out(): `| head` ends quietly
        console.print(corpora)
        console.print(models)
        if entries["default_model"]:
            console.print(f"* default model: {entries['default_model']}")
    out("\n".join(line.rstrip() for line in captured.get().rstrip("\n").split("\n")))  # no padding at line ends


def _find(name: str, kind: Kind | None) -> str:
    registry.check_name(name)
    kinds = [kind.value] if kind else [k for k in registry.KINDS if registry.entry_dir(k, name).is_dir()]
    if not kinds:
        registry.require_any(name)  # raises NotFound with the closest corpus or model name
    if len(kinds) > 1:
        usage(f"{name!r} is both a corpus and a model; add --kind corpus or --kind model")
    return kinds[0]


@app.command()
@user_errors
def show(
    name: Annotated[str, typer.Argument(help="Corpus or model name.", autocompletion=ALL_NAMES)],
    kind: Annotated[Optional[Kind], typer.Option(help="When a corpus and a model share the name.")] = None,
    plot: Annotated[
        Optional[Path], typer.Option(help="Also save the loss curves as an image (needs lstmgen[plot]).")
    ] = None,
    quiet: Quiet = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
):
    """Show one corpus or model: its metadata, config, metrics history and loss curves.

    Examples:

      lstmgen show char

      lstmgen show char --plot curves.png

      lstmgen show jokes --kind corpus --json
    """
    err.quiet = quiet
    k = _find(name, kind)
    data = registry.info(k, name)
    if k == "model":
        # last.pt has the whole history; best.pt stops at its best step
        has_last = (registry.entry_dir("model", name) / "last.pt").is_file()
        payload = registry.load_model_payload(name, "last" if has_last else None)
        data |= {"config": payload["config"], "history": payload["history"], "trained_on": payload["corpus"]}
        if plot is not None:
            from .plot import save_png

            save_png(payload["history"], str(plot), f"lstmgen model {name}")
            err.print(f"saved the loss curves to {escape(str(plot))}")
    elif plot is not None:
        usage(f"--plot draws a model's loss curves; {name!r} is a corpus")
    if json_out:
        out_json(data)
        return
    out(f"{k} {name}  ({data['path']})")
    for key, value in data.items():
        if key in ("name", "kind", "path", "history", "config"):
            continue
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        out(f"  {key}: {round(shown, 4) if isinstance(shown, float) else shown}")
    if k == "model":
        out("  config:")
        for line in _flatten(data["config"]):
            out(f"    {line}")
        hist = data["history"]
        if hist:
            out("  history (step, train loss, val loss):")
            for h in hist[-10:]:
                out(f"    {h['step']:>7}  {_fmt(h['train_loss'], '.4f')}  {_fmt(h['val_loss'], '.4f')}")
            from .plot import TRAIN, VAL, loss_chart

            chart = loss_chart(hist)
            if chart:
                out(f"  loss ({TRAIN} train, {VAL} validation):")
                for line in chart:
                    out(line)


@app.command()
@user_errors
def rm(
    name: Annotated[str, typer.Argument(help="Corpus or model name.", autocompletion=ALL_NAMES)],
    kind: Annotated[Optional[Kind], typer.Option(help="When a corpus and a model share the name.")] = None,
    quiet: Quiet = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print what was removed as JSON.")] = False,
):
    """Delete a corpus or model from the registry. Models keep working after their corpus is deleted.

    Examples:

      lstmgen rm old-model

      lstmgen rm jokes --kind corpus
    """
    err.quiet = quiet
    k = _find(name, kind)
    path = registry.remove(k, name)
    if json_out:
        out_json({"removed": name, "kind": k, "path": str(path)})
    err.print(f"removed {k} {name} ({path})")


@app.command()
@user_errors
def default(
    name: Annotated[
        Optional[str], typer.Argument(help="Model to make the default.", autocompletion=MODEL_NAMES)
    ] = None,
    quiet: Quiet = False,
):
    """Show or set the model `sample` and `eval` use when --model is not given.

    Examples:

      lstmgen default char
    """
    err.quiet = quiet
    if name is not None:
        registry.set_default_model(name)
        err.print(f"default model: {name}")
    else:
        chosen = registry.default_model()
        if chosen is None:
            fail("no models yet: train one with `lstmgen train --config configs/char.yaml`")
        out(chosen)


def main():
    """Console entry point. Runs the app non-standalone so that usage errors are one line, like every other."""
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # typer releases that depend on click
        from click.exceptions import ClickException
    try:
        code = app(standalone_mode=False)
    except ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # help was printed already
            sys.exit(EXIT_USAGE)
        command = e.ctx.command_path if getattr(e, "ctx", None) else "lstmgen"
        problems.print(f"[bold red]error:[/] {escape(e.format_message())} (see `{escape(command)} --help`)")
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        problems.print("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(0)
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if os.environ.get("LSTMGEN_DEBUG"):
            raise
        _silence_stdout()  # stdout may be what failed (`> /dev/full`): do not fail again at exit
        problems.print(f"[bold red]error:[/] {_origin}{escape(_unexpected(e))}")
        sys.exit(EXIT_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


def _unexpected(e: Exception) -> str:
    """The error line for an exception no command turned into an LstmgenError."""
    detail = (str(e).strip().splitlines() or [""])[0][:200]
    if isinstance(e, MemoryError) or "out of memory" in detail.lower() or "can't allocate memory" in detail:
        asked = re.search(r"allocate (\d+) bytes", detail)  # torch's CPU allocator says how much
        need = f": one allocation of {int(asked[1]) / 2**30:,.1f} GiB failed" if asked else ""
        return (
            f"out of memory{need}; use a smaller model (model.hidden, model.embed, a smaller vocabulary) "
            "or a smaller train.batch_size"
        )
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else " (writing the output?)"
        return f"{e.strerror or detail}{where}"
    if os.environ.get("WORLD_SIZE", "1") != "1" and re.search(r"gloo|nccl|closed by peer|DistBackend", repr(e), re.I):
        return "another training process stopped (its error says why), and this one cannot go on without it"
    return (
        f"internal error ({type(e).__name__}: {detail}); this is a bug in lstmgen, please report it "
        "(LSTMGEN_DEBUG=1 shows the traceback)"
    )


def _silence_stdout() -> None:
    """Point stdout at devnull so the interpreter's final flush cannot raise again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file behind stdout: nothing to flush at exit
        pass
