"""Option types several commands share: choices, --quiet, and tab completion of registry names."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from .. import registry
from ..errors import LstmgenError


def _names(*kinds: str):
    """Tab completion of registry names (after `lstmgen --install-completion`)."""

    def complete(incomplete: str) -> list[str]:
        try:
            return sorted({n for k in kinds for n in registry.names(k) if n.startswith(incomplete)})
        except LstmgenError:  # a damaged registry (corpora/ a link, say): no names, not a traceback mid-completion
            return []

    return complete


MODEL_NAMES, CORPUS_NAMES, ALL_NAMES = _names("model"), _names("corpus"), _names("corpus", "model")

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stderr but errors.")]
MAX_LINE_CHARS = 16 << 20  # sources.MAX_LINE_CHARS, written out: importing sources here would slow `--help`
MaxLineChars = Annotated[
    int,
    typer.Option(min=1, help="Refuse a line or CSV cell (one record) longer than this (--records file: long text)."),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
InferenceDevice = Annotated[
    str, typer.Option(help="cpu: ONNX Runtime, no torch; cuda, cuda:N, mps or auto: the torch model there.")
]
ModelName = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model name [default: the registry's default].", autocompletion=MODEL_NAMES),
]


class Tokenizer(str, Enum):
    char = "char"
    word = "word"
    bpe = "bpe"


class Records(str, Enum):
    line = "line"
    file = "file"


class Format(str, Enum):
    auto = "auto"
    csv = "csv"
    txt = "txt"


class Split(str, Enum):
    test = "test"
    val = "val"


class Kind(str, Enum):
    model = "model"
    corpus = "corpus"
