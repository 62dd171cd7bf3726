"""Training configuration: dataclass defaults <- YAML file <- `--set key=value` overrides."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import LstmgenError


class ConfigError(LstmgenError):
    """A config file or override that cannot be used; the message names the key."""


ADAPTIVE_SHRINK = 4  # an adaptive softmax's bands: each this many times narrower than the one before


@dataclass
class ModelConfig:
    embed: int = 128  # token embedding width
    hidden: int = 256  # LSTM hidden size per layer
    n_layer: int = 2
    dropout: float = 0.1  # on embeddings, between LSTM layers and before the head
    tie_weights: bool = False  # share embedding and output matrices (needs embed == hidden)
    # Word vocabularies: cutoffs of an adaptive softmax (Grave et al. 2017), e.g. [500, 2000]. Ids below the
    # first cutoff (the most frequent words) get the full-width softmax; each later band is one cluster
    # ADAPTIVE_SHRINK times narrower than the one before. Cutoffs past the vocabulary are ignored; null (or
    # none left): one full softmax over the whole vocabulary.
    adaptive_softmax: list[int] | None = None


@dataclass
class TrainConfig:
    batch_size: int = 64  # parallel lanes of the token stream
    seq_len: int = 128  # BPTT window length
    lr: float = 3e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1  # cosine schedule ends at lr * min_lr_ratio
    warmup_steps: int = 50
    schedule: str = "cosine"  # cosine | constant
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    max_steps: int | None = None
    max_epochs: int | None = 20
    max_time: float | None = None  # seconds of wall time
    eval_every: int = 100  # steps between validation passes
    patience: int | None = 5  # stop after this many evaluations without improvement
    checkpoint_every: int = 100  # steps between `last` checkpoints
    log_every: int = 10  # steps between progress reports
    sample_every: int | None = None  # evaluations between short samples shown during training (null: none)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 (autocast)


@dataclass
class Config:
    corpus: str = "jokes"  # registry corpus name
    name: str = "char"  # model name in the registry
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {
    "train.schedule": ("cosine", "constant"),
    "train.precision": ("auto", "fp32", "bf16"),
}
POSITIVE = {
    "model.embed",
    "model.hidden",
    "model.n_layer",
    "train.batch_size",
    "train.seq_len",
    "train.lr",
    "train.eval_every",
    "train.checkpoint_every",
    "train.log_every",
    "train.sample_every",
    "train.max_steps",
    "train.max_epochs",
    "train.max_time",
    "train.patience",
}
NON_NEGATIVE = {"train.warmup_steps", "train.weight_decay", "train.grad_clip", "train.min_lr_ratio"}


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None) -> Config:
    """Defaults, then `base` (a saved `Config.to_dict()`) or the YAML file at `path`, then `key=value` overrides."""
    raw: dict = copy.deepcopy(base) if base is not None else {}
    if path is not None:
        raw = _read_yaml(find_config(path))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value (example: --set train.max_steps=30)")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        _set_dotted(raw, key.strip(), parsed)
    cfg = _build(Config, raw, prefix="")
    validate(cfg)
    return cfg


CONFIG_DIR = Path(__file__).parent / "configs"  # the shipped configs: package data, so found from any directory


@dataclass(frozen=True)
class PackagedConfig:
    """A config that ships inside the package, as its header comment describes it."""

    name: str  # what --config takes: "char"
    path: Path
    command: str  # how to launch it, from the header's first line `# char.yaml — COMMAND`
    summary: str  # what it is for, in one line: the header's second line


def packaged_configs() -> list[PackagedConfig]:
    """The shipped configs, sorted by name, each described by its header comment (empty where it has none)."""
    found = []
    for name, path in _packaged_paths().items():
        with path.open(encoding="utf-8") as f:
            header = [f.readline(), f.readline()]
        header = [line.removeprefix("#").strip() if line.startswith("#") else "" for line in header]
        found.append(PackagedConfig(name, path, header[0].partition(" — ")[2], header[1]))
    return found


def _packaged_paths() -> dict[str, Path]:
    return {path.stem: path for path in sorted(CONFIG_DIR.glob("*.yaml"))}


def find_config(value: str | Path) -> Path:
    """The YAML file a --config value names: an existing file wins; else a packaged config by name (`char` or
    `char.yaml`); else a ConfigError that names the packaged ones."""
    path = Path(value)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"config {value} is a directory; give a YAML file or the name of a packaged config")
    packaged = _packaged_paths()
    name = str(value).removesuffix(".yaml")
    if name in packaged:  # a dict lookup: a value such as ../x never reaches outside CONFIG_DIR
        return packaged[name]
    if path.stem in packaged:  # configs/char.yaml typed outside the repository
        raise ConfigError(f"config file {value} does not exist; the packaged {path.stem} is --config {path.stem}")
    raise ConfigError(
        f"config file {value} does not exist, and no packaged config has that name; packaged: "
        f"{', '.join(packaged)} (`lstmgen configs` describes them)"
    )


def validate(cfg: Config) -> None:
    for key in POSITIVE | NON_NEGATIVE:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value is None:
            continue
        if key in POSITIVE and value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
        if key in NON_NEGATIVE and value < 0:
            raise ConfigError(f"{key} must not be negative, got {value}")
    if not 0 <= cfg.model.dropout < 1:
        raise ConfigError(f"model.dropout must be in [0, 1), got {cfg.model.dropout}")
    cutoffs = cfg.model.adaptive_softmax
    if cutoffs is not None:
        if not cutoffs or cutoffs[0] < 1 or cutoffs != sorted(set(cutoffs)):
            raise ConfigError(
                f"model.adaptive_softmax must be increasing positive cutoffs such as [500, 2000], got {cutoffs}"
            )
        narrowest = ADAPTIVE_SHRINK ** len(cutoffs)
        if cfg.model.hidden < narrowest:
            raise ConfigError(
                f"model.adaptive_softmax with {len(cutoffs)} cutoffs needs model.hidden of at least {narrowest} "
                f"(each band is {ADAPTIVE_SHRINK}x narrower than the one before), got {cfg.model.hidden}"
            )
        if cfg.model.tie_weights:
            raise ConfigError(
                "model.tie_weights needs the full softmax; set model.adaptive_softmax to null or tie_weights to false"
            )
    if cfg.model.tie_weights and cfg.model.embed != cfg.model.hidden:
        raise ConfigError(
            f"model.tie_weights needs model.embed == model.hidden (got {cfg.model.embed} and {cfg.model.hidden})"
        )
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")
    t = cfg.train
    if t.max_steps is None and t.max_epochs is None and t.max_time is None:
        raise ConfigError("set at least one of train.max_steps, train.max_epochs, train.max_time")


class UniqueKeySafeLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error, not "the last one wins"."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        raw = yaml.load(text, Loader=UniqueKeySafeLoader)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{at}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys (corpus:, name:, model:, train:), got {type(raw).__name__}"
        )
    return raw


def _set_dotted(raw: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key}: {part} is not a section")
        node = child
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        for k, v in value.items():  # --set 'train={lr: 0.01}' changes lr, not the rest of the section
            _set_dotted(node[last], str(k), v)
    else:
        node[last] = value


def _build(cls, raw, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"unknown config key {prefix}{key}{hint}")
    kwargs = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value if value is not None else {}, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value, hint, key: str):
    """Check `value` against a field type (int, float, bool, str, list[int], or `X | None`)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key} must not be null")
    for t in options:
        if typing.get_origin(t) is list:
            if isinstance(value, list):
                (item,) = typing.get_args(t)
                return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
            continue
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and not isinstance(value, bool):
            number = _to_float(value)
            if number is not None:
                if not math.isfinite(number):
                    raise ConfigError(f"{key} must be a finite number, got {value!r}")
                return number
        if t is str and isinstance(value, str):
            return value
    names = " or ".join(
        "null" if t is type(None) else _list_name(t) if typing.get_origin(t) else t.__name__ for t in options
    )
    raise ConfigError(f"{key} must be {names}, got {value!r}")


def _list_name(hint) -> str:
    return f"a list of {typing.get_args(hint)[0].__name__}"


def _to_float(value) -> float | None:
    """Ints, floats, and strings such as "3e-4" (YAML 1.1 reads exponents without a dot as strings)."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
