"""Scoring text: lanes, per-record NLL, and the same figures from the ONNX and the torch backends."""

import math

import numpy as np
import pytest

from lstmgen.evaluate import eval_lanes, evaluate_model, metrics, record_nll, stream_nll
from lstmgen.inference import load_for_inference, load_torch
from lstmgen.tokenize import IGNORE


def test_eval_lanes_cover_every_token_once():
    stream = np.arange(1, 10_000)
    x, y = eval_lanes(stream, eor_id=0, batch_size=4)
    assert x.shape == (2, 5000)  # lanes of at least 4,096 tokens
    targets = y[y != IGNORE]
    assert sorted(targets.tolist()) == stream.tolist()
    assert x[0, 0] == 0 and y[0, 0] == 1  # the first token is predicted from <eor>, like a record start


def test_onnx_and_torch_backends_score_alike_and_match_training_validation(tiny_model, toy_corpus):
    from lstmgen.validation import evaluate

    onnx, torch_path = load_for_inference("tiny"), load_torch("tiny")
    stream = onnx.heldout("val")
    a, n = stream_nll(onnx.backend, stream, onnx.vocab.eor_id)
    b, _ = stream_nll(torch_path.backend, stream, onnx.vocab.eor_id)
    c, _ = evaluate(torch_path.backend.model, toy_corpus["splits"]["val"], onnx.vocab.eor_id)
    assert n == len(stream) and a == pytest.approx(b, rel=1e-5) and a == pytest.approx(c, rel=1e-5)
    records = [[5, 6, 7], [], [8] * 40]
    np.testing.assert_allclose(record_nll(onnx.backend, records, 0), record_nll(torch_path.backend, records, 0),
                               rtol=1e-5)  # fmt: skip


def test_eval_on_cpu_and_on_the_torch_path_report_the_same(tiny_model):
    cpu = evaluate_model("tiny")
    torch_path = evaluate_model("tiny", device="auto")  # no GPU here: auto is the CPU's ONNX path too
    assert cpu["loss"] == pytest.approx(torch_path["loss"], rel=1e-5) and cpu["tokens"] == torch_path["tokens"]


def test_bits_per_char_is_nats_over_ln2_per_char():
    m = metrics(nll=100 * math.log(2), n_tokens=50, n_chars=100)
    assert m["bits_per_char"] == pytest.approx(1.0) and m["loss"] == pytest.approx(2 * math.log(2))


def test_scoring_reports_its_progress_up_to_the_whole_text(tiny_model):
    # `lstmgen eval` renders these on a terminal: a long --file shows that it is working, and how far.
    for per_record in (False, True):
        seen = []
        result = evaluate_model("tiny", "val", per_record=per_record, on_progress=lambda *a, seen=seen: seen.append(a))
        total = seen[-1][1]
        assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)
        assert total == (sum(r["tokens"] for r in result) if per_record else result["tokens"])
    long = np.arange(1, 20_000) % 20  # 20,000 tokens: read in many parts, each reported
    parts = []
    loaded = load_for_inference("tiny")
    nll, _ = stream_nll(loaded.backend, long, 0, on_progress=lambda d, t: parts.append(d))
    assert len(parts) >= 10 and parts == sorted(parts) and parts[-1] == len(long)
    assert nll == pytest.approx(stream_nll(loaded.backend, long, 0)[0], rel=1e-6)  # the same score either way


@pytest.mark.parametrize("damage", ["truncated", "empty-split"])
def test_a_damaged_heldout_file_is_rebuilt_from_the_checkpoint_not_an_error(tiny_model, damage):
    """heldout.npz is a cache of the checkpoint's held-out ids: a copy cut short (a truncated zip) or one whose
    split lost its ids gives the same figures as the intact file, and is written again."""
    from lstmgen import registry

    intact = evaluate_model("tiny")
    path = registry.entry_dir("model", "tiny") / "heldout.npz"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        with np.load(path) as f:
            arrays = dict(f)
        np.savez(path, **{**arrays, "test": arrays["test"][:0]})
    assert evaluate_model("tiny") == intact
    with np.load(path) as f:  # written again, whole
        assert f["test"].size == intact["tokens"]
