"""The stateful decoding loop, on numpy: the prompt is read once, then one token per step with the carried
(h, c). One loop serves every backend: ONNX Runtime on the CPU (runtime.Decoder) and torch on a GPU
(model.TorchDecoder) both map (ids, h, c) -> (scores, h, c) on numpy arrays. Never imports torch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

NEG_INF = -np.inf


class Backend(Protocol):
    """What decoding needs of a model: ids (N, T) int64 and the state (n_layer, N, H) float32 in, scores
    (N, T, V) float32 (logits, or centred log-probabilities) and the new state out."""

    vocab_size: int  # V

    def forward(self, ids: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def zero_state(self, n: int) -> tuple[np.ndarray, np.ndarray]: ...


def filter_logits(logits: np.ndarray, temperature=1.0, top_k=None, top_p=None) -> np.ndarray:
    """logits (N, V) -> temperature-scaled float32 logits with everything outside top-k / the top-p nucleus
    at -inf. temperature, top_k and top_p are one value for every row, or one per row ((N,) sequences; a
    top_k or top_p of None leaves that row unfiltered), so streams with different settings share one call.

    Each row's maximum is taken off first, so the scaled values are <= 0 and any positive temperature is
    safe: a tiny one sends all but the best to -inf (greedy), a huge one towards uniform."""
    n, v = logits.shape
    logits = logits.astype(np.float32, copy=False)
    shifted = logits - logits.max(axis=-1, keepdims=True)  # <= 0; -inf stays -inf
    # In Python floats, not numpy's: this runs at every decoding step, where a numpy call's overhead counts.
    temperatures = temperature if isinstance(temperature, (list, tuple, np.ndarray)) else (temperature,)
    inverse = [1.0 / t if t else math.inf for t in map(float, temperatures)]
    usual = [1e-30 < i < 1e30 for i in inverse]  # in float32: -inf * a finite positive is -inf
    if all(usual):
        same = len(set(inverse)) == 1  # one scale for every row: (N,) of equal values multiply alike
        logits = shifted * (np.float32(inverse[0]) if same else np.array(inverse, dtype=np.float32)[:, None])
    else:  # a subnormal or huge temperature: its row divided in float64, where no 0 * inf (NaN) can arise
        temperature = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (n,))
        usual = np.broadcast_to(np.array(usual), (n,))
        logits = np.empty_like(shifted)
        # each row as it would be alone: the other rows' temperatures must not change its arithmetic
        logits[usual] = shifted[usual] * (1.0 / temperature[usual]).astype(np.float32)[:, None]
        with np.errstate(over="ignore", divide="ignore"):
            logits[~usual] = (shifted[~usual].astype(np.float64) / temperature[~usual, None]).astype(np.float32)
    top_k = top_k if isinstance(top_k, (list, tuple, np.ndarray)) else [top_k] * n
    top_p = top_p if isinstance(top_p, (list, tuple, np.ndarray)) else [top_p] * n
    for k in {k for k in top_k if k and k < v}:  # one partition per distinct k: rows sharing it go together
        rows = np.array([i for i, ki in enumerate(top_k) if ki == k])
        sub = logits[rows]
        kth = np.partition(sub, -k, axis=-1)[:, -k][:, None]  # (R, 1): the k-th largest
        logits[rows] = np.where(sub < kth, NEG_INF, sub)
    nucleus = [i for i, p in enumerate(top_p) if p is not None and p < 1.0]
    if nucleus:
        rows = np.array(nucleus)
        sub, p = logits[rows], np.array([top_p[i] for i in nucleus], dtype=np.float64)[:, None]
        order = np.argsort(-sub, axis=-1, kind="stable")
        sorted_probs = softmax(np.take_along_axis(sub, order, axis=-1))
        # Drop a token once the mass before it already reaches top_p; the most likely token always stays,
        # even when top_p rounds to 0 in float32 (a subnormal top_p).
        drop_sorted = (np.cumsum(sorted_probs, axis=-1) - sorted_probs) >= p
        drop_sorted[:, 0] = False
        drop = np.empty_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        logits[rows] = np.where(drop, NEG_INF, sub)
    return logits


def softmax(logits: np.ndarray) -> np.ndarray:
    e = weights(logits)
    return e / e.sum(axis=-1, keepdims=True)


def weights(logits: np.ndarray) -> np.ndarray:
    """Unnormalised probabilities exp(logits - max), float32: pick() scales its uniform to each row's total,
    so the division of a softmax is work for nothing (float32 and in place: 1.2 -> 0.3 ms of a 64-stream
    step over 5,034 words)."""
    e = logits - logits.max(axis=-1, keepdims=True)
    return np.exp(e, out=e)


def pick(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The token of each row of probs (R, V) at its uniform u (R, 1) in [0, 1): (R,), by inverse-CDF sampling:
    one uniform per row, where a multinomial draw takes one per token (3.5 ms of a 6.9 ms step for 64 streams
    over 1,863 words, in torch). The rows need not sum to 1: u is scaled to each row's total, so rounding in
    the cumulative sum cannot run past the end either. A token of weight 0 is a flat step of the CDF, never
    the first entry above u."""
    cdf = np.cumsum(probs, axis=-1, dtype=np.float32)  # (R, V)
    return np.minimum((cdf <= u * cdf[:, -1:]).sum(axis=-1), probs.shape[-1] - 1)  # the first entry above u


