"""`lstmgen train`: train a model on a prepared corpus, with a progress display on stderr."""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..errors import UsageError
from . import output
from .options import CORPUS_NAMES, MODEL_NAMES, Quiet
from .output import err, note, out_json, problems, quiet, set_origin
from .signals import StopSignals


# Long only in its options and help text: the body parses, makes one library call and renders.
def train(
    config: Annotated[
        Optional[str],
        typer.Option(
            "--config",
            "-c",
            help="A YAML file, or a packaged config's name: char, word, bpe, ... (`lstmgen configs` lists them).",
        ),
    ] = None,
    corpus: Annotated[
        Optional[str], typer.Option(help="Corpus name (overrides the config's `corpus`).", autocompletion=CORPUS_NAMES)
    ] = None,
    name: Annotated[
        Optional[str], typer.Option(help="Model name (overrides the config's `name`).", autocompletion=MODEL_NAMES)
    ] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override one key: --set train.lr=0.001 (repeatable).")
    ] = None,
    epochs: Annotated[
        Optional[int], typer.Option(help="Stop after N passes over the training split (train.max_epochs).", min=1)
    ] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after N steps (train.max_steps).", min=1)] = None,
    time_: Annotated[
        Optional[str],
        typer.Option(
            "--time", help="Stop after this much wall time, start-up to final save: 90s, 5m, 1h (train.max_time)."
        ),
    ] = None,
    device: Annotated[
        Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps (overrides train.device).")
    ] = None,
    from_: Annotated[
        Optional[str],
        typer.Option("--from", help="Start a new model (its own --name) from this model's best weights, on a corpus "
                     "prepared with --vocab-from it.", autocompletion=MODEL_NAMES),
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
    quiet_: Quiet = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="A live progress bar on a terminal (else plain lines).")
    ] = True,
    json_out: Annotated[
        bool, typer.Option("--json", help="End with one JSON line summarising the run on stdout.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the config the run would use (and the recipe's reasons); train nothing."),
    ] = False,
):
    """Train an LSTM language model on a prepared corpus, with validation, early stopping and checkpoints.

    Config precedence: built-in defaults, then the YAML file, then --set, then the other options. With a
    --time and no config file, the run sizes itself to the corpus, the budget and this machine (the
    recipe), and --set still wins where it sets a key. The run stops at the first limit reached (--epochs,
    --max-steps, --time) or when validation stops improving.
    Ctrl-C or SIGTERM saves a checkpoint first; continue later with --resume.

    Examples:

      lstmgen train --config char

      lstmgen train --config char --name quick --max-steps 200

      lstmgen train --corpus jokes --name sized --time 5m --dry-run

      lstmgen train --config word --corpus jokes-word --name my-words --time 5m

      lstmgen train --name char --resume --epochs 60

      lstmgen train --from char --corpus more-jokes --name char-more --max-steps 500

      lstmgen train --config char --name char2 --nproc 2

      torchrun --nproc-per-node 4 -m lstmgen train --config char
    """
    # The run's clock starts with the process (or this call, in-process): start-up counts towards --time.
    started = output.launched if output.launched is not None else time.perf_counter()
    from ..distributed import Group
    from ..runs import TrainRequest, check_before_launch, fit, worker_argv

    group = Group.from_env()  # rank and world size when torchrun started this process
    quiet(quiet_ or not group.main)  # rank 0 reports for all; the others print only their errors
    if not group.main:
        set_origin(f"rank {group.rank}")
    # JSON strings are YAML scalars that stay strings: "" stays "" (an invalid name), cuda:0 stays cuda:0.
    limits = {"train.max_epochs": epochs, "train.max_steps": max_steps,
              "train.max_time": parse_duration(time_) if time_ is not None else None}  # fmt: skip
    flags = {"corpus": corpus, "name": name, "train.device": device, **limits}
    overrides = (*(set_ or ()), *(f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None))
    request = TrainRequest(config, overrides, name, resume, overwrite, from_)
    if dry_run:
        from ..runs import dry_run as plan_only

        shown = plan_only(request)
        for line in shown["why"]:
            err.print(line, highlight=False)
        if json_out:
            out_json(shown)
        else:
            output.out(yaml_text(shown["config"]))
        return
    if nproc > 1:
        if group.active:
            raise UsageError("--nproc starts torchrun itself; under torchrun, set the number of processes there")
        check_before_launch(request, nproc)
        from ..distributed import launch

        raise typer.Exit(launch(nproc, worker_argv(sys.argv[1:])))  # each process runs this command, less --nproc
    reporter = TrainReporter(progress)
    # Held to the end of the command: a signal that lands after the last save (the run is complete) asks for
    # a stop that is already done, instead of killing the process with 143.
    with StopSignals(announce=group.main) as signals:

        def on_event(kind: str, data: dict) -> None:
            if kind == "end":  # the run is over and saved: a late signal has nothing left to stop
                signals.announce = False
            reporter(kind, data)

        try:
            summary = fit(request, on_event=on_event, should_stop=signals.requested,
                          on_note=lambda line: note(line, always=True), group=group, started=started)  # fmt: skip
        finally:
            reporter.close()
        if json_out and group.main:
            out_json(summary)
    if summary["stop_reason"] == "interrupted":
        code = 128 + (signals.signum or signal.SIGTERM)  # a rank that got no signal stops with those that did
        if group.main:
            problems.print(
                f"interrupted at step {summary['steps']:,}: checkpoint saved; continue with "
                f"`lstmgen train --name {summary['name']} --resume`"
            )
        raise typer.Exit(code)


NUMBER = r"(\d+(?:\.\d+)?)"
DURATION = re.compile(rf"{NUMBER}|(?:{NUMBER}h)?(?:{NUMBER}m)?(?:{NUMBER}s)?")  # 90 | 1h30m | 2.5m | 90s


