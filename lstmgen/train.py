"""Training loop, evaluation and checkpoints. Reports through a callback and never prints."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from datetime import datetime, timezone
from functools import cache

import torch

from . import registry
from .batches import IGNORE, batchify, check_window, eval_lanes, get_batch, num_windows
from .config import Config
from .distributed import Group
from .errors import LstmgenError
from .model import LSTMLM, adaptive_cutoffs
from .tokenize import Vocab

OnEvent = Callable[[str, dict], None]


# -- device and precision ------------------------------------------------------------------------------


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LstmgenError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LstmgenError(f"device {name!r} asked for, but no CUDA GPU is available; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise LstmgenError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    if device.type == "mps" and not _mps_available():
        raise LstmgenError("device 'mps' asked for, but MPS is not available; use --device cpu")
    return device


@cache
def cpu_bf16_lstm_works() -> bool:
    """Whether oneDNN runs an LSTM under bf16 autocast here: it needs avx512_bf16/AMX, and errors without."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(8, 8)(torch.zeros(2, 1, 8))
        return True
    except RuntimeError:
        return False


def pick_precision(precision: str, device: torch.device) -> str:
    """ "fp32" or "bf16" (autocast). auto: bf16 where the hardware runs it natively, else fp32."""
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        supported = cpu_bf16_lstm_works()
    else:
        supported = False
    if precision == "auto":
        return "bf16" if supported else "fp32"
    if precision == "bf16" and not supported:
        raise LstmgenError(
            f"train.precision=bf16 is not supported on this {device.type} (on CPUs it needs "
            "avx512_bf16 or AMX); use train.precision=fp32 or auto"
        )
    return precision


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


# -- evaluation ----------------------------------------------------------------------------------------


def _window_nll(model: LSTMLM, x: torch.Tensor, y: torch.Tensor, seq_len: int, should_stop=None):
    """NLL (nats) of every target of y, (B, L) fp32 (0 where y is IGNORE), reading x (B, L) in windows of
    seq_len with the state carried; None if `should_stop()` turns true between windows."""
    losses, state = [], None
    for start in range(0, x.size(1), seq_len):
        if should_stop and should_stop():
            return None
        nll, state = model(x[:, start : start + seq_len], state, y[:, start : start + seq_len])  # (B, T)
        losses.append(nll)
    return torch.cat(losses, dim=1)


@torch.no_grad()
def token_nll(
    model: LSTMLM,
    stream: torch.Tensor,
    eor_id: int,
    batch_size: int = 32,
    seq_len: int = 256,
    device=None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor | None:
    """The NLL (nats) of every token of `stream`, (N,) fp32 in stream order, in eval mode, each token
    conditioned on all before it as training saw them (the stream starts after an <eor>).

    None if `should_stop()` turns true midway: a stop request is not kept waiting for a long validation
    pass (a 50k-word softmax over a large split takes minutes on a CPU).
    """
    was_training = model.training
    model.eval()
    x, y = eval_lanes(stream, eor_id, batch_size, device)  # (B, L) each; lanes are consecutive stretches
    nll = _window_nll(model, x, y, seq_len, should_stop)
    model.train(was_training)
    return None if nll is None else nll.flatten()[: stream.numel()]  # the padding sits at the very end


def evaluate(model: LSTMLM, stream: torch.Tensor, eor_id: int, **kw) -> tuple[float, int] | None:
    """Summed NLL (nats) over every token of `stream` and the number of tokens (None if stopped midway)."""
    if stream.numel() == 0:
        return 0.0, 0
    nll = token_nll(model, stream, eor_id, **kw)
    return None if nll is None else (nll.sum().item(), int(stream.numel()))  # one device sync


@torch.no_grad()
def record_nll(
    model: LSTMLM, records: list[list[int]], eor_id: int, batch_size: int = 64, seq_len: int = 256, device=None
) -> list[float]:
    """Summed NLL (nats) of each record's tokens and its closing <eor>, each record read on its own from the
    zero state after an <eor> (as a record starts in training), so its score does not depend on its
    neighbours. Records are batched by length, padded with IGNORE targets."""
    was_training = model.training
    model.eval()
    sums = [0.0] * len(records)
    order = sorted(range(len(records)), key=lambda i: len(records[i]))
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        length = len(records[rows[-1]]) + 1  # the longest in this batch, plus its <eor>
        x = torch.full((len(rows), length), eor_id, dtype=torch.long)
        y = torch.full((len(rows), length), IGNORE, dtype=torch.long)
        for r, i in enumerate(rows):
            ids = torch.tensor(records[i], dtype=torch.long)
            x[r, 1 : len(ids) + 1], y[r, : len(ids)], y[r, len(ids)] = ids, ids, eor_id
        totals = _window_nll(model, x.to(device), y.to(device), seq_len).sum(dim=1)  # long records in windows
        for r, value in zip(rows, totals.tolist(), strict=True):
            sums[r] = value
    model.train(was_training)
    return sums


def metrics(nll: float, n_tokens: int, n_chars: int) -> dict:
    """Mean cross-entropy, perplexity and bits per character (comparable across tokenizers)."""
    loss = nll / max(n_tokens, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700)),
        "bits_per_char": nll / math.log(2) / max(n_chars, 1),
        "tokens": n_tokens,
        "chars": n_chars,
    }


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


