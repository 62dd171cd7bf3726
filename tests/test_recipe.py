"""The self-sizing recipe: its choices follow the corpus and the budget, the user's keys win, speeds are cached."""

import pytest
import torch

from lstmgen import recipe, registry
from lstmgen.corpus import PrepareOptions, build_corpus
from lstmgen.device import pick_precision
from lstmgen.errors import UsageError
from lstmgen.sources import read_records, read_source

from .conftest import JOKES


def law(n_layer, hidden, embed, vocab, batch, seq, device, precision):
    """A machine whose tokens/s fall with a shape's arithmetic per token and rise with the batch."""
    return 4e9 / recipe.dense_parameters(n_layer, hidden, embed, vocab) * min(batch, 32) / 32


@pytest.fixture
def probes(monkeypatch):
    calls = []
    monkeypatch.setattr(recipe, "probe", lambda *a: calls.append(a) or law(*a))
    return calls


def corpus_of(tmp_path, name: str, copies: int) -> None:
    path = tmp_path / f"{name}.txt"
    path.write_text("\n".join(JOKES * copies) + "\n")
    source = read_source(str(path))
    records, col = read_records(source)
    registry.save_corpus(name, build_corpus(source, records, PrepareOptions(tokenizer="char"), column=col))


def plan(corpus: str, seconds: float, *sets: str) -> recipe.Recipe:
    return recipe.plan_recipe([f"corpus={corpus}", "train.device=cpu", f"train.max_time={seconds}", *sets])


def test_the_plan_follows_the_budget_and_the_corpus_size(tmp_path, probes):
    corpus_of(tmp_path, "small", 1)
    corpus_of(tmp_path, "large", 40)
    short, long = plan("large", 60), plan("large", 3600)
    params = [recipe.dense_parameters(r.cfg.model.n_layer, r.cfg.model.hidden, r.cfg.model.embed, 40)
              for r in (short, long)]  # fmt: skip
    assert params[1] > params[0]  # more time: a larger model
    assert long.cfg.train.max_time == 3600 and long.cfg.train.eval_every > short.cfg.train.eval_every
    small, large = plan("small", 60), plan("large", 60)
    assert small.cfg.model.dropout > large.cfg.model.dropout  # many passes over little text: regularise
    assert small.cfg.train.batch_size <= large.cfg.train.batch_size  # every lane keeps whole windows per epoch
    assert small.cfg.train.patience is not None
    assert [line.split(":")[0].strip() for line in large.why] == ["recipe", "because"]


def test_a_key_the_user_sets_wins(tmp_path, probes):
    corpus_of(tmp_path, "small", 1)
    r = plan("small", 60, "model.hidden=48", "train.lr=0.01")
    assert r.cfg.model.hidden == 48 and r.cfg.train.lr == 0.01
    assert "model.hidden" not in r.chosen and r.kept == ["model.hidden", "train.lr"]
    assert "yours: model.hidden, train.lr" in r.why[0]
    assert all(call[1] == 48 for call in probes)  # the speed measured is that of the user's width


def test_speeds_are_measured_once_per_machine_and_shape(tmp_path):
    corpus_of(tmp_path, "small", 1)
    first = plan("small", 30, "model.hidden=32")  # real probes, of tiny steps
    cached = registry.read_json(registry.home() / recipe.SPEED_FILE)
    (machine,) = cached
    assert "avx512_bf16" in machine or "no-bf16" in machine
    assert all(v > 0 for v in cached[machine].values())
    precision = pick_precision(first.cfg.train.precision, torch.device("cpu"))
    assert recipe.Speeds(torch.device("cpu"), precision).key == machine  # this machine, threads and precision
    again = plan("small", 30, "model.hidden=32")
    assert registry.read_json(registry.home() / recipe.SPEED_FILE) == cached  # nothing probed again
    assert again.cfg.model == first.cfg.model  # the same measurements, from the cache


def test_a_budget_too_short_to_size_is_one_usage_line_and_long_ones_read_as_written(tmp_path, probes):
    corpus_of(tmp_path, "small", 1)
    with pytest.raises(UsageError, match=r"--time 1s is too short .* give at least 15s, or a --config"):
        plan("small", 1)  # it once trained 0 steps and saved an untrained model
    assert not probes  # refused before measuring anything
    assert "cosine over 100h" in plan("small", 360_000).why[0] and "over 90s" in plan("small", 90).why[0]
