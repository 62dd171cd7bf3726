"""Property tests: tokenizer round trips, and `prepare` on arbitrary input fails only with a clear LstmgenError."""

import csv
import io
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lstmgen.corpus import PrepareOptions, build_corpus
from lstmgen.errors import LstmgenError
from lstmgen.sources import read_records, read_source
from lstmgen.tokenize import build_vocab, detokenize_words, tokenize_words

# Function-scoped fixtures (tmp_path, the autouse registry) are shared by a test's examples: fine here, each
# example overwrites its own file and `prepare`'s library path does not touch the registry.
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

any_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)))  # every code point but surrogates
# Text dense in what the word detokenizer treats specially: quotes, apostrophes, joiners, openers, closers.
tricky_text = st.text(alphabet=st.sampled_from(list("ab1 '\"\u2019-/.,:;!?%()[]{}$\u2026_\n\u00e9")), max_size=40)


# -- tokenizers ----------------------------------------------------------------------------------------


@FAST
@given(any_text)
@example("line one\nline two\r\n\u00e9\U0001f600 <eor> <unk>")
def test_char_vocab_round_trips_any_text(text):
    vocab = build_vocab("char", [text])
    assert vocab.decode(vocab.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.one_of(any_text, tricky_text))
@example("the dogs' bones are 'fine'")
@example("'a' b' 'c'd' e'")
def test_word_detokenizer_output_retokenizes_to_the_same_tokens(text):
    tokens = tokenize_words(text)
    assert tokenize_words(detokenize_words(tokens)) == tokens


@pytest.mark.parametrize(
    "text",
    ["the dogs' bones are 'fine'", "the dogs' bones and the cats' toys are 'fine', he said 'ok'", "' ' '' x'"],
)
def test_plural_possessive_apostrophe_keeps_the_tokens(text):
    # A lone ' is paired like a quote, so spacing after a possessive can come out odd; the tokens must not change.
    tokens = tokenize_words(text)
    assert tokenize_words(detokenize_words(tokens)) == tokens
    assert detokenize_words(tokens).count("'") == text.count("'")


# -- prepare on arbitrary input ------------------------------------------------------------------------

# Byte soup made of what breaks CSV readers: delimiters, quotes, line ends, bad UTF-8, NUL, BOM, column names.
# fmt: off
CSV_PIECES = [
    b",", b"\n", b"\r\n", b"\r", b'"', b"'", b";", b"\t", b"|", b" ", b"a", b"1", b"3.5", b"x,y", b"\xff",
    b"\x00", b"\xef\xbb\xbf", b"\xc3\xa9", b"Joke", b"text", b"NaN", b"NA", b"#", b"\\", b"<eor>",
]
# fmt: on
csv_bytes = st.lists(st.sampled_from(CSV_PIECES), max_size=60).map(b"".join)

csv_field = st.one_of(
    st.text(max_size=8),
    st.integers().map(str),
    st.floats().map(str),
    st.sampled_from(["", "NA", "nan", "True", "Joke", "text", "<NA>", "null", "1e400", "-"]),
)


@st.composite
def csv_documents(draw) -> bytes:
    """Well-quoted CSVs with odd headers, ragged rows, numbers, NA-ish values and few or no rows."""
    ncol = draw(st.integers(1, 4))
    header = draw(
        st.lists(st.one_of(csv_field, st.sampled_from(["Joke", "text", " TEXT "])), min_size=ncol, max_size=ncol)
    )
    rows = draw(st.lists(st.lists(csv_field, min_size=max(0, ncol - 1), max_size=ncol + 1), max_size=25))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


@FAST
@given(
    texts=st.lists(st.text(alphabet=st.sampled_from(list('ab ,;"\'\n\t\u00e9\U0001f600')), min_size=1, max_size=30)
                   .filter(str.strip), min_size=1, max_size=8),
    style=st.sampled_from(["minimal", "all", "nonnumeric", "crlf", "pandas"]),
)  # fmt: skip
def test_every_csv_a_writer_makes_reads_back_as_written(tmp_path, texts, style):
    """The quoting check refuses only broken quoting: what Python's csv module (each quoting style, \r\n line
    ends) and pandas.to_csv write reads back the same, quotes, commas and line breaks inside cells included."""
    import pandas as pd

    buf = io.StringIO()
    if style == "pandas":
        pd.DataFrame({"ID": range(len(texts)), "Joke": texts}).to_csv(buf, index=False)
    else:
        quoting = {"all": csv.QUOTE_ALL, "nonnumeric": csv.QUOTE_NONNUMERIC}.get(style, csv.QUOTE_MINIMAL)
        writer = csv.writer(buf, quoting=quoting, lineterminator="\r\n" if style == "crlf" else "\n")
        writer.writerow(["ID", "Joke"])
        writer.writerows(enumerate(texts))
    path = tmp_path / "written.csv"
    path.write_text(buf.getvalue(), newline="")
    assert read_records(read_source(str(path)), column="Joke")[0] == [t.strip() for t in texts]


