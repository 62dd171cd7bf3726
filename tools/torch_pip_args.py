"""Print the pip arguments that install the torch build this machine should get (`make install` runs it).

    python tools/torch_pip_args.py [--torch SPEC] [--index URL|auto|none]
    -> e.g. `torch==2.13.0+cpu --extra-index-url https://download.pytorch.org/whl/cpu`

Why: on Linux, PyPI's `torch==2.13.0` is the CUDA build (x86_64 and aarch64 alike: 0.4-0.5 GB plus about
3 GB of nvidia-* and triton wheels), whatever the machine has. The CPU build is `torch==2.13.0+cpu` and is
served by PyTorch's own index. So, with no --torch:

    Linux, no NVIDIA GPU   torch==2.13.0+cpu from https://download.pytorch.org/whl/cpu
    Linux, NVIDIA GPU      torch===2.13.0: PyPI's CUDA build (`===` also refuses a local "+cpu" wheel that a
                           --find-links folder may hold: PEP 440 ranks 2.13.0+cpu above 2.13.0 for `==`)
    macOS, Windows, other  torch==2.13.0: PyPI's build is the CPU one there (with MPS on Apple silicon)

--torch SPEC replaces the requirement; a local version tag in it names PyTorch's index that serves it
(`+cpu` -> whl/cpu, `+cu126` -> whl/cu126). Such a derived index is added only when it answers within
PROBE_SECONDS (pip would retry an unreachable one for minutes): without it pip still finds a pinned `+cpu`
wheel in the indexes and --find-links folders it is configured with, or fails with "no matching
distribution", never falling back to a multi-GB CUDA build. --index URL adds that index as given (no
probe); `none` adds none. Only the arguments go to stdout; the reason goes to stderr.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

TORCH_VERSION = "2.13.0"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
PROBE_SECONDS = 3.0
GPU_QUERY_SECONDS = 10.0


def pip_args(
    system: str,
    has_nvidia_gpu: bool,
    torch: str | None = None,
    index: str = "auto",
    reachable: Callable[[str], bool] = lambda url: True,
) -> tuple[list[str], str]:
    """(pip arguments, a one-line reason) for these facts: `system` as platform.system() names it."""
    if torch:
        requirement, why = torch, "asked for with TORCH"
    elif system == "Linux" and not has_nvidia_gpu:
        requirement, why = f"torch=={TORCH_VERSION}+cpu", "the CPU build: no NVIDIA GPU found (nvidia-smi -L)"
    elif system == "Linux":
        requirement, why = f"torch==={TORCH_VERSION}", "PyPI's CUDA build: nvidia-smi lists a GPU"
    else:
        requirement, why = f"torch=={TORCH_VERSION}", f"PyPI's build, the CPU one on {system}"
    if index not in ("auto", "none", ""):
        return [requirement, "--extra-index-url", index], why
    tag = re.search(r"\+([A-Za-z0-9.]+)$", requirement)
    if index != "auto" or tag is None:
        return [requirement], why
    index = f"{PYTORCH_INDEX}/{tag.group(1).lower()}"
    if not reachable(index):
        return [requirement], f"{why}; {index} did not answer, so pip looks only where it is configured to"
    return [requirement, "--extra-index-url", index], why


def has_nvidia_gpu() -> bool:
    """True when `nvidia-smi -L` lists a GPU (present but failing, as without a driver, counts as none)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        run = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=GPU_QUERY_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0 and "GPU" in run.stdout


def reachable(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """True when the server of `url` answers an HTTP request (any status) within `timeout` seconds, name
    lookup included: urllib's own timeout does not cover DNS, so the request runs in a thread that is
    abandoned when it is late. Proxies come from the environment, as they do for pip."""
    answered = threading.Event()

    def probe() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                answered.set()
        except urllib.error.HTTPError:  # a status such as 404: the server answers, pip will not hang on it
            answered.set()
        except Exception:  # refused, unknown host, TLS failure, timeout
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return answered.is_set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", default="", help="the requirement to install instead, e.g. torch==2.13.0+cu126")
    parser.add_argument("--index", default="auto", help="an extra index URL; auto (from the +tag) or none")
    opts = parser.parse_args(argv)
    args, why = pip_args(platform.system(), has_nvidia_gpu(), opts.torch.strip(), opts.index.strip(), reachable)
    print(f"torch: {' '.join(args)} ({why})", file=sys.stderr)
    print(" ".join(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