def check_resumable(payload: dict, corpus: dict, cfg: Config) -> None:
    """The corpus must be the one the run started on: same source bytes, vocab, token counts, held-out records."""
    saved, meta = payload["corpus"], corpus["meta"]
    try:
        same = (
            saved.get("sha256") == meta.get("sha256")
            and saved.get("tokens") == meta.get("tokens")
            and payload["vocab"] == corpus["vocab"]
            and all(torch.equal(payload["heldout"][k], corpus["splits"][k]) for k in ("val", "test"))
        )
    except (KeyError, TypeError, AttributeError):  # a damaged checkpoint cannot vouch for its corpus
        same = False
    saved_cfg = payload.get("config") or {}
    now = cfg.to_dict()
    layout = [
        f"{sec}.{k}"
        for sec, keys in (("model", now["model"]), ("train", ("batch_size", "seq_len")))
        for k in keys
        if (saved_cfg.get(sec) or {}).get(k) != now[sec][k]
    ]
    if layout:  # they lay out the weights, the data position and the carried hidden state
        raise LstmgenError(f"cannot resume model {cfg.name!r} with a different {', '.join(layout)}")
    if not same:
        raise LstmgenError(
            f"corpus {cfg.corpus!r} is not the one model {cfg.name!r} started training on (its "
            "vocabulary or split differs); prepare it as before, or train a new model"
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


# Loop counters that last.pt carries and --resume restores (with optimizer, RNG and hidden state).
RESUMED = ("step", "epoch", "window", "elapsed", "tokens", "best_val", "bad_evals")


def _restore(resume: dict, model: LSTMLM, optimizer, s: dict, device: torch.device, n_windows: int, group: Group):
    """Load a last.pt payload into model, optimizer, loop state `s` and this rank's RNG; return this rank's
    share of the carried hidden state."""
    ts = resume["train_state"]
    counters = {k: ts[k] for k in RESUMED}
    whole = all(isinstance(counters[k], int) and counters[k] >= 0 for k in ("step", "epoch", "window", "tokens"))
    if not (whole and counters["window"] < n_windows and isinstance(counters["elapsed"], (int, float))):
        raise ValueError(f"its loop counters are out of range ({ {k: counters[k] for k in RESUMED[:3]} })")
    model.load_state_dict(resume["state_dict"])
    kernels = [{k: g[k] for k in ("fused", "foreach")} for g in optimizer.param_groups]
    optimizer.load_state_dict(ts["optimizer"])
    for param_group, chosen in zip(optimizer.param_groups, kernels, strict=True):
        param_group.update(chosen)  # which kernel steps is this run's choice, not the checkpoint's (load copies it)
    s.update(counters)
    s["saved"] = {"last": ts["step"]}
    s["history"], s["created"] = list(resume["history"]), resume["created"]
    rng = ts["rng_ranks"][group.rank] if group.active else ts  # each rank drew its own dropout masks
    torch.set_rng_state(rng["rng_cpu"])
    if device.type == "cuda" and rng.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(rng["rng_cuda"], device)
    hidden = ts.get("hidden")
    if hidden is None:
        return None
    batch_size = resume["config"]["train"]["batch_size"]
    expected = (model.lstm.num_layers, batch_size, model.lstm.hidden_size)
    if len(hidden) != 2 or any(tuple(h.shape) != expected for h in hidden):
        raise ValueError(f"the carried hidden state is not (h, c) of shape {expected}")
    rows = group.per_rank(batch_size)  # last.pt holds every rank's lanes: (n_layer, B, H); ours are a slice
    return tuple(h[:, group.rank * rows : (group.rank + 1) * rows].to(device) for h in hidden)


def check_world_size(resume: dict, cfg: Config, group: Group) -> None:
    """A run resumes on as many processes as it trained on: each rank's lanes, hidden state and dropout RNG
    are laid out by the world size."""
    saved = resume["train_state"].get("world_size", 1) if isinstance(resume.get("train_state"), dict) else 1
    if saved != group.world:
        how = "plain `lstmgen train`" if saved == 1 else f"--nproc {saved} (or torchrun --nproc-per-node {saved})"
        raise LstmgenError(
            f"model {cfg.name!r} was training on {saved} process(es), and this run has {group.world}: the world "
            f"size lays out each process's data and state; resume it with {how}, or start over with --overwrite"
        )


def train(
    cfg: Config,
    corpus: dict,
    *,
    resume: dict | None = None,
    on_event: OnEvent | None = None,
    should_stop: Callable[[], bool] | None = None,
    group: Group | None = None,
) -> dict:
    """Train cfg.name on `corpus` (a loaded registry corpus), writing checkpoints to the registry.

    `resume` is a loaded last.pt payload. `should_stop()` is polled once per step (the CLI sets it on
    Ctrl-C/SIGTERM); the loop then saves a checkpoint and returns with stop_reason "interrupted".
    `group` is the torch.distributed group under torchrun (distributed.Group.from_env()): each rank trains
    on its share of the lanes, DDP averages the gradients, rank 0 alone reports and writes checkpoints.
    Returns a summary dict: steps, epochs, elapsed_s, tokens_per_s, best_val_loss, name, stop_reason.
    """
    group = group or Group()
    device = group.device(cfg.train.device)
    group.start(device)
    try:
        return _train(cfg, corpus, resume, on_event, should_stop, group, device)
    finally:
        group.close()


def _train(cfg, corpus, resume, on_event, should_stop, group: Group, device: torch.device) -> dict:
    emit = (on_event if group.main else None) or (lambda kind, data: None)  # rank 0 speaks for all
    t = cfg.train
    precision = pick_precision(t.precision, device)
    vocab = Vocab.from_dict(corpus["vocab"])
    model_dir = registry.entry_dir("model", cfg.name)

    val_ids = corpus["splits"]["val"]
    if val_ids.numel() == 0:
        raise LstmgenError(
            f"corpus {cfg.corpus!r} has an empty validation split, which picks the best checkpoint "
            "and stops early; prepare it again with a larger --val-frac"
        )
    if resume is not None:
        check_resumable(resume, corpus, cfg)
        check_world_size(resume, cfg, group)
    check_head(cfg, vocab)
    torch.manual_seed(t.seed)  # the same initial weights on every rank
    model = LSTMLM(len(vocab), cfg.model).to(device)
    net = group.wrap(model)  # what the step calls: DDP under torchrun, else the model itself
    if group.active:
        torch.manual_seed(t.seed + group.rank)  # but each rank's own dropout masks
    optimizer = build_optimizer(model, cfg)
    all_lanes = batchify(corpus["splits"]["train"], t.batch_size)  # (B, L) compact ids, a view of the split
    lanes = group.share(all_lanes)  # (B / world, L): this rank's lanes
    n_windows = num_windows(lanes, t.seq_len)
    # A fresh run replaces what was there, but only at its first save: a run that fails before that
    # (bad settings, early divergence) leaves an earlier model of this name untouched.
    stale = [*model_dir.glob("*.pt"), model_dir / "info.json"] if resume is None else []

    # Everything --resume must restore; the rest is rebuilt deterministically from the config.
    s = {
        "step": 0,
        "epoch": 0,
        "window": 0,
        "elapsed": 0.0,
        "tokens": 0,
        "best_val": None,
        "bad_evals": 0,
        "history": [],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "saved": {},  # which -> step, for the checkpoints this run has on disk
    }
    hidden = None  # (h, c), each (n_layer, B / world, H); None at an epoch start = zeros
    if resume is not None:
        try:
            hidden = _restore(resume, model, optimizer, s, device, n_windows, group)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise LstmgenError(
                f"model {cfg.name!r}: last.pt is damaged or incomplete ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:120]}); train it again with --overwrite"
            ) from None

    check_same_start(cfg, corpus, s["step"], group)
    heldout = {k: corpus["splits"][k] for k in ("val", "test")}
    val_piece = group.piece(val_ids, vocab.eor_id)  # each rank scores its piece; the sums are reduced
    corpus_meta = corpus["meta"]

    def progress() -> float:
        fractions = [
            s["step"] / t.max_steps if t.max_steps else 0.0,
            (s["epoch"] + s["window"] / n_windows) / t.max_epochs if t.max_epochs else 0.0,
            s["elapsed"] / t.max_time if t.max_time else 0.0,
        ]
        return max(fractions)

    def rank_state() -> dict:
        """What only this rank knows, for last.pt: its lanes' hidden state, its RNG, and a fingerprint of
        its weights (the replicas must agree to the bit)."""
        return {
            "hidden": tuple(h.detach().cpu() for h in hidden) if hidden is not None else None,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "weights": [float(p.detach().double().sum()) for p in model.parameters()],
        }

    def payload(ranks: list[dict] | None) -> dict:
        p = {
            "format_version": registry.MODEL_FORMAT,
            "name": cfg.name,
            "created": s["created"],
            "vocab": vocab.to_dict(),
            "model_config": asdict(cfg.model),
            "config": cfg.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "history": s["history"],
            "step": s["step"],
            "epoch": s["epoch"],
            "best_val_loss": s["best_val"],
            "corpus": {k: corpus_meta.get(k) for k in ("source", "sha256", "tokenizer", "chars", "records", "tokens")}
            | {"name": cfg.corpus},
            "heldout": heldout,  # val/test ids: `eval` works after the corpus is deleted
        }
        if ranks is not None:  # last.pt: everything --resume needs, every rank's part included
            hidden_all = None  # (h, c) of all lanes, (n_layer, B, H) each: the ranks' slices in rank order
            if ranks[0]["hidden"] is not None:
                hs, cs = zip(*(r["hidden"] for r in ranks), strict=True)
                hidden_all = (torch.cat(hs, dim=1), torch.cat(cs, dim=1))
            p["train_state"] = {
                **{k: s[k] for k in RESUMED},
                "optimizer": optimizer.state_dict(),  # the same on every rank
                "rng_cpu": ranks[0]["rng_cpu"],
                "rng_cuda": ranks[0]["rng_cuda"],
                "hidden": hidden_all,
                "world_size": group.world,
            }
            if group.active:
                p["train_state"]["rng_ranks"] = [{k: r[k] for k in ("rng_cpu", "rng_cuda")} for r in ranks]
                p["train_state"]["replica_checksums"] = [r["weights"] for r in ranks]  # equal, or save refused
        return p

    def kept() -> str:
        """What a failure leaves behind, for its error line."""
        for which in ("last", "best"):  # last.pt is what --resume continues from
            if which in s["saved"]:
                return f"{which}.pt of step {s['saved'][which]:,} is intact"
        return "nothing was saved, and an earlier model of this name is untouched"

    def save(which: str, status: str) -> None:
        """Rank 0 writes `which`.pt atomically; every rank takes part (last.pt gathers their state) and
        waits until it is on disk."""
        ranks = group.gather(rank_state()) if which == "last" else None
        if ranks is not None and any(r["weights"] != ranks[0]["weights"] for r in ranks):
            raise LstmgenError(f"the {group.world} replicas' weights differ at step {s['step']:,}: a bug in lstmgen")
        failure = None
        if group.main:
            try:
                write(which, status, ranks)
            except LstmgenError as e:
                failure = e
        group.check(failure is None, f"save {which}.pt")
        if failure is not None:
            raise failure
        emit("checkpoint", {"which": which, "step": s["step"], "path": str(model_dir / f"{which}.pt")})

    def write(which: str, status: str, ranks: list[dict] | None) -> None:
        path = model_dir / f"{which}.pt"

        def drop_stale() -> None:
            # An older run's other files go once this checkpoint is on disk, just before its rename; `path`
            # itself is replaced by the rename, so the directory never lacks it if the old run had one.
            while stale:
                old = stale.pop()
                if old != path:
                    old.unlink(missing_ok=True)

        try:
            registry.save_pt(path, payload(ranks), before_replace=drop_stale)
            s["saved"][which] = s["step"]
            registry.write_json(
                model_dir / "info.json",
                {
                    "kind": "model",
                    "name": cfg.name,
                    "corpus": cfg.corpus,
                    "tokenizer": vocab.kind,
                    "vocab_size": len(vocab),
                    "parameters": model.num_params(),
                    "steps": s["step"],
                    "epochs": s["epoch"],
                    "best_val_loss": s["best_val"],
                    "status": status,
                    "created": s["created"],
                    "updated": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                    "model": asdict(cfg.model),
                },
            )
        except registry.SaveFailed as e:
            fix = "free some space" if e.reason == "no space left on device" else "fix that"
            then = "continue with --resume" if "last" in s["saved"] else "run the same command again"
            raise LstmgenError(
                f"could not save {e.path.name} of step {s['step']:,} in {model_dir} ({e.reason}); {kept()}; "
                f"{fix}, then {then}"
            ) from None

    def diverged(loss: float):
        raise LstmgenError(
            f"training diverged at step {s['step']:,} (loss {loss}); {kept()}; lower train.lr or set train.grad_clip"
        )

    def show_sample() -> str:
        """A short sample from the model as it is now, on its own generator: training's RNG is untouched."""
        from .sample import Loaded, sample

        (shown,) = sample(Loaded(model, vocab, {}), "", max_tokens=120, temperature=0.8, seed=s["step"])
        model.train()  # sampling switched it to eval mode
        return shown.text

    def run_eval() -> bool:
        """Validate, record, keep `best`; True when patience has run out."""
        # Under torchrun no rank may leave a pass the others finish: a stop waits for the (bounded) pass.
        stop = None if group.active else should_stop
        result = evaluate(model, val_piece, vocab.eor_id, device=device, should_stop=stop)
        if result is None:  # stopped midway: the loop saves last.pt and ends
            return False
        nll, n = group.sum(list(result))  # sum of NLL / sum of tokens over all ranks
        val_loss = nll / n
        if not math.isfinite(val_loss):
            diverged(val_loss)
        improved = s["best_val"] is None or val_loss < s["best_val"]
        if improved:
            s["best_val"], s["bad_evals"] = val_loss, 0
        else:
            s["bad_evals"] += 1
        s["history"].append(
            {
                "step": s["step"],
                "epoch": s["epoch"],
                "train_loss": last_loss,
                "val_loss": val_loss,
                "lr": lr,
                "elapsed_s": round(s["elapsed"], 2),
            }
        )
        emit("eval", {"step": s["step"], "val_loss": val_loss, "best_val_loss": s["best_val"], "improved": improved})
        if t.sample_every and len(s["history"]) % t.sample_every == 0 and group.main:
            emit("sample", {"step": s["step"], "text": show_sample()})
        if improved:
            save("best", "training")
        return bool(t.patience) and s["bad_evals"] >= t.patience

    step_limits = [x for x in (t.max_steps, t.max_epochs and t.max_epochs * n_windows) if x]
    total_steps = min(step_limits) if step_limits else None  # None: only max_time bounds the run
    emit(
        "start",
        {
            "name": cfg.name,
            "device": str(device),
            "precision": precision,
            "parameters": model.num_params(),
            "steps_per_epoch": n_windows,
            "total_steps": total_steps,
            "max_time": t.max_time,
            "resumed_step": s["step"] if resume else None,
            "train_tokens": int(all_lanes.numel()),
            "world_size": group.world,
        },
    )

    model.train()
    stop_reason, last_loss, lr = None, None, t.lr
    run_tokens, step_time, last_eval_step = 0, 0.0, s["step"] if resume else -1
    clock = time.perf_counter()
    while True:
        # One agreed clock and stop request: every rank takes the same decision at the same step.
        s["elapsed"], stop_asked = group.agree(s["elapsed"], bool(should_stop and should_stop()))
        if t.max_steps and s["step"] >= t.max_steps:
            stop_reason = "max_steps"
        elif t.max_epochs and s["epoch"] >= t.max_epochs:
            stop_reason = "max_epochs"
        elif t.max_time and s["elapsed"] >= t.max_time:
            stop_reason = "max_time"
        elif stop_asked:
            stop_reason = "interrupted"
        if stop_reason:
            break

        t0 = time.perf_counter()
        check_window(all_lanes, s["window"], t.seq_len, len(vocab))
        x, y = get_batch(lanes, s["window"], t.seq_len, device)  # (B / world, T) each
        lr = lr_at(cfg, s["step"], progress())
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        with autocast(device, precision):
            nll, hidden = net(x, hidden, y)  # (B / world, T)
        loss = nll.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        hidden = (hidden[0].detach(), hidden[1].detach())  # carry the state, not the graph
        last_loss = group.mean(loss.detach())  # the global batch's loss

        s["step"] += 1
        s["window"] += 1
        s["tokens"] += x.numel() * group.world
        run_tokens += x.numel() * group.world
        if s["window"] == n_windows:  # next epoch: lanes restart, and so does the state
            s["epoch"], s["window"], hidden = s["epoch"] + 1, 0, None
        now = time.perf_counter()
        step_time += now - t0
        s["elapsed"] += now - clock
        clock = now

        if not math.isfinite(last_loss):  # keep the last finite checkpoint: no save here
            diverged(last_loss)
        if s["step"] % t.log_every == 0:
            emit(
                "step",
                {
                    "step": s["step"],
                    "epoch": s["epoch"],
                    "loss": last_loss,
                    "lr": lr,
                    "tokens_per_s": run_tokens / step_time,
                    "elapsed_s": s["elapsed"],
                    "total_steps": total_steps,
                    "progress": progress(),
                },
            )
        patience_out = False
        if s["step"] % t.eval_every == 0:
            patience_out = run_eval()
            last_eval_step = s["step"]
        if s["step"] % t.checkpoint_every == 0:
            save("last", "training")
        s["elapsed"] += time.perf_counter() - clock  # eval and saving count towards max_time
        clock = time.perf_counter()
        if patience_out:
            stop_reason = "early_stop"
            break

    if last_eval_step != s["step"] and stop_reason != "interrupted":
        run_eval()
    save("last", "interrupted" if stop_reason == "interrupted" else "done")
    summary = {
        "name": cfg.name,
        "steps": s["step"],
        "epochs": round(s["epoch"] + s["window"] / n_windows, 3),
        "elapsed_s": round(s["elapsed"], 2),
        "tokens_per_s": round(run_tokens / step_time) if step_time else 0,
        "best_val_loss": s["best_val"],
        "stop_reason": stop_reason,
        "device": str(device),
        "precision": precision,
        "world_size": group.world,
    }
    emit("end", summary)
    return summary
