"""The machine a benchmark ran on, for the line printed beside its figures (CPUs differ: bf16, AMX)."""

import os
import platform
from pathlib import Path


def cpu() -> str:
    """'Intel Xeon ..., 2 CPUs; avx2=yes avx512f=yes avx512_bf16=yes amx_bf16=yes'"""
    model, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    shown = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"))
    return f"{model}, {os.cpu_count()} CPUs; {shown}"
