"""Training configuration: dataclass defaults <- YAML file <- `--set key=value` overrides; the range of every
key (a config is checked whole before anything is built); the packaged configs, found by name.

Long because the ranges of ~25 keys and the hostile-YAML guards (aliases, depth, size) live beside the
fields they check."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import LstmgenError


class ConfigError(LstmgenError):
    """A config file or override that cannot be used; the message names the key."""


ADAPTIVE_SHRINK = 4  # an adaptive softmax's bands: each this many times narrower than the one before

# Resource caps on reading a config (a file, or a `--set` value). Real configs are under 2 KB, three levels
# deep (file -> section -> a list of cutoffs), and have no use for YAML anchors or aliases, which let a few
# hundred bytes stand for billions of values ("billion laughs": 5.6 GB in 45 s before these caps). They are
# constants, not options: a config that needs more is a mistake (a data file passed as --config); edit them
# here if you truly need more. PyYAML's pure-Python parser takes ~30 us per value on this 2-core machine, so
# the byte cap also bounds the time: a 64 KB list of numbers parses in ~2 s (1 MB took 28 s).
MAX_CONFIG_BYTES = 64 << 10  # a larger --config file (or --set value) is refused unread
MAX_YAML_DEPTH = 16  # nesting levels of mappings and lists (deeper YAML recursed until Python gave up)

# The numeric keys' allowed ranges: (least, most), both included; a None end is unbounded. The upper ends keep
# a typo or a hostile value (1e308, 10**30) from reaching torch, where it fails deep inside as an overflow
# or a request for terabytes. Each is far above real use for an LSTM LM; raise one here if you need more.
MAX_WIDTH = 8192  # model.embed, model.hidden: the widest LSTM LMs published (Jozefowicz et al. 2016) are 8,192
MAX_LAYERS = 64  # model.n_layer: LSTM LMs rarely go past 4
MAX_BATCH = 65_536  # train.batch_size: lanes of the token stream
MAX_SEQ_LEN = 65_536  # train.seq_len: BPTT window
# train.batch_size x train.seq_len: the tokens of one step. Activations grow with it (about 6 x hidden floats
# per token and layer, plus a vocabulary-wide row of scores per token): 2**20 tokens at hidden 256 with a
# 1,024-token vocabulary are ~6 GB per layer and 4 GB of scores. The shipped configs' steps are 1-8 K tokens.
MAX_TOKENS_PER_STEP = 1 << 20
# The LSTM's weights (embedding and output layer aside: they depend on the vocabulary): 2**30 parameters are
# 4 GB in fp32, 16 GB to train with gradients and AdamW's two moments (one 8,192-wide layer is 0.54 G). The
# widths and depth above alone allow 140 GB of weights, which the kernel's OOM killer would end with no
# message. Raise it for a larger machine.
MAX_LSTM_PARAMETERS = 2**30
MAX_STEPS = 10**12  # step counts and intervals: 30 years at 1,000 steps/s
MAX_TIME = 10**9  # train.max_time, seconds: 30 years
MAX_LR = 10.0  # train.lr: AdamW diverges long before
MAX_SEED = 2**63 - 1  # train.seed: torch seeds a 64-bit generator (seed + rank must fit)
MAX_CUTOFF = 2**31 - 1  # model.adaptive_softmax cutoffs are token ids: int32
MAX_CUTOFFS = 6  # ADAPTIVE_SHRINK ** 6 = 4,096: a 7th band would need model.hidden >= 16,384 > MAX_WIDTH
RANGES: dict[str, tuple[float | None, float | None]] = {
    "model.embed": (1, MAX_WIDTH),
    "model.hidden": (1, MAX_WIDTH),
    "model.n_layer": (1, MAX_LAYERS),
    "train.batch_size": (1, MAX_BATCH),
    "train.seq_len": (1, MAX_SEQ_LEN),
    "train.lr": (0, MAX_LR),  # above 0: see POSITIVE
    "train.min_lr_ratio": (0, 1),  # the schedule ends at lr * min_lr_ratio: at most lr
    "train.warmup_steps": (0, MAX_STEPS),
    "train.weight_decay": (0, None),
    "train.grad_clip": (0, None),
    "train.max_steps": (1, MAX_STEPS),
    "train.max_epochs": (1, MAX_STEPS),
    "train.max_time": (0, MAX_TIME),  # above 0: see POSITIVE
    "train.eval_every": (1, MAX_STEPS),
    "train.patience": (1, MAX_STEPS),
    "train.checkpoint_every": (1, MAX_STEPS),
    "train.log_every": (1, MAX_STEPS),
    "train.sample_every": (1, MAX_STEPS),
    "train.seed": (0, MAX_SEED),
}
POSITIVE = {"train.lr", "train.max_time"}  # floats whose least value, 0, is excluded
DEVICES = "auto, cpu, cuda, cuda:N or mps"  # in words, for every error about a device name
DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d{1,4})?")  # what training can run on (torch parses more: meta, xla)


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


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None) -> Config:
    """Defaults, then `base` (a saved `Config.to_dict()`) or the YAML file at `path`, then `key=value` overrides."""
    raw: dict = copy.deepcopy(base) if base is not None else {}
    if path is not None:
        raw = _read_yaml(find_config(path))
    cfg = _build(Config, _apply_overrides(raw, overrides), prefix="")
    validate(cfg)
    return cfg


def override_keys(overrides: list[str] = ()) -> set[str]:
    """The dotted keys `key=value` overrides set ("train.lr"; a section override `train={lr: 1}` sets train.lr)."""

    def flat(node: dict, prefix: str = ""):
        for k, v in node.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]

    return set(flat(_apply_overrides({}, overrides)))


def override_key(item: str) -> str:
    """The dotted key one `key=value` override names, unparsed ("train.lr", or "train" for `train={lr: 1}`)."""
    return item.partition("=")[0].strip()


def _apply_overrides(raw: dict, overrides) -> dict:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value (example: --set train.max_steps=30)")
        _set_dotted(raw, key.strip(), _parse_override(key, value))
    return raw


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
    `char.yaml`); else a ConfigError that names the packaged ones. A directory is never a config: a `char/`
    in the current directory (the registry's models/, say) does not hide the packaged `char`."""
    path = Path(value)
    if path.exists() and not path.is_dir():  # a file, or a device or pipe that _read_yaml reads within its cap
        return path
    packaged = _packaged_paths()
    name = str(value).removesuffix(".yaml")
    if name in packaged:  # a dict lookup: a value such as ../x never reaches outside CONFIG_DIR
        return packaged[name]
    if path.is_dir():
        raise ConfigError(f"config {value} is a directory; give a YAML file or the name of a packaged config")
    if path.stem in packaged:  # configs/char.yaml typed outside the repository
        raise ConfigError(f"config file {value} does not exist; the packaged {path.stem} is --config {path.stem}")
    raise ConfigError(
        f"config file {value} does not exist, and no packaged config has that name; packaged: "
        f"{', '.join(packaged)} (`lstmgen configs` describes them)"
    )