def prepare_library_path(path, tokenizer: str, records: str) -> None:
    """What `lstmgen prepare PATH --tokenizer T --records R` runs, with the CLI's defaults (see cli.prepare)."""
    source = read_source(str(path), "auto", "utf-8")
    texts, col = read_records(source, None, records)
    options = PrepareOptions(tokenizer=tokenizer, val_frac=0.05, test_frac=0.05, seed=0, min_freq=2)
    build_corpus(source, texts, options, stream=records == "file" and not source.is_csv, column=col)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(st.binary(max_size=300), csv_bytes, csv_documents(), any_text.map(lambda t: t.encode())),
    suffix=st.sampled_from([".csv", ".txt"]),
    tokenizer=st.sampled_from(["char", "word"]),
    records=st.sampled_from(["line", "file"]),
)
@example(data=b"ID,Joke\n", suffix=".csv", tokenizer="char", records="line")
@example(data=b',"\r"', suffix=".csv", tokenizer="char", records="line")  # a column named "\n"
@example(data=b'"a\nb",c\n1,2\n', suffix=".csv", tokenizer="char", records="line")
@example(data=b"Joke\n" + b"a\n" * 20 + b"\x00", suffix=".csv", tokenizer="word", records="line")
@example(data=b"\n\n  \n", suffix=".txt", tokenizer="char", records="file")
@example(data="\u3000\n\u2028".encode(), suffix=".txt", tokenizer="char", records="line")
def test_prepare_succeeds_or_raises_a_clear_error(tmp_path, data, suffix, tokenizer, records):
    path = tmp_path / f"input{suffix}"
    path.write_bytes(data)
    try:
        prepare_library_path(path, tokenizer, records)
    except LstmgenError as e:
        assert len(str(e).strip().splitlines()) == 1, repr(str(e))  # the CLI prints it as one `error:` line


# -- the real command on a few nasty files -------------------------------------------------------------

NASTY = {
    "nul.csv": b"ID,Joke\n1,a\x00b\n2,ok\n",
    "header-only.csv": b"ID,Joke\n",
    "unbalanced-quotes.csv": b'ID,Joke\n1,"never closed\n2,ok\n3,"again\n',
    "numbers.csv": b"n\n" + b"".join(b"%d\n" % i for i in range(30)),
    "mixed-delimiters.csv": b"ID;Joke\n1;a,b\n2\tc|d\n3,e\n",
    "newline-in-header.csv": b'"first\nname","last name"\nx,y\nz,w\n',  # the error lists the columns
}


@pytest.fixture(scope="module", autouse=True)
def nasty_runs(tmp_path_factory):
    """`python -m lstmgen prepare FILE` on each nasty file, all started when this module starts.

    Each process pays ~1 s of interpreter and pandas start-up; started up front they run on the second core
    while the property tests above use the first, and test_prepare_command_on_nasty_files collects them.
    """
    d = tmp_path_factory.mktemp("nasty")
    env = os.environ | {"LSTMGEN_HOME": str(d / "home")}  # never the user's registry
    procs = {}
    for i, (fname, data) in enumerate(NASTY.items()):
        (d / fname).write_bytes(data)
        args = [sys.executable, "-m", "lstmgen", "prepare", str(d / fname), "--name", f"x{i}"]
        procs[fname] = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_prepare_command_on_nasty_files(nasty_runs):
    """`python -m lstmgen prepare` exits 0/1/2 with no traceback, and a failure is one stderr line."""
    codes = {}
    for fname, proc in nasty_runs.items():
        _, err = proc.communicate(timeout=120)
        codes[fname] = proc.returncode
        assert proc.returncode in (0, 1, 2), (fname, proc.returncode, err)
        assert "Traceback" not in err and "internal error" not in err, (fname, err)
        if proc.returncode:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error:"), (fname, err)
    # Every file above is unusable as a corpus: each must have been refused, not silently half-read.
    assert set(codes.values()) == {1}, codes


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab \t\n.,'\u00e9\u00a0\u3000!1")), max_size=300), st.integers(2, 40))
def test_text_cut_at_spaces_tokenizes_as_the_whole(text, limit):
    """No word or BPE pre-token spans a cut_at_spaces cut, unless no place to cut was found (a hard cut)."""
    from hypothesis import assume

    from lstmgen.corpus import cut_at_spaces

    pieces = list(cut_at_spaces(text, limit))
    assert "".join(pieces) == text and all(len(p) <= limit for p in pieces)
    assume(all(p[:1] in (" ", "\t", "\n") for p in pieces[1:]))  # no hard cut
    assert [t for p in pieces for t in tokenize_words(p)] == tokenize_words(text)
    vocab = _bpe_vocab()
    assert [i for p in pieces for i in vocab.encode(p)] == vocab.encode(text)


_BPE = []


def _bpe_vocab():
    if not _BPE:
        sample = "ab ab  a\tb\n\nab. 'ab' \u00e9\u00e9 \u00a0ab ab!! 11 1"
        _BPE.append(build_vocab("bpe", [sample] * 20, vocab_size=280))
    return _BPE[0]
