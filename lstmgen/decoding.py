"""The stateful decoding loop, on numpy: the prompt is read once, then one token per step with the carried
(h, c). One loop serves every backend: ONNX Runtime on the CPU (runtime.Decoder) and torch on a GPU
(model.TorchDecoder) both map (ids, h, c) -> (scores, h, c) on numpy arrays. Never imports torch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

NEG_INF = -np.inf


class Backend(Protocol):
    """What decoding needs of a model: ids (N, T) int64 and the state (n_layer, N, H) float32 in, scores
    (N, T, V) float32 (logits, or centred log-probabilities) and the new state out."""

    vocab_size: int  # V

    def forward(self, ids: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def zero_state(self, n: int) -> tuple[np.ndarray, np.ndarray]: ...


def filter_logits(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> np.ndarray:  # fmt: skip
    """logits (N, V) -> temperature-scaled float32 logits with everything outside top-k / the top-p nucleus
    at -inf. Each row's maximum is taken off first, so the scaled values are <= 0 and any positive
    temperature is safe: a tiny one sends all but the best to -inf (greedy), a huge one towards uniform."""
    logits = logits.astype(np.float32, copy=False)
    shifted = logits - logits.max(axis=-1, keepdims=True)  # <= 0; -inf stays -inf
    inverse = 1.0 / temperature
    if 1e-30 < inverse < 1e30:  # the usual case, in float32: -inf * a finite positive is -inf
        logits = shifted * np.float32(inverse)
    else:  # a subnormal or huge temperature: float64, where 0 * inf (NaN) must not arise
        with np.errstate(over="ignore"):
            scaled = (shifted.astype(np.float64) / temperature).astype(np.float32)
        logits = np.where(np.isneginf(shifted), -np.inf, scaled)
    if top_k and top_k < logits.shape[-1]:
        kth = np.partition(logits, -top_k, axis=-1)[:, -top_k][:, None]  # (N, 1): the k-th largest
        logits = np.where(logits < kth, NEG_INF, logits)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-logits, axis=-1, kind="stable")
        sorted_probs = softmax(np.take_along_axis(logits, order, axis=-1))
        # Drop a token once the mass before it already reaches top_p; the most likely token always stays.
        drop_sorted = (np.cumsum(sorted_probs, axis=-1) - sorted_probs) >= top_p
        drop_sorted[:, 0] = False  # even when top_p rounds to 0 in float32 (a subnormal top_p)
        drop = np.empty_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        logits = np.where(drop, NEG_INF, logits)
    return logits


def softmax(logits: np.ndarray) -> np.ndarray:
    e = weights(logits)
    return e / e.sum(axis=-1, keepdims=True)


def weights(logits: np.ndarray) -> np.ndarray:
    """Unnormalised probabilities exp(logits - max), float32: draw() scales its uniform to each row's total,
    so the division of a softmax is work for nothing (float32 and in place: 1.2 -> 0.3 ms of a 64-stream
    step over 5,034 words)."""
    e = logits - logits.max(axis=-1, keepdims=True)
    return np.exp(e, out=e)


def draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token per row of probs (R, V) -> (R,), by inverse-CDF sampling: one uniform per row, where a
    multinomial draw takes one per token (3.5 ms of a 6.9 ms step for 64 streams over 1,863 words, in torch).
    The rows need not sum to 1: u is scaled to each row's total, so rounding in the cumulative sum cannot
    run past the end either. A token of weight 0 is a flat step of the CDF, never the first entry above u."""
    cdf = np.cumsum(probs, axis=-1, dtype=np.float32)  # (R, V)
    u = rng.random((probs.shape[0], 1), dtype=np.float32) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=-1), probs.shape[-1] - 1)  # the first entry above u