def parse_duration(text: str) -> float:
    """--time's value in seconds: 90s, 5m, 1h, 1h30m, 2.5m, or plain seconds (90)."""
    match = DURATION.fullmatch(text.strip().lower())
    if not match or not any(match.groups()):
        raise UsageError(f"--time takes a duration such as 90s, 5m, 1h or 1h30m; got {text!r}")
    plain, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = plain + hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise UsageError(f"--time must be longer than zero; got {text!r}")
    from ..config import MAX_TIME

    if total > MAX_TIME:  # the flag's own name, not the config key it becomes
        raise UsageError(f"--time can be at most {MAX_TIME:,} s (about 31 years); got {text!r}")
    return total


def _clock(seconds: float) -> str:
    """0:02:05, as rich shows a time remaining."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class TrainReporter:
    """Renders train() events on stderr: a rich progress bar on a terminal, plain lines otherwise, nothing
    with --quiet (err.quiet). On a terminal, a validation pass that takes more than a second shows its own
    progress on the bar."""

    SHOW_VALIDATION_AFTER_S = 1.0

    def __init__(self, progress: bool = True):
        self.live = not err.quiet and progress and err.is_terminal  # a bar only where someone watches it
        self.progress = None
        self.val = None
        self.shown = {"stats": "", "eta": ""}  # the bar's training fields, put back after a validation pass
        self.last_step = None

    def __call__(self, kind: str, d: dict) -> None:
        if err.quiet:
            return
        getattr(self, f"on_{kind}", lambda d: None)(d)

    def on_start(self, d):
        resumed = f", resumed at step {d['resumed_step']:,}" if d["resumed_step"] is not None else ""
        limits = [f"{d['total_steps']:,} steps" if d["total_steps"] else ""]
        if d["max_time"]:
            limits.append(f"at most {_clock(d['max_time'])}")
        # Two short lines rather than one long one: each fits an 80-column terminal without wrapping.
        where = f"{d['world_size']} processes on {d['device'].split(':')[0]}" if d["world_size"] > 1 else d["device"]
        err.print(f"training [bold]{d['name']}[/]: {d['parameters']:,} parameters on {where} ({d['precision']})")
        err.print(f"  {d['train_tokens']:,} train tokens, {d['steps_per_epoch']:,} steps/epoch, "
                  f"{', '.join(x for x in limits if x)}{resumed}")  # fmt: skip
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn

            # One line within 80 columns: "step 1,400/10,000 ep 36.8 ━━━━ loss 1.049 val 1.532 10,452 tok/s eta 0:00:14"
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=10),
                TextColumn("{task.fields[stats]}"),
                TextColumn("{task.fields[eta]}"),
                console=err,
                transient=False,
            )
            self.task = self.progress.add_task("step 0", total=1000, stats="", eta="")
            self.progress.start()

    def stats(self, d) -> str:
        val = f" val {self.val:.3f}" if self.val is not None else ""
        return f"loss {d['loss']:.3f}{val} {d['tokens_per_s']:,.0f} tok/s"

    def on_step(self, d):
        total = f"/{d['total_steps']:,}" if d["total_steps"] else ""
        desc = f"step {d['step']:,}{total} ep {d['epoch']:.1f}"
        eta = (d["elapsed_s"] / d["progress"] * (1 - d["progress"])) if d["progress"] > 0 else None
        self.last_step = d
        if self.progress:
            self.shown = {"stats": self.stats(d), "eta": f"eta {_clock(eta)}" if eta is not None else ""}
            self.progress.update(self.task, description=desc, completed=1000 * min(d["progress"], 1), **self.shown)
        else:
            err.print(f"{desc} {self.stats(d)} lr {d['lr']:.2e}" + (f" eta {eta:.0f}s" if eta is not None else ""))

    def on_plan(self, d):
        for line in d["why"]:
            err.print(line, highlight=False)

    def on_validating(self, d):
        if self.progress and d["elapsed_s"] > self.SHOW_VALIDATION_AFTER_S:
            left = d["elapsed_s"] / d["done"] * (d["total"] - d["done"])
            self.progress.update(self.task, stats=f"validating {d['done'] / d['total']:.0%}",
                                 eta=f"eta {_clock(left)}")  # fmt: skip

    def on_eval(self, d):
        self.val = d["val_loss"]
        if self.progress:
            if self.last_step is not None:
                self.shown["stats"] = self.stats(self.last_step)  # with the new val loss
            self.progress.update(self.task, **self.shown)
        else:
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
        err.print(f"done: {d['steps']:,} steps, {d['epochs']:.1f} epochs in {d['elapsed_s']:.1f}s, {rate}")
        err.print(f"  best val loss {best} ({d['stop_reason'].replace('_', ' ')})")
        if d.get("val_bits_per_char") is not None:
            err.print(f"  {references(d)}")

    def close(self):
        if self.progress:
            self.progress.stop()
            self.progress = None


def references(d: dict) -> str:
    """The held-out bits/char beside what it should beat: 'val 2.104 bits/char; unigram 4.537; previous run 2.251'."""
    line = f"val {d['val_bits_per_char']:.3f} bits/char"
    if d.get("unigram_bits_per_char") is not None:
        line += f"; unigram {d['unigram_bits_per_char']:.3f}"
    if d.get("previous_val_bits_per_char") is not None:
        line += f"; previous run {d['previous_val_bits_per_char']:.3f}"
    return line


def yaml_text(config: dict) -> str:
    """A config as the YAML a --config file takes."""
    import yaml

    return yaml.safe_dump(config, sort_keys=False).rstrip("\n")
