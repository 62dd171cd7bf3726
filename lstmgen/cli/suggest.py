"""What a mistyped option most likely meant: the same option spelt another way, a synonym people reach for,
a config key (train), another command's option, or the nearest name by edit distance."""

from __future__ import annotations

import difflib

# The words people type for lstmgen's options (from other tools: --temp, --steps, --epochs, --max-length),
# each with the options it may mean, in order; the first that the command has wins.
SYNONYMS = {
    "--temp": ["--temperature"],
    "--t": ["--temperature"],
    "--steps": ["--max-steps"],
    "--max-step": ["--max-steps"],
    "--num-steps": ["--max-steps"],
    "--n-steps": ["--max-steps"],
    "--iters": ["--max-steps"],
    "--max-iters": ["--max-steps"],
    "--iterations": ["--max-steps"],
    "--epoch": ["--epochs"],
    "--max-epochs": ["--epochs"],
    "--num-epochs": ["--epochs"],
    "--n-epochs": ["--epochs"],
    "--max-time": ["--time"],
    "--time-limit": ["--time"],
    "--timeout": ["--time"],
    "--duration": ["--time"],
    "--minutes": ["--time"],
    "--seconds": ["--time"],
    "--samples": ["--num-samples"],
    "--n-samples": ["--num-samples"],
    "--count": ["--num-samples"],
    "--num": ["--num-samples"],
    "--length": ["--max-tokens"],
    "--len": ["--max-tokens"],
    "--max-len": ["--max-tokens"],
    "--max-length": ["--max-tokens"],
    "--max-new-tokens": ["--max-tokens"],
    "--tokens": ["--max-tokens"],
    "--num-tokens": ["--max-tokens"],
    "--n-tokens": ["--max-tokens"],
    "--topk": ["--top-k"],
    "--topp": ["--top-p"],
    "--nucleus": ["--top-p"],
    "--cfg": ["--config"],
    "--conf": ["--config"],
    "--yaml": ["--config"],
    "--data": ["--corpus", "--file"],
    "--dataset": ["--corpus", "--file"],
    "--input": ["--file", "--corpus"],
    "--text": ["--file"],
    "--model": ["--name"],
    "--model-name": ["--name", "--model"],
    "--name": ["--model"],
    "--force": ["--overwrite"],
    "--replace": ["--overwrite", "--force"],
    "--overwrite": ["--force"],
    "--continue": ["--resume"],
    "--output": ["--out"],
    "--output-dir": ["--out"],
    "--out-dir": ["--out"],
    "--gpu": ["--device"],
    "--cuda": ["--device"],
    "--random-seed": ["--seed"],
    "--tokeniser": ["--tokenizer"],
    "--tok": ["--tokenizer"],
    "--col": ["--column"],
    "--field": ["--column"],
    "--stop-at": ["--stop"],
    "--stop-sequence": ["--stop"],
    "--stop-token": ["--stop"],
    "--procs": ["--nproc"],
    "--nprocs": ["--nproc"],
    "--processes": ["--nproc"],
    "--world-size": ["--nproc"],
    "--vocab": ["--vocab-size", "--max-vocab"],
}
# train's hyperparameters are config keys: --lr is --set train.lr=VALUE. Other names for them:
CONFIG_SYNONYMS = {
    "learning-rate": "train.lr",
    "bs": "train.batch_size",
    "batch": "train.batch_size",
    "bptt": "train.seq_len",
    "block-size": "train.seq_len",
    "context": "train.seq_len",
    "layers": "model.n_layer",
    "num-layers": "model.n_layer",
    "n-layers": "model.n_layer",
    "hidden-size": "model.hidden",
    "embedding": "model.embed",
    "embed-dim": "model.embed",
    "emb": "model.embed",
    "warmup": "train.warmup_steps",
    "clip": "train.grad_clip",
    "precision": "train.precision",
}


def _normal(option: str) -> str:
    """--Max_Steps -> --max-steps: the spelling lstmgen's options use."""
    return "--" + option.lstrip("-").lower().replace("_", "-") if option.startswith("--") else option


def _config_key(option: str) -> str | None:
    """train.lr for --lr, model.hidden for --hidden (train's hyperparameters are config keys)."""
    import dataclasses

    from ..config import ModelConfig, TrainConfig

    word = option.lstrip("-")
    if word in CONFIG_SYNONYMS:
        return CONFIG_SYNONYMS[word]
    for section, cls in (("train", TrainConfig), ("model", ModelConfig)):
        if word.replace("-", "_") in {f.name for f in dataclasses.fields(cls)}:
            return f"{section}.{word.replace('-', '_')}"
    return None


def suggest(option: str, command: str, options: list[str], others: dict[str, list[str]]) -> str | None:
    """The hint for an unknown `option` of `command` (whose long options are `options`); `others`: every other
    command's long options, by command name. None when nothing is likely."""
    typed = _normal(option)
    if typed != option and typed in options:  # --max_steps, --Temperature
        return f"did you mean {typed}?"
    for meant in SYNONYMS.get(typed, []):
        if meant in options and meant != typed:
            return f"did you mean {meant}?"
    if command == "train" and typed.startswith("--"):
        key = _config_key(typed)
        if key:
            return f"{key} is a config key: --set {key}=VALUE"
    meant = [typed, *SYNONYMS.get(typed, [])]
    having = [o for o, their in others.items() if o != command and any(m in their for m in meant)]
    if having:  # all of them (--json has several): naming one would suggest it is that command's alone
        shown = ", ".join(f"`lstmgen {o}`" for o in having[:4]) + (" and more" if len(having) > 4 else "")
        return f"{typed} is an option of {shown}, not of `lstmgen {command}`"
    if len(typed) >= 5:  # a prefix: --temp -> --temperature (alone among the options)
        longer = [o for o in options if o.startswith(typed)]
        if len(longer) == 1:
            return f"did you mean {longer[0]}?"
    close = difflib.get_close_matches(typed, options, n=1, cutoff=0.7)
    return f"did you mean {close[0]}?" if close else None
