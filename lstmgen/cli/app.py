"""The Typer app: the commands, `main()`, and how errors become one line and an exit code."""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
import time
from typing import Annotated, Optional

import typer
from rich.markup import escape
from typer.core import TyperCommand

from .. import __version__
from ..errors import LstmgenError, UsageError
from . import configs, entries, evaluate, export, output, prepare, sample, serve, train
from .output import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, LosableStream, err, error, out, problems, silence_stdout
from .signals import exit_on_ending_signals

app = typer.Typer(
    help="Train LSTM text generators from a CSV or text file, then sample and evaluate them.\n\n"
    "Everything lives in one registry ($LSTMGEN_HOME, else $XDG_DATA_HOME/lstmgen, else ~/.local/share/lstmgen): "
    "after `prepare`, name corpora and models, never paths.",
    epilog="Quick start, from any directory: lstmgen prepare jokes; lstmgen train --config char; "
    'lstmgen sample "Hey, "; lstmgen eval. Packaged configs: lstmgen configs.  '
    "Exit codes: 0 ok, 1 error, 2 usage error, 130/143 interrupted "
    "(Ctrl-C/SIGTERM). NO_COLOR turns colour off; --quiet leaves only errors on stderr. Tab completion, "
    "registry names included: lstmgen --install-completion.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: rich's renders cost ~170 ms of the 0.25 s budget of `--help`
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _click_exceptions():
    try:
        from typer._click import exceptions
    except ImportError:  # typer releases that depend on click
        from click import exceptions
    return exceptions


class Command(TyperCommand):
    """A command whose usage line reads `lstmgen show [OPTIONS] NAME` (typer writes required arguments as
    {name}), and whose unknown options suggest what was most likely meant (cli/suggest.py)."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [piece.strip("{}").upper() for piece in super().collect_usage_pieces(ctx)]

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        exceptions = _click_exceptions()
        try:
            return super().parse_args(ctx, args)
        except exceptions.NoSuchOption as e:
            from .suggest import suggest

            def long_options(command) -> list[str]:
                return [o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]

            group = ctx.parent.command if ctx.parent is not None else None
            others = {n: long_options(c) for n, c in getattr(group, "commands", {}).items()}
            hint = suggest(e.option_name, self.name, long_options(self), others)
            message = f"No such option: {e.option_name}" + (f"; {hint}" if hint else "")
            raise exceptions.NoSuchOption(e.option_name, message=message, ctx=ctx) from None


def user_errors(fn):
    """Library errors become one `error:` line and exit 1 (2 for a usage error), never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LstmgenError as e:
            error(str(e))
            raise typer.Exit(EXIT_USAGE if isinstance(e, UsageError) else EXIT_ERROR) from None
        except KeyboardInterrupt:  # here, before typer turns it into a silent exit 130
            _say_interrupted()
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


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


for name, command in (("prepare", prepare.prepare), ("train", train.train), ("sample", sample.sample),
                      ("eval", evaluate.eval_), ("list", entries.list_), ("show", entries.show),
                      ("rm", entries.rm), ("default", entries.default), ("export", export.export),
                      ("configs", configs.configs),
                      ("serve", serve.serve)):  # fmt: skip
    app.command(name, cls=Command)(user_errors(command))


def main():
    """Console entry point. Runs the app non-standalone so that usage errors are one line, like every other."""
    output.launched = time.perf_counter() - output.process_age()
    global _sigint_seen, _said_interrupted
    _sigint_seen = _said_interrupted = False
    _closed_standard_streams()
    if not isinstance(sys.stderr, LosableStream):
        sys.stderr = LosableStream(sys.stderr)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where the parent ignores it (`cmd &`)
        signal.signal(signal.SIGINT, _on_sigint)
    exit_on_ending_signals()
    try:
        code = app(standalone_mode=False)
    except _click_exceptions().ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # help was printed already
            sys.exit(EXIT_USAGE)
        command = e.ctx.command_path if getattr(e, "ctx", None) else "lstmgen"
        problems.print(f"[bold red]error:[/] {escape(e.format_message())} (see `{escape(command)} --help`)")
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        _say_interrupted()
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        silence_stdout()
        sys.exit(0)
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if _sigint_seen:  # Ctrl-C inside an import or a C extension can surface as another error
            _say_interrupted()
            sys.exit(EXIT_INTERRUPTED)
        if os.environ.get("LSTMGEN_DEBUG"):
            raise
        silence_stdout()  # stdout may be what failed (`> /dev/full`): do not fail again at exit
        error(_unexpected(e))
        sys.exit(EXIT_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


_sigint_seen = False
_said_interrupted = False


def _say_interrupted() -> None:
    """`interrupted` on stderr, once, however many layers see the KeyboardInterrupt."""
    global _said_interrupted
    if not _said_interrupted:
        _said_interrupted = True
        problems.print("interrupted")


def _on_sigint(signum, frame):
    """Python's own Ctrl-C handler, remembering that it ran: a KeyboardInterrupt raised while numpy or
    onnxruntime is being imported comes out as ImportError("initialization failed"), not as itself."""
    global _sigint_seen
    _sigint_seen = True
    raise KeyboardInterrupt


NOTHING_ON_STDOUT = {"serve"}  # commands with no product on stdout: a closed one loses nothing (a daemon's `>&-`)


def _command(args: list[str]) -> str | None:
    """The subcommand named in argv (its first word that is not an option), before typer has parsed it."""
    return next((a for a in args if not a.startswith("-")), None)


def _closed_standard_streams() -> None:
    """A shell can start us with fd 0, 1 or 2 closed (`<&-`, `>&-`): Python then has None for that stream,
    and the next file opened takes the free descriptor, so a child process's output could land in a registry
    file. A closed stdin reads as empty (< /dev/null) and a closed stderr discards; a closed stdout is refused
    before any work, since a command's product would be lost after the registry changed."""
    for fd, name, mode in ((0, "stdin", "r"), (2, "stderr", "w")):
        if getattr(sys, name) is None:
            stream = open(os.devnull, mode)  # noqa: SIM115 - for the whole process; takes fd 0 or 2 when free
            if stream.fileno() != fd:
                os.dup2(stream.fileno(), fd)
            setattr(sys, name, stream)
    if sys.stdout is None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else may take fd 1
        if _command(sys.argv[1:]) in NOTHING_ON_STDOUT:
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - for the whole process
            return
        problems.print("[bold red]error:[/] stdout is closed; give lstmgen somewhere to write (> /dev/null to discard)")
        sys.exit(EXIT_USAGE)


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
