"""What the server accepts: its caps, OpenAI's error shape, and the completion request checked field by field.

Only known fields with invalid values are refused (400, naming the field and what to send instead); fields
real clients send that lstmgen does not use (`user`, `logit_bias`, `logprobs`, `presence_penalty`, ...)
are accepted and ignored. Model names are registry names, checked as such: no request can name a path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from .. import registry
from ..errors import LstmgenError, OptionError, UsageError, shown_int
from ..sample import SampleOptions, check_seed
from .options import Limits


class ApiError(Exception):
    """A request the server refuses: an HTTP status and OpenAI's error JSON."""

    TYPES = {401: "authentication_error", 429: "rate_limit_error"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        """The JSON sent: every error a client sees is made here, so this is where server paths are hidden."""
        kind = self.TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": public(self.message), "type": kind, "param": self.param, "code": self.code}}


def public(message: str) -> str:
    """`message` as a client may see it: paths in the registry relative to it (`models/char/best.onnx`), the
    registry itself as "the server's registry", so clients learn nothing of the server's filesystem. The
    server's own log keeps the full paths."""
    try:
        root = registry.home()
    except LstmgenError:
        return message
    if root == Path(root.anchor):  # LSTMGEN_HOME=/: nothing sensible to cut
        return message
    for shown in sorted({str(root), str(root.resolve())}, key=len, reverse=True):  # a symlinked home: both
        # The registry, or a path in it; not a sibling that shares its name's start (`home2`).
        message = re.sub(
            re.escape(shown) + r"(/|(?![\w-]))", lambda m: "" if m[1] else "the server's registry", message
        )
    return message


@dataclass(frozen=True)
class Completion:
    """A checked POST /v1/completions request."""

    model: str
    prompts: list[str]
    listed: bool  # the prompt came as a list
    options: SampleOptions  # num_samples: n
    seed: int | None  # None: a random one
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the token counts
    echo: bool  # the prompt before each completion


API_FIELDS = {"num_samples": "n"}  # a SampleOptions field the request names otherwise
DEFAULTS = SampleOptions()  # `lstmgen sample`'s defaults: the same request gives the same text


def parse_completion(body, limits: Limits) -> Completion:
    """The request body (parsed JSON) -> Completion, or ApiError(400) naming the first bad field."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object, not {_kind(body)}")
    model = _field(body, "model", str, None)
    if model is None:
        raise ApiError(400, "model is required: a model name from GET /v1/models", "model")
    try:
        registry.check_name(model, "model name")
    except LstmgenError as e:
        raise ApiError(400, str(e), "model", "model_not_found") from None
    prompt = body.get("prompt")
    listed = isinstance(prompt, list)
    if prompt is None:
        prompts = [""]  # like OpenAI's <|endoftext|>: text from the start of a record
    elif isinstance(prompt, str):
        prompts = [prompt]
    elif listed and prompt and all(isinstance(p, str) for p in prompt):
        prompts = prompt
    else:
        raise ApiError(
            400, "prompt must be a string or a non-empty list of strings (lstmgen reads text, not token ids)", "prompt"
        )
    n = _int(body, "n", 1, 1)
    if n * len(prompts) > limits.n:
        raise ApiError(
            400,
            f"n x prompts asks for {shown_int(n * len(prompts))} completions; the server's cap is {limits.n} per "
            "request (--limit-n): send fewer prompts or a smaller n",
            "n",
        )
    max_tokens = _int(body, "max_tokens", min(DEFAULTS.max_tokens, limits.max_tokens), 1)
    temperature = _number(body, "temperature", DEFAULTS.temperature)
    if temperature < 0:  # the API's 0 is greedy decoding; SampleOptions takes greedy apart from a temperature
        raise ApiError(400, f"temperature must be 0 (greedy) or more (got {temperature})", "temperature")
    top_p = _number(body, "top_p", None)
    top_k = _int(body, "top_k", None, 0) or None  # 0: off, as in llama.cpp
    penalty = _number(body, "repetition_penalty", 1.0)
    no_repeat = _int(body, "no_repeat_ngram", 0, 0)
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, "stop must be a non-empty string or a list of them", "stop")
    if len(stops) > limits.stop:
        raise ApiError(400, f"stop has {len(stops)} strings; the cap is {limits.stop}", "stop")
    seed = _int(body, "seed", None, 0)
    stream = _field(body, "stream", bool, False)
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise ApiError(400, f"stream_options must be an object, not {_kind(stream_options)}", "stream_options")
    include_usage = _field(stream_options or {}, "include_usage", bool, False, "stream_options.include_usage")
    skip_unknown = _field(body, "skip_unknown", bool, False)
    echo = _field(body, "echo", bool, False)
    try:  # `lstmgen sample`'s options and their rules, under the server's caps: the same request, the same text
        options = SampleOptions(
            max_tokens=max_tokens,
            temperature=temperature or DEFAULTS.temperature,
            top_k=top_k,
            top_p=top_p,
            greedy=temperature == 0,
            num_samples=n,
            skip_unknown=skip_unknown,
            stop=tuple(stops),
            no_repeat_ngram=no_repeat,
            repetition_penalty=penalty,
            limit_prompt_chars=limits.prompt_chars,
            limit_max_tokens=limits.max_tokens,
            limit_num_samples=limits.n,
        )
        if seed is not None:
            check_seed(seed)
    except OptionError as e:  # named as the request names it: top_p, n
        field = API_FIELDS.get(e.option, e.option)
        raise ApiError(400, e.named(field), field) from None
    for i, p in enumerate(prompts):  # `lstmgen sample`'s cap, under the server's limit
        try:
            options.check_prompt(p, f"prompt[{i}]" if listed else "prompt")
        except UsageError as e:
            raise ApiError(400, str(e), "prompt", "prompt_too_long") from None
    return Completion(model, prompts, listed, options, seed, stream, stream and include_usage, echo)


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _field(body: dict, name: str, kind: type, default, shown: str | None = None):
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        what = {str: "a string", bool: "true or false"}[kind]
        raise ApiError(400, f"{shown or name} must be {what}, not {_kind(value)}", shown or name)
    return value


def _int(body: dict, name: str, default, least: int):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 5.0 from a client that has only one number type
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, f"{name} must be an integer, not {_kind(value)}", name)
    if value < least:
        raise ApiError(400, f"{name} must be at least {least} (got {shown_int(value)})", name)
    return value


def _number(body: dict, name: str, default):
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ApiError(
            400, f"{name} must be a finite number, not {_kind(value) if not isinstance(value, float) else value}", name
        )
    return float(value)