def validate(cfg: Config) -> None:
    """Ranges and combinations: anything that passes can be built and trained (or fails only for want of
    memory or of a device), never as an overflow deep inside torch."""
    for key, (least, most) in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value is None:
            continue
        low_ok = value > least if key in POSITIVE else value >= least
        if not low_ok or (most is not None and value > most):
            raise ConfigError(f"{key} must be {_range_text(key)}, got {_shown(value)}")
    m, t = cfg.model, cfg.train
    if lstm_parameters(m) > MAX_LSTM_PARAMETERS:
        raise ConfigError(
            f"model.hidden={m.hidden}, model.embed={m.embed} and model.n_layer={m.n_layer} make an LSTM of "
            f"{lstm_parameters(m):,} parameters, more than {MAX_LSTM_PARAMETERS:,}; make it narrower or shallower"
        )
    if t.batch_size * t.seq_len > MAX_TOKENS_PER_STEP:
        raise ConfigError(
            f"train.batch_size x train.seq_len is {t.batch_size * t.seq_len:,} tokens per step, more than "
            f"{MAX_TOKENS_PER_STEP:,} (the memory of a step grows with it); lower train.batch_size or train.seq_len"
        )
    if not DEVICE_RE.fullmatch(t.device):
        raise ConfigError(f"train.device must be {DEVICES}; got {_shown(t.device)}")
    if not 0 <= cfg.model.dropout < 1:
        raise ConfigError(f"model.dropout must be in [0, 1), got {_shown(cfg.model.dropout)}")
    cutoffs = cfg.model.adaptive_softmax
    if cutoffs is not None:
        if not cutoffs or cutoffs[0] < 1 or cutoffs != sorted(set(cutoffs)) or cutoffs[-1] > MAX_CUTOFF:
            raise ConfigError(
                f"model.adaptive_softmax must be increasing positive cutoffs (at most {MAX_CUTOFF:,}) such as "
                f"[500, 2000], got {_shown(cutoffs)}"
            )
        if len(cutoffs) > MAX_CUTOFFS:  # checked before ADAPTIVE_SHRINK ** len: a long list made a huge int
            raise ConfigError(
                f"model.adaptive_softmax has {len(cutoffs)} cutoffs; at most {MAX_CUTOFFS} (each band is "
                f"{ADAPTIVE_SHRINK}x narrower than the one before, and model.hidden is at most {MAX_WIDTH:,})"
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
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {_shown(value)}")
    if t.max_steps is None and t.max_epochs is None and t.max_time is None:
        raise ConfigError("set at least one of train.max_steps, train.max_epochs, train.max_time")


class _Refused(Exception):
    """YAML refused by ConfigSafeLoader's caps (not a yaml.YAMLError: `--set` must not fall back to a string)."""


class ConfigSafeLoader(yaml.SafeLoader):
    """yaml.safe_load, except that: a key given twice in one mapping is an error, not "the last one wins";
    anchors and aliases are refused (a config has no use for them, and they let a few bytes stand for
    billions of values); nesting deeper than MAX_YAML_DEPTH is refused before it exhausts Python's stack."""

    depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        where = f" (line {event.start_mark.line + 1}, column {event.start_mark.column + 1})"
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(f"YAML anchors and aliases (&name, *name) are not allowed in a config{where}; write "
                           "each value out")  # fmt: skip
        if self.depth >= MAX_YAML_DEPTH:
            raise _Refused(f"YAML nested deeper than {MAX_YAML_DEPTH} levels{where}; a config needs 3")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_shown(key)}", key_node.start_mark
                    )
                seen.add(key)
            except TypeError:  # an unhashable key: SafeConstructor says so below, with its position
                pass
        return super().construct_mapping(node, deep)