def penalise_repeats(logits: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL's repetition penalty: logits (N, V) of tokens `seen` (N, V) are divided by `penalty` when
    positive and multiplied by it when negative, so a penalty above 1 always makes them less likely."""
    penalised = np.where(logits > 0, logits / penalty, logits * penalty)
    return np.where(seen, penalised, logits)


def ban_repeated_ngrams(logits: np.ndarray, history: list[list[int]], n, eor_id: int) -> np.ndarray:
    """logits (N, V) with -inf on each token that would complete an n-gram already in that stream's history;
    n is one value for every row or one per row (0: that row is left alone)."""
    logits = logits.copy()
    for j, ids in enumerate(history):
        nj = n[j] if isinstance(n, (list, tuple)) else n
        if not nj or len(ids) < nj - 1:
            continue
        prefix = ids[len(ids) - nj + 1 :] if nj > 1 else []
        followers = {ids[k + nj - 1] for k in range(len(ids) - nj + 1) if ids[k : k + nj - 1] == prefix}
        followers.discard(eor_id)  # ending the text is always allowed
        if followers:
            logits[j, list(followers)] = NEG_INF
    return logits


def is_looping(ids: list[int], min_span: int = 16, max_period: int = 40) -> bool:
    """Whether the output ends in one block repeated: its last max(3 * period, min_span) tokens have a
    period of at most max_period tokens ("back to back to back to ..." under greedy decoding)."""
    n = len(ids)
    if n < min_span:
        return False
    # This runs per stream per step: only the periods p where the newest token equals the one p back are
    # candidates, found by list.index (a scan in C), each then checked by one slice comparison.
    last, first = ids[-1], max(0, n - 1 - max_period)
    window = ids[first : n - 1]  # the tokens 1..max_period back
    i = -1
    while True:
        try:
            i = window.index(last, i + 1)
        except ValueError:
            return False
        period = n - 1 - (first + i)
        span = max(3 * period, min_span)
        if span > n or ids[n - 2] != ids[n - 2 - period]:  # the token before: most candidates end here
            continue
        if ids[n - span + period : n] == ids[n - span : n - period]:
            return True


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


class Draws:
    """The random generator the samples of one prompt share. Each step that any of them samples draws one
    uniform per sample, in sample order, so sample k's draws are the same whichever of its siblings are still
    running, and whatever other streams share the step: seeded output does not depend on the batch."""

    def __init__(self, rng: np.random.Generator, size: int):
        self.rng, self.size = rng, size


@dataclass
class Stream:
    """One stream's decoding state between steps: all that choosing its next token needs besides its scores.

    options: anything with temperature, top_k, top_p, greedy, no_repeat_ngram and repetition_penalty (a
    sample.SampleOptions), so streams with different settings share a step. draws, member: its generator and
    its row in that generator's draws. first_allowed (V,) bool: the tokens it may start with (BPE token
    healing), or None."""

    options: object
    draws: Draws
    member: int
    history: list[int]  # prompt + output so far: no_repeat_ngram's n-grams, repetition_penalty's seen tokens
    first_allowed: np.ndarray | None = None
    steps: int = 0  # tokens chosen so far
    seen: np.ndarray | None = field(default=None, repr=False)  # (V,) bool, made at the first penalised step


def choose(scores: np.ndarray, streams: list[Stream], eor_id: int, banned: tuple[int, ...] = ()) -> np.ndarray:
    """The next token of each stream from its scores (N, V) (row j belongs to streams[j]): (N,) int64, also
    recorded in each stream's state. The one per-step decision of every decoding loop: `generate` and the
    server's scheduler both call it, so a seed gives the same tokens in both.

    Tokens in `banned` are never produced. A stream's first token is one of its first_allowed, unless
    no_repeat_ngram bans all of those (then it keeps them). no_repeat_ngram n bans an n-gram's second
    occurrence in prompt + output; repetition_penalty p > 1 divides the logits of tokens already there by p
    (multiplies when negative), as in CTRL. Greedy streams take the argmax; the others sample from
    temperature / top-k / top-p, each drawing its uniform from its Draws."""
    n, v = scores.shape
    logits = scores
    if banned:
        logits = logits.copy()
        logits[:, np.array(banned, dtype=np.int64)] = NEG_INF  # e.g. <unk>: never what users want
    penalised = [j for j, s in enumerate(streams) if s.options.repetition_penalty != 1.0]
    if penalised:
        for j in penalised:
            s = streams[j]
            if s.seen is None:
                s.seen = np.zeros(v, dtype=bool)
                s.seen[s.history] = True
        rows = np.array(penalised)
        logits = logits.copy() if logits is scores else logits
        # (R, 1) in the scores' dtype: a float32 row divided as by a Python float, as one shared penalty was
        penalty = np.array([streams[j].options.repetition_penalty for j in penalised], dtype=logits.dtype)[:, None]
        logits[rows] = penalise_repeats(logits[rows], np.stack([streams[j].seen for j in penalised]), penalty)
    ngram = [s.options.no_repeat_ngram for s in streams]
    if any(ngram):
        logits = ban_repeated_ngrams(logits, [s.history for s in streams], ngram, eor_id)
    first = [j for j, s in enumerate(streams) if s.steps == 0 and s.first_allowed is not None]
    if first:
        rows = np.array(first)
        allowed_mask = np.stack([streams[j].first_allowed for j in first])  # (R, V)
        # A stream whose every allowed start is banned (by no_repeat_ngram) keeps its allowed starts.
        allowed = np.where(allowed_mask, logits[rows], NEG_INF)
        stuck = np.isneginf(allowed).all(axis=-1, keepdims=True)
        logits = logits.copy() if logits is scores else logits
        logits[rows] = np.where(stuck, np.where(allowed_mask, scores[rows], NEG_INF), allowed)
    nxt = np.empty(n, dtype=np.int64)
    greedy = [s.options.greedy for s in streams]
    sampled = [j for j, g in enumerate(greedy) if not g]
    if len(sampled) < n:
        rows = [j for j, g in enumerate(greedy) if g]
        nxt[rows] = logits[rows].argmax(axis=-1)
    if sampled:
        picked = [streams[j].options for j in sampled]
        temperature, top_k, top_p = ([getattr(o, a) for o in picked] for a in ("temperature", "top_k", "top_p"))
        rows = logits if len(sampled) == n else logits[sampled]
        probs = weights(filter_logits(rows, temperature, top_k, top_p))  # pick() needs no softmax
        nxt[sampled] = pick(probs, _uniforms([streams[j] for j in sampled]))
    for s, t in zip(streams, nxt.tolist(), strict=True):
        s.steps += 1
        s.history.append(t)
        if s.seen is not None:
            s.seen[t] = True
    return nxt


def _uniforms(streams: list[Stream]) -> np.ndarray:
    """Each stream's uniform for this step, (R, 1) float32: every generator among them draws once, one value
    per member, and each stream takes its member's (see Draws)."""
    drawn: dict[int, np.ndarray] = {}  # id(Draws) -> (size, 1)
    for s in streams:
        if id(s.draws) not in drawn:
            drawn[id(s.draws)] = s.draws.rng.random((s.draws.size, 1), dtype=np.float32)
    return np.concatenate([drawn[id(s.draws)][s.member : s.member + 1] for s in streams])


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
    `first_allowed` (N, V) bool: the tokens each stream may start with (BPE token healing). `options` is a
    sample.SampleOptions; each step's choice is `choose`'s (see there for the options' meaning).
    """
    o = options
    ns, n_prompt = o.num_samples, len(prompts)
    n = n_prompt * ns
    rngs = rngs or [np.random.default_rng(p) for p in range(n_prompt)]
    draws = [Draws(rng, ns) for rng in rngs]
    streams = [
        Stream(o, draws[j // ns], j % ns, list(prompts[j // ns]), None if first_allowed is None else first_allowed[j])
        for j in range(n)
    ]
    logits, h, c = read_prompts(backend, prompts, eor_id, ns)
    done = np.zeros(n, dtype=bool)
    for i in range(o.max_tokens):
        # Ended streams still choose (and draw): their siblings' draws stay where a lone run has them.
        nxt = np.where(done, eor_id, choose(logits, streams, eor_id, banned)).astype(np.int64)
        tokens = nxt.tolist()
        if stop is not None:  # a stop string or a loop ends the stream here; this token is its last
            ended = [not d and stop(j, t) for j, (d, t) in enumerate(zip(done.tolist(), tokens, strict=True))]
        yield nxt
        done |= nxt == eor_id
        if stop is not None:
            done |= np.array(ended, dtype=bool)
        if done.all() or i == o.max_tokens - 1:
            return  # no forward for a token nobody will read
        scores, h, c = backend.forward(nxt[:, None], h, c)  # (N, 1, V)
        logits = scores[:, -1]
