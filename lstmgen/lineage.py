"""Continuing a model on new text: the vocabulary a new corpus takes from a model (`prepare --vocab-from`),
the weights and lineage a new model takes from its parent (`train --from`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import LstmgenError, UsageError
from .tokenize import Vocab

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

SHOWN_NEW = 20  # new characters listed in the error: a whole new script would make the line unreadable
# The model section's keys that lay out the weights: a --from model keeps its parent's (dropout may change).
SHAPE_KEYS = ("embed", "hidden", "n_layer", "tie_weights", "adaptive_softmax")


# -- prepare --vocab-from ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VocabFrom:
    """A model's vocabulary, for encoding a new corpus that the model can continue training on."""

    model: str
    step: int  # of the model's best checkpoint, whose vocabulary this is
    vocab: Vocab
    extend: bool = False  # --extend-vocab: a char vocabulary grows by the text's new characters

    @classmethod
    def load(cls, model: str, extend: bool = False) -> VocabFrom:
        from .checkpoint import load

        best = load(model)  # its best checkpoint: what `train --from` starts from
        vocab = best.make_vocab()
        if extend and vocab.kind != "char":
            how = "new words become <unk>" if vocab.kind == "word" else "byte-level BPE encodes any text"
            raise UsageError(f"--extend-vocab grows a char vocabulary; model {model!r} is {vocab.kind}-level ({how})")
        return cls(model, best.step, vocab, extend)

    def meta(self, fitted: Vocab) -> dict:
        """What the corpus records of its vocabulary's origin (`show` prints it; `train --from` reads it)."""
        added = fitted.itos[len(self.vocab) :]
        return {"model": self.model, "step": self.step, "new_symbols": len(added), "added": added[:SHOWN_NEW]}


def fit_vocab(base: VocabFrom, seen: Vocab) -> Vocab:
    """The vocabulary a corpus is encoded with, given the model's (`base`) and the characters the text holds
    (`seen`, a char vocab built from every split; None for word and BPE).

    char: the model's, when the text has no new character; with --extend-vocab, the model's followed by the
    new ones (the model's ids keep their meaning: its rows are reused as they are); else an error listing
    them. word: the model's (new words become <unk>, whose rate the corpus reports). BPE: the model's (it
    encodes any text).
    """
    vocab = base.vocab
    if vocab.kind != "char":
        return vocab
    new = [t for t in seen.itos[1:] if t not in vocab.stoi]
    if not new:
        return vocab
    if base.extend:
        return Vocab("char", [*vocab.itos, *new])
    shown = " ".join(repr(c) for c in new[:SHOWN_NEW]) + (f" and {len(new) - SHOWN_NEW} more" if len(new) > SHOWN_NEW
                                                          else "")  # fmt: skip
    raise LstmgenError(
        f"the text has {len(new)} character(s) that the vocabulary of model {base.model!r} lacks: {shown}; add "
        "--extend-vocab to give them new rows, or remove them from the text"
    )


# -- train --from -------------------------------------------------------------------------------------


@dataclass
class Start:
    """Where a --from run starts: the parent's weights (grown to the corpus's vocabulary) and the lineage the
    new model records."""

    state_dict: dict
    lineage: dict


def check_fits(parent_name: str, parent_vocab: dict, corpus_name: str, corpus: dict) -> int:
    """The corpus must be encoded with the parent's vocabulary, or (char) that vocabulary followed by new
    characters (`prepare --extend-vocab`). Returns how many rows the vocabulary grows by."""
    have, want = corpus["vocab"], parent_vocab
    n = len(want.get("itos", ()))
    fits = have.get("kind") == want.get("kind") and (
        have == want or (have.get("kind") == "char" and have.get("itos", [])[:n] == want.get("itos")
                         and len(have.get("itos", ())) > n)  # fmt: skip
    )
    if not fits:
        raise LstmgenError(
            f"corpus {corpus_name!r} ({have.get('kind')}, {len(have.get('itos', ())):,} tokens) was not encoded with "
            f"the vocabulary of model {parent_name!r} ({want.get('kind')}, {n:,} tokens); prepare it with "
            f"`lstmgen prepare FILE --vocab-from {parent_name}`"
        )
    return len(have["itos"]) - n


def check_shape(parent_name: str, parent_model: dict, model: dict, name: str) -> None:
    """A --from model has its parent's shape (`model`: its model section after --set): a --set model.KEY that
    changes it is refused."""
    differ = [k for k in SHAPE_KEYS if model.get(k) != parent_model.get(k)]
    if differ:
        theirs = ", ".join(f"model.{k}={parent_model.get(k)!r}" for k in differ)
        raise UsageError(
            f"model {name!r} starts from {parent_name!r}, whose weights fix its shape ({theirs}); drop the --set "
            f"model.{differ[0]}=... that changes it"
        )


def grow(state_dict: dict, n_new: int, tied: bool) -> dict:
    """The parent's weights with `n_new` rows for the new characters at the end of the vocabulary.

    embed.weight (V, C): each new row is the mean of the old ones, an input the LSTM has seen the like of
    (zeros, or random rows of the init's scale, would be unlike any trained input). head.weight (V, H): the
    mean of the old rows too (the embedding's when tied), and head.bias (V,): the lowest old bias, so that a
    new character starts no likelier than the rarest known one and sampling does not favour it before it is
    learnt.
    """
    import torch

    if n_new == 0:
        return state_dict
    out = dict(state_dict)
    embed = state_dict["embed.weight"]
    out["embed.weight"] = torch.cat([embed, embed.mean(0, keepdim=True).expand(n_new, -1)])
    if tied:
        out["head.weight"] = out["embed.weight"]
    elif "head.weight" in state_dict:
        head = state_dict["head.weight"]
        out["head.weight"] = torch.cat([head, head.mean(0, keepdim=True).expand(n_new, -1)])
    if "head.bias" in state_dict:
        bias = state_dict["head.bias"]
        out["head.bias"] = torch.cat([bias, bias.min().expand(n_new)])
    return out


def start_from(parent: Checkpoint, corpus_name: str, corpus: dict) -> Start:
    """The parent's best checkpoint (`parent`) as the start of a new run on `corpus`: its weights, grown to
    the corpus's vocabulary, and the lineage the new model records. Refuses a corpus not encoded with the
    parent's vocabulary."""
    n_new = check_fits(parent.name, parent.vocab, corpus_name, corpus)
    before = parent.lineage or {}
    lineage = {
        "parent": parent.name,
        "parent_step": parent.step,
        "parents": [*before.get("parents", []), parent.name],  # oldest first
        "corpora": [*(before.get("corpora") or [parent.corpus.get("name")]), corpus_name],  # each generation's
        "new_symbols": n_new,
    }
    return Start(grow(parent.state_dict, n_new, bool(parent.config["model"].get("tie_weights"))), lineage)


def check_new_name(parent_name: str, name: str) -> None:
    """A --from run's model has a name of its own: the parent is never written to."""
    if parent_name == name:
        raise UsageError(
            f"--from {parent_name} starts a new model, and the parent is never written to; give the new one its own "
            "--name (or continue this one with --resume)"
        )


def load_parent(parent_name: str, name: str) -> Checkpoint:
    """The --from model's best checkpoint; refuses the new model's own name (the parent is never written to)."""
    from .checkpoint import load

    check_new_name(parent_name, name)
    return load(parent_name)
