"""The HTTP side of `lstmgen serve` (Starlette on uvicorn): OpenAI's GET /v1/models and POST /v1/completions,
GET /health, and the playground page at GET /. Every error is OpenAI's error JSON with its 4xx/5xx status."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import signal
import time
from collections.abc import Callable
from importlib import resources

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import registry
from ..errors import LstmgenError
from ..sample import random_seed
from .engine import Engine, EngineGone
from .options import LOOPBACK
from .requests import ApiError, Completion, Limits, parse_completion
from .scheduler import Job

# TextStream's stop reasons as OpenAI's finish_reason; "loop" is lstmgen's own (the text repeats itself).
FINISH = {"eor": "stop", "stop": "stop", "max_tokens": "length", "loop": "loop"}

OTHER_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]  # those /v1 paths not served get 404 or 405


class Models:
    """The served models: those named at start, or (none named) every model in the registry, including ones
    trained after the server started (loaded on first use). Each decodes in the engine process (engine.py).
    A model whose checkpoint is gone (`lstmgen rm`) is served no more, named at start or not: new requests
    get 404, and it leaves the engine (its running requests finish) at the next request for it or the
    engine's next look at its files (scheduler.RELOAD_EVERY). Trained again, it is loaded again."""

    def __init__(self, names: tuple[str, ...], limits: Limits, on_note: Callable[[str], None] | None = None):
        self.fixed, self.limits, self.on_note = tuple(names), limits, on_note
        self.engine = Engine(limits, on_note, on_removed=self._removed)
        self.loaded: set[str] = set()
        self.loading: dict[str, asyncio.Lock] = {}
        try:
            for name in self.fixed or self.listed():
                try:
                    self.engine.load(name)
                    self.loaded.add(name)
                except EngineGone:
                    raise
                except LstmgenError as e:
                    if self.fixed:
                        raise
                    self._note(f"not serving model {name!r}: {e}")
        except BaseException:
            self.engine.stop()
            raise

    def listed(self) -> list[str]:
        """The names GET /v1/models shows."""
        return [n for n in self.fixed or registry.names("model") if self.served(n)]

    def served(self, name: str) -> bool:
        """Whether `name` is one of listed(), from its own files alone: a few stat calls, 30 us a request."""
        return (not self.fixed or name in self.fixed) and _checkpoint(name) is not None

    async def get(self, name: str) -> str:
        """`name` once it is loaded, or ApiError 404 (not served) / 503 (cannot be loaded)."""
        if not self.served(name):  # loaded or not: the files on disk say what is served, as /v1/models does
            self.drop(name)
            served = self.listed()
            shown = f": {', '.join(served[:20])}" if served else " (none yet: train one with `lstmgen train`)"
            raise ApiError(
                404,
                f"model {name!r} is not served here; GET /v1/models lists the {len(served)} served{shown}",
                "model",
                "model_not_found",
            )
        if name in self.loaded:
            return name
        async with self.loading.setdefault(name, asyncio.Lock()):
            if name not in self.loaded:
                try:
                    await self.engine.load_async(name)
                except LstmgenError as e:
                    raise ApiError(503, f"model {name!r} cannot be loaded: {e}", "model") from None
                self.loaded.add(name)
        return name

    def drop(self, name: str) -> None:
        """Stop serving a loaded model whose files are gone: the engine frees it once its running requests end."""
        if name in self.loaded:
            self.loaded.discard(name)
            self.engine.unload(name)
            self._note(f"model {name!r}: its checkpoint is gone from the registry; no longer served")

    def _removed(self, name: str) -> None:
        """The engine saw `name`'s checkpoint go (its periodic look at the files)."""
        if not self.served(name):  # not trained again meanwhile
            self.drop(name)

    def counts(self) -> tuple[int, int]:
        """(streams decoding, requests waiting) over all models."""
        stats = list(self.engine.stats.values())
        return sum(s[0] for s in stats), sum(s[1] for s in stats)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.engine.start(loop)

    def stop(self) -> None:
        self.engine.stop()

    def _note(self, message: str) -> None:
        if self.on_note is not None:
            self.on_note(message)


def _checkpoint(name: str):
    try:
        return registry.model_file(name)
    except LstmgenError:
        return None


