"""`lstmgen configs`: the configs that ship inside the package, which `train --config NAME` finds anywhere."""

from __future__ import annotations

from .options import JsonOut
from .output import out, out_json


def configs(json_out: JsonOut = False):
    """List the packaged configs: each name, and what it is for. Train one from any directory with
    `lstmgen train --config NAME`; copy its file (--json shows the path) to make your own.

    Examples:

      lstmgen configs

      lstmgen configs --json | jq -r '.[] | .command'
    """
    from ..config import packaged_configs

    found = packaged_configs()
    if json_out:
        out_json([{"name": c.name, "path": str(c.path), "command": c.command, "summary": c.summary} for c in found])
        return
    width = max((len(c.name) for c in found), default=0)
    for c in found:
        out(f"{c.name:<{width}}  {c.summary}".rstrip())
