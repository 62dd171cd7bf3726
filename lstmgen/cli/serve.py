"""`lstmgen serve`: registry models behind an OpenAI-compatible HTTP API, with a playground page."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..serve.options import Limits, ServeOptions
from .options import MODEL_NAMES, Quiet
from .output import err, note, quiet

_L = Limits()
API_KEY_VARIABLE = "LSTMGEN_API_KEY"


def _limit(help: str):
    return typer.Option(help=help, rich_help_panel="Caps")


def serve(
    model: Annotated[
        Optional[list[str]],
        typer.Option("--model", "-m", autocompletion=MODEL_NAMES,
                     help="A model to serve (repeatable) [default: every registry model, and any trained later]."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; the default serves this machine only.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port, printed at start).")] = 8000,
    api_key: Annotated[
        Optional[str],
        typer.Option(envvar=API_KEY_VARIABLE, show_envvar=True,
                     help="Require `Authorization: Bearer KEY` on /v1 (prefer the variable: a flag shows in `ps`)."),
    ] = None,
    drain_seconds: Annotated[
        float, typer.Option(help="After SIGTERM or Ctrl-C: how long running requests may take to finish.")
    ] = ServeOptions.drain_seconds,
    limit_body_bytes: Annotated[int, _limit("Largest request body (413 past it).")] = _L.body_bytes,
    limit_body_seconds: Annotated[float, _limit("Longest a request body may take to arrive (408).")] = _L.body_seconds,
    limit_prompt_chars: Annotated[int, _limit("Longest prompt, in characters (400).")] = _L.prompt_chars,
    limit_max_tokens: Annotated[int, _limit("Largest max_tokens a request may ask for (400).")] = _L.max_tokens,
    limit_n: Annotated[int, _limit("Most completions per request: n x prompts (400).")] = _L.n,
    limit_stop: Annotated[int, _limit("Most stop strings per request (400).")] = _L.stop,
    limit_streams: Annotated[int, _limit("Streams decoding together per model; more requests wait.")] = _L.streams,
    limit_waiting: Annotated[int, _limit("Requests waiting per model (429 past it).")] = _L.waiting,
    quiet_: Quiet = False,
):
    """Serve models over HTTP: an OpenAI-compatible API (GET /v1/models, POST /v1/completions, streaming or
    not) and a playground page at /. Requests share one batched decoding step per token (continuous
    batching); a request's seed gives `lstmgen sample --seed`'s text. A new best checkpoint (a training run
    finished) is picked up without dropping running requests. SIGTERM or Ctrl-C: stop accepting, let
    running requests finish (--drain-seconds), exit 0.

    Examples:

      lstmgen serve

      lstmgen serve -m char -m word --port 8080

      LSTMGEN_API_KEY=secret lstmgen serve --host 0.0.0.0

      curl localhost:8000/v1/completions -H 'Content-Type: application/json' -d '{"model": "char", "prompt": "Hey"}'
    """
    quiet(quiet_)
    from ..serve import serve as run

    limits = Limits(body_bytes=limit_body_bytes, body_seconds=limit_body_seconds, prompt_chars=limit_prompt_chars,
                    max_tokens=limit_max_tokens, n=limit_n, stop=limit_stop, streams=limit_streams,
                    waiting=limit_waiting)  # fmt: skip
    if api_key is None:  # click reads LSTMGEN_API_KEY= as unset: an empty key must be refused, not mean no auth
        api_key = os.environ.get(API_KEY_VARIABLE)
    options = ServeOptions(models=tuple(model or ()), host=host, port=port, api_key=api_key,
                           drain_seconds=drain_seconds, limits=limits)  # fmt: skip

    def ready(url: str, names: list[str]) -> None:
        served = f"{len(names)} model(s): {', '.join(names)}" if names else "no models yet (train one to serve it)"
        err.print(f"serving {escape(served)} at {escape(url)}: playground at /, OpenAI API at /v1 (Ctrl-C to stop)")

    run(options, on_ready=ready, on_note=note)
    err.print("stopped")