def create_app(models: Models, limits: Limits, api_key: str | None = None, local_only: bool = True) -> Starlette:
    """The ASGI app. api_key: every /v1 request must send `Authorization: Bearer KEY`. local_only (the server
    listens on a loopback address): requests whose Host header names another host are refused, so a web page
    elsewhere cannot reach the server through DNS rebinding."""
    expected = api_key.encode() if api_key else None
    page = resources.files(__package__).joinpath("playground.html").read_bytes()

    def authorize(request: Request) -> None:
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        given = given.lstrip(" ").encode("latin-1")  # the bytes sent: a UTF-8 key arrives as its UTF-8 bytes
        # The scheme's case does not matter (RFC 7235: some clients send `bearer`); the key's does.
        if not hmac.compare_digest(given, expected) or scheme.lower() != "bearer":  # no timing hints about the key
            raise ApiError(
                401,
                "missing or wrong API key: send the header `Authorization: Bearer KEY` with the key "
                "the server was started with (--api-key or LSTMGEN_API_KEY)",
                None,
                "invalid_api_key",
            )

    async def playground(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    async def health(request: Request) -> Response:
        if models.engine.gone is not None:  # nothing can be decoded any more: a supervisor should restart us
            return JSONResponse({"status": "unavailable", "error": models.engine.gone}, status_code=503)
        streams, waiting = models.counts()
        return JSONResponse({"status": "ok", "models": len(models.loaded), "streams": streams, "waiting": waiting})

    def model_card(name: str) -> dict:
        path = _checkpoint(name)
        created = int(path.stat().st_mtime) if path is not None else 0
        return {"id": name, "object": "model", "created": created, "owned_by": "lstmgen"}

    async def list_models(request: Request) -> Response:
        authorize(request)
        return JSONResponse({"object": "list", "data": [model_card(n) for n in models.listed()]})

    async def get_model(request: Request) -> Response:
        authorize(request)
        name = request.path_params["name"]
        if not models.served(name):
            raise ApiError(
                404,
                f"model {name!r} is not served here; GET /v1/models lists those that are",
                "model",
                "model_not_found",
            )
        return JSONResponse(model_card(name))

    async def completions(request: Request) -> Response:
        authorize(request)
        req = parse_completion(await read_json(request, limits), limits)
        engine = models.engine
        job = Job(req.prompts, req.options, random_seed() if req.seed is None else req.seed, stream=req.stream)
        job.waker = asyncio.Event()
        try:
            engine.submit(await models.get(req.model), job)
        except EngineGone as e:
            raise ApiError(503, str(e)) from None
        try:
            if not await until(job, lambda j: j.state != "waiting", request):
                return Response(status_code=499)  # the client has gone: nobody reads this
            if job.state == "failed":
                raise job_error(job)
            if req.stream:
                response = StreamingResponse(
                    events(job, req, engine),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                )
                job = None  # the stream owns it now
                return response
            if not await until(job, lambda j: j.finished, request):
                return Response(status_code=499)
            if job.state == "failed":
                raise job_error(job)
            return JSONResponse(completion_body(job, req))
        finally:
            if job is not None and not job.finished:
                engine.cancel(job)

    async def not_found(request: Request) -> Response:
        authorize(request)  # first: a client without the key learns nothing, not even which endpoints exist
        path = request.url.path.rstrip("/")
        if path in ("/v1/models", "/v1/completions") or path.startswith("/v1/models/"):
            raise HTTPException(405)  # a known endpoint, another method
        raise ApiError(
            404,
            f"no endpoint {request.method} {request.url.path}; lstmgen serves GET /v1/models and "
            "POST /v1/completions (text completion: no chat template)",
        )

    async def api_error(request: Request, exc: ApiError) -> Response:
        if exc.status != 408:  # a slow body stays unread: reading it is what timed out
            await discard_body(request)
        return JSONResponse(exc.body(), status_code=exc.status)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path == "/v1" or request.url.path.startswith("/v1/"):  # a method not_found is not routed
            try:
                authorize(request)  # 401 before saying what is there, as not_found does
            except ApiError as e:
                return await api_error(request, e)
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = f"no page {request.url.path}; the playground is at /, the API under /v1"
        return JSONResponse(ApiError(exc.status_code, message).body(), status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception) -> Response:
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        error = ApiError(500, f"internal error ({type(exc).__name__}: {detail}); this is a bug in lstmgen")
        return JSONResponse(error.body(), status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        models.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            models.stop()

    routes = [
        Route("/", playground, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        # Any path: a name with a '/' in it (`../x`, or `%2e%2e%2fx` decoded) is a model not served (404), not
        # another endpoint.
        Route("/v1/models/{name:path}", get_model, methods=["GET"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1", not_found, methods=OTHER_METHODS),
        Route("/v1/{rest:path}", not_found, methods=OTHER_METHODS),
    ]
    handlers = {ApiError: api_error, HTTPException: http_error, Exception: server_error}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    return LocalOnly(app) if local_only else app


class LocalOnly:
    """ASGI middleware: only Host headers naming this machine's loopback (localhost, 127.0.0.1, [::1])."""

    HOSTS = {*LOOPBACK, "[::1]"}  # a Host header writes an IPv6 address in brackets

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in self.HOSTS:
                error = ApiError(
                    400,
                    f"Host {host!r} is not this machine's loopback; the server listens on "
                    "127.0.0.1 (start it with --host to serve other names)",
                )
                await JSONResponse(error.body(), status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_json(request: Request, limits: Limits):
    """The request body as JSON: 415 unless it says it is JSON, 413 past limits.body_bytes (refused from
    Content-Length before reading when it is given), 408 when it takes longer than limits.body_seconds to
    arrive, 400 when it does not parse."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        # Also what stops a web page elsewhere from posting here: a JSON content type needs CORS consent.
        raise ApiError(
            415,
            f"send the body as JSON with the header `Content-Type: application/json` (got {kind or 'no Content-Type'})",
        )
    too_big = ApiError(
        413,
        f"the body is larger than the server's cap of {limits.body_bytes:,} bytes (--limit-body-bytes)",
        None,
        "request_too_large",
    )
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limits.body_bytes):
        raise too_big

    async def collect() -> bytes:
        chunks, size = [], 0
        request.state.body_read = False
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, "the client disconnected while sending the body")
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if not message.get("more_body", False):
                request.state.body_read = True  # nothing left to discard
            if size > limits.body_bytes:
                raise too_big
            if request.state.body_read:
                return b"".join(chunks)

    try:
        body = await asyncio.wait_for(collect(), limits.body_seconds)
    except asyncio.TimeoutError:
        raise ApiError(
            408,
            f"the body took longer than {limits.body_seconds:g} s to arrive (--limit-body-seconds)",
            None,
            "timeout",
        ) from None
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as e:
        where = f" ({e})" if isinstance(e, json.JSONDecodeError) else ""
        raise ApiError(400, f"the body is not valid JSON{where}") from None
    try:  # JSON's \ud800 escape parses to a lone surrogate, text no encoder takes (the engine's pipe sends UTF-8)
        json.dumps(obj, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ApiError(
            400, "the body holds a \\uD800-\\uDFFF escape that is not half of a surrogate pair, so no character; "
            "send valid Unicode text"
        ) from None
    return obj


DISCARD_BYTES = 16 << 20  # the most of a refused body read (and dropped) so that its client sees the answer
DISCARD_SECONDS = 2.0


async def discard_body(request: Request) -> None:
    """Read and drop what is left of a refused request's body, up to DISCARD_BYTES for DISCARD_SECONDS. A
    server that answers before reading the body and then closes makes the client's kernel reset the
    connection, and the client may never see the answer (a 413 lost as "connection reset")."""
    if request.method != "POST" or getattr(request.state, "body_read", False):
        return
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > DISCARD_BYTES):
        return  # far past any cap: not worth reading
    if declared == "0" or (declared is None and "chunked" not in request.headers.get("transfer-encoding", "")):
        return

    async def drop():
        size = 0
        while size <= DISCARD_BYTES:
            message = await request.receive()
            size += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    try:
        await asyncio.wait_for(drop(), DISCARD_SECONDS)
    except (asyncio.TimeoutError, OSError):
        pass


def job_error(job: Job) -> ApiError:
    """A failed job as the HTTP error its client gets."""
    if job.error_kind == "busy":
        return ApiError(429, str(job.error), None, "server_busy")
    if job.error_kind == "prompt":
        return ApiError(400, str(job.error), "prompt")
    if job.error_kind == "engine":  # the engine process has ended: the server cannot serve until restarted
        return ApiError(503, str(job.error))
    return ApiError(500, str(job.error))


async def until(job: Job, done: Callable[[Job], bool], request: Request) -> bool:
    """Wait until done(job); False if the client disconnected first."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        while not done(job):
            woken = asyncio.ensure_future(job.waker.wait())
            finished, _ = await asyncio.wait({woken, gone}, return_when=asyncio.FIRST_COMPLETED)
            if gone in finished:
                woken.cancel()
                return False
            job.waker.clear()
        return True
    finally:
        gone.cancel()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _head(req: Completion) -> dict:
    return {
        "id": f"cmpl-{secrets.token_hex(12)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": req.model,
    }


def _prefix(job: Job, req: Completion, index: int) -> str:
    """echo: the prompt before each completion."""
    return job.prompts[index // req.options.num_samples] if req.echo else ""


def _usage(job: Job) -> dict:
    completion = sum(r.tokens for r in job.results if r is not None)
    return {
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": job.prompt_tokens + completion,
    }


def completion_body(job: Job, req: Completion) -> dict:
    choices = [
        {"text": _prefix(job, req, j) + r.completion, "index": j, "logprobs": None, "finish_reason": FINISH[r.reason]}
        for j, r in enumerate(job.results)
    ]
    fingerprint = f"{req.model}@step{job.generation}"  # which checkpoint answered (a new best is picked up live)
    return {**_head(req), "choices": choices, "usage": _usage(job), "system_fingerprint": fingerprint}


async def events(job: Job, req: Completion, engine: Engine):
    """The server-sent events of a streaming completion: the text of each choice as it settles, several
    steps' pieces in one event when the client reads slower than the model writes; a last event per choice
    with its finish_reason; the usage if asked for; then `data: [DONE]`. A client that disconnects
    cancels the job: its streams leave the batch at the next step."""
    head = {**_head(req), "system_fingerprint": f"{req.model}@step{job.generation}"}

    def event(body: dict) -> str:
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    # A chunk is this event with its text, index and finish_reason filled in: rendered once, then only the
    # text is encoded per chunk (the server's main cost per streamed piece).
    before, after = event({**head, "choices": [{"text": "\0"}]}).split('"\\u0000"')

    def chunk(index: int, text: str, finish: str | None) -> str:
        reason = "null" if finish is None else f'"{finish}"'
        rest = f', "index": {index}, "logprobs": null, "finish_reason": {reason}'
        return f"{before}{json.dumps(text, ensure_ascii=False)}{rest}{after}"

    try:
        if req.echo:
            yield "".join(chunk(j, _prefix(job, req, j), None) for j in range(job.size))
        while True:
            texts: dict[int, list[str]] = {}
            finishes: dict[int, str] = {}
            while job.updates:
                index, piece, reason = job.updates.popleft()
                texts.setdefault(index, []).append(piece)
                if reason is not None:
                    finishes[index] = FINISH[reason]
            out = []
            for index in sorted(texts):
                text = "".join(texts[index])
                if text:
                    out.append(chunk(index, text, None))
                if index in finishes:
                    out.append(chunk(index, "", finishes[index]))
            if out:
                yield "".join(out)
            if job.finished and not job.updates:
                break
            await job.waker.wait()  # set when the engine's message about this job's next step arrives
            job.waker.clear()
        if job.state == "failed":
            yield event(job_error(job).body())
        elif req.include_usage:
            yield event({**head, "choices": [], "usage": _usage(job)})
        yield "data: [DONE]\n\n"
    finally:
        if not job.finished:
            engine.cancel(job)


class Server(uvicorn.Server):
    """uvicorn's server with its signal handling kept but not its re-raise: after a SIGTERM's drain the
    process exits 0 rather than dying of the signal uvicorn had deferred. ready() once it listens."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None]):
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets=None):
        await super().startup(sockets)
        if self.started:
            self.ready()

    @contextlib.contextmanager
    def capture_signals(self):
        """uvicorn's SIGINT and SIGTERM, and SIGHUP (a closed terminal) like SIGTERM: drain, then exit 0."""
        with super().capture_signals():
            hangup = getattr(signal, "SIGHUP", None)
            if hangup is not None and signal.getsignal(hangup) is signal.SIG_IGN:  # nohup: it stays ignored
                hangup = None
            try:
                previous = signal.signal(hangup, self.handle_exit) if hangup is not None else None
            except ValueError:  # not the main thread: uvicorn's own capture did nothing either
                hangup = None
            try:
                yield
            finally:
                if hangup is not None:
                    signal.signal(hangup, previous)

    def handle_exit(self, sig, frame):
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for running requests
        else:
            self.should_exit = True