def _load_yaml(text: str):
    """One YAML document through ConfigSafeLoader. A number YAML reads but Python cannot hold (an int of over
    4,300 digits) is a YAMLError like any other bad value."""
    try:
        return yaml.load(text, Loader=ConfigSafeLoader)
    except (ValueError, OverflowError) as e:
        raise yaml.YAMLError(f"unreadable value ({str(e).splitlines()[0][:80]})") from None


def _read_yaml(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)  # bounded: the path may be a huge file, or /dev/zero
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {path} is larger than {MAX_CONFIG_BYTES >> 10} KB; a config is a few lines of YAML "
                "(was a data file passed as --config?)"
            )
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        raw = _load_yaml(text)
    except _Refused as e:
        raise ConfigError(f"{path}: {e}") from None
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


def lstm_parameters(m: ModelConfig) -> int:
    """nn.LSTM's parameter count: per layer 4 gates of (input + hidden) weights and two biases."""
    h = m.hidden
    return 4 * h * (m.embed + h) + 8 * h + (m.n_layer - 1) * (8 * h * h + 8 * h)


def _range_text(key: str) -> str:
    """RANGES[key] in words: "in [1, 8,192]", "in (0, 10.0]", "at least 0"."""
    least, most = RANGES[key]
    if most is None:
        return f"above {least}" if key in POSITIVE else f"at least {least}"
    return f"in {'(' if key in POSITIVE else '['}{least}, {most:,}]"


class _Short(reprlib.Repr):
    """repr for error lines: a value may be a 1 MB list or string, or an int too long for repr to print
    (over 4,300 digits repr raises ValueError)."""

    def __init__(self):
        super().__init__()
        self.maxstring = self.maxother = 40
        self.maxlong = 40
        self.maxlist = self.maxtuple = self.maxset = self.maxdict = 4
        self.maxlevel = 3

    def repr_int(self, x, level):
        if x.bit_length() > 128:
            return f"<an integer of {math.floor(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


def _shown(value) -> str:
    text = _Short().repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _parse_override(key: str, value: str):
    """The YAML value of `--set key=value`, with the config file's caps (no aliases, bounded depth); text that
    is not YAML stays a string (say, a device `cuda:0`)."""
    if not value.strip():
        return None
    shown = key.strip() if len(key) <= 60 else _shown(key.strip())
    if len(value) > MAX_CONFIG_BYTES:
        raise ConfigError(f"--set {shown}=...: the value is longer than {MAX_CONFIG_BYTES >> 10} KB")
    try:
        return _load_yaml(value)
    except _Refused as e:
        raise ConfigError(f"--set {shown}=...: {e}") from None
    except yaml.YAMLError:
        return value


def _set_dotted(raw: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {_shown(key)}: {_shown(part)} is not a section")
        node = child
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        for k, v in value.items():  # --set 'train={lr: 0.01}' changes lr, not the rest of the section
            _set_dotted(node[last], k if isinstance(k, str) else _shown(k), v)
    else:
        node[last] = value


def _build(cls, raw, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {_shown(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            shown = key if isinstance(key, str) and len(key) <= 60 else _shown(key)  # any YAML key: 10**5000, a list
            close = difflib.get_close_matches(key[:100], list(fields), n=1) if isinstance(key, str) else []
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"unknown config key {prefix}{shown}{hint}")
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
                    raise ConfigError(f"{key} must be a finite number, got {_shown(value)}")
                return number
        if t is str and isinstance(value, str):
            return value
    names = " or ".join(
        "null" if t is type(None) else _list_name(t) if typing.get_origin(t) else t.__name__ for t in options
    )
    raise ConfigError(f"{key} must be {names}, got {_shown(value)}")


def _list_name(hint) -> str:
    return f"a list of {typing.get_args(hint)[0].__name__}"


def _to_float(value) -> float | None:
    """Ints, floats, and strings such as "3e-4" (YAML 1.1 reads exponents without a dot as strings); an int
    too large for a float is infinite (float() raises OverflowError)."""
    if isinstance(value, (int, float, str)):
        try:
            return float(value)
        except OverflowError:
            return math.inf
        except ValueError:
            return None
    return None
