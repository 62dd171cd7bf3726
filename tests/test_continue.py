"""Continuing a model on new text (lineage.py): prepare --vocab-from, train --from, the new-symbol policy."""

import hashlib

import pytest
import torch

from lstmgen import checkpoint, registry
from lstmgen.corpora import TextInput, load_corpus, prepare
from lstmgen.corpus import PrepareOptions
from lstmgen.errors import LstmgenError
from lstmgen.lineage import grow
from lstmgen.runs import TrainRequest, fit

from .conftest import tiny_config

# Corpus B: other records than the toy jokes, in the same alphabet and style, so what the parent learnt helps.
B = [
    "Why did the dog sit on the road? It was a warm day.",
    "What do you call a sleepy cat? A napping kit.",
    "Hey, did you hear about the fish? It was a wet story.",
    "Why do cows moo? They cannot sing.",
    "I told my dog a joke. It did not bark at it.",
    "Why did the duck cross the mat? To reach the sun.",
] * 6
STEPS = ["train.max_steps=8", "train.eval_every=8", "train.checkpoint_every=8", "train.warmup_steps=0"]


def sets(cfg, *extra) -> tuple[str, ...]:
    """The tiny config as overrides, for TrainRequest."""
    d = cfg.to_dict()
    flat = [f"model.{k}={v}" for k, v in d["model"].items() if v is not None]
    flat += [f"train.{k}={v}" for k, v in d["train"].items() if v is not None]
    return (*(s.replace("=True", "=true").replace("=False", "=false") for s in flat), *extra)


def write(tmp_path, name, records):
    path = tmp_path / f"{name}.txt"
    path.write_text("\n".join(records) + "\n")
    return TextInput(str(path))


