"""Text in, text out: prompts encoded, decoded (decoding.generate), stopped at stop strings or loops,
streamed, and batched from stdin with a seed per prompt. Never prints, and never imports torch."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .decoding import generate, is_looping
from .errors import LstmgenError, OptionError, UsageError, shown_int
from .inference import Loaded
from .labels import label_id, parse_labelled
from .tokenize import Vocab, check_utf8


@dataclass(frozen=True)
class SampleOptions:
    """How to decode, checked when made: every caller (CLI, library, training's preview) gets the same rules.
    The defaults are `lstmgen sample`'s."""

    max_tokens: int = 300  # end after this many tokens if no <eor> came
    temperature: float = 0.8  # below 1: safer, above 1: wilder
    top_k: int | None = None  # sample only from the k most likely tokens
    top_p: float | None = None  # sample only from the smallest set holding this much probability
    greedy: bool = False  # always the most likely token (tends to loop)
    num_samples: int = 1  # per prompt, decoded together
    skip_unknown: bool = False  # char models: drop prompt characters the vocabulary lacks
    stop: tuple[str, ...] = ()  # end a sample before any of these strings
    no_repeat_ngram: int = 0  # never repeat an n-gram of this many tokens (0: off)
    repetition_penalty: float = 1.0  # CTRL's: above 1 makes tokens already used less likely
    # Caps, each raised by its --limit-* option. Memory: a prompt is read in chunks (decoding.PROMPT_CHUNK),
    # so its length costs time, not memory; a step holds a few (samples, V) float arrays, and the output
    # samples x tokens ids.
    limit_prompt_chars: int = 100_000
    limit_max_tokens: int = 100_000
    limit_num_samples: int = 1_024

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(self.stop))
        for cap in ("limit_prompt_chars", "limit_max_tokens", "limit_num_samples"):  # before what they bound
            if getattr(self, cap) < 1:
                raise OptionError(cap, f"must be at least 1 (got {shown_int(getattr(self, cap))})")
        if not 0 < self.temperature < math.inf:  # NaN fails this too
            raise OptionError("temperature", f"must be a number > 0 (got {self.temperature})",
                              "use --greedy for argmax decoding")  # fmt: skip
        if self.top_k is not None and self.top_k < 1:
            raise OptionError("top_k", f"must be at least 1 (got {shown_int(self.top_k)})")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise OptionError("top_p", f"must be in (0, 1] (got {self.top_p})")
        for option, limit in (("max_tokens", self.limit_max_tokens), ("num_samples", self.limit_num_samples)):
            value = getattr(self, option)
            if value < 1:
                raise OptionError(option, f"must be at least 1 (got {shown_int(value)})")
            if value > limit:
                raise OptionError(option, f"is {shown_int(value)}, over the limit of {limit:,} set by "
                                          f"--limit-{option.replace('_', '-')}")  # fmt: skip
        if self.no_repeat_ngram < 0:
            raise OptionError("no_repeat_ngram", f"must be 0 (off) or more (got {shown_int(self.no_repeat_ngram)})")
        if not 1e-6 <= self.repetition_penalty <= 1e6:  # NaN fails this too; beyond, scores overflow float32
            raise OptionError("repetition_penalty", f"must be between 1e-6 and 1e6, 1 for none "
                                                    f"(got {self.repetition_penalty})")  # fmt: skip
        if not all(self.stop):
            raise OptionError("stop", "needs a non-empty string")
        if sum(map(len, self.stop)) > self.limit_prompt_chars:
            raise OptionError("stop", f"strings are longer than the prompt limit ({self.limit_prompt_chars:,})")

    def check_prompt(self, prompt: str, where: str) -> None:
        """Refuse a prompt over the cap; `where` names it ("line 3 of stdin", "prompt[1]")."""
        if len(prompt) > self.limit_prompt_chars:
            raise UsageError(
                # "longer than": a stdin line is read only up to the limit and a character, so its length is unknown
                f"{where} is longer than {self.limit_prompt_chars:,} characters, the limit set by --limit-prompt-chars"
            )


