from pathlib import Path

import pytest
import torch

from lstmgen import corpus as corpus_module
from lstmgen import sources as sources_module
from lstmgen.corpus import PrepareOptions, build_corpus, split_labels
from lstmgen.errors import LstmgenError
from lstmgen.sources import find_input, read_labelled, read_records, read_source


def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(p)


def test_csv_text_column_auto_detected(tmp_path):
    src = read_source(write(tmp_path, "a.csv", 'ID,Joke\n1,"Hi, there"\n2,Yo\n'))
    assert read_records(src) == (["Hi, there", "Yo"], "Joke")


def test_csv_row_with_extra_fields_is_an_error_not_a_shifted_column(tmp_path):
    src = read_source(write(tmp_path, "a.csv", "ID,Joke\n1,a,b,c\n2,foo\n3,bar\n"))
    with pytest.raises(LstmgenError, match="more fields than the header"):
        read_records(src)


def test_csv_only_string_column_and_explicit_column(tmp_path):
    src = read_source(write(tmp_path, "a.csv", "n,body,tag\n1,one fish,x\n2,two fish,y\n"))
    with pytest.raises(LstmgenError, match="cannot tell which column.*pass --column"):
        read_records(src)
    assert read_records(src, column="body")[0] == ["one fish", "two fish"]
    with pytest.raises(LstmgenError, match="no column 'nope'; its columns are: n, body, tag"):
        read_records(src, column="nope")
    src = read_source(write(tmp_path, "b.csv", "n,body\n1,one fish\n2,two fish\n"))
    assert read_records(src) == (["one fish", "two fish"], "body")


def test_text_lines_or_one_stream(tmp_path):
    src = read_source(write(tmp_path, "a.txt", "first\r\n\r\nsecond\rthird\n"))
    assert read_records(src)[0] == ["first", "second", "third"]  # CRLF and CR normalised
    assert read_records(src, records="file")[0] == ["first\n\nsecond\nthird"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary file"),
        (b"caf\xe9 au lait\n", r"not valid utf-8: byte 0xe9 at line 1.*--encoding"),
        (b"hello\nwor\xe2\x82", r"byte 0xe2 at line 2 \(offset 9\)"),  # cut short at the end of the file
    ],
)
def test_bad_files_get_clear_errors(tmp_path, content, message):
    with pytest.raises(LstmgenError, match=message):
        read_source(write(tmp_path, "x.txt", content))


def test_missing_file(tmp_path):
    with pytest.raises(LstmgenError, match=r"none.csv does not exist \(bundled example data, by name: jokes\)"):
        read_source(str(tmp_path / "none.csv"))
    with pytest.raises(LstmgenError, match=r"csv does not exist; the bundled copy is read from anywhere as jokes$"):
        read_source(str(tmp_path / "data/jokes.csv"))


def test_bundled_data_is_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bundled = sources_module.DATA_DIR / "jokes.csv"
    assert sources_module.DATA_DIR.parent.name == "lstmgen"  # inside the package: a wheel carries it
    assert find_input("jokes") == find_input("jokes.csv") == bundled
    source = read_source("jokes")
    assert source.is_csv and source.name == str(bundled) and len(read_records(source)[0]) > 500


def test_an_existing_file_wins_over_bundled_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jokes").write_text("mine\n")
    assert find_input("jokes") == Path("jokes") and read_source("jokes").name == "jokes"
    assert not read_source("jokes").is_csv


def test_split_is_by_record_seeded_and_covers_everything():
    a = split_labels(100, 0.1, 0.1, seed=1)  # one label per record: 0 train, 1 val, 2 test
    assert (a == split_labels(100, 0.1, 0.1, seed=1)).all()
    assert (a != split_labels(100, 0.1, 0.1, seed=2)).any()
    assert a.tolist().count(1) == a.tolist().count(2) == 10 and a.tolist().count(0) == 80
    with pytest.raises(LstmgenError, match="too few"):
        split_labels(2, 0.05, 0.05, 0)