def snapshot() -> dict:
    return {str(p.relative_to(registry.home())): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(registry.home().rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture
def parent(toy_corpus):
    """A tiny char model trained on the toy jokes long enough to have learnt their spelling."""
    from lstmgen.train import train

    cfg = tiny_config(max_steps=60, eval_every=20, checkpoint_every=20, lr=0.01)
    train(cfg, toy_corpus)
    return cfg


def test_fine_tuning_learns_corpus_b_faster_than_a_fresh_model_and_leaves_the_parent_untouched(parent, tmp_path):
    prepare("b", write(tmp_path, "b", B), PrepareOptions(val_frac=0.15, test_frac=0.1), vocab_from="tiny")
    parent_files = {k: v for k, v in snapshot().items() if k.startswith("models/tiny/")}
    child = fit(TrainRequest(None, sets(parent, "corpus=b", "name=child", *STEPS), "child", parent="tiny"))
    fresh = fit(TrainRequest(None, sets(parent, "corpus=b", "name=fresh", *STEPS), "fresh"))
    assert child["steps"] == fresh["steps"] == 8
    # B's held-out loss after the same 8 steps: the parent's spelling carries over.
    assert child["best_val_loss"] < fresh["best_val_loss"] - 0.3, (child, fresh)
    assert {k: v for k, v in snapshot().items() if k.startswith("models/tiny/")} == parent_files
    saved = checkpoint.load("child")
    assert saved.lineage == {"parent": "tiny", "parent_step": 60, "parents": ["tiny"], "corpora": ["toy", "b"],
                             "new_symbols": 0}  # fmt: skip
    assert registry.info("model", "child")["lineage"]["parent"] == "tiny"


def test_the_child_resumes_exactly_and_keeps_its_lineage(parent, tmp_path):
    prepare("b", write(tmp_path, "b", B), PrepareOptions(val_frac=0.15, test_frac=0.1), vocab_from="tiny")
    run = sets(parent, "corpus=b", *STEPS, "train.max_steps=16")
    last = registry.entry_dir("model", "child") / "last.pt"
    stopped = fit(TrainRequest(None, (*run, "name=child"), "child", parent="tiny"), should_stop=last.is_file)
    assert stopped["stop_reason"] == "interrupted" and stopped["steps"] == 8  # its first last.pt, at step 8
    resumed = fit(TrainRequest(None, (), "child", resume=True))
    assert resumed["steps"] == 16 and checkpoint.load("child", "last").lineage["parent"] == "tiny"
    # The same 16 steps in one run: bit for bit the same weights.
    fit(TrainRequest(None, (*run, "name=once"), "once", parent="tiny"))
    a, b = checkpoint.load("child", "last").state_dict, checkpoint.load("once", "last").state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_new_characters_are_refused_by_default_and_get_new_rows_with_extend_vocab(parent, tmp_path):
    text = write(tmp_path, "accents", [r.replace("e", "é").replace("u", "ü") for r in B])
    before = snapshot()
    with pytest.raises(LstmgenError, match=r"2 character\(s\).*'é' 'ü'.*--extend-vocab"):
        prepare("acc", text, PrepareOptions(), vocab_from="tiny")
    assert snapshot() == before  # no corpus, no lock or scratch left
    done = prepare("acc", text, PrepareOptions(), vocab_from="tiny", extend_vocab=True)
    old = checkpoint.load("tiny").vocab["itos"]
    assert done.meta["vocab_from"] == {"model": "tiny", "step": 60, "new_symbols": 2, "added": ["é", "ü"]}
    assert load_corpus("acc")["vocab"]["itos"] == [*old, "é", "ü"]  # the parent's ids keep their meaning
    fit(TrainRequest(None, sets(parent, "corpus=acc", "name=child", *STEPS), "child", parent="tiny"))
    child = checkpoint.load("child")
    assert child.state_dict["embed.weight"].shape[0] == len(old) + 2 and child.lineage["new_symbols"] == 2
    # Its corpus removed, the command that prepares it again (in the resume's refusal) gives the same ids.
    import shlex

    from lstmgen.runs import prepare_again

    from .cli.runner import ok

    was = load_corpus("acc")
    ok("rm", "acc", "-q")
    ok(*shlex.split(prepare_again(checkpoint.load("child", "last")))[1:], "-q")
    assert load_corpus("acc")["vocab"] == was["vocab"]


def test_new_rows_start_as_the_mean_input_and_no_likelier_than_the_rarest_output():
    torch.manual_seed(0)
    sd = {"embed.weight": torch.randn(5, 3), "head.weight": torch.randn(5, 4), "head.bias": torch.randn(5)}
    grown = grow(sd, 2, tied=False)
    assert grown["embed.weight"].shape == (7, 3) and grown["head.weight"].shape == (7, 4)
    assert torch.allclose(grown["embed.weight"][5:], sd["embed.weight"].mean(0).expand(2, 3))
    assert torch.equal(grown["head.bias"][5:], sd["head.bias"].min().expand(2))
    assert torch.equal(grown["embed.weight"][:5], sd["embed.weight"])
    tied = grow({"embed.weight": sd["embed.weight"], "head.weight": sd["embed.weight"], "head.bias": sd["head.bias"]},
                1, tied=True)  # fmt: skip
    assert torch.equal(tied["head.weight"], tied["embed.weight"])


def test_a_corpus_with_its_own_vocabulary_is_refused_naming_both(parent, tmp_path):
    prepare("own", write(tmp_path, "own", B), PrepareOptions())  # a vocabulary of its own: B's characters
    before = snapshot()
    with pytest.raises(LstmgenError, match=r"corpus 'own' \(char.*model 'tiny' \(char.*--vocab-from tiny"):
        fit(TrainRequest(None, ("corpus=own", "name=child"), "child", parent="tiny"))
    assert snapshot() == before


def test_a_set_that_repeats_the_parents_tied_shape_is_not_checked_against_the_defaults(toy_corpus):
    # The defaults (embed 128, hidden 256) cannot tie weights; a tied parent can, and its child keeps its shape.
    from lstmgen.config import load_config
    from lstmgen.runs import dry_run
    from lstmgen.train import train

    tied = [*(s for s in sets(tiny_config(max_steps=2)) if not s.startswith("model.embed")), "model.embed=16",
            "model.tie_weights=true"]  # fmt: skip
    train(load_config(None, ["corpus=toy", "name=tied", *tied]), toy_corpus)
    request = TrainRequest(None, ("corpus=toy", "name=child", "model.tie_weights=true"), "child", parent="tied")
    assert dry_run(request)["config"]["model"]["tie_weights"] is True