@dataclass(frozen=True)
class SampleRequest:
    """What `lstmgen sample` is asked for as a whole: how each sample decodes (options), where the prompts
    come from, and how the samples are reported. Checked when made: which of these combine is decided here,
    and the CLI only reads and writes."""

    options: SampleOptions = SampleOptions()  # frozen: one shared default is safe
    prompt: str | None = None  # seed text; "-": one prompt per line of stdin; None: stdin if piped, else ""
    labels: tuple[str, ...] = ()  # generate after each label's token; ("-",): JSON lines {label, prompt} on stdin
    stream: bool = False  # the text as it grows: one sample of one prompt at a time
    json_out: bool = False  # each sample with its longest copy of training text
    novel: bool = False  # draw again samples that copy more than max_copy training characters
    max_copy: int | None = None  # None: novelty.MAX_COPY
    max_redraws: int = 5

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.stream and (self.json_out or self.options.num_samples > 1 or self.novel):
            raise UsageError("--stream prints one sample as text as it grows; drop --json, --num-samples and --novel")
        given = [flag for flag, on in (("--top-k", self.options.top_k is not None),
                                       ("--top-p", self.options.top_p is not None)) if on]  # fmt: skip
        if self.options.greedy and given:  # the server's temperature 0 keeps a client's default top_p: not here
            raise UsageError(f"--greedy takes the most likely token, which {' and '.join(given)} would not change; "
                             "drop one")  # fmt: skip
        if (self.max_copy is not None or self.max_redraws != SampleRequest.max_redraws) and not self.novel:
            raise UsageError("--max-copy and --max-redraws set what --novel redraws; add --novel")
        if self.labelled_lines and (len(self.labels) > 1 or self.prompt not in (None, "-")):
            raise UsageError(
                '--label - reads each prompt with its label from stdin, as JSON lines {"label": L, "prompt": P}; '
                "drop PROMPT and the other --label options"
            )
        if self.stream and len(self.labels) > 1:
            raise UsageError("--stream prints one sample as it grows; give one --label")
        if self.prompt == "":
            raise UsageError("the prompt is empty; give seed text, or omit PROMPT to sample from the start of a record")

    @property
    def labelled_lines(self) -> bool:
        """Each stdin line is JSON {"label": L, "prompt": P} (`--label -`)."""
        return "-" in self.labels

    def reads_stdin(self, stdin_is_terminal: bool) -> bool:
        return self.labelled_lines or self.prompt == "-" or (self.prompt is None and not stdin_is_terminal)

    @property
    def prompts_per_batch(self) -> int:
        """Different prompts share each decoding step, up to STREAMS_PER_BATCH streams: each prompt is
        len(labels) x num_samples of them (one prompt with more is still one batch); a stream shows one
        sample at a time."""
        if self.stream:
            return 1
        return max(1, STREAMS_PER_BATCH // (self.options.num_samples * max(1, len(self.labels))))

    @property
    def line_limit(self) -> int:
        """The longest stdin line read whole (a longer one is refused by check_prompt)."""
        return self.options.limit_prompt_chars + (LABEL_LINE_EXTRA if self.labelled_lines else 0)

    def no_input(self) -> UsageError | None:
        """Why an empty stdin is an error for this request, or None (then: one sample from a record's start)."""
        if self.labelled_lines:
            return UsageError('no prompts on stdin (--label -): pipe JSON lines {"label": L, "prompt": P}')
        if self.prompt == "-":
            return UsageError(
                "no prompts on stdin (PROMPT is -): pipe one prompt per line, or give PROMPT as an argument"
            )
        return None

    def checker(self, loaded, on_note: Callable[[str], None] | None = None):
        """The novelty judge for --json (each sample's longest copy) and --novel (redraws), or None when
        neither asks. Made before any prompt is read: a --novel without training records fails at once."""
        if not (self.json_out or self.novel):
            return None
        from .novelty import MAX_COPY, Checker

        limit = (MAX_COPY if self.max_copy is None else self.max_copy) if self.novel else None
        return Checker(loaded, self.options, limit, self.max_redraws, on_note=on_note)


SEED_LIMIT = 2**63  # a seed is an int64, as numpy's generators and every JSON reader that reports it take it


def check_seed(seed: int) -> None:
    if not 0 <= seed < SEED_LIMIT:
        raise OptionError("seed", f"must be between 0 and 2^63 - 1 (got {shown_int(seed)})")


def prompt_seed(seed: int, i: int) -> int:
    """The seed of prompt i of a batch (stdin's lines, a request's prompts): seed + i, within the seed range.
    So each prompt's text depends on the seed and its place, never on what else shares its batch."""
    return (seed + i) % SEED_LIMIT


@dataclass
class Sample:
    prompt: str
    text: str  # prompt + completion
    completion: str
    tokens: int  # generated tokens, <eor> not counted
    stop_reason: str  # "eor", "max_tokens", "stop" (a --stop string) or "loop" (repeating itself)
    seed: int
    label: str | None = None  # the record label generation started after (labels.py)


def sample(
    loaded: Loaded,
    prompt: str,
    options: SampleOptions = SampleOptions(),  # noqa: B008 - frozen: one shared default is safe
    *,
    seed: int = 0,
    on_text: Callable[[str], None] | None = None,
    label: str | None = None,
) -> list[Sample]:
    """Complete `prompt` options.num_samples times (after `label`'s token): sample_many() for one prompt."""
    return sample_many(loaded, [prompt], options, seeds=[seed], on_text=on_text, labels=[label])[0]


def sample_many(
    loaded: Loaded,
    prompts: list[str],
    options: SampleOptions = SampleOptions(),  # noqa: B008 - frozen: one shared default is safe
    *,
    seeds: list[int] | None = None,
    on_text: Callable[[str], None] | None = None,
    labels: list[str | None] | None = None,
) -> list[list[Sample]]:
    """Complete each prompt num_samples times, all prompts in one batch; a list of samples per prompt.
    `labels[p]` (a label of the model's, or None) is read before prompt p, as each record starts with its
    label in training: generation follows that label's records.

    Prompt p draws from its own generator seeded with seeds[p] (default p), so its samples are the ones
    sample(loaded, prompts[p], seed=seeds[p]) gives, whatever else is in the batch (up to float rounding of
    the batched forward). Prompts are encoded (and BPE ones token-healed) by `prepare`.

    A completion ends at an end-of-record token, before the first of the `stop` strings, when it is caught
    repeating itself (stop reason "loop", see is_looping), or after max_tokens (see TextStream).

    `on_text(piece)` (one prompt, one sample) receives the prompt as read, then the completion as it grows,
    each piece once; text that could still turn out to begin a stop string (or, for BPE, a partly generated
    character) is held back until it cannot.
    """
    num_samples, stop = options.num_samples, options.stop
    if on_text is not None and (num_samples != 1 or len(prompts) != 1):
        raise ValueError("on_text streams a single sample")
    vocab = loaded.vocab
    seeds = list(range(len(prompts))) if seeds is None else seeds
    labels = [None] * len(prompts) if labels is None else labels
    label_ids = [None if n is None else label_id(vocab, n, loaded.name) for n in labels]
    read = prepare(vocab, prompts, options, label_ids)
    streams = [TextStream(vocab, read.reads[j // num_samples], read.tokens[j // num_samples], stop)
               for j in range(len(prompts) * num_samples)]  # fmt: skip
    if on_text is not None:
        on_text(read.reads[0])
    for _ in generate(
        loaded.backend,
        read.ids,
        vocab.eor_id,
        options,
        rngs=[np.random.default_rng(s) for s in seeds],
        banned=banned_ids(vocab),
        first_allowed=read.first_allowed,
        stop=lambda j, tok: streams[j].add(tok),
    ):
        if on_text is not None:
            piece = streams[0].piece()
            if piece:
                on_text(piece)
    out: list[list[Sample]] = [[] for _ in prompts]
    for j, s in enumerate(streams):
        text, completion = s.result()
        p = j // num_samples
        out[p].append(Sample(prompts[p], text, completion, len(s.tokens), s.reason, seeds[p], labels[p]))
    if on_text is not None:
        rest = streams[0].rest()
        if rest:
            on_text(rest)
    return out


@dataclass
class Prompts:
    """Prompts as decoding reads them (`prepare`)."""

    ids: list[list[int]]  # per prompt: the token ids to read (a BPE prompt without its healed last token)
    reads: list[str]  # per prompt: its text as read (without characters skip_unknown dropped)
    tokens: list[list[str]]  # per prompt: its tokens as text, matching ids
    first_allowed: np.ndarray | None  # (N, V) bool, N = len(ids) * num_samples: BPE healing's first tokens


def prepare(
    vocab: Vocab, prompts: list[str], options: SampleOptions, label_ids: list[int | None] | None = None
) -> Prompts:
    """Encode prompts for decoding with options.num_samples samples each. Unknown words become <unk>;
    unknown chars raise unless skip_unknown. `label_ids[p]`, when not None, is read before prompt p (a
    label's token: labels.label_id); it is no text, so it is in ids but not in reads or tokens.

    BPE prompts are token-healed: the prompt's last token is dropped and the first generated token must
    begin with its bytes, so "Hey, " continues as " what" rather than as a lone space token the model
    rarely saw in training."""
    skip_unknown = options.skip_unknown
    prompt_ids = [vocab.encode(p, skip_unknown=skip_unknown, where="the prompt") for p in prompts]
    # What each prompt reads as (without skipped characters), and its tokens as text.
    reads = [vocab.known(p) if skip_unknown else p for p in prompts]
    prompt_tokens = [vocab.tokenize(r) for r in reads]
    first_allowed = None
    if vocab.kind == "bpe":
        prompt_ids, prompt_tokens, first_allowed = _heal(vocab, prompt_ids, prompt_tokens, options.num_samples)
    if label_ids is not None:  # after healing, which drops a prompt's last text token, never the label
        prompt_ids = [ids if k is None else [k, *ids] for ids, k in zip(prompt_ids, label_ids, strict=True)]
    return Prompts(prompt_ids, reads, prompt_tokens, first_allowed)


def banned_ids(vocab: Vocab) -> tuple[int, ...]:
    """Tokens decoding never produces: <unk>, never what users want, and labels (no text: a record's label
    is read before it, never generated within it)."""
    return (() if vocab.unk_id is None else (vocab.unk_id,)) + tuple(vocab.label_ids)


class TextStream:
    """One sample's text as its tokens come: where it ends (an end-of-record, a stop string, a loop) and
    the pieces to stream. Fed one token per step with `add`; decoding stops feeding it once `add` says so.

    reason: "max_tokens" while it may go on, then "eor", "stop" (a stop string) or "loop" (repeating itself).
    """

    def __init__(self, vocab: Vocab, read: str, prompt_tokens: list[str], stop: tuple[str, ...] = ()):
        self.vocab, self.read, self.prompt_tokens, self.stop = vocab, read, prompt_tokens, stop
        self.tokens: list[int] = []  # generated ids, <eor> not included
        self.reason = "max_tokens"
        self.streamed = 0  # characters of the completion handed out by piece()/rest()
        self.hold = max(map(len, stop), default=1) - 1  # text that could still begin a stop string
        self._text: tuple[int, str, str] = (0, read, "")  # text() as of that many tokens

    def text(self) -> tuple[str, str]:
        """(prompt + completion, completion) so far; a word model re-spaces the prompt it read. Computed
        once per token; a char model's only from its new characters (a server streams many long texts)."""
        vocab, (done, text, completion) = self.vocab, self._text
        if done == len(self.tokens):
            return text, completion
        if vocab.kind == "char":
            completion += "".join([vocab.itos[i] for i in self.tokens[done:]])
            text = self.read + completion
        else:
            generated = [vocab.itos[i] for i in self.tokens]
            text = vocab.detokenize(self.prompt_tokens + generated)
            completion = text[len(self.read) :] if text.startswith(self.read) else vocab.detokenize(generated)
        self._text = (len(self.tokens), text, completion)
        return text, completion

    def add(self, tok: int) -> bool:
        """Take the next token; True when it ends the sample at a stop string or a loop (this token is its
        last). <eor> sets reason "eor" and returns False: the decoding loop ends a stream at <eor> itself."""
        vocab = self.vocab
        if tok == vocab.eor_id:
            self.reason = "eor"
            return False
        self.tokens.append(tok)
        if self.stop:
            # The newest text, where a stop string can have just appeared. A char token is one character, so
            # the completion's last len(longest stop) characters hold it. Otherwise the last `window` tokens
            # do (a BPE token may be one byte of a 4-byte character), and while the completion is shorter,
            # exactly it (a healed BPE stream's first token repeats the end of the prompt: no match there).
            window = 4 * (self.hold + 1) + 64
            if vocab.kind == "char":
                recent = self.text()[1][-(self.hold + 1) :]
            elif len(self.tokens) <= window:
                recent = self.text()[1]
            else:
                recent = vocab.detokenize(vocab.itos[i] for i in self.tokens[-window:])
            if any(st in recent for st in self.stop):
                self.reason = "stop"
        if self.reason == "max_tokens" and is_looping(self.tokens):
            self.reason = "loop"
        return self.reason != "max_tokens"

    def piece(self) -> str:
        """The completion's text settled since the last piece ("" if none), while the sample goes on: text
        that could still turn out to begin a stop string (or, for BPE, a partly generated character) is held
        back until it cannot."""
        if self.reason != "max_tokens":
            return ""
        settled = self.text()[1].rstrip("\ufffd")  # bpe: a character whose bytes are still coming
        end = len(settled) - self.hold
        if end <= self.streamed:
            return ""
        piece, self.streamed = settled[self.streamed : end], end
        return piece

    def result(self) -> tuple[str, str]:
        """(prompt + completion, completion) once the sample has ended: cut before a stop string, as API
        users expect."""
        text, completion = self.text()
        found = [completion.find(st) for st in self.stop if st in completion]
        if self.reason == "stop" and found:
            cut = min(found)
            text, completion = text[: len(text) - len(completion) + cut], completion[:cut]
        return text, completion

    def rest(self) -> str:
        """Once the sample has ended: the completion's text that piece() has not handed out."""
        completion = self.result()[1]
        piece, self.streamed = completion[self.streamed :], max(self.streamed, len(completion))
        return piece


def _heal(vocab: Vocab, prompt_ids: list[list[int]], prompt_tokens: list[list[str]], num_samples: int):
    """BPE token healing: each prompt without its last token (ids, tokens), and an (N, V) bool mask of the
    tokens each stream may start with: those whose bytes begin with the dropped token's (itself included);
    the mask is None when no prompt had a token to drop."""
    masks: dict[int, np.ndarray] = {}  # one (V,) mask per distinct dropped token
    allowed = np.ones((len(prompt_ids) * num_samples, len(vocab)), dtype=bool)
    for p, ids in enumerate(prompt_ids):
        if ids:
            if ids[-1] not in masks:
                last = vocab.itos[ids[-1]]
                masks[ids[-1]] = np.array([i != vocab.eor_id and i < vocab.n_text and t.startswith(last)
                                           for i, t in enumerate(vocab.itos)])  # fmt: skip
            allowed[p * num_samples : (p + 1) * num_samples] = masks[ids[-1]]
    healed_ids, healed_tokens = [ids[:-1] for ids in prompt_ids], [tokens[:-1] for tokens in prompt_tokens]
    return healed_ids, healed_tokens, allowed if masks else None


# -- prompts from stdin --------------------------------------------------------------------------------

STREAMS_PER_BATCH = 64  # streams decoded together: per-step overhead, not arithmetic, bounds decoding speed


def bounded_lines(file, limit: int) -> Iterator[str]:
    """The lines of a text file (stdin), each read only up to `limit` + 2 characters (a line of `limit` and
    its \r\n fits whole): a longer line is cut there and is the last one read (check_prompt refuses it,
    which ends the run), so a 1 GB line never sits in memory whole, and an endless one (`< /dev/zero`) is
    refused as soon as it passes the limit."""
    while line := file.readline(limit + 2):
        yield line
        if len(line) == limit + 2 and not line.endswith("\n"):  # cut: longer than the limit, whatever its end
            return


def prompt_batches(lines: Iterable[str], size: int, waiting: Callable[[], bool] = lambda: True):
    """Lists of at most `size` prompts, one per line (a blank line: a sample from a record's start).

    A batch is also handed over when `waiting()` says no more input is waiting, so an interactive or slow
    writer (`tail -f log | lstmgen sample -`) gets each answer at once rather than when `size` prompts came.
    """
    batch: list[str] = []
    for line in lines:
        batch.append(line.rstrip("\r\n"))
        if len(batch) >= size or not waiting():
            yield batch
            batch = []
    if batch:
        yield batch


def random_seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def answer(
    loaded: Loaded,
    batches: Iterable[list[str]],
    options: SampleOptions,
    seed: int,
    *,
    where: Callable[[int], str] = lambda i: "the prompt",
    on_text: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    labels: tuple[str, ...] | str = (),
) -> Iterator[Sample]:
    """Every sample for every prompt of `batches`, in input order, each batch decoded together.

    `labels`: each prompt is answered once per label, in their order (`sample --label a --label b`); or "-":
    each prompt is a JSON line {"label": L, "prompt": P} (`--label -`, labels.parse_labelled). Either way a
    line is one input, as without labels.

    Prompt i (counted over all batches, one per label) draws from seed + i, so its samples are reproducible
    from the seed whatever the batching. A prompt the model cannot read (a char model and an unknown character) raises
    its error once the prompts before it are answered; `where(i)` names prompt i in that error. `on_note`
    hears of prompt words read as <unk> or characters dropped by skip_unknown; `on_text` streams (one
    prompt per batch, one sample).
    """
    check_seed(seed)
    vocab, done, lines_done = loaded.vocab, 0, 0
    fixed: list[str | None] = list(labels) if labels != "-" else []
    for name in fixed:
        label_id(vocab, name, loaded.name)  # an unknown label fails before any prompt is read
    for lines in batches:
        unreadable, prompts, tags = None, [], []
        for k, line in enumerate(lines):
            w = where(lines_done + k)
            try:
                p, names = (line, fixed or [None]) if labels != "-" else _labelled_line(line, w, options, loaded)
                options.check_prompt(p, w)
                check_utf8(p, w)  # bytes that are not UTF-8 (argv, stdin), named with their offset
                vocab.encode(p, skip_unknown=options.skip_unknown, where=w)
            except LstmgenError as e:
                unreadable = e
                break
            note = _unknown_note(loaded, p, options.skip_unknown)
            if note and on_note:
                on_note(note)
            prompts += [p] * len(names)
            tags += names
        if prompts:
            seeds = [prompt_seed(seed, done + i) for i in range(len(prompts))]
            for samples in sample_many(loaded, prompts, options, seeds=seeds, on_text=on_text, labels=tags):
                yield from samples
        done += len(prompts)
        lines_done += len(lines)
        if unreadable is not None:
            raise unreadable


def _labelled_line(line: str, where: str, options: SampleOptions, loaded: Loaded) -> tuple[str, list[str | None]]:
    """A `--label -` line -> (prompt, [label]), the label checked against the model's."""
    if len(line) > options.limit_prompt_chars + LABEL_LINE_EXTRA:
        options.check_prompt(line, where)  # cut by bounded_lines: say it is too long, not that it is bad JSON
    prompt, name = parse_labelled(line, where)
    if name is not None:
        try:
            label_id(loaded.vocab, name, loaded.name)
        except LstmgenError as e:
            raise LstmgenError(f"{where}: {e}") from None
    return prompt, [name]


# `--label -` reads JSON lines: each may be this much longer than --limit-prompt-chars (the label, the keys
# and escapes), so bounded_lines reads up to that many characters of a line.
LABEL_LINE_EXTRA = 4096


def _unknown_note(loaded: Loaded, prompt: str, skip_unknown: bool) -> str | None:
    """A note for prompt words a word model reads as <unk>, or characters skip_unknown drops."""
    vocab = loaded.vocab
    if vocab.kind == "bpe":
        return None  # byte-level: nothing is unknown
    missing = vocab.unknown(prompt)
    name = loaded.name
    if missing and vocab.kind == "word":
        return f"{len(missing)} prompt word(s) not in the vocabulary of model {name!r}, read as <unk>: " + ", ".join(
            missing[:10]
        )
    if missing and skip_unknown:
        shown = ", ".join(repr(m) for m in missing[:10])
        return f"dropped {len(missing)} prompt character(s) that model {name!r} does not know: {shown}"
    return None