def penalise_repeats(logits: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL's repetition penalty: logits (N, V) of tokens `seen` (N, V) are divided by `penalty` when
    positive and multiplied by it when negative, so a penalty above 1 always makes them less likely."""
    penalised = np.where(logits > 0, logits / penalty, logits * penalty)
    return np.where(seen, penalised, logits)


def ban_repeated_ngrams(logits: np.ndarray, history: list[list[int]], n: int, eor_id: int) -> np.ndarray:
    """logits (N, V) with -inf on each token that would complete an n-gram already in that stream's history."""
    logits = logits.copy()
    for j, ids in enumerate(history):
        if len(ids) < n - 1:
            continue
        prefix = ids[len(ids) - n + 1 :] if n > 1 else []
        followers = {ids[k + n - 1] for k in range(len(ids) - n + 1) if ids[k : k + n - 1] == prefix}
        followers.discard(eor_id)  # ending the text is always allowed
        if followers:
            logits[j, list(followers)] = NEG_INF
    return logits


def is_looping(ids: list[int], min_span: int = 16, max_period: int = 40) -> bool:
    """Whether the output ends in one block repeated: its last max(3 * period, min_span) tokens have a
    period of at most max_period tokens ("back to back to back to ..." under greedy decoding)."""
    n = len(ids)
    for period in range(1, max_period + 1):
        span = max(3 * period, min_span)
        if span > n:
            break
        if ids[-1] != ids[-1 - period]:  # the usual case, checked cheaply: this runs per stream per step
            continue
        if all(ids[n - k] == ids[n - k - period] for k in range(2, span - period + 1)):
            return True
    return False


PROMPT_CHUNK = 512  # tokens per forward call while reading a prompt: scores (1, 512, V) at most in memory


def read_prompt(backend: Backend, ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores after the last token (1, 1, V), h, c) of `ids` read from the zero state, in chunks with the
    state carried: the same result as one call, in memory bounded by PROMPT_CHUNK whatever the length (a
    100,000-token prompt in one call would hold 100,000 x V scores)."""
    h, c = backend.zero_state(1)
    for start in range(0, len(ids), PROMPT_CHUNK):
        scores, h, c = backend.forward(np.array([ids[start : start + PROMPT_CHUNK]], dtype=np.int64), h, c)
    return scores[:, -1:], h, c


def read_prompts(backend: Backend, prompts: list[list[int]], eor_id: int, num_samples: int):
    """Each prompt read once, as <eor> + prompt from the zero state (the way training saw a record start),
    then repeated for its samples: (scores of the next token (N, V), h, c), N = len(prompts) * num_samples,
    prompt-major."""
    starts = [read_prompt(backend, [eor_id, *p]) for p in prompts]
    scores = np.concatenate([s[:, -1] for s, _, _ in starts]).repeat(num_samples, axis=0)  # (N, V)
    h = np.concatenate([h for _, h, _ in starts], axis=1).repeat(num_samples, axis=1)  # (n_layer, N, H)
    c = np.concatenate([c for _, _, c in starts], axis=1).repeat(num_samples, axis=1)
    return scores, h, c


def generate(
    backend: Backend,
    prompts: list[list[int]],
    eor_id: int,
    options,
    *,
    rngs: list[np.random.Generator] | None = None,
    banned: tuple[int, ...] = (),
    first_allowed: np.ndarray | None = None,
    stop: Callable[[int, int], bool] | None = None,
) -> Iterator[np.ndarray]:
    """Yield the next token of every stream, (N,) int64 per step, until all have ended.

    N = len(prompts) * options.num_samples streams, prompt-major: stream j continues prompts[j // num_samples],
    so different prompts share one batched forward per step. Every step after the prompt's read feeds only
    the last token with the carried (h, c): O(1) per token, never re-encoding the text. Prompt p draws from
    rngs[p] alone, so its samples do not depend on the other prompts in the batch.

    A stream ends at <eor>, after max_tokens, or when `stop(stream, token)` says so; an ended stream keeps
    yielding <eor>, and callers stop reading it at its first <eor>. Tokens in `banned` are never produced.
    `first_allowed` (N, V) bool: the tokens each stream may start with (BPE token healing).
    `options` is a sample.SampleOptions: no_repeat_ngram n bans an n-gram's second occurrence in prompt +
    output; repetition_penalty p > 1 divides the logits of tokens already there by p (multiplies when
    negative), as in CTRL.
    """
    o = options
    ns, n_prompt = o.num_samples, len(prompts)
    n = n_prompt * ns
    rngs = rngs or [np.random.default_rng(p) for p in range(n_prompt)]
    history = [list(p) for p in prompts for _ in range(ns)]  # prompt + output, for no_repeat_ngram
    logits, h, c = read_prompts(backend, prompts, eor_id, ns)
    done = np.zeros(n, dtype=bool)
    banned_ids = np.array(banned, dtype=np.int64)  # e.g. <unk>: never what users want
    penalise = o.repetition_penalty != 1.0
    if penalise:
        seen = np.zeros(logits.shape, dtype=bool)  # (N, V): tokens in prompt + output so far
        for j, ids in enumerate(history):
            seen[j, ids] = True
    for i in range(o.max_tokens):
        raw = logits
        if banned:
            logits = logits.copy()
            logits[:, banned_ids] = NEG_INF
        if penalise:
            logits = penalise_repeats(logits, seen, o.repetition_penalty)
        if o.no_repeat_ngram:
            logits = ban_repeated_ngrams(logits, history, o.no_repeat_ngram, eor_id)
        if i == 0 and first_allowed is not None:
            # A stream whose every allowed start is banned (by no_repeat_ngram) keeps its allowed starts.
            allowed = np.where(first_allowed, logits, NEG_INF)
            stuck = np.isneginf(allowed).all(axis=-1, keepdims=True)
            logits = np.where(stuck, np.where(first_allowed, raw, NEG_INF), allowed)
        if o.greedy:
            nxt = logits.argmax(axis=-1)
        else:
            probs = weights(filter_logits(logits, o.temperature, o.top_k, o.top_p)).reshape(n_prompt, ns, -1)
            nxt = np.concatenate([draw(rows, rng) for rows, rng in zip(probs, rngs, strict=True)])
        nxt = np.where(done, eor_id, nxt).astype(np.int64)
        tokens = nxt.tolist()
        if stop is not None:  # a stop string or a loop ends the stream here; this token is its last
            ended = [not d and stop(j, t) for j, (d, t) in enumerate(zip(done.tolist(), tokens, strict=True))]
        yield nxt
        done |= nxt == eor_id
        if stop is not None:
            done |= np.array(ended, dtype=bool)
        if penalise:
            seen[np.arange(n), nxt] = True
        if o.no_repeat_ngram:
            for ids, t in zip(history, tokens, strict=True):
                ids.append(t)
        if done.all() or i == o.max_tokens - 1:
            return  # no forward for a token nobody will read
        scores, h, c = backend.forward(nxt[:, None], h, c)  # (N, 1, V)
        logits = scores[:, -1]
