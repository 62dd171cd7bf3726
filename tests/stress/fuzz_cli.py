"""Random hostile invocations of the real `lstmgen` for a fixed time: odd numbers, odd strings, odd files,
odd configs, and damage to the registry between commands.

Every case must end one of two ways: it works (exit 0), or it refuses with exactly one `error:` line on
stderr and exit 1 or 2, leaving the registry byte for byte as it was. Anything else is a failure: a hang
(past --timeout), a traceback, "internal error", a multi-line or empty refusal, or a registry changed by a
refused command. Prints the tally, and the failing cases in full; exits 1 if there was any.

Usage (repo root, after `make install`; loopback only, no network; it stops by itself):
    .venv/bin/python tests/stress/fuzz_cli.py [--seconds 300] [--seed 0] [--timeout 90]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NUMBERS = ["0", "-1", "1", "2", "3", "1e308", "-1e308", "5e-324", "nan", "inf", "-inf", "1e-300", "0.5", "99999999999",
           "18446744073709551617", "1" * 400, "0x10", "1_000", " 7 ", "", "abc", "1.5", "-0"]  # fmt: skip
STRINGS = ["", " ", "Why", "Hey, ", "\u00e9t\u00e9 \U0001f600", "<eor>", "<unk>", "x" * 5000, "a\tb",
           "\u202e rtl", "../../etc/passwd", "/tmp", "-", "--help", "name with space", "N" * 101,
           "ctl\x01\x1b[31m"]  # fmt: skip
SET_KEYS = ["model.hidden", "model.embed", "model.n_layer", "model.dropout", "model.tie_weights",
            "model.adaptive_softmax", "train.batch_size", "train.seq_len", "train.lr", "train.max_steps",
            "train.max_epochs", "train.max_time", "train.eval_every", "train.patience", "train.seed", "train.device",
            "train.precision", "train.schedule", "train.warmup_steps", "train.grad_clip", "nope.key",
            "train"]  # fmt: skip
SET_VALUES = NUMBERS + ["null", "true", "[1, 2]", "[500, 2000]", "{a: 1}", "&a [*a, *a]", "[" * 40 + "]" * 40,
                        "cuda:9", "meta", "cpu", "auto", "bf16", "fp32", "'x'"]  # fmt: skip
YAMLS = ["corpus: c\nname: m\ntrain: {max_steps: 2, eval_every: 1, checkpoint_every: 1, batch_size: 2, seq_len: 8}\n"
         "model: {embed: 8, hidden: 8, n_layer: 1}\n",
         "a: &a [1, 2]\nb: &b [*a, *a]\nc: [*b, *b]\n", "[" * 200 + "]" * 200, "corpus: c\ncorpus: c\n", "- 1\n- 2\n",
         "train: {max_steps: 1e308}\n", "model: {hidden: 99999999999}\n", "\x00\x01binary", ""]  # fmt: skip


def files(tmp: Path, rng: random.Random) -> Path:
    """A random input file: ordinary, empty, binary, badly encoded, one huge line, a CSV with odd columns."""
    kind = rng.choice(["ok", "empty", "binary", "latin1", "longline", "csv", "csvdup", "csvwide", "utf16", "blank"])
    p = tmp / f"in-{rng.randrange(10**9)}.{'csv' if kind.startswith('csv') else 'txt'}"
    jokes = (ROOT / "data" / "jokes.csv").read_text().splitlines()[1:80]
    data = {
        "ok": "\n".join(jokes).encode(),
        "empty": b"",
        "binary": bytes(rng.randrange(256) for _ in range(4000)),
        "latin1": "\n".join(jokes).encode() + b"\ncaf\xe9\n",
        "longline": b"word " * 400_000,
        "csv": ("ID,Joke\n" + "\n".join(f"{i},\"{j}\"" for i, j in enumerate(jokes))).encode(),
        "csvdup": ("Joke,Joke\n" + "\n".join(f"a,{i}" for i in range(50))).encode(),
        "csvwide": (",".join(f"c{i}" for i in range(3000)) + "\n" + ",".join("1" * 3000)).encode(),
        "utf16": "\n".join(jokes).encode("utf-16"),
        "blank": b"\n\n   \n",
    }[kind]
    p.write_bytes(data)
    return p


def case(rng: random.Random, tmp: Path) -> list[str]:
    """One random command line."""
    name = rng.choice(["m", "c", "nope", "m2", *rng.sample(STRINGS, 2)])
    pick = rng.choice(["sample", "sample", "eval", "prepare", "train", "train", "list", "show", "rm", "default",
                       "export"])  # fmt: skip
    if pick == "sample":
        args = ["sample", rng.choice(STRINGS + ["Why did"])] if rng.random() < 0.8 else ["sample"]
        for opt in rng.sample(["--max-tokens", "--temperature", "--top-k", "--top-p", "--num-samples", "--seed",
                               "--no-repeat-ngram", "--repetition-penalty", "--limit-prompt-chars"], rng.randrange(4)):
            args += [opt, rng.choice(NUMBERS)]  # fmt: skip
        args += rng.sample(["--greedy", "--stream", "--json", "--skip-unknown", "-m", name], rng.randrange(3))
        return [a for a in args if a != "-m"] if args[-1] == "-m" else args
    if pick == "eval":
        args = ["eval", "-m", rng.choice(["m", name])]
        if rng.random() < 0.5:
            args += ["--file", str(files(tmp, rng)), "--records", rng.choice(["line", "file"])]
        return args + rng.sample(["--per-record", "--json", "--split=val", "--device=" + rng.choice(STRINGS)], 2)
    if pick == "prepare":
        args = ["prepare", str(files(tmp, rng)), "--name", rng.choice(["c", "c2", name])]
        for opt in rng.sample(["--val-frac", "--test-frac", "--seed", "--min-freq", "--max-vocab", "--vocab-size",
                               "--max-line-chars"], rng.randrange(3)):
            args += [opt, rng.choice(NUMBERS)]  # fmt: skip
        flags = ["--overwrite", "--tokenizer=word", "--tokenizer=bpe", "--records=file", "--encoding=utf-16",
                 "--encoding=" + rng.choice(STRINGS)]  # fmt: skip
        return args + rng.sample(flags, rng.randrange(3))
    if pick == "train":
        cfg = tmp / f"c-{rng.randrange(10**9)}.yaml"
        cfg.write_text(rng.choice(YAMLS), errors="surrogateescape")
        args = ["train", "--config", str(cfg), "--name", rng.choice(["m", "m2", name]), "--quiet", "--no-progress"]
        for _ in range(rng.randrange(4)):
            args += ["--set", f"{rng.choice(SET_KEYS)}={rng.choice(SET_VALUES)}"]
        return args + rng.sample(["--overwrite", "--resume", "--device=" + rng.choice(STRINGS + ["cpu"])],
                                 rng.randrange(2))  # fmt: skip
    if pick == "export":
        return ["export", name, "--out", str(tmp / f"out-{rng.randrange(10**9)}"), *rng.sample(["--force"], 1)]
    return [pick] + ([name] if pick in ("show", "rm") or rng.random() < 0.3 else []) + (
        ["--json"] if pick in ("list", "show") and rng.random() < 0.5 else [])  # fmt: skip


def damage(home: Path, rng: random.Random) -> str:
    """Break something in the registry, as a disk, a crash or a person might."""
    entries = [p for p in home.glob("*/*") if p.is_dir() and not p.is_symlink()]
    if not entries:
        return "nothing to damage"
    entry = rng.choice(entries)
    files_ = [p for p in entry.iterdir() if p.is_file()]
    how = rng.choice(["info-field", "truncate", "flip", "delete", "link", "info-garbage"])
    if how == "link":
        link = entry.parent / f"ln{rng.randrange(100)}"
        if not link.exists():
            link.symlink_to(tempfile.gettempdir())
        return f"symlink {link}"
    if not files_:
        return "empty entry"
    f = rng.choice(files_)
    if how == "info-field" and (entry / "info.json").is_file():
        try:
            data = json.loads((entry / "info.json").read_text())
        except ValueError:  # damaged by an earlier case already
            data = {}
        data = data if isinstance(data, dict) else {}
        data[rng.choice(list(data) or ["x"])] = rng.choice(["x", None, [], 10**400 // 10**390, {"a": 1}, -5])
        (entry / "info.json").write_text(json.dumps(data))
        return f"info field of {entry.name}"
    if how == "truncate":
        f.write_bytes(f.read_bytes()[: rng.randrange(max(1, f.stat().st_size))])
    elif how == "flip":
        data = bytearray(f.read_bytes())
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            f.write_bytes(bytes(data))
    elif how == "delete":
        f.unlink()
    else:
        (entry / "info.json").write_bytes(os.urandom(64))
    return f"{how} {f.relative_to(home)}"


def snapshot(home: Path) -> dict[str, str]:
    """Every file under the registry and its hash (links by target); lock files come and go, so skipped."""
    out = {}
    for p in sorted(home.rglob("*")):
        rel = str(p.relative_to(home))
        if rel.startswith("locks"):
            continue
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=90, help="a case running longer than this is a hang")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    tmp = Path(tempfile.mkdtemp(prefix="lstmgen-fuzz-"))
    home = tmp / "home"
    env = {**os.environ, "LSTMGEN_HOME": str(home), "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "lstmgen"]

    def fresh_registry():
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run([*cli, "prepare", str(ROOT / "data/jokes.csv"), "--name", "c", "-q"], env=env, check=True)
        subprocess.run([*cli, "train", "--corpus", "c", "--name", "m", "-q", "--set", "model.hidden=16", "--set",
                        "model.embed=8", "--set", "train.max_steps=4", "--set", "train.eval_every=2", "--set",
                        "train.max_epochs=null", "--set", "train.batch_size=4", "--set", "train.seq_len=16"],
                       env=env, check=True)  # fmt: skip

    fresh_registry()
    tally = {"cases": 0, "worked": 0, "refused cleanly": 0, "hangs": 0, "internal errors": 0, "tracebacks": 0,
             "unclear refusals": 0, "registry changed by a refusal": 0}  # fmt: skip
    failures = []
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        if rng.random() < 0.05:
            fresh_registry()
        what = damage(home, rng) if rng.random() < 0.15 else None
        args = case(rng, tmp)
        before = snapshot(home)
        tally["cases"] += 1
        try:
            r = subprocess.run([*cli, *args], env=env, capture_output=True, timeout=a.timeout,
                               stdin=subprocess.DEVNULL)  # fmt: skip
        except subprocess.TimeoutExpired:
            tally["hangs"] += 1
            failures.append(("hang", args, what, ""))
            continue
        err = r.stderr.decode(errors="replace")
        lines = err.strip().splitlines()
        if "Traceback" in err:
            tally["tracebacks"] += 1
            failures.append(("traceback", args, what, err[-2000:]))
        elif "internal error" in err:
            tally["internal errors"] += 1
            failures.append(("internal error", args, what, err))
        elif r.returncode == 0:
            tally["worked"] += 1
        elif r.returncode in (1, 2) and lines and lines[-1].startswith("error:") and sum(
                ln.startswith("error:") for ln in lines) == 1:  # fmt: skip
            tally["refused cleanly"] += 1
            if snapshot(home) != before:
                tally["registry changed by a refusal"] += 1
                failures.append(("registry changed", args, what, err))
        else:
            tally["unclear refusals"] += 1
            failures.append((f"exit {r.returncode}", args, what, err[-2000:]))
    shutil.rmtree(tmp, ignore_errors=True)
    for kind, args, what, err in failures[:30]:
        print(f"--- {kind}: lstmgen {' '.join(map(repr, args))}" + (f" (after damage: {what})" if what else ""))
        print(err.rstrip())
    print(json.dumps(tally))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
