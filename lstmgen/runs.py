"""Starting, resuming and replacing training runs: the policy behind `lstmgen train`, and its library entry
point `fit`."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from . import registry
from .checkpoint import Checkpoint, check_same_layout, check_world_size, died_before_first_checkpoint, load
from .config import Config, load_config, override_key
from .corpora import load_corpus
from .distributed import Group
from .errors import LstmgenError, UsageError
from .lineage import SHAPE_KEYS, check_new_name, check_shape, load_parent, start_from


@dataclass(frozen=True)
class TrainRequest:
    """What a user asked `lstmgen train` for."""

    config: str | None = None  # a YAML file or a packaged config's name; None: the defaults (or, to resume, the saved)
    overrides: tuple[str, ...] = ()  # key=value over the config: --set, then --corpus/--name/--device
    name: str | None = None  # --name: which model --resume continues (it is among the overrides too)
    resume: bool = False
    overwrite: bool = False
    parent: str | None = None  # --from: a new model starting from this one's best weights

    def __post_init__(self):
        if self.resume and self.overwrite:
            raise UsageError("--resume and --overwrite contradict each other; pick one")
        if self.resume and any(override_key(o) == "name" for o in self.overrides if o != self._name_flag):
            raise UsageError("--resume names the model with --name (or the --config's name:), not --set name=")

    @property
    def _name_flag(self) -> str | None:
        import json

        return f"name={json.dumps(self.name)}" if self.name is not None else None

    def model_name(self) -> str:
        if self.parent is not None and not self.resume:
            named = self.config is not None or any(override_key(o) == "name" for o in self.overrides)
            if not named:  # the default name would be the parent's, or "char": never what was meant
                raise UsageError(f"--from {self.parent} starts a new model: name it with --name")
        if not self.resume:
            # Only what names the model: the other overrides are checked against the config the run resolves
            # (a --from parent's, the recipe's), not against the defaults.
            naming = [o for o in self.overrides if override_key(o) == "name"]
            name = registry.check_name(load_config(self.config, naming).name, "model name")
            if self.parent is not None:
                check_new_name(self.parent, name)
            return name
        name = self.name or (load_config(self.config).name if self.config else None)
        if not name:
            raise UsageError("--resume needs the model: pass --name NAME (or the --config it was trained with)")
        return registry.check_name(name, "model name")


@dataclass
class Plan:
    cfg: Config
    resume: Checkpoint | None  # last.pt to continue from; None: from step 0
    note: str | None = None  # shown even with --quiet: a job script that says --resume should know it started over
    parent: Checkpoint | None = None  # --from: the best.pt whose weights a new model starts from
    why: list[str] | None = None  # a self-sized run (recipe.py): what it picked and why, in two lines


def plan(request: TrainRequest, dry_run: bool = False) -> Plan:
    """The config to train with and the checkpoint to continue from.

    To resume, the model's saved config with the overrides on top; check_resumable then refuses only values
    that differ from the model's. A run killed before its first checkpoint has nothing to resume: with
    --config it starts from step 0 (so a job script can always say --resume), without one it fails.
    """
    if not request.resume:
        if request.parent:
            return plan_from(request)
        from .recipe import plan_recipe, uses_recipe

        if uses_recipe(request.config, request.resume, request.overrides):
            recipe = plan_recipe(request.overrides, save_speeds=not dry_run)
            return Plan(recipe.cfg, None, why=recipe.why)
        return Plan(load_config(request.config, request.overrides), None)
    name = request.model_name()
    try:
        last = load(name, "last")
    except registry.NotFound as missing:
        if request.config is None and request.parent is None:
            if not registry.entry_dir("model", name).is_dir():
                raise missing from None  # no such model at all: its message says what the name is instead
            raise LstmgenError(f"model {name!r} has no checkpoint to resume from; start it with --config") from None
        if not died_before_first_checkpoint(name):
            raise LstmgenError(
                f"model {name!r} has no last.pt to resume from, but has a best.pt of a run that got further; "
                "start it again with --overwrite"
            ) from None
        note = f"model {name!r} has no checkpoint to resume from yet; starting it from step 0"
        if request.parent:
            return dataclasses.replace(plan_from(request), note=note)
        return Plan(load_config(request.config, request.overrides), None, note)
    if last.train_state is None:
        raise LstmgenError(f"model {name!r} has no resumable checkpoint (its last.pt lacks the training state)")
    if request.parent and (last.lineage or {}).get("parent") != request.parent:
        was = f"started from {last.lineage['parent']!r}" if last.lineage else "not started with --from"
        raise LstmgenError(f"model {name!r} was {was}, not from {request.parent!r}; drop --from to resume it")
    cfg = load_config(None, request.overrides, base=last.config)
    check_same_layout(last, cfg)
    note = None
    if request.config is not None:  # it starts a model with no checkpoint yet; here it must at least agree
        given = load_config(request.config, request.overrides)  # a missing or broken file is an error
        try:
            check_same_layout(last, given)
        except LstmgenError as e:
            raise LstmgenError(f"--config {request.config}: {e}; a resumed run keeps its saved config, so --config "
                               "can be dropped") from None  # fmt: skip
        if given.to_dict() != cfg.to_dict():
            note = (f"model {name!r} resumes with its saved config; --config {request.config} is used only to start "
                    "a model that has no checkpoint yet, so change settings on resume with --set")  # fmt: skip
    return Plan(cfg, last, note)


def plan_from(request: TrainRequest) -> Plan:
    """A --from run: the training keys of the --config (without one: the parent's), the overrides on top,
    and the parent's model shape, which its weights fix (a --set that changes it is refused)."""
    name = request.model_name()
    parent = load_parent(request.parent, name)
    shape_sets = [o for o in request.overrides if override_key(o).split(".")[0] == "model"]
    others = [o for o in request.overrides if o not in shape_sets]
    base = load_config(request.config, others, base=None if request.config else parent.config).to_dict()
    note = None
    if request.config and {k: base["model"][k] for k in SHAPE_KEYS} != {k: parent.config["model"].get(k)
                                                                         for k in SHAPE_KEYS}:  # fmt: skip
        note = f"the model's shape is {request.parent!r}'s (its weights fix it); the config's model section is unused"
    cfg = load_config(None, shape_sets, base=base | {"model": parent.config["model"]})
    check_shape(request.parent, parent.config["model"], cfg.to_dict()["model"], cfg.name)
    return Plan(cfg, None, note, parent)


def dry_run(request: TrainRequest) -> dict:
    """What `lstmgen train --dry-run` shows: the config the run would train with and, for a self-sized run,
    why. Trains nothing and writes nothing (not even the recipe's speed cache)."""
    if not request.resume and not request.overwrite:
        refuse_existing(request.model_name())  # what the run itself would refuse
    run = plan(request, dry_run=True)
    return {"config": run.cfg.to_dict(), "why": run.why or [], "resume_step": run.resume.step if run.resume else None}


def refuse_existing(model_name: str) -> None:
    if any(registry.entry_dir("model", model_name).glob("*.pt")):
        raise LstmgenError(
            f"model {model_name!r} already exists; continue it with --resume, replace it with --overwrite, "
            "or pick another --name"
        )


def check_before_launch(request: TrainRequest, nproc: int) -> None:
    """The usual mistakes of an N-process run, caught once as one line, before torchrun starts N processes
    that would each report them."""
    group = Group(rank=0, world=nproc)
    model_name = request.model_name()
    if request.resume:
        try:
            last = load(model_name, "last")
        except registry.NotFound:
            return  # the ranks start from step 0 (with --config) or say there is nothing to resume
        cfg = load_config(None, request.overrides, base=last.config)
        check_world_size(last, cfg, nproc)
        require_own_corpus(last, cfg)
    else:
        cfg = plan_from(request).cfg if request.parent else load_config(request.config, request.overrides)
        registry.require("corpus", cfg.corpus)
        if not request.overwrite:
            refuse_existing(model_name)
    group.per_rank(cfg.train.batch_size)
    group.device(cfg.train.device)


def fit(
    request: TrainRequest,
    *,
    on_event: Callable[[str, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_note: Callable[[str], None] | None = None,
    group: Group | None = None,
    started: float | None = None,
) -> dict:
    """Run `lstmgen train`: plan the run, then train under the model's lock; the summary (see Trainer.run).
    `started`: the time.perf_counter() reading the run's wall clock (max_time, elapsed) counts from; default:
    now, before the config and corpus load.

    One writer per model: a second `train` of this name refuses instead of interleaving checkpoints. Under
    torchrun rank 0 holds the lock for the group (the ranks are one writer) and alone hears notes.
    """
    import time

    from .train import train

    started = time.perf_counter() if started is None else started
    group = group or Group()
    model_name = request.model_name()
    holding = registry.lock("model", model_name, "training it") if group.main else contextlib.nullcontext()
    with holding:
        # Before the plan: a self-sized run's plan probes this machine for seconds and caches the speeds in the
        # registry, which a refused command must leave as it was.
        if not request.resume and not request.overwrite:
            refuse_existing(model_name)
        run = plan(request)
        if run.note and on_note and group.main:
            on_note(run.note)
        if run.why and on_event and group.main:
            on_event("plan", {"why": run.why})
        if run.resume is not None:
            require_own_corpus(run.resume, run.cfg)
        corpus = load_corpus(run.cfg.corpus)
        start = start_from(run.parent, run.cfg.corpus, corpus) if run.parent is not None else None
        return train(run.cfg, corpus, resume=run.resume, on_event=on_event, should_stop=should_stop, group=group,
                     started=started, start=start)  # fmt: skip


def require_own_corpus(last: Checkpoint, cfg: Config) -> None:
    """A run resumes only on the corpus it started on (check_resumable): when that is gone, the way back is to
    prepare it again, not another corpus (registry.require would suggest the closest name, of any kind)."""
    if not registry.entry_dir("corpus", cfg.corpus).is_dir():
        raise LstmgenError(
            f"model {cfg.name!r} trained on corpus {cfg.corpus!r}, which is no longer in {registry.home()}; it "
            f"resumes only on that corpus, so prepare it again as before: {prepare_again(last)}"
        )


def prepare_again(ckpt: Checkpoint) -> str:
    """The `lstmgen prepare` command that makes a model's corpus again, from what its checkpoint kept: the
    input files, tokenizer, split and vocabulary options (a checkpoint saved before it kept the options has
    only the file and tokenizer: then the command shows prepare's defaults)."""
    import shlex

    from .corpus import PrepareOptions
    from .tokenize import BPE_VOCAB_SIZE

    c, default = ckpt.corpus, PrepareOptions()
    n_labels = len(c.get("labels") or {})  # each label is a token of vocab_size, not one BPE learns
    sources = c.get("sources") if isinstance(c.get("sources"), list) else [c.get("source") or "FILE"]
    tokenizer = c.get("tokenizer") or ckpt.vocab.get("kind") or "char"
    # A --from model's corpus was encoded with its parent's vocabulary (check_fits): prepared again on its own,
    # it would get other ids, and the resume would be refused.
    parent = (ckpt.lineage or {}).get("parent")
    words = ["lstmgen", "prepare", *map(str, sources), "--name", str(c.get("name"))]
    words += ["--vocab-from", str(parent)] if parent else ["--tokenizer", tokenizer]
    words += ["--extend-vocab"] if parent and (ckpt.lineage or {}).get("new_symbols") else []
    options = {  # each only where it differs from prepare's default
        "--column": c.get("column"),
        "--records": "file" if c.get("stream") else None,
        "--val-frac": c.get("val_frac") if c.get("val_frac") != default.val_frac else None,
        "--test-frac": c.get("test_frac") if c.get("test_frac") != default.test_frac else None,
        "--seed": c.get("seed") or None,
        "--min-freq": (c.get("min_freq") if tokenizer == "word" and not parent and c.get("min_freq") != default.min_freq
                       else None),  # fmt: skip
        "--vocab-size": (c.get("vocab_size") - n_labels if tokenizer == "bpe" and not parent
                         and isinstance(c.get("vocab_size"), int) and c.get("vocab_size") - n_labels != BPE_VOCAB_SIZE
                         else None),  # fmt: skip
        "--label-column": c.get("label_column"),
        "--max-labels": n_labels if n_labels > default.max_labels else None,
    }
    words += [str(w) for option, value in options.items() if value is not None for w in (option, value)]
    return shlex.join(words)


def worker_argv(argv: list[str]) -> list[str]:
    """`lstmgen train ...` as the user typed it (argv after the program), for each of --nproc's processes:
    the same command without --nproc."""
    args = argv[1:] if argv[:1] == ["train"] else list(argv)
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out
