"""`lstmgen sample`: seed text (an argument, or lines on stdin) -> generated text on stdout."""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from dataclasses import asdict
from itertools import chain
from typing import Annotated, Optional

import typer

from .options import InferenceDevice, ModelName, Quiet
from .output import note, out, out_json, quiet


# Long only in its options and help text: the body parses, makes one library call and renders.
def sample(
    prompt: Annotated[
        Optional[str], typer.Argument(help="Seed text; - (or piped stdin) reads one prompt per line.")
    ] = None,
    model: ModelName = None,
    max_tokens: Annotated[int, typer.Option(help="Stop after this many tokens if no end-of-record came.")] = 300,
    temperature: Annotated[float, typer.Option(help="Below 1: safer, above 1: wilder.")] = 0.8,
    top_k: Annotated[Optional[int], typer.Option(help="Sample only from the k most likely tokens.")] = None,
    top_p: Annotated[
        Optional[float], typer.Option(help="Sample only from the smallest set with this much probability.")
    ] = None,
    greedy: Annotated[
        bool, typer.Option("--greedy", help="Always take the most likely token (tends to loop).")
    ] = False,
    num_samples: Annotated[
        int, typer.Option("--num-samples", "-n", help="Samples per prompt (one batched forward per step).")
    ] = 1,
    seed: Annotated[Optional[int], typer.Option(help="Random seed, for reproducible output [default: random].")] = None,
    skip_unknown: Annotated[
        bool, typer.Option("--skip-unknown", help="Char models: drop prompt characters the vocab lacks.")
    ] = False,
    stop: Annotated[
        Optional[list[str]],
        typer.Option("--stop", help="End a sample before this string (repeatable), besides end-of-record."),
    ] = None,
    no_repeat_ngram: Annotated[int, typer.Option(help="Never repeat an n-gram of this many tokens (0: off).")] = 0,
    repetition_penalty: Annotated[
        float, typer.Option(help="Above 1: make tokens already used less likely (1: off; 1.2 is mild).")
    ] = 1.0,
    label: Annotated[
        Optional[list[str]],
        typer.Option(
            "--label",
            help="Generate records of this label (repeatable: samples for each); - reads JSON lines "
            '{"label": L, "prompt": P} on stdin.',
        ),
    ] = None,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the text as it is generated (one sample per prompt).")
    ] = False,
    device: InferenceDevice = "cpu",
    limit_prompt_chars: Annotated[int, typer.Option(help="Refuse longer prompts (memory stays bounded).")] = 100_000,
    limit_max_tokens: Annotated[int, typer.Option(help="The largest --max-tokens accepted.")] = 100_000,
    limit_num_samples: Annotated[int, typer.Option(help="The largest --num-samples accepted.")] = 1_024,
    quiet_: Quiet = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per sample on stdout, with its longest copy of training.")
    ] = False,
    novel: Annotated[
        bool, typer.Option("--novel", help="Draw again samples that copy more than --max-copy training characters.")
    ] = False,
    max_copy: Annotated[
        Optional[int], typer.Option(help="--novel: the longest span of a training record a sample may repeat.")
    ] = None,
    max_redraws: Annotated[int, typer.Option(help="--novel: draws per sample beyond the first, at most.")] = 5,
):
    """Generate text from a trained model, continuing PROMPT until an end-of-record token or --max-tokens.

    Decoding is stateful: the prompt is read once, then each token costs one step with the carried LSTM
    state. Prompts from stdin are decoded together, up to 64 streams per batched step, and printed in
    order; each is answered as soon as no more input is waiting. With no PROMPT on a terminal, samples
    start from the beginning of a record.

    Examples:

      lstmgen sample "Hey, " --temperature 0.8

      lstmgen sample "Why did" -n 5 --top-p 0.9 --seed 1

      lstmgen sample "Why did" --greedy --no-repeat-ngram 3 --stop "?"

      printf 'Why\\nWhat do you call\\n' | lstmgen sample - --json

      lstmgen sample --model reviews-char --label 5 --label 1 -n 3

      echo '{"label": "5", "prompt": "The"}' | lstmgen sample --label - --json

      lstmgen sample -n 5 --novel --max-copy 30 --seed 1
    """
    quiet(quiet_)
    from .. import registry
    from ..inference import load_for_inference
    from ..sample import SampleOptions, SampleRequest, answer, bounded_lines, prompt_batches, random_seed

    options = SampleOptions(max_tokens, temperature, top_k, top_p, greedy, num_samples, skip_unknown,
                            tuple(stop or ()), no_repeat_ngram, repetition_penalty, limit_prompt_chars,
                            limit_max_tokens, limit_num_samples)  # fmt: skip
    request = SampleRequest(options, prompt, tuple(label or ()), stream, json_out, novel, max_copy, max_redraws)
    seed = random_seed() if seed is None else seed
    name = registry.resolve_model(model)
    # Loaded before stdin is read: the first prompt is answered as soon as it comes.
    loaded = load_for_inference(name, device=device, on_note=note)
    checker = request.checker(loaded, on_note=note)
    if checker and checker.missing:
        note(f"longest_copy is null: {checker.missing}")
    from_stdin = request.reads_stdin(sys.stdin.isatty())
    lines = bounded_lines(sys.stdin, request.line_limit)
    batches = prompt_batches(lines, request.prompts_per_batch, _input_waiting) if from_stdin else iter([[prompt or ""]])
    with _waiting_note(prompt is None and from_stdin):
        first = next(batches, None)
    if first is None:
        if (refused := request.no_input()) is not None:
            raise refused
        first = [""]  # piped but empty: one sample from a record's start, as with no stdin at all
    samples = answer(
        loaded, chain([first], batches), options, seed,
        where=(lambda i: f"line {i + 1} of stdin") if from_stdin else (lambda i: "the prompt"),
        on_text=functools.partial(out, end="") if stream else None,
        on_note=note, labels="-" if request.labelled_lines else request.labels,
    )  # fmt: skip
    from ..novelty import Judged

    count = 0
    for j in checker.check(samples) if checker else (Judged(s, None, 0) for s in samples):
        s, count = j.sample, count + 1
        if stream:
            out()  # the streamed completion's line end
        elif json_out:
            fields = asdict(s)
            if s.label is None:  # a model without labels answers as it always did
                del fields["label"]
            novelty = {"longest_copy": j.copy and j.copy.to_json(), "copied": j.copy and j.copy.copied}
            out_json({"model": name, **fields, **novelty, **({"redrawn": j.redrawn} if novel else {})})
        else:
            out(s.text)
    if novel:
        note(checker.summary(count))


STDIN_NOTE_AFTER_S = 2.0


@contextlib.contextmanager
def _waiting_note(on: bool):
    """No PROMPT and a pipe on stdin that sends nothing (a script's inherited stdin, say): after a while, say
    once what `sample` is waiting for, rather than hang in silence."""
    timer = None
    if on:
        timer = threading.Timer(STDIN_NOTE_AFTER_S, note, args=(
            "waiting for prompts on stdin, one per line (no PROMPT was given, and stdin is not a terminal); give "
            "PROMPT, or close stdin (< /dev/null) to sample from the start of a record",))  # fmt: skip
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


def _input_waiting() -> bool:
    """Whether stdin's pipe or terminal has more to read (or its end) right now; True where that cannot be
    asked (no file descriptor, Windows pipes). Lines already in Python's buffer do not count: at worst a
    batch is handed over early."""
    import select

    try:
        return bool(select.select([sys.stdin], [], [], 0)[0])
    except (OSError, ValueError):
        return True
