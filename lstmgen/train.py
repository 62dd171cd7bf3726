"""Training: a Trainer runs the loop, validates, keeps the best weights and writes checkpoints. It reports
through a callback and never prints.

One class of ~400 lines: the loop's state (LoopState), its step, validation, checkpointing and restore share
that state, and splitting them would pass it around again as the old dict of strings did."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import registry
from .batches import batchify, check_window, get_batch, num_windows
from .checkpoint import RESUMED, RESUMED_IF_SAVED, Checkpoint, bits_per_char, check_resumable, check_world_size
from .config import Config
from .device import autocast, pick_precision
from .distributed import Group
from .errors import LstmgenError
from .lineage import Start
from .model import LSTMLM, adaptive_cutoffs
from .tokenize import Vocab
from .validation import evaluate

OnEvent = Callable[[str, dict], None]
# The corpus's preparation a checkpoint keeps beside its summary: its input files and prepare's options.
PREPARED_WITH = ("sources", "column", "stream", "seed", "val_frac", "test_frac", "min_freq", "vocab_size",
                 "label_column", "labels")  # fmt: skip


# -- schedule ------------------------------------------------------------------------------------------


def lr_at(cfg: Config, step: int, progress: float) -> float:
    """Linear warmup over warmup_steps, then cosine from lr to lr * min_lr_ratio as progress goes 0 -> 1.

    A pure function of (step, progress), both saved in checkpoints: restoring them restores the schedule.
    """
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.schedule == "constant":
        return t.lr
    cos = 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * cos)


# -- the loop ------------------------------------------------------------------------------------------


def check_head(cfg: Config, vocab: Vocab) -> None:
    """An adaptive softmax's cutoffs split ids by frequency: only a word vocabulary is ordered that way."""
    if adaptive_cutoffs(cfg.model, len(vocab)) and vocab.kind != "word":
        raise LstmgenError(
            f"model.adaptive_softmax needs a word corpus, whose ids run from most to least frequent; corpus "
            f"{cfg.corpus!r} is {vocab.kind}-level, so set model.adaptive_softmax to null"
        )


def check_same_start(cfg: Config, corpus: dict, step: int, group: Group) -> None:
    """Every rank must start from the same config, corpus and step (each machine reads its own registry):
    ranks that disagree would take different paths through the collectives and hang."""
    starts = group.gather((cfg.to_dict(), corpus["meta"].get("sha256"), corpus["meta"].get("tokens"), step))
    if any(other != starts[0] for other in starts):
        differ = [r for r, other in enumerate(starts) if other != starts[0]]
        raise LstmgenError(
            f"rank(s) {', '.join(map(str, differ))} start from another config, corpus or checkpoint than rank 0; "
            "every machine needs the same corpus (and, to resume, the same last.pt) in its registry"
        )


