"""What `lstmgen serve` is told: where to listen, which models, and the caps. Standard library only, so the
CLI can show these defaults without importing the server."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")  # --host values that serve this machine alone


@dataclass(frozen=True)
class Limits:
    """The caps on what one request may ask for, and on how much waits (`lstmgen serve --limit-*`)."""

    body_bytes: int = 1 << 20  # a request body larger than this: 413
    body_seconds: float = 30.0  # a body still arriving after this long: 408 (a client sending a byte a second)
    prompt_chars: int = 8192  # per prompt; a prompt's read holds up its model's batch for its length
    max_tokens: int = 4096  # the largest max_tokens a request may ask for
    n: int = 64  # streams per request: n x the number of prompts
    stop: int = 16  # stop strings per request
    streams: int = 256  # streams decoding together per model; more requests wait for room
    waiting: int = 1024  # requests waiting per model; past this: 429

    def __post_init__(self):
        for name, value in vars(self).items():
            if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
                raise UsageError(f"--limit-{name.replace('_', '-')} must be more than 0 (got {value})")
        if self.n > self.streams:
            raise UsageError(f"--limit-n ({self.n}) cannot be more than --limit-streams ({self.streams})")


@dataclass(frozen=True)
class ServeOptions:
    models: tuple[str, ...] = ()  # none: every model in the registry, and those trained later
    host: str = "127.0.0.1"  # loopback only unless asked
    port: int = 8000  # 0: any free port (on_ready says which)
    api_key: str | None = None  # every /v1 request must send `Authorization: Bearer KEY`
    drain_seconds: float = 30.0  # after SIGTERM: how long running requests may take to finish
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self):
        object.__setattr__(self, "models", tuple(dict.fromkeys(self.models)))  # `-m char -m char` serves one
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port must be 0 (any free port) to 65535 (got {self.port})")
        if self.api_key is not None:
            _check_key(self.api_key)
        if not 0 <= self.drain_seconds < math.inf:
            raise UsageError(f"--drain-seconds must be 0 or more (got {self.drain_seconds})")


def _check_key(key: str) -> None:
    """A key some client can send: HTTP header values cannot hold control characters, and servers strip the
    whitespace around them, so such a key would turn every /v1 request away."""
    if not key.strip():
        raise UsageError("--api-key (or LSTMGEN_API_KEY) is empty; give a key, or leave it unset for no key")
    bad = next((c for c in key if ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F), None)
    if bad is not None:
        raise UsageError(
            f"--api-key (or LSTMGEN_API_KEY) holds the control character {bad!r}, which no HTTP header can carry; "
            "give a key of printable characters"
        )
    if key != key.strip(" \t"):
        raise UsageError(
            "--api-key (or LSTMGEN_API_KEY) starts or ends with whitespace, which HTTP drops from headers; "
            "give the key without it"
        )