def test_corpus_payload(tmp_path):
    src = read_source(write(tmp_path, "a.txt", "\n".join(f"record {i}" for i in range(40))))
    records, _ = read_records(src)
    c = build_corpus(src, records, PrepareOptions(val_frac=0.1, test_frac=0.1))
    s, meta = c["splits"], c["meta"]
    assert s["train"].dtype == torch.uint8  # compact: vocab < 256
    assert meta["records"] == {"train": 32, "val": 4, "test": 4}
    assert meta["sha256"] == src.sha256 and meta["source"].endswith("a.txt")
    eor = c["vocab"]["itos"].index("<eor>")
    assert int((s["train"] == eor).sum()) == 32  # one end-of-record per record
    val = (split_labels(40, 0.1, 0.1, seed=0) == 1).nonzero()[0]
    assert meta["chars"]["val"] == sum(len(f"record {i}") + 1 for i in val)  # each <eor> counts as one char


def test_word_corpus_has_unk_rate(tmp_path):
    src = read_source(write(tmp_path, "a.txt", "\n".join(f"the cat {i}" for i in range(30))))
    c = build_corpus(src, read_records(src)[0], PrepareOptions(tokenizer="word", min_freq=2))
    assert c["vocab"]["itos"][:2] == ["<eor>", "<unk>"]
    assert c["meta"]["unk_rate"]["val"] > 0  # the numbers are unique: held-out ones are <unk>


def test_one_long_line_read_as_a_stream_splits_at_word_breaks(tmp_path):
    p = tmp_path / "one.txt"
    p.write_text(" ".join(f"w{i % 97}" for i in range(20_000)))  # ~100 kB, no line break
    src = read_source(str(p))
    with pytest.raises(LstmgenError, match="only 1 record.*--records file"):
        build_corpus(src, read_records(src)[0])
    corpus = build_corpus(src, read_records(src, records="file")[0], stream=True)
    chars = corpus["meta"]["chars"]
    assert chars["val"] > 3500 and chars["test"] > 3500 and chars["train"] > 70_000


def test_a_vocabulary_explosion_asks_for_max_vocab(tmp_path):
    import random

    rng = random.Random(0)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(4, 8))) for _ in range(130_000)]
    p = tmp_path / "noise.txt"
    p.write_text("\n".join(" ".join(words[i : i + 10] * 2) for i in range(0, len(words), 10)))  # each word twice
    src = read_source(str(p))
    records = read_records(src)[0]
    with pytest.raises(LstmgenError, match=r"would hold 1\d\d,\d{3} entries.*--max-vocab"):
        build_corpus(src, records, PrepareOptions(tokenizer="word", min_freq=2))
    corpus = build_corpus(src, records, PrepareOptions(tokenizer="word", min_freq=2, max_vocab=5000))
    assert corpus["meta"]["vocab_size"] == 5000


def test_semicolon_csv_with_commas_in_the_text_names_the_delimiter(tmp_path):
    p = tmp_path / "semi.csv"
    p.write_text("id;Joke\n1;Hi, there\n2;Why, yes\n")
    with pytest.raises(LstmgenError, match="looks delimited by ';', not commas"):
        read_records(read_source(str(p)))


