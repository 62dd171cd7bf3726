"""Where the arithmetic runs: device and precision picking (rank-aware under torchrun), and autocast."""

from __future__ import annotations

from contextlib import nullcontext
from functools import cache

import torch

from .config import DEVICES
from .errors import LstmgenError


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; any other name must exist here, or it is one clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LstmgenError(f"unknown device {name!r}; use {DEVICES}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LstmgenError(f"device {name!r} asked for, but no CUDA GPU is available; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise LstmgenError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    if device.type == "mps" and not _mps_available():
        raise LstmgenError("device 'mps' asked for, but MPS is not available; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):  # torch knows meta, xla, ...: nothing lstmgen can run on
        raise LstmgenError(f"device {name!r} cannot run lstmgen; use {DEVICES}")
    return device


def rank_device(name: str, local_rank: int, world: int) -> torch.device:
    """The device of one of `world` processes: `auto`/`cuda` mean its own GPU, cuda:LOCAL_RANK."""
    if world == 1:
        return pick_device(name)
    if name == "mps" or (name == "auto" and not torch.cuda.is_available()):
        return pick_device("cpu")  # MPS has no process-group backend; CPU ranks use gloo
    if name in ("auto", "cuda"):
        if local_rank >= torch.cuda.device_count():  # one GPU per process on each machine
            raise LstmgenError(
                f"local rank {local_rank} needs GPU cuda:{local_rank}, but this machine shows "
                f"{torch.cuda.device_count()}; start at most that many processes per machine, or pass --device cpu"
            )
        return pick_device(f"cuda:{local_rank}")
    if name.startswith("cuda:"):
        raise LstmgenError(
            f"--device {name} names one GPU, but each of the {world} processes needs its own; "
            "pass --device cuda (rank N uses cuda:N)"
        )
    return pick_device(name)


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
