"""`lstmgen serve`: registry models behind an OpenAI-compatible HTTP API, with continuous batching and a
playground page. `serve(ServeOptions(...))` runs the server until SIGTERM or Ctrl-C; it never prints.

    options.py    ServeOptions and Limits (the caps)
    app.py        the routes: /v1/models, /v1/completions (streaming or not), /health, the playground
    requests.py   OpenAI's error shape, the completion request checked field by field
    engine.py     the decoding process beside the server's: models' schedulers, talked to over a socket
    scheduler.py  one continuous-batching loop per model, in its own thread of the engine
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from ..errors import LstmgenError, UsageError
from .options import LOOPBACK, Limits, ServeOptions

__all__ = ["Limits", "ServeOptions", "serve"]


def serve(
    options: ServeOptions,
    on_ready: Callable[[str, list[str]], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> None:
    """Load the models, listen, and serve until SIGTERM or Ctrl-C: then stop accepting connections, let
    running requests finish for up to drain_seconds, and return (a second Ctrl-C ends at once).

    on_ready(url, model names) once listening; on_note(message) for what happens along the way (a graph
    built, a new best checkpoint picked up). LstmgenError: a named model is missing or unloadable, or the
    address cannot be listened on."""
    import uvicorn

    from .app import Models, Server, create_app

    sock = _listen(options.host, options.port)
    try:
        models = Models(options.models, options.limits, on_note)
    except BaseException:
        sock.close()
        raise
    local = options.host in LOOPBACK
    app = create_app(models, options.limits, options.api_key, local_only=local)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=options.drain_seconds,
        timeout_keep_alive=5,
        lifespan="on",
    )
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    server = Server(config, lambda: on_ready and on_ready(f"http://{shown}:{port}", models.listed()))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        models.stop()


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as e:
        raise UsageError(f"--host {host!r} is not an address this machine can listen on ({e.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise LstmgenError(
            f"cannot listen on {host}:{port} ({e.strerror}); pick another --port, or stop what is using it"
        ) from None
    sock.listen(2048)
    return sock