def build_optimizer(model: LSTMLM, cfg: Config) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases), as in nanoGPT.

    Fused on CPU and CUDA: one kernel for all parameters instead of PyTorch's CPU default, a Python loop of
    a dozen ops per tensor (0.6 against 6.3 ms per step for a 1M-parameter word model on 2 cores)."""
    params = list(dict.fromkeys(model.parameters()))  # tied weights appear once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = params[0].device.type in ("cpu", "cuda") or None
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=(0.9, 0.99), fused=fused)


def _now(timespec: str = "seconds") -> str:
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


@dataclass
class LoopState:
    """What --resume restores besides weights, optimizer, RNG and hidden state (checkpoint.RESUMED and
    RESUMED_IF_SAVED, plus the history); everything else is rebuilt deterministically from the config."""

    step: int = 0
    epoch: int = 0
    window: int = 0  # the next BPTT window of this epoch
    elapsed: float = 0.0  # wall seconds of the run so far, start-up, validation and saving included
    tokens: int = 0  # seen by all ranks
    best_val: float | None = None
    bad_evals: int = 0  # validations since the best one
    loss_sum: float = 0.0  # training losses since the last validation, for the history's mean train loss
    loss_steps: int = 0
    history: list[dict] = field(default_factory=list)
    created: str = field(default_factory=_now)


class Trainer:
    """One training run of cfg.name on `corpus` (a loaded registry corpus), writing checkpoints to the registry.

    `resume` is the model's last.pt; `start`, a --from run's parent weights and lineage (lineage.Start).
    `should_stop()` is polled once per step (the CLI sets it on
    Ctrl-C/SIGTERM); the loop then saves a checkpoint and ends with stop_reason "interrupted". `group` is the
    torch.distributed group under torchrun: each rank trains on its share of the lanes, DDP averages the
    gradients, rank 0 alone reports and writes checkpoints. The group must be started (Group.start).
    """

    def __init__(self, cfg: Config, corpus: dict, *, resume: Checkpoint | None = None,
                 on_event: OnEvent | None = None, should_stop: Callable[[], bool] | None = None,
                 group: Group | None = None, device: torch.device | None = None,
                 started: float | None = None, start: Start | None = None):  # fmt: skip
        # The run's wall clock starts at `started` (a time.perf_counter() reading; the CLI takes it as the
        # command starts): start-up counts towards max_time and the reported elapsed time.
        self.started = time.perf_counter() if started is None else started
        self.cfg, self.corpus, self.group = cfg, corpus, group or Group()
        self.device = device if device is not None else self.group.device(cfg.train.device)
        self.should_stop = should_stop
        self.emit = (on_event if self.group.main else None) or (lambda kind, data: None)  # rank 0 speaks for all
        t = cfg.train
        self.precision = pick_precision(t.precision, self.device)
        self.vocab = Vocab.from_dict(corpus["vocab"])
        self.model_dir = registry.entry_dir("model", cfg.name)
        val_ids = corpus["splits"]["val"]
        if val_ids.numel() == 0:
            raise LstmgenError(
                f"corpus {cfg.corpus!r} has an empty validation split, which picks the best checkpoint "
                "and stops early; prepare it again with a larger --val-frac"
            )
        if resume is not None:
            check_resumable(resume, corpus, cfg)
            check_world_size(resume, cfg, self.group.world)
        check_head(cfg, self.vocab)
        torch.manual_seed(t.seed)  # the same initial weights on every rank
        self.model = LSTMLM(len(self.vocab), cfg.model).to(self.device)
        if start is not None:  # train --from: the parent's weights, a fresh optimizer and schedule
            self.model.load_state_dict(start.state_dict)
        self.lineage = start.lineage if start is not None else resume.lineage if resume is not None else None
        self.net = self.group.wrap(self.model)  # what the step calls: DDP under torchrun, else the model itself
        if self.group.active:
            torch.manual_seed(t.seed + self.group.rank)  # but each rank's own dropout masks
        self.optimizer = build_optimizer(self.model, cfg)
        self.all_lanes = batchify(corpus["splits"]["train"], t.batch_size)  # (B, L) compact ids, a view
        self.lanes = self.group.share(self.all_lanes)  # (B / world, L): this rank's lanes
        self.n_windows = num_windows(self.lanes, t.seq_len)
        # A fresh run replaces what was there, but only at its first save, and whole: a run that fails before
        # or during it (bad settings, early divergence, a full disk) leaves an earlier model of this name, or
        # none, as it was.
        self.references = self._references()  # read before a fresh run replaces the earlier info.json
        self.fresh_entry = resume is None  # the next save builds the whole entry, then puts it in place
        self.state = LoopState()
        self.saved: dict[str, int] = {}  # which -> step, for the checkpoints this run has on disk
        self.hidden = None  # (h, c), each (n_layer, B / world, H); None at an epoch start = zeros
        self.resumed_step = None
        if resume is not None:
            try:
                self._restore(resume)
            except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
                raise LstmgenError(
                    f"model {cfg.name!r}: last.pt is damaged or incomplete ({type(e).__name__}: "
                    f"{str(e).splitlines()[0][:120]}); train it again with --overwrite"
                ) from None
            self.resumed_step = self.state.step
        check_same_start(cfg, corpus, self.state.step, self.group)
        self.val_piece = self.group.piece(val_ids, self.vocab.eor_id)  # each rank scores its piece; sums reduced
        self.last_loss: float | None = None
        self.log_losses: list[float] = []  # the training losses since the last progress report
        self.lr = t.lr
        self.run_tokens, self.step_time = 0, 0.0  # this run's, for tokens/s
        self.earlier = self.state.elapsed  # wall seconds of the runs this one resumes
        # Seconds the last validation pass and the last save of each checkpoint took: what a max_time run
        # keeps in hand for its final validation and save.
        self.took = {"validation": 0.0, "last": 0.0, "best": 0.0, "step": 0.0}

    # -- the loop ----------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Train until a limit, early stopping or a stop request; returns the summary (steps, epochs,
        elapsed_s, tokens_per_s, best_val_loss, name, stop_reason, device, precision, world_size)."""
        t, s = self.cfg.train, self.state
        self.emit("start", self._start_event())
        self.model.train()
        last_eval_step = s.step if self.resumed_step is not None else -1
        while True:
            stop_reason = self._stop_reason()
            if stop_reason == "max_time" and s.step == 0:  # nothing learnt: a model that never trained is no result
                raise LstmgenError(
                    f"the time budget (--time, train.max_time: {self.cfg.train.max_time:g} s) ran out before the first "
                    f"step (start-up took {s.elapsed:.1f} s of it); give a longer one"
                )
            if stop_reason:
                break
            t0 = time.perf_counter()
            self._step()
            self.took["step"] = time.perf_counter() - t0
            self.step_time += self.took["step"]
            self._tick()
            if not math.isfinite(self.last_loss):  # keep the last finite checkpoint: no save here
                self._diverged(self.last_loss)
            if s.step % t.log_every == 0:
                self.emit("step", self._step_event())
            patience_out = False
            # best.pt before last.pt at a step that has both: checkpoint.died_before_first_checkpoint relies on it
            if s.step % t.eval_every == 0:
                patience_out = self._validate()
                last_eval_step = s.step
            if s.step % t.checkpoint_every == 0:
                self._save("last", "training")
            if patience_out:
                stop_reason = "early_stop"
                break
        if last_eval_step != s.step and stop_reason != "interrupted":
            self._validate()
        self._save("last", "interrupted" if stop_reason == "interrupted" else "done")
        self._tick()  # the whole run, its final validation and save included
        summary = {
            "name": self.cfg.name,
            "steps": s.step,
            "epochs": round(self.epochs_done(), 3),
            "elapsed_s": round(s.elapsed, 2),
            "tokens_per_s": round(self.run_tokens / self.step_time) if self.step_time else 0,
            "best_val_loss": s.best_val,
            "val_bits_per_char": self.bits_per_char(s.best_val),  # the best, on the validation split
            **self.references,
            "stop_reason": stop_reason,
            "device": str(self.device),
            "precision": self.precision,
            "world_size": self.group.world,
        }
        self.emit("end", summary)
        return summary

    def _references(self) -> dict:
        """What the run's held-out bits/char is shown beside (see baselines.py): a unigram model of the training
        split, and the best an earlier run of this model name reached on this corpus (None where none did)."""
        from .baselines import previous_bits_per_char, unigram_bits_per_char

        meta, splits = self.corpus["meta"], self.corpus["splits"]
        val_chars = (meta.get("chars") or {}).get("val") or 0
        earlier = registry.read_json(self.model_dir / "info.json")
        return {
            "unigram_bits_per_char": unigram_bits_per_char(splits["train"], splits["val"], len(self.vocab), val_chars),
            "previous_val_bits_per_char": previous_bits_per_char(earlier, self.cfg.corpus, meta.get("sha256")),
        }

    def bits_per_char(self, val_loss: float | None) -> float | None:
        """A validation loss (nats per token) as bits per character of the validation split (Checkpoint's rule)."""
        return bits_per_char(val_loss, self.corpus["meta"])

    def _tick(self) -> None:
        """state.elapsed: wall seconds since the run started, plus those of the runs it resumes."""
        self.state.elapsed = self.earlier + time.perf_counter() - self.started

    def _stop_reason(self) -> str | None:
        """Why the loop ends before this step, if it does. One agreed clock and stop request: every rank takes
        the same decision at the same step.

        max_time bounds the whole run: the loop stops while one more step, a validation pass and the final
        save (last.pt and the decoding graph, about as long as the last `last` and `best` saves) still fit.
        Until a validation pass is timed, it counts as two steps (the shipped configs' passes took 1.6-2 steps
        on 2 cores); until a save is, as nothing."""
        t, s, took = self.cfg.train, self.state, self.took
        self._tick()
        asked = bool(self.should_stop and self.should_stop())
        finishing = took["step"] + (took["validation"] or 2 * took["step"]) + took["last"] + took["best"]
        elapsed, finishing, stops = self.group.sum([s.elapsed, finishing, float(asked)])  # the ranks' mean
        s.elapsed, finishing = elapsed / self.group.world, finishing / self.group.world
        if t.max_steps and s.step >= t.max_steps:
            return "max_steps"
        if t.max_epochs and s.epoch >= t.max_epochs:
            return "max_epochs"
        if t.max_time and s.elapsed + finishing >= t.max_time:
            return "max_time"
        return "interrupted" if stops > 0 else None

    def _step(self) -> None:
        """One optimizer step on the next window of every lane, the state carried from the one before."""
        t, s, group = self.cfg.train, self.state, self.group
        check_window(self.all_lanes, s.window, t.seq_len, len(self.vocab))
        x, y = get_batch(self.lanes, s.window, t.seq_len, self.device)  # (B / world, T) each
        self.lr = lr_at(self.cfg, s.step, self.progress())
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = self.lr
        with autocast(self.device, self.precision):
            nll, hidden = self.net(x, self.hidden, y)  # (B / world, T)
        loss = nll.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.optimizer.step()
        self.hidden = (hidden[0].detach(), hidden[1].detach())  # carry the state, not the graph
        self.last_loss = group.mean(loss.detach())  # the global batch's loss
        self.log_losses.append(self.last_loss)
        s.loss_sum += self.last_loss
        s.loss_steps += 1
        s.step += 1
        s.window += 1
        s.tokens += x.numel() * group.world
        self.run_tokens += x.numel() * group.world
        if s.window == self.n_windows:  # next epoch: lanes restart, and so does the state
            s.epoch, s.window, self.hidden = s.epoch + 1, 0, None

    def epochs_done(self) -> float:
        """Passes over the training split so far, with the current one's fraction: 42.17."""
        return self.state.epoch + self.state.window / self.n_windows

    def progress(self) -> float:
        """How far the run is, 0 -> 1, by whichever limit is nearest."""
        t, s = self.cfg.train, self.state
        fractions = [
            s.step / t.max_steps if t.max_steps else 0.0,
            (s.epoch + s.window / self.n_windows) / t.max_epochs if t.max_epochs else 0.0,
            s.elapsed / t.max_time if t.max_time else 0.0,
        ]
        return max(fractions)

    def _start_event(self) -> dict:
        t = self.cfg.train
        step_limits = [x for x in (t.max_steps, t.max_epochs and t.max_epochs * self.n_windows) if x]
        self.total_steps = min(step_limits) if step_limits else None  # None: only max_time bounds the run
        return {
            "name": self.cfg.name,
            "device": str(self.device),
            "precision": self.precision,
            "parameters": self.model.num_params(),
            "steps_per_epoch": self.n_windows,
            "total_steps": self.total_steps,
            "max_time": t.max_time,
            "resumed_step": self.resumed_step,
            "train_tokens": int(self.all_lanes.numel()),
            "world_size": self.group.world,
        }

    def _step_event(self) -> dict:
        s = self.state
        loss = sum(self.log_losses) / len(self.log_losses)  # the mean since the last report: one batch is noisy
        self.log_losses.clear()
        return {
            "step": s.step,
            "epoch": self.epochs_done(),
            "loss": loss,
            "lr": self.lr,
            "tokens_per_s": self.run_tokens / self.step_time,
            "elapsed_s": s.elapsed,
            "total_steps": self.total_steps,
            "progress": self.progress(),
        }

    def _diverged(self, loss: float):
        raise LstmgenError(
            f"training diverged at step {self.state.step:,} (loss {loss}); {self._kept()}; lower train.lr or set "
            "train.grad_clip"
        )

    # -- validation --------------------------------------------------------------------------------------

    def _validate(self) -> bool:
        """Validate, record, keep `best`; True when patience has run out."""
        t, s = self.cfg.train, self.state
        # Under torchrun no rank may leave a pass the others finish: a stop waits for the (bounded) pass.
        stop = None if self.group.active else self.should_stop
        started = time.perf_counter()

        def progress(done: int, total: int) -> None:  # (windows read, windows in all) of this rank's piece
            self.emit("validating", {"step": s.step, "done": done, "total": total,
                                     "elapsed_s": time.perf_counter() - started})  # fmt: skip

        result = evaluate(self.model, self.val_piece, self.vocab.eor_id, device=self.device, should_stop=stop,
                          on_progress=progress)  # fmt: skip
        self.took["validation"] = time.perf_counter() - started
        if result is None:  # stopped midway: the loop saves last.pt and ends
            return False
        nll, n = self.group.sum(list(result))  # sum of NLL / sum of tokens over all ranks
        val_loss = nll / n
        if not math.isfinite(val_loss):
            self._diverged(val_loss)
        improved = s.best_val is None or val_loss < s.best_val
        if improved:
            s.best_val, s.bad_evals = val_loss, 0
        else:
            s.bad_evals += 1
        # The mean training loss since the last validation, not the last batch's: one batch is noisy.
        train_loss = s.loss_sum / s.loss_steps if s.loss_steps else None
        s.loss_sum, s.loss_steps = 0.0, 0
        s.history.append({"step": s.step, "epoch": s.epoch, "train_loss": train_loss, "val_loss": val_loss,
                          "lr": self.lr, "elapsed_s": round(s.elapsed, 2)})  # fmt: skip
        self.emit("eval", {"step": s.step, "val_loss": val_loss, "best_val_loss": s.best_val, "improved": improved})
        if t.sample_every and len(s.history) % t.sample_every == 0 and self.group.main:
            self.emit("sample", {"step": s.step, "text": self._show_sample()})
        if improved:
            self._save("best", "training")
        return bool(t.patience) and s.bad_evals >= t.patience

    def _show_sample(self) -> str:
        """A short sample from the model as it is now, on its own generator: training's RNG is untouched."""
        from .inference import Loaded
        from .model import TorchDecoder
        from .sample import SampleOptions, sample

        loaded = Loaded(TorchDecoder(self.model), self.vocab, self.cfg.name, {})
        (shown,) = sample(loaded, "", SampleOptions(max_tokens=120), seed=self.state.step)
        self.model.train()  # sampling switched it to eval mode
        return shown.text

    # -- checkpoints -------------------------------------------------------------------------------------

    def _save(self, which: str, status: str) -> None:
        """Rank 0 writes `which`.pt atomically; every rank takes part (last.pt gathers their state) and waits
        until it is on disk."""
        group, started = self.group, time.perf_counter()
        ranks = group.gather(self._rank_state()) if which == "last" else None
        if ranks is not None and any(r["weights"] != ranks[0]["weights"] for r in ranks):
            raise LstmgenError(
                f"the {group.world} replicas' weights differ at step {self.state.step:,}: a bug in lstmgen"
            )
        failure = None
        if group.main:
            try:
                self._write(which, status, ranks)
            except LstmgenError as e:
                failure = e
        group.check(failure is None, f"save {which}.pt")
        if failure is not None:
            raise failure
        self.took[which] = time.perf_counter() - started
        self.emit("checkpoint", {"which": which, "step": self.state.step, "path": str(self.model_dir / f"{which}.pt")})

    def _rank_state(self) -> dict:
        """What only this rank knows, for last.pt: its lanes' hidden state, its RNG, and a fingerprint of its
        weights (the replicas must agree to the bit)."""
        return {
            "hidden": tuple(h.detach().cpu() for h in self.hidden) if self.hidden is not None else None,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "weights": [float(p.detach().double().sum()) for p in self.model.parameters()],
        }

    def checkpoint(self, ranks: list[dict] | None = None) -> Checkpoint:
        """The model as it is now; with `ranks` (every rank's _rank_state), also everything --resume needs."""
        s, meta = self.state, self.corpus["meta"]
        ckpt = Checkpoint(
            name=self.cfg.name,
            created=s.created,
            vocab=self.vocab.to_dict(),
            config=self.cfg.to_dict(),
            state_dict={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            history=s.history,
            step=s.step,
            epoch=s.epoch,
            best_val_loss=s.best_val,
            corpus={k: meta.get(k) for k in ("source", "sha256", "tokenizer", "chars", "records", "tokens")}
            # how it was prepared, for the command that prepares it again (see runs.prepare_again)
            | {k: meta[k] for k in PREPARED_WITH if k in meta}
            | {"name": self.cfg.corpus},
            heldout={k: self.corpus["splits"][k] for k in ("val", "test")},  # `eval` works after the corpus goes
            lineage=self.lineage,
        )
        if ranks is not None:
            hidden_all = None  # (h, c) of all lanes, (n_layer, B, H) each: the ranks' slices in rank order
            if ranks[0]["hidden"] is not None:
                hs, cs = zip(*(r["hidden"] for r in ranks), strict=True)
                hidden_all = (torch.cat(hs, dim=1), torch.cat(cs, dim=1))
            ckpt.train_state = {
                **{k: getattr(s, k) for k in (*RESUMED, *RESUMED_IF_SAVED)},
                "optimizer": self.optimizer.state_dict(),  # the same on every rank
                "rng_cpu": ranks[0]["rng_cpu"],
                "rng_cuda": ranks[0]["rng_cuda"],
                "hidden": hidden_all,
                "world_size": self.group.world,
            }
            if self.group.active:
                ckpt.train_state["rng_ranks"] = [{k: r[k] for k in ("rng_cpu", "rng_cuda")} for r in ranks]
                ckpt.train_state["replica_checksums"] = [r["weights"] for r in ranks]  # equal, or save refused
        return ckpt

    def _write(self, which: str, status: str, ranks: list[dict] | None) -> None:
        ckpt = self.checkpoint(ranks)
        try:
            if self.fresh_entry:  # the checkpoint, its graph, heldout.npz and info.json arrive together or not at all
                registry.put_entry(self.model_dir, lambda staged: self._save_into(staged, which, status, ckpt))
                self.fresh_entry = False
            else:
                self._save_into(self.model_dir, which, status, ckpt)
        except registry.SaveFailed as e:
            fix = "free some space" if e.reason == "no space left on device" else "fix that"
            then = "continue with --resume" if "last" in self.saved else "run the same command again"
            raise LstmgenError(
                f"could not save {e.path.name} of step {self.state.step:,} in {self.model_dir} ({e.reason}); "
                f"{self._kept()}; {fix}, then {then}"
            ) from None
        self.saved[which] = self.state.step

    def _save_into(self, d: Path, which: str, status: str, ckpt: Checkpoint) -> None:
        """Write checkpoint `which` into the entry directory `d`, each file atomically: the .pt, for inference
        (best, or the run's end) its decoding graph and heldout.npz, then info.json."""
        ckpt.path = d / f"{which}.pt"
        ckpt.save(ckpt.path)
        if which == "best" or status != "training":
            from .onnx_graph import save_graph

            save_graph(ckpt)
        info = ckpt.summary(status, self.model.num_params(), _now("microseconds"), epochs=self.epochs_done())
        info["unigram_bits_per_char"] = self.references["unigram_bits_per_char"]  # the same split
        registry.write_json(d / "info.json", info)

    def _kept(self) -> str:
        """What a failure leaves behind, for its error line."""
        for which in ("last", "best"):  # last.pt is what --resume continues from
            if which in self.saved:
                return f"{which}.pt of step {self.saved[which]:,} is intact"
        return "nothing was saved, and an earlier model of this name is untouched"

    def _restore(self, resume: Checkpoint) -> None:
        """Load last.pt into the model, optimizer, loop state, this rank's RNG and its share of the hidden state."""
        ts, group = resume.train_state, self.group
        if not isinstance(ts, dict):
            raise KeyError("train_state")
        counters = {k: ts[k] for k in RESUMED} | {k: ts.get(k, zero) for k, zero in RESUMED_IF_SAVED.items()}
        whole = all(isinstance(counters[k], int) and counters[k] >= 0
                    for k in ("step", "epoch", "window", "tokens", "loss_steps"))  # fmt: skip
        numbers = all(isinstance(counters[k], (int, float)) for k in ("elapsed", "loss_sum"))
        if not (whole and numbers and counters["window"] < self.n_windows):
            raise ValueError(f"its loop counters are out of range ({ {k: counters[k] for k in RESUMED[:3]} })")
        self.model.load_state_dict(resume.state_dict)
        kernels = [{k: g[k] for k in ("fused", "foreach")} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(ts["optimizer"])
        for param_group, chosen in zip(self.optimizer.param_groups, kernels, strict=True):
            param_group.update(chosen)  # which kernel steps is this run's choice, not the checkpoint's
        self.state = LoopState(**counters, history=list(resume.history), created=resume.created)
        self.saved = {"last": ts["step"]}
        rng = ts["rng_ranks"][group.rank] if group.active else ts  # each rank drew its own dropout masks
        torch.set_rng_state(rng["rng_cpu"])
        if self.device.type == "cuda" and rng.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(rng["rng_cuda"], self.device)
        hidden = ts.get("hidden")
        if hidden is None:
            return
        batch_size = resume.config["train"]["batch_size"]
        expected = (self.model.lstm.num_layers, batch_size, self.model.lstm.hidden_size)
        if len(hidden) != 2 or any(tuple(h.shape) != expected for h in hidden):
            raise ValueError(f"the carried hidden state is not (h, c) of shape {expected}")
        rows = group.per_rank(batch_size)  # last.pt holds every rank's lanes: (n_layer, B, H); ours are a slice
        # In float32, the weights' dtype: a bf16 run carries a bf16 state, which an fp32 run (precision changed,
        # or auto on a CPU without bf16) cannot take, while a bf16 run casts float32 back to the same values.
        self.hidden = tuple(
            h[:, group.rank * rows : (group.rank + 1) * rows].to(self.device, dtype=torch.float32) for h in hidden
        )


def train(cfg: Config, corpus: dict, *, resume: Checkpoint | None = None, on_event: OnEvent | None = None,
          should_stop: Callable[[], bool] | None = None, group: Group | None = None,
          started: float | None = None, start: Start | None = None) -> dict:  # fmt: skip
    """Train cfg.name on `corpus` (see Trainer), inside the process group when there is one; the summary.
    `started`: the time.perf_counter() reading the run's wall clock counts from (default: now)."""
    started = time.perf_counter() if started is None else started
    group = group or Group()
    device = group.device(cfg.train.device)
    group.start(device)
    try:
        # No name holds the Trainer: its DDP wrapper must be freed before group.close() (see there), which
        # happens when run() returns, or, on an error, when the traceback's frames are cleared below.
        return Trainer(cfg, corpus, resume=resume, on_event=on_event, should_stop=should_stop, group=group,
                       device=device, started=started, start=start).run()  # fmt: skip
    except BaseException as e:
        traceback.clear_frames(e.__traceback__)
        raise
    finally:
        group.close()
