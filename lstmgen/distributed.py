"""Multi-process training on torch.distributed: the process group torchrun sets up, the data each rank owns,
and the few collectives the training loop needs to stay in lockstep.

torchrun (or `lstmgen train --nproc N`, which runs torchrun's launcher) starts one process per GPU, or per
group of CPU cores, and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. In a single process
`Group()` is world 1 and every method here is a cheap no-op, so the loop has one code path.

Lockstep rules. Every rank takes the same steps: each owns an equal share of the lanes (no sampler). Every
decision to stop is agreed: the wall clock and a stop signal go through `agree`, losses through `mean`/`sum`,
so no rank can leave the loop while another waits in a collective.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import LstmgenError


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Group:
        """The group torchrun described in the environment; world 1 outside torchrun."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise LstmgenError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
        if world < 1 or not 0 <= rank < world:
            raise LstmgenError(f"RANK={rank} does not fit WORLD_SIZE={world}")
        return cls(rank, world, local_rank)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that reports, samples and writes checkpoints."""
        return self.rank == 0

    # -- set-up --------------------------------------------------------------------------------------------

    def device(self, name: str):
        """The torch device of this rank: `auto`/`cuda` mean this rank's own GPU (cuda:LOCAL_RANK)."""
        from .device import rank_device

        return rank_device(name, self.local_rank, self.world)

    def start(self, device) -> None:
        """Join the process group: NCCL between GPUs, gloo between CPU processes."""
        if not self.active:
            return
        import torch
        import torch.distributed as dist

        # Before the group exists, on purpose: torch.distributed.nn's functions take `group=group.WORLD` as a
        # default, evaluated at import. DDP imports it (through torch._dynamo) after init_process_group, and
        # those defaults then held the group, so destroy_process_group in close() could not free it: its gloo
        # threads lived on into interpreter exit, where one still freeing a finished collective's work needs the
        # GIL, is ended by the finalizing interpreter (pthread_exit) inside a noexcept destructor, and the rank
        # aborts: "terminate called without an active exception" (SIGABRT). Imported first, the defaults hold
        # None, and close() frees the group: it waits for its threads' last work and joins them.
        import torch.distributed.nn  # noqa: F401

        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def close(self) -> None:
        """Leave the group and free it: its backend's threads end here, not during interpreter exit (see start).

        Call it after the DDP wrapper from `wrap` is gone. Freeing the group joins gloo's worker threads, and a
        worker that is still releasing the last collective's work needs the GIL for it (its tensors are Python
        objects). The group's Python handles, which destroy_process_group drops, release the GIL while they
        join; DDP's Reducer, which holds the group too, does not. Were the Reducer the last holder, a rank
        would hang at the end of training (about one run in six here), joining a thread that waits for it."""
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def wrap(self, model):
        """The module the training step calls: DistributedDataParallel averages gradients over the ranks
        during backward (and made every replica start from rank 0's weights)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        # An adaptive softmax leaves a band's parameters out of a step whose targets on this rank miss the
        # band; DDP must then look for them each step, or it waits for their gradients forever.
        return DistributedDataParallel(
            model,
            device_ids=[device] if device.type == "cuda" else None,
            find_unused_parameters=getattr(model, "adaptive", False),
        )

    # -- data ----------------------------------------------------------------------------------------------

    def share(self, lanes):
        """This rank's contiguous share of the (B, L) lanes: rows [r*B/W, (r+1)*B/W). The global batch is
        the single-process one, split; every rank has the same number of windows."""
        if not self.active:
            return lanes
        per_rank = self.per_rank(lanes.size(0))
        return lanes[self.rank * per_rank : (self.rank + 1) * per_rank]

    def per_rank(self, batch_size: int) -> int:
        if batch_size % self.world:
            raise LstmgenError(
                f"train.batch_size={batch_size} does not split evenly over {self.world} processes; "
                f"use a multiple of {self.world}"
            )
        return batch_size // self.world

    def piece(self, stream, eor_id: int):
        """This rank's contiguous piece of a held-out stream, cut just after an <eor> so every piece starts
        a record the way training saw records start. The pieces cover the stream exactly once."""
        if not self.active or stream.numel() == 0:
            return stream if self.main else stream[:0]
        import torch

        n = stream.numel()
        ends = (stream == eor_id).nonzero().flatten() + 1  # positions just after each <eor>

        def cut(k: int) -> int:
            if k == 0:
                return 0
            if k == self.world:
                return n
            i = int(torch.searchsorted(ends, k * n // self.world))
            return int(ends[i]) if i < ends.numel() else n

        return stream[cut(self.rank) : cut(self.rank + 1)]

    # -- collectives ---------------------------------------------------------------------------------------

    def agree(self, elapsed: float, stop: bool) -> tuple[float, bool]:
        """The ranks' mean wall clock, and whether any rank was asked to stop: the same on every rank, so
        max_time, the learning-rate schedule and Ctrl-C/SIGTERM end every rank at the same step."""
        total = self.sum([elapsed, float(stop)])
        return total[0] / self.world, total[1] > 0

    def mean(self, value) -> float:
        """A scalar tensor or float averaged over the ranks (the loss of the global batch)."""
        return self.sum([float(value)])[0] / self.world

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks (float64): one all-reduce; the values themselves in one process."""
        if not self.active:
            return list(values)
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj) -> list:
        """Every rank's `obj` (tensors travel as CPU tensors), in rank order; [obj] in a single process."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def check(self, ok: bool, what: str) -> None:
        """A barrier that also carries failure: when rank 0 could not `what` (save a checkpoint), the other
        ranks stop too, instead of waiting for a rank that has gone."""
        if not self.active:
            return
        import torch
        import torch.distributed as dist

        flag = torch.tensor([0.0 if ok else 1.0], device=self._comm_device())
        dist.broadcast(flag, src=0)
        if flag.item() and not self.main:
            raise LstmgenError(f"rank 0 could not {what}; stopping (its error says why)")

    def _comm_device(self):
        import torch
        import torch.distributed as dist

        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"


SHUTDOWN_TIMEOUT = 600  # seconds


def launch(nproc: int, worker_args: list[str]) -> int:
    """Run `lstmgen train <worker_args>` in `nproc` processes on this machine through torchrun's own
    launcher (`--standalone`: a local rendezvous on a free port), in this process. Returns the exit code:
    128 + signal when this launcher was told to stop (it forwards the signal, and the ranks save and end),
    else the first failed rank's code, 0 when all succeeded."""
    import logging
    import signal

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for name in list(logging.root.manager.loggerDict):  # the ranks say what failed; torchrun's logs repeat it
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    # threads x processes <= cores, or the processes fight over the cores (9x slower, measured here)
    from .runtime import usable_cores

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // nproc)))
    # A stop waits for the step, or a validation pass, to end and a checkpoint to be written before torchrun
    # would SIGKILL the ranks (its default: after 30 s).
    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", f"--shutdown-timeout={SHUTDOWN_TIMEOUT}",
                       "--module", "lstmgen", "train", *worker_args])  # fmt: skip
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # torchrun replaces them
    try:
        run(args)
    except SignalException as e:
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        # The rank that failed first says why; the others were stopped because of it (SIGTERM: -15).
        _, first = e.get_first_failure()
        return 128 - first.exitcode if first.exitcode < 0 else first.exitcode or 1
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    return 0