@pytest.mark.parametrize("tokenizer", ["char", "word", "bpe"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_text_streamed_in_small_chunks_gives_the_corpus_read_whole(tmp_path, monkeypatch, tokenizer, stream):
    """prepare reads text files in chunks (bounded memory): chunk edges must not show in the corpus, even
    where they cut a CRLF, a multi-byte character or a line."""
    lines = [f"ligne {i} café — {'x' * (i % 7)}  " for i in range(400)]
    p = tmp_path / "t.txt"
    p.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n\r\n").encode())
    src = read_source(str(p))
    # a word vocabulary keeps every word; a bpe one learns 300 tokens
    sized = {"vocab_size": 300} if tokenizer == "bpe" else {"min_freq": 1}
    options = {"options": PrepareOptions(tokenizer, val_frac=0.1, test_frac=0.1, **sized), "stream": stream}
    whole = build_corpus(src, read_records(src, records="file" if stream else "line")[0], **options)
    monkeypatch.setattr(sources_module, "CHUNK_BYTES", 61)  # odd: cuts "é", "—" and "\r\n" somewhere
    chunked = build_corpus(src, None, work_dir=tmp_path, **options)
    assert chunked["vocab"] == whole["vocab"]
    for split in ("train", "val", "test"):
        assert torch.equal(chunked["splits"][split], whole["splits"][split]), split
    assert {k: v for k, v in chunked["meta"].items() if k != "created"} == {
        k: v for k, v in whole["meta"].items() if k != "created"
    }
    assert not list(tmp_path.glob(".*.tmp"))  # the ids' temporary files are gone; the tensors map them


def test_a_bad_byte_deep_in_a_large_file_names_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sources_module, "CHUNK_BYTES", 64)
    p = tmp_path / "x.txt"
    p.write_bytes(b"".join(b"line %d fine\n" % i for i in range(99)) + b"caf\xe9\n")
    with pytest.raises(LstmgenError, match=r"byte 0xe9 at line 100 \(offset 1280\)"):
        read_source(str(p))


def test_preparing_a_large_text_holds_a_chunk_not_the_file(tmp_path, monkeypatch):
    """Streaming prepare: the Python/numpy heap stays near a chunk's size for a file many chunks long (the
    ids go to memory-mapped scratch files)."""
    import tracemalloc

    p = tmp_path / "big.txt"
    line = "To be, or not to be, that is the question: whether 'tis nobler in the mind\n"
    p.write_text(line * (8_000_000 // len(line)))  # 8 MB
    monkeypatch.setattr(sources_module, "CHUNK_BYTES", 256 << 10)
    src = read_source(str(p))
    tracemalloc.start()
    try:
        corpus = build_corpus(src, None, stream=True, work_dir=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert corpus["meta"]["tokens"]["train"] > 7_000_000
    assert peak < 4_000_000, f"peak heap {peak:,} bytes for an 8 MB file"


@pytest.mark.parametrize("ending", ["", "\n", "\n\n\n"])
def test_one_line_stream_ending_in_newlines_still_splits_at_word_breaks(tmp_path, ending):
    p = tmp_path / "one.txt"
    p.write_text(" ".join(f"w{i % 97}" for i in range(2_000)) + ending)  # ~8 kB: the cut looks past its end
    src = read_source(str(p))
    corpus = build_corpus(src, None, stream=True, work_dir=tmp_path)
    assert corpus["meta"]["records"] == {"train": 1, "val": 1, "test": 1}
    assert corpus["meta"]["chars"]["val"] > 300


def test_a_file_of_only_a_bom_and_newlines_is_a_clear_error(tmp_path):
    p = tmp_path / "blank.txt"
    p.write_bytes("\ufeff\n\n".encode())
    with pytest.raises(LstmgenError, match="blank.txt is empty"):  # checked on the decoded text: BOM dropped
        read_source(str(p))


# -- hostile input: long lines, wide encodings, wide or ambiguous CSV headers, undecodable stdin --------------


def test_a_line_over_the_cap_is_refused_not_cut_into_records(tmp_path):
    long = "word " * 300  # 1,500 characters
    path = write(tmp_path, "a.txt", f"one\ntwo\n{long}\nthree\n")
    src = read_source(path, max_line_chars=1000)
    with pytest.raises(LstmgenError, match=r"a.txt: line 3 is longer than 1,000 characters.*--records file"):
        build_corpus(src, None, work_dir=tmp_path)
    with pytest.raises(LstmgenError, match="line 3 is longer than 1,000"):
        read_records(src)
    assert read_records(src, records="file")[0] == [f"one\ntwo\n{long}\nthree"]  # one stream: no line cap
    extent = corpus_module._extent(src.chunks())  # the stream's passes read it unrefused
    assert extent == (0, len(f"one\ntwo\n{long}\nthree"))
    src = read_source(path, max_line_chars=1500)  # at the cap: one record, whole
    assert len(read_records(src)[0]) == 4
    corpus = build_corpus(src, None, PrepareOptions(val_frac=0.2, test_frac=0.2), work_dir=tmp_path)
    assert sum(corpus["meta"]["records"].values()) == 4


def test_a_csv_cell_over_the_cap_is_refused_like_a_line(tmp_path):
    """A 17 Mi-character quoted cell went round the per-record cap (1.1 GB and a minute to prepare)."""
    path = write(tmp_path, "a.csv", 'ID,Joke\n1,short\n2,"' + "word, " * 300 + '"\n3,another\n')
    with pytest.raises(LstmgenError, match=r"a.csv: row 2's 'Joke' is longer than 1,000 characters.*--max-line-chars"):
        read_records(read_source(path, max_line_chars=1000))
    assert len(read_records(read_source(path, max_line_chars=1800))[0]) == 3  # at the cap: kept whole


def test_a_quote_left_open_is_refused_not_read_on_into_the_next_rows(tmp_path):
    """pandas read the field on: 60 rows became 30 records with the next row's ID inside the text."""
    rows = [f'{i},"Joke number {i}?' if i == 2 else f'{i},"Joke number {i}?"' for i in range(60)]
    path = write(tmp_path, "a.csv", "ID,Joke\n" + "\n".join(rows) + "\n")
    opened_on_4 = r"a.csv is not a readable CSV: the field quoted on line 4 runs on to line 5,"
    with pytest.raises(LstmgenError, match=opened_on_4):
        read_records(read_source(path))
    with pytest.raises(LstmgenError, match=r"line 2, ',' expected after '\"'; close each quoted field"):
        read_records(read_source(write(tmp_path, "b.csv", 'ID,Joke\n1,"abc"def\n2,x\n')))
    fine = 'ID,Joke\n1,"two\nlines"\n2,"a ""quote"" inside"\n3,He said "hi"\n4,"spaces after" \t\n'  # as pandas
    assert read_records(read_source(write(tmp_path, "c.csv", fine)))[0] == ["two\nlines", 'a "quote" inside',
                                                                          'He said "hi"', "spaces after"]  # fmt: skip
    semicolons = '"id";"Joke"\n"1";"a; b"\n"2";"c"\n'  # a European export: the delimiter is the news, not quoting
    with pytest.raises(LstmgenError, match="d.csv looks delimited by ';', not commas"):
        read_records(read_source(write(tmp_path, "d.csv", semicolons)))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_wide_text_with_a_byte_order_mark_is_named_with_its_encoding(tmp_path, encoding):
    path = tmp_path / "a.txt"
    path.write_bytes("one joke\ntwo jokes\nthree\n".encode(encoding))  # Python writes the mark first
    with pytest.raises(LstmgenError, match=f"a.txt is {encoding.upper()} text .*; pass --encoding {encoding}$"):
        read_source(str(path))
    assert read_records(read_source(str(path), encoding=encoding))[0] == ["one joke", "two jokes", "three"]


def test_records_file_on_a_csv_is_refused_not_dropped(tmp_path):
    src = read_source(write(tmp_path, "a.csv", "ID,Joke,Kind\n1,one,x\n2,two,y\n3,three,x\n"))
    with pytest.raises(LstmgenError, match="--records file reads a text file as one stream, and .*a.csv is read as"):
        read_records(src, records="file")
    with pytest.raises(LstmgenError, match="--records file reads a text file as one stream"):
        read_labelled(src, None, "Kind", records="file")
    assert read_records(src)[0] == ["one", "two", "three"]


def test_the_command_lines_default_cap_is_the_librarys():
    from lstmgen.cli.options import MAX_LINE_CHARS

    assert MAX_LINE_CHARS == sources_module.MAX_LINE_CHARS  # the CLI's default, written out, is the library's


def test_a_line_longer_than_four_chunks_stays_one_record(tmp_path, monkeypatch):
    """It used to be cut at a space after 4 chunks (16 MiB): several records, and a way round the refusal
    of a file with too few records."""
    monkeypatch.setattr(sources_module, "CHUNK_BYTES", 64)
    lines = ["short one", "x " * 200, "short two", "short three"]
    src = read_source(write(tmp_path, "a.txt", "\n".join(lines) + "\n"))
    assert sources_module.MAX_LINE_CHARS == 16 << 20 and src.max_line_chars == sources_module.MAX_LINE_CHARS
    corpus = build_corpus(src, None, PrepareOptions(val_frac=0.25, test_frac=0.25), work_dir=tmp_path)
    assert sum(corpus["meta"]["records"].values()) == 4
    assert sum(corpus["meta"]["chars"].values()) == sum(len(line.strip()) + 1 for line in lines)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_wide_encodings_can_be_read(tmp_path, encoding):
    text = "ID,Joke\n1,Caf\u00e9 jokes\n2,\U0001f600 smile\n3,plain\n"
    p = tmp_path / "wide.csv"
    p.write_bytes(text.encode(encoding))
    src = read_source(str(p), encoding=encoding)
    assert read_records(src) == (["Caf\u00e9 jokes", "\U0001f600 smile", "plain"], "Joke")
    p.write_bytes("a\x00b\n".encode(encoding))  # a NUL character, decoded: binary still
    with pytest.raises(LstmgenError, match="looks like a binary file"):
        read_source(str(p), encoding=encoding)


def test_utf8_binary_is_still_named_as_binary(tmp_path):
    with pytest.raises(LstmgenError, match="looks like a binary file"):
        read_source(write(tmp_path, "a.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))


def test_a_very_wide_csv_gives_a_short_error_line(tmp_path):
    header = ",".join(f"column_number_{i}" for i in range(10_000))
    row = ",".join(["1"] * 10_000)
    src = read_source(write(tmp_path, "wide.csv", f"{header}\n{row}\n{row}\n"))
    for kwargs in ({}, {"column": "nope" * 1000}):
        with pytest.raises(LstmgenError) as e:
            read_records(src, **kwargs)
        line = str(e.value)
        assert len(line) < 500 and "\n" not in line and "... and 9,992 more" in line, line[:300]


def test_a_duplicated_text_column_name_is_refused(tmp_path):
    src = read_source(write(tmp_path, "d.csv", "ID,Joke,Joke\n1,a,b\n2,c,d\n"))
    with pytest.raises(LstmgenError, match=r"d.csv: 2 columns are named 'Joke'; rename them"):
        read_records(src)
    with pytest.raises(LstmgenError, match="2 columns are named 'Joke'"):
        read_records(src, column="Joke.1")  # pandas' name for the second: still a guess at which was meant
    src = read_source(write(tmp_path, "e.csv", "id,id,Joke\n1,2,a\n3,4,b\n"))  # a duplicate elsewhere: harmless
    assert read_records(src) == (["a", "b"], "Joke")


def test_undecodable_stdin_names_the_byte(tmp_path):
    import os
    import subprocess
    import sys

    env = os.environ | {"LSTMGEN_HOME": str(tmp_path / "home")}
    for args in (["prepare", "-", "--name", "s"], ["prepare", "-", "--name", "s", "--format", "csv"]):
        r = subprocess.run([sys.executable, "-m", "lstmgen", *args], input=b"Joke\nfine\n\xff\xfe bad\n",
                           capture_output=True, env=env)  # fmt: skip
        err = r.stderr.decode()
        assert r.returncode == 1 and "<stdin> is not valid utf-8: byte 0xff at line 3 (offset 10)" in err, err
        assert "\\udc" not in err and not (tmp_path / "home" / "corpora").exists()


def test_binary_stdin_is_refused_as_it_arrives_not_after_it_ends(tmp_path):
    """`prepare - < /dev/urandom` used to copy stdin to disk until it ended (gigabytes) before looking at it."""
    import os
    import subprocess
    import sys

    env = os.environ | {"LSTMGEN_HOME": str(tmp_path / "home")}
    p = subprocess.Popen([sys.executable, "-m", "lstmgen", "prepare", "-", "--name", "s"], stdin=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)  # fmt: skip
    p.stdin.write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 100)
    p.stdin.flush()  # and nothing more, nor an end: the refusal cannot wait for one
    try:
        assert p.wait(timeout=60) == 1
    finally:
        p.kill()
        p.stdin.close()
    assert "<stdin> looks like a binary file (it contains NUL bytes)" in p.stderr.read().decode()
    assert not (tmp_path / "home" / "corpora").exists()


def test_bpe_on_text_cut_at_spaces_is_the_bpe_of_the_whole(tmp_path, monkeypatch):
    """prepare feeds the BPE trainer and encoder pieces of at most TOKENIZE_CHARS characters: the same
    vocabulary and ids as the whole text (a 20 MB line peaked at 3.3 GB before)."""
    words = "Why did the chicken cross the road? To get to the other side!  Twice\tover,\nand\n\n again".split(" ")
    text = " ".join(words[i % len(words)] for i in range(3000))  # one long line, ~15 K characters
    path = write(tmp_path, "one.txt", text + "\n")
    corpora = {}
    for limit in (1 << 30, 97):  # whole, and cut into pieces of at most 97 characters
        monkeypatch.setattr(corpus_module, "TOKENIZE_CHARS", limit)
        monkeypatch.setattr(corpus_module, "ENCODE_BATCH_CHARS", limit * 3)
        for tokenizer in ("bpe", "word"):
            options = PrepareOptions(tokenizer, vocab_size=300) if tokenizer == "bpe" else PrepareOptions(tokenizer)
            corpora[limit, tokenizer] = build_corpus(read_source(path), None, options, stream=True, work_dir=tmp_path)
    for tokenizer in ("bpe", "word"):
        whole, cut = corpora[1 << 30, tokenizer], corpora[97, tokenizer]
        assert whole["vocab"] == cut["vocab"]
        for split in ("train", "val", "test"):
            assert torch.equal(whole["splits"][split], cut["splits"][split])


def test_bpe_trainer_reads_at_most_its_cap_of_the_training_text(tmp_path, monkeypatch):
    first = " ".join(["alpha beta gamma"] * 200)
    path = write(tmp_path, "two.txt", first + " " + " ".join(["zulu yankee xray"] * 200) + "\n")
    seen = {}
    for cap in (len(first), 1 << 30):
        monkeypatch.setattr(corpus_module, "BPE_TRAIN_CHARS", cap)
        options = PrepareOptions("bpe", val_frac=0.01, test_frac=0.01, vocab_size=300)
        corpus = build_corpus(read_source(path), None, options, stream=True, work_dir=tmp_path)
        seen[cap] = set(corpus["vocab"]["itos"])
    assert "\u0120beta" in seen[len(first)] and "\u0120yankee" not in seen[len(first)]  # learnt from the first part
    assert "\u0120yankee" in seen[1 << 30]


def test_bpe_prepare_of_one_long_line_stays_in_bounded_memory(tmp_path):
    """A 4 MB single-line file through `prepare --tokenizer bpe --records file` in a real process: its peak
    memory beyond a 20 KB prepare's. It was ~800 MB before the tokenizers took bounded pieces (3.3 GB for
    20 MB); it is ~110 MB now (benchmarks/prepare_long_line.py)."""
    import os
    import random
    import subprocess
    import sys

    rng = random.Random(0)
    words = "why did the chicken cross road to get other side knock who is there a joke about".split()
    text = " ".join(rng.choice(words) for _ in range(900_000))[:4_000_000]
    peaks = []
    for name, size in (("small", 20_000), ("big", len(text))):
        path = write(tmp_path, f"{name}.txt", text[:size])
        env = os.environ | {"LSTMGEN_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
        p = subprocess.Popen([sys.executable, "-m", "lstmgen", "prepare", path, "--records", "file", "--tokenizer",
                              "bpe", "--name", name, "--quiet"], env=env, stderr=subprocess.PIPE)  # fmt: skip
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, err
        peaks.append(usage.ru_maxrss * 1024)  # ru_maxrss is in KB on Linux
    assert peaks[1] - peaks[0] < 300e6, [f"{p / 1e6:.0f} MB" for p in peaks]


@pytest.mark.parametrize("encoding", ["punycode", "undefined", "base64", "rot13", "x" * 10_000])
def test_odd_encodings_are_one_line(tmp_path, encoding):
    path = write(tmp_path, "a.txt", "hello world\nsecond line\n")
    with pytest.raises(LstmgenError) as e:
        read_records(read_source(path, encoding=encoding))
    assert "--encoding" in str(e.value) and len(str(e.value)) < 300


