"""The README's examples, run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_use_from_python_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    env = {**os.environ, "LSTMGEN_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3  # two samples, then bits/char
    assert all(line.startswith("Hey, ") for line in lines[:2])
    assert 0 < float(lines[2]) < 10
    assert r.stderr == ""  # the library never prints
