"""Record labels end to end: a CSV column's labels become tokens, a model trained on records whose label
decides their content generates each label's kind of text, on both decoding paths, and every refusal is one
line that leaves the registry as it was."""

import csv
import json
import random
import shutil

import pytest

from lstmgen.config import load_config
from lstmgen.corpora import TextInput, load_corpus, prepare
from lstmgen.corpus import PrepareOptions
from lstmgen.errors import LstmgenError
from lstmgen.evaluate import evaluate_model
from lstmgen.inference import load_for_inference, load_torch
from lstmgen.labels import NONE_LABEL, label_token
from lstmgen.sample import SampleOptions, answer, sample_many
from lstmgen.tokenize import Vocab
from lstmgen.train import train

from .cli.runner import bad, ok
from .test_hostile_registry import snapshot

VOWELS, CONSONANTS = set("aeiou"), set("bcdfghk")


def write_ab(path, n=240, empty=0, seed=0):
    """A CSV whose label decides the text: label a -> only vowels, label b -> only consonants; the first
    `empty` rows have an empty label cell."""
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "kind", "text"])
        for i in range(n):
            kind = "ab"[i % 2]
            letters = sorted(VOWELS if kind == "a" else CONSONANTS)
            w.writerow([i, "" if i < empty else kind, "".join(rng.choice(letters) for _ in range(rng.randint(4, 10)))])
    return path


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory):
    """A char model `ab` trained once for this module on write_ab's corpus, in a registry of its own."""
    home = tmp_path_factory.mktemp("labels-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("LSTMGEN_HOME", str(home))
    try:
        csv_path = write_ab(tmp_path_factory.mktemp("labels-data") / "ab.csv", empty=4)
        prepare("ab", TextInput(str(csv_path), label_column="kind"), PrepareOptions(val_frac=0.1, test_frac=0.1))
        sets = ["corpus=ab", "name=ab", "model.embed=16", "model.hidden=48", "model.n_layer=1", "model.dropout=0",
                "train.batch_size=16", "train.seq_len=32", "train.max_epochs=null", "train.max_steps=150",
                "train.eval_every=150", "train.checkpoint_every=150", "train.lr=0.01", "train.warmup_steps=5",
                "train.device=cpu", "train.precision=fp32"]  # fmt: skip
        train(load_config(None, sets), load_corpus("ab"))
    finally:
        mp.undo()
    return home


@pytest.fixture
def ab_model(trained_home, registry_home):
    """This test's registry, holding a copy of the module's trained `ab` model and corpus."""
    for kind in ("corpora", "models"):
        shutil.copytree(trained_home / kind, registry_home / kind, dirs_exist_ok=True)
    return "ab"


def share(texts, letters) -> float:
    chars = "".join(texts)
    assert len(chars) >= 50, texts  # enough characters for the share to mean something
    return sum(c in letters for c in chars) / len(chars)


@pytest.mark.parametrize("load", [load_for_inference, load_torch], ids=["onnx", "torch"])
def test_samples_follow_their_label(ab_model, load):
    loaded = load("ab")
    options = SampleOptions(max_tokens=20, num_samples=20)
    under_a, under_b = sample_many(loaded, ["", ""], options, seeds=[1, 2], labels=["a", "b"])
    assert {s.label for s in under_a} == {"a"} and {s.label for s in under_b} == {"b"}
    assert share([s.text for s in under_a], VOWELS) > 0.9
    assert share([s.text for s in under_b], CONSONANTS) > 0.9
    # A prompt follows the label: a consonant prompt under label a still turns to vowels.
    (after,) = sample_many(loaded, ["k"], options, seeds=[3], labels=["a"])
    assert share([s.completion for s in after], VOWELS) > 0.9
    assert all(s.text.startswith("k") and "<label" not in s.text for s in after)


def test_answer_reads_labels_beside_prompts_and_expands_repeated_labels(ab_model):
    loaded = load_for_inference("ab")
    options = SampleOptions(max_tokens=12)
    lines = ['{"label": "b", "prompt": ""}', '{"label": "a"}', '{"prompt": "e"}']
    got = list(answer(loaded, [lines], options, seed=5, labels="-"))
    assert [s.label for s in got] == ["b", "a", None] and got[2].prompt == "e"
    got = list(answer(loaded, [["", "i"]], options, seed=5, labels=("a", "b")))
    assert [(s.prompt, s.label) for s in got] == [("", "a"), ("", "b"), ("i", "a"), ("i", "b")]


def test_unknown_labels_and_bad_lines_are_one_line_errors(ab_model):
    loaded = load_for_inference("ab")
    with pytest.raises(LstmgenError, match=r"^model 'ab' has no label 'c'; its labels: 'a', 'b', '<none>'$"):
        list(answer(loaded, [["x"]], SampleOptions(), seed=0, labels=("c",)))
    lines = ['{"label": "a"}', '{"label": "zz"}']
    it = answer(loaded, [lines], SampleOptions(max_tokens=5), seed=0, where=lambda i: f"line {i + 1} of stdin",
                labels="-")  # fmt: skip
    assert next(it).label == "a"  # the lines before a bad one are answered first
    with pytest.raises(LstmgenError, match=r"^line 2 of stdin: model 'ab' has no label 'zz'"):
        next(it)
    with pytest.raises(LstmgenError, match=r"^line 1 of stdin is not a JSON object"):
        list(answer(loaded, [["plain text"]], SampleOptions(), seed=0, where=lambda i: f"line {i + 1} of stdin",
                    labels="-"))  # fmt: skip


def test_eval_per_label_scores_each_label_given_it(ab_model):
    rows = evaluate_model("ab", "test", per_label=True)
    by = {r["label"]: r for r in rows}
    assert set(by) <= {"a", "b", NONE_LABEL} and {"a", "b"} <= set(by)
    # Each label's records are scored apart: their counts add up to the split's.
    assert sum(r["records"] for r in rows) == load_corpus("ab")["meta"]["records"]["test"]
    # Given its label, a record is a draw from 5 vowels or 7 consonants: well under a uniform guess over
    # the 13 characters and <eor> (3.8 bits), and near the floor of log2(5) and log2(7) bits.
    for label in ("a", "b"):
        assert by[label]["bits_per_char"] < 3.3, rows


def test_eval_per_label_refuses_a_child_trained_on_records_without_labels(ab_model, tmp_path):
    # A --from child of a labelled model on a corpus without --label-column: labels in its vocab, none on its
    # records, whose first text token per-label scoring would otherwise take as given.
    from lstmgen.runs import TrainRequest, fit

    plain = tmp_path / "plain.txt"
    plain.write_text("".join(f"{'aeiou'[i % 5] * 3}{'bcd'[i % 3] * 2}\n" for i in range(40)))
    prepare("plain", TextInput(str(plain)), PrepareOptions(val_frac=0.1, test_frac=0.1), vocab_from="ab")
    fit(TrainRequest(None, ("corpus=plain", "name=child", "train.max_steps=1", "train.eval_every=1",
                            "train.device=cpu"), "child", parent="ab"))  # fmt: skip
    with pytest.raises(LstmgenError, match=r"held-out records of model 'child' carry no labels .*'plain'"):
        evaluate_model("child", "test", per_label=True)


@pytest.mark.parametrize("tokenizer", ["char", "word", "bpe"])
def test_every_record_starts_with_its_label_token(tmp_path, tokenizer):
    path = write_ab(tmp_path / "ab.csv", n=60, empty=3)
    options = PrepareOptions(tokenizer, val_frac=0.1, test_frac=0.1, min_freq=1 if tokenizer == "word" else 2)
    done = prepare("ab", TextInput(str(path), label_column="kind"), options)
    corpus = load_corpus("ab")
    vocab = Vocab.from_dict(corpus["vocab"])
    assert done.meta["labels"] == {"b": 29, "a": 28, NONE_LABEL: 3} and done.meta["unlabelled"] == 3
    assert vocab.labels == ["b", "a", NONE_LABEL]  # most frequent first
    assert vocab.itos[-3:] == [label_token(n) for n in vocab.labels]
    assert any("3 of 60 records have an empty 'kind' cell" in n for n in done.notes)
    firsts, n = [], 0
    for split in ("train", "val", "test"):
        ids = corpus["splits"][split].tolist()
        starts = [0] + [i + 1 for i, t in enumerate(ids[:-1]) if t == vocab.eor_id]
        firsts += [vocab.itos[ids[i]] for i in starts]
        n += ids.count(vocab.eor_id)
        # The text between label and <eor> decodes to the record: a's are vowels, b's consonants (a held-out
        # word the word vocab lacks reads as <unk>).
        for i in starts:
            text = vocab.decode(ids[i:])
            letters = {"a": VOWELS, "b": CONSONANTS}.get(vocab.itos[ids[i]][7:-1], VOWELS | CONSONANTS)
            assert text and set(text.replace("<unk>", "")) <= letters
    assert n == 60 and len(firsts) == 60 and all(f.startswith("<label:") for f in firsts)
    assert Vocab.from_dict(vocab.to_dict()) == vocab  # the labels travel with the vocab


def test_label_refusals_leave_the_registry_unchanged(tmp_path, jokes_csv):
    path = write_ab(tmp_path / "ab.csv", n=40)
    before = snapshot()
    with pytest.raises(LstmgenError, match=r"label column 'id' has 40 distinct values, more than --max-labels 3"):
        prepare("ab", TextInput(str(path), label_column="id"), PrepareOptions(max_labels=3))
    with pytest.raises(LstmgenError, match=r"--label-column 'text' is the text column"):
        prepare("ab", TextInput(str(path), label_column="text"), PrepareOptions())
    with pytest.raises(LstmgenError, match=r"^.*has no label column 'kind2'; its columns are: id, kind, text$"):
        prepare("ab", TextInput(str(path), label_column="kind2"), PrepareOptions())
    txt = tmp_path / "ab.txt"
    txt.write_text("a line\nanother line\n" * 10)
    with pytest.raises(LstmgenError, match=r"--label-column reads a CSV column; .* is read as text"):
        prepare("ab", TextInput(str(txt), label_column="kind"), PrepareOptions())
    with pytest.raises(LstmgenError, match=r"longer than 64 characters"):
        long = tmp_path / "long.csv"
        long.write_text("kind,text\n" + "x" * 70 + ",hello\nb,there\nb,you\n" * 4)
        prepare("long", TextInput(str(long), label_column="kind"), PrepareOptions())
    with pytest.raises(LstmgenError, match=r"label 'a\\nb' in column 'kind' holds a line break"):
        broken = tmp_path / "broken.csv"
        broken.write_text('kind,text\n"a\nb",hello\nb,there\nb,you\n' * 4)
        prepare("broken", TextInput(str(broken), label_column="kind"), PrepareOptions())
    # A cell spelling the empty cells' label would merge its records with the unlabelled ones.
    with pytest.raises(LstmgenError, match=r"label column 'kind' holds '<none>' \(record 3\), the name"):
        reserved = tmp_path / "reserved.csv"
        reserved.write_text("kind,text\na,hello\n,there\n<none>,you\nb,again\n")
        prepare("reserved", TextInput(str(reserved), label_column="kind"), PrepareOptions())
    assert snapshot() == before


def test_cli_labels(ab_model, tiny_model, tmp_path):
    r = ok("sample", "--model", "ab", "--label", "a", "--label", "b", "-n", "2", "--json", "--seed", "1",
           "--max-tokens", "8")  # fmt: skip
    assert [json.loads(line)["label"] for line in r.stdout.splitlines()] == ["a", "a", "b", "b"]
    r = ok("sample", "--model", "ab", "--label", "-", "--json", "--max-tokens", "8", input='{"label": "b"}\n')
    assert json.loads(r.stdout)["label"] == "b"
    r = ok("eval", "--model", "ab", "--per-label")
    assert {line.split()[-1] for line in r.stdout.splitlines()} >= {"a", "b"}
    assert "labels: a 118, b 118, <none> 4" in ok("show", "ab", "--kind", "corpus").stdout
    assert "labels: a 118, b 118, <none> 4" in ok("show", "ab", "--kind", "model").stdout
    assert "│ a 118, b 118, <none> 4 │" in ok("list").stdout
    before = snapshot()
    err = bad("sample", "--model", "ab", "--label", "c")
    assert err.count("\n") == 1 and "no label 'c'; its labels: 'a', 'b', '<none>'" in err
    err = bad("sample", "--model", "tiny", "--label", "a")
    assert err.count("\n") == 1 and "model 'tiny' was trained without labels" in err
    err = bad("eval", "--model", "tiny", "--per-label")
    assert err.count("\n") == 1 and "trained without labels" in err
    err = bad("sample", "x", "--model", "ab", "--label", "-", code=2)
    assert "drop PROMPT" in err
    (tmp_path / "t.txt").write_text("one line\nanother line\n")
    err = bad("prepare", tmp_path / "t.txt", "--label-column", "kind")
    assert err.count("\n") == 1 and "--label-column reads a CSV column" in err
    # continuing a model (issue 16's other part) does not mix with labels yet: refused before anything is read
    labelled = write_ab(tmp_path / "more.csv", n=20)
    err = bad("prepare", labelled, "--label-column", "kind", "--vocab-from", "tiny", code=2)
    assert err.count("\n") == 1 and "--label-column cannot be combined with --vocab-from" in err
    (tmp_path / "new.txt").write_text("aeiou xyz\n" * 20)
    err = bad("prepare", tmp_path / "new.txt", "--vocab-from", "ab", "--extend-vocab", code=2)
    assert err.count("\n") == 1 and "it has label tokens after its characters" in err
    assert snapshot() == before


def test_novelty_reads_labelled_records_as_their_text_and_redraws_keep_the_label(ab_model):
    from lstmgen.novelty import build_index

    index = build_index(load_corpus("ab"))
    assert set(index.alphabet) <= VOWELS | CONSONANTS  # no label token's text ("<label:a>") in the records
    r = ok("sample", "--model", "ab", "--label", "a", "--novel", "--max-copy", "3", "-n", "3", "--seed", "1",
           "--json", "--max-tokens", "12")  # fmt: skip
    samples = [json.loads(line) for line in r.stdout.splitlines()]
    assert [s["label"] for s in samples] == ["a"] * 3 and sum(s["redrawn"] for s in samples) > 0
    assert set("".join(s["completion"] for s in samples)) <= VOWELS  # redrawn under the same label
