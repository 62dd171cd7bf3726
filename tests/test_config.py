import dataclasses
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmgen.config import (
    CONFIG_DIR,
    MAX_BATCH,
    MAX_CONFIG_BYTES,
    MAX_SEED,
    MAX_SEQ_LEN,
    MAX_STEPS,
    MAX_TOKENS_PER_STEP,
    MAX_WIDTH,
    MAX_YAML_DEPTH,
    POSITIVE,
    RANGES,
    Config,
    ConfigError,
    find_config,
    load_config,
    packaged_configs,
)

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_defaults_then_yaml_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: mine\nmodel: {hidden: 32}\ntrain: {lr: 0.01, max_steps: 5}\n")
    cfg = load_config(p, ["train.lr=0.02", "train.max_time=null"])
    assert cfg.name == "mine" and cfg.model.hidden == 32 and cfg.model.embed == Config().model.embed
    assert cfg.train.lr == 0.02 and cfg.train.max_steps == 5 and cfg.train.max_time is None


def test_section_override_merges(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: {lr: 0.01, max_steps: 5}\n")
    cfg = load_config(p, ["train={max_steps: 9}"])
    assert cfg.train.lr == 0.01 and cfg.train.max_steps == 9


def test_resolved_config_roundtrips():
    cfg = load_config(None, ["model.hidden=64", "train.max_steps=3"])
    assert load_config(None, base=cfg.to_dict()) == cfg
    tiny = load_config(None, ["train.lr=1e-05", "train.max_steps=3"])
    assert load_config(None, base=tiny.to_dict()).train.lr == 1e-05  # saved configs reload, exponents and all


def test_exponent_floats_are_floats(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: {lr: 3e-4, weight_decay: 1e-7}\n")
    cfg = load_config(p, ["train.min_lr_ratio=5e-2"])
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.min_lr_ratio) == (3e-4, 1e-7, 5e-2)
    with pytest.raises(ConfigError, match="train.lr must be a finite number"):
        load_config(None, ["train.lr=nan"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_by_name_and_names_its_command(path):
    assert load_config(path.stem) == load_config(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# {path.name} — ") and first.endswith(f"lstmgen train --config {path.stem}")


@pytest.mark.parametrize("name", ["char", "word", "bpe"])
def test_the_quick_start_configs_stop_on_epochs_not_wall_time(name):
    # A wall-time bound trains less on a busy machine: the same seed would give another model.
    t = load_config(name).train
    assert t.max_time is None and t.max_epochs and t.patience and t.seed == 0


def test_shipped_configs_exist_and_the_repository_links_to_them():
    assert {"char.yaml", "word.yaml"} <= {p.name for p in CONFIGS}
    assert CONFIG_DIR.parent.name == "lstmgen"  # inside the package: a wheel carries them (pyproject package-data)
    repo = Path(__file__).parent.parent
    assert (repo / "configs").resolve() == CONFIG_DIR.resolve()  # `--config configs/char.yaml` in the repo


def test_packaged_configs_describe_themselves_in_one_line_each():
    listed = packaged_configs()
    assert [c.name for c in listed] == [p.stem for p in CONFIGS]
    for c in listed:
        assert c.command.endswith(f"lstmgen train --config {c.name}")
        # names, not paths: the command works from any directory
        assert not any("/" in word for word in c.command.split()), c.command
        assert 20 < len(c.summary) <= 100 and not c.summary.startswith("#"), c.summary
    char = next(c for c in listed if c.name == "char")
    assert char.command == "lstmgen prepare jokes && lstmgen train --config char"
    assert "quick start" in char.summary


def test_a_config_is_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config("char") == find_config("char.yaml") == find_config(Path("char")) == CONFIG_DIR / "char.yaml"
    assert load_config("word").model.adaptive_softmax == [500, 2000]


def test_an_existing_file_wins_over_a_packaged_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "char.yaml").write_text("name: mine\ntrain: {max_steps: 3}\n")
    assert find_config("char.yaml") == Path("char.yaml")
    assert load_config("char.yaml").name == "mine" and load_config("char").name == "char"


def test_a_directory_never_hides_a_packaged_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "char").mkdir()  # train run from the registry's models/, which holds a model called char
    assert find_config("char") == CONFIG_DIR / "char.yaml"
    (tmp_path / "mine").mkdir()
    with pytest.raises(ConfigError, match="config mine is a directory; give a YAML file"):
        find_config("mine")


@pytest.mark.parametrize(
    "value, message",
    [
        ("chars", "config file chars does not exist, and no packaged config has that name; packaged: bpe, char"),
        ("configs/char.yaml", "config file configs/char.yaml does not exist; the packaged char is --config char"),
        ("../configs/char", "the packaged char is --config char"),
        (".", "config . is a directory"),
    ],
)
def test_an_unknown_config_names_the_packaged_ones(tmp_path, monkeypatch, value, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config(value)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("model: {hiden: 3}\n", "model.hiden; did you mean model.hidden?"),
        ("train: {lr: fast}\n", "train.lr must be float"),
        ("train: {batch_size: 2.5}\n", "train.batch_size must be int"),
        ("model: {hidden: 0}\n", "model.hidden must be in [1, 8,192], got 0"),
        ("train: {seq_len: -4}\n", "train.seq_len must be in [1, 65,536], got -4"),
        ("model: {dropout: 1.5}\n", "model.dropout must be in [0, 1)"),
        ("train: {precision: fp8}\n", "train.precision must be one of"),
        ("model: {tie_weights: true, embed: 8, hidden: 16}\n", "tie_weights needs model.embed == model.hidden"),
        ("model: [1, 2]\n", "model must be a mapping"),
        ("model: {adaptive_softmax: 1000}\n", "model.adaptive_softmax must be a list of int or null"),
        ("model: {adaptive_softmax: [3000, 1000]}\n", "must be increasing positive cutoffs"),
        ("model: {adaptive_softmax: [0]}\n", "must be increasing positive cutoffs"),
        ("model: {adaptive_softmax: [1.5]}\n", "model.adaptive_softmax[0] must be int"),
        ("model: {adaptive_softmax: [10, 20], hidden: 8}\n", "needs model.hidden of at least 16"),
        ("model: {adaptive_softmax: [10], tie_weights: true}\n", "tie_weights needs the full softmax"),
        ("model: {hidden: 3\n", "invalid YAML at line"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_config_names_the_key(tmp_path, yaml_text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert message in str(e.value)


def test_bad_overrides():
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match="unknown config key train.max_step; did you mean train.max_steps"):
        load_config(None, ["train.max_step=3"])
    with pytest.raises(ConfigError, match="at least one of"):
        load_config(None, ["train.max_epochs=null"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


# -- hostile configs: caps on size, depth and aliases; every numeric key's range ----------------------------

BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9))  # 9**8 = 43M leaves


@pytest.mark.parametrize(
    "yaml_text",
    [
        "l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + BOMB + "corpus: *l8\n",  # billion laughs, under a real key
        "corpus: &a jokes\nname: *a\n",  # a harmless alias is refused as well: configs have no use for them
        "model: &m {hidden: 32}\n",
    ],
)
def test_yaml_anchors_and_aliases_are_refused_at_once(tmp_path, yaml_text):
    p = tmp_path / "bomb.yaml"
    p.write_text(yaml_text)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml: YAML anchors and aliases .* are not allowed.*line 1") as e:
        load_config(p)
    assert time.perf_counter() - start < 1 and "\n" not in str(e.value)


def test_alias_bomb_in_a_set_value_is_refused():
    value = "[" + ", ".join(["&a [x, x, x, x, x, x, x, x, x]"] + ["*a"] * 8) + "]"
    with pytest.raises(ConfigError, match=r"^--set corpus=\.\.\.: YAML anchors and aliases"):
        load_config(None, [f"corpus={value}"])


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 5000])
def test_deep_yaml_is_refused(tmp_path, depth):
    p = tmp_path / "deep.yaml"
    p.write_text("model: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigError, match=f"deep.yaml: YAML nested deeper than {MAX_YAML_DEPTH} levels"):
        load_config(p)
    with pytest.raises(ConfigError, match=f"--set model=...: YAML nested deeper than {MAX_YAML_DEPTH}"):
        load_config(None, ["model=" + "{a: " * depth + "1" + "}" * depth])


def test_nesting_within_the_cap_reaches_the_key_checks(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("model: {adaptive_softmax: " + "[" * (MAX_YAML_DEPTH - 2) + "]" * (MAX_YAML_DEPTH - 2) + "}\n")
    with pytest.raises(ConfigError, match=r"model.adaptive_softmax\[0\] must be int"):
        load_config(p)


def test_config_file_size_is_capped(tmp_path):
    p = tmp_path / "big.yaml"
    line = "# a comment line of padding\n"
    p.write_text("name: big\n" + line * ((MAX_CONFIG_BYTES - 10) // len(line)))
    assert load_config(p).name == "big"  # up to the cap: read
    p.write_text(p.read_text() + line)
    assert p.stat().st_size > MAX_CONFIG_BYTES
    with pytest.raises(ConfigError, match=f"big.yaml is larger than {MAX_CONFIG_BYTES >> 10} KB"):
        load_config(p)
    with pytest.raises(ConfigError, match="--set corpus=...: the value is longer than"):
        load_config(None, ["corpus=" + "x" * (MAX_CONFIG_BYTES + 1)])


def test_endless_config_file_is_refused_unread():
    with pytest.raises(ConfigError, match="/dev/zero is larger than"):
        load_config("/dev/zero")


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("train: {seed: " + "9" * 5000 + "}\n", "invalid YAML: unreadable value"),  # int() refuses > 4300 digits
        ("train: {[1]: 2}\n", "invalid YAML"),  # an unhashable key (the duplicate-key check used to crash)
        ("? [a]\n: 1\n", "invalid YAML"),
        ("train: {lr: 1.0e+400}\n", "train.lr must be a finite number"),
    ],
)
def test_unreadable_values_are_one_line(tmp_path, yaml_text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        load_config(p)
    assert "\n" not in str(e.value) and len(str(e.value)) < 200


def _numbers(key: str):
    """(just outside, just inside) values at each end of RANGES[key], of the key's type."""
    least, most = RANGES[key]
    is_float = key in FLOAT_KEYS
    step = 1e-9 if is_float else 1
    outside = [0.0 if key in POSITIVE else least - step] + ([most * 2 if is_float else most + 1] if most else [])
    inside = [5e-324 if key in POSITIVE else least] + ([most] if most else [])
    return outside, inside


FLOAT_KEYS = {"train.lr", "train.min_lr_ratio", "train.weight_decay", "train.grad_clip", "train.max_time"}


@pytest.mark.parametrize("key", sorted(RANGES))
def test_every_numeric_key_is_refused_outside_its_range_naming_it(key):
    outside, inside = _numbers(key)
    base = ["train.max_epochs=1", "train.batch_size=1", "train.seq_len=1"]
    for value in outside:
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)} must be (in [\[(]|at least|above)"):
            load_config(None, [*base, f"{key}={value!r}"])
    for value in inside:
        cfg = load_config(None, [*base, f"{key}={value!r}"])
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == value


def test_huge_numbers_in_sizes_are_refused_with_the_range():
    for key in ("model.hidden", "model.n_layer", "train.batch_size", "train.seq_len", "train.eval_every"):
        with pytest.raises(ConfigError, match=rf"^{key} must be in \[1, [\d,]+\], got 1(0{{30}})$"):
            load_config(None, [f"{key}={10**30}"])
    with pytest.raises(ConfigError, match=r"model.hidden must be in \[1, 8,192\], got <an integer of 5001 digits>"):
        load_config(None, [], base={"model": {"hidden": 10**5000}})
    with pytest.raises(ConfigError, match="train.lr must be a finite number"):
        load_config(None, [], base={"train": {"lr": 10**5000}})  # float() of it overflows


def test_tokens_per_step_are_capped():
    with pytest.raises(ConfigError, match=f"train.batch_size x train.seq_len is .* more than {MAX_TOKENS_PER_STEP:,}"):
        load_config(None, [f"train.batch_size={MAX_BATCH}", f"train.seq_len={MAX_SEQ_LEN}"])
    load_config(None, ["train.batch_size=1024", f"train.seq_len={MAX_TOKENS_PER_STEP // 1024}"])


@pytest.mark.parametrize("device", ["meta", "xla", "cuda:99999", "cpu:0", "''", "cuda:-1", "CUDA"])
def test_devices_training_cannot_use_are_refused(device):
    with pytest.raises(ConfigError, match="train.device must be auto, cpu, cuda, cuda:N or mps"):
        load_config(None, [f"train.device={device}"])


def test_long_adaptive_softmax_is_refused_before_its_band_widths_are_computed():
    cutoffs = list(range(1, 100_001))  # ADAPTIVE_SHRINK ** 100000 has 60,206 digits: too long to print
    with pytest.raises(ConfigError, match="model.adaptive_softmax has 100000 cutoffs; at most 6"):
        load_config(None, [], base={"model": {"adaptive_softmax": cutoffs}})


def test_error_lines_show_long_values_cut_short():
    with pytest.raises(ConfigError) as e:
        load_config(None, [], base={"train": {"lr": ["x" * 10_000] * 10_000}})
    assert len(str(e.value)) < 200


# Every leaf key of the config, and values across every type and numeric extreme.
LEAF_KEYS = [f"{s}.{f.name}" for s in ("model", "train") for f in dataclasses.fields(getattr(Config(), s))]
LEAF_KEYS += ["corpus", "name"]
# Ints too long for repr (over 4,300 digits) are drawn as exponents: hypothesis could not print them otherwise.
HUGE = st.sampled_from([5000, -5000]).map(lambda n: 10 ** abs(n) if n > 0 else -(10 ** abs(n)))
NUMBERS = st.one_of(
    HUGE,
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.sampled_from([0, -0.0, 5e-324, 1e-310, 1e308, -1e308, 2**31, 2**63, 2**64, 10**30,
                     MAX_WIDTH + 1, MAX_BATCH + 1, MAX_STEPS + 1, MAX_SEED + 1, 1.5, 0.999999, 1.0]),
)  # fmt: skip
VALUES = st.one_of(
    NUMBERS,
    st.none(),
    st.booleans(),
    st.text(max_size=12),
    st.lists(NUMBERS, max_size=4),
    st.dictionaries(st.text(max_size=4), NUMBERS, max_size=2),
)
# What a user types after `--set key=`: number spellings YAML 1.1 knows, and junk.
SET_TEXT = st.one_of(
    NUMBERS.filter(lambda x: not isinstance(x, int) or x.bit_length() < 1000).map(repr),
    st.sampled_from([".nan", "-.inf", ".inf", "9" * 5000, "1e400", "0x" + "f" * 40, "0o777", "0b101", "1_000",
                     "190:20:30", "2001-12-14", "~", "null", "[]", "{}", "[1, [2]]", "!!binary aGk=", "yes", "off",
                     "1e-400", "-0", "+5", "3e-4", "'5'"]),
    st.text(max_size=12),
)  # fmt: skip


def _nest(flat: dict) -> dict:
    raw: dict = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return raw


def _check_outcome(load) -> None:
    """The only two outcomes: a valid Config (that round-trips), or one short ConfigError line."""
    try:
        cfg = load()
    except ConfigError as e:
        assert "\n" not in str(e) and len(str(e)) < 400, str(e)
        return
    assert isinstance(cfg, Config)
    assert load_config(None, [], base=cfg.to_dict()) == cfg  # what a checkpoint saves loads again


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(LEAF_KEYS), VALUES, max_size=4))
def test_any_values_in_a_config_give_a_config_or_a_config_error(flat):
    _check_outcome(lambda: load_config(None, [], base=_nest(flat)))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LEAF_KEYS), SET_TEXT), max_size=4))
def test_any_set_values_give_a_config_or_a_config_error(items):
    _check_outcome(lambda: load_config(None, [f"{k}={v}" for k, v in items]))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("&*[]{}:,- \n'\"!?|>#%@`abc19.")), max_size=60))
def test_any_yaml_text_gives_a_config_or_a_config_error(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("yaml") / "c.yaml"
    p.write_text("train:\n  lr: " + text)
    _check_outcome(lambda: load_config(p))


@pytest.mark.parametrize(
    "extremes",
    [
        # the top of every range at once (but max_steps, so that the run ends)
        {"lr": 10.0, "weight_decay": 1e308, "grad_clip": 5e-324, "min_lr_ratio": 1, "warmup_steps": MAX_STEPS,
         "eval_every": MAX_STEPS, "checkpoint_every": MAX_STEPS, "log_every": MAX_STEPS, "patience": MAX_STEPS,
         "sample_every": MAX_STEPS, "seed": MAX_SEED, "max_epochs": MAX_STEPS, "max_time": 1e9, "max_steps": 3},
        # the bottom: subnormal rates and time, every interval 1
        {"lr": 5e-324, "weight_decay": 0, "grad_clip": 1e308, "min_lr_ratio": 0, "warmup_steps": 0, "eval_every": 1,
         "checkpoint_every": 1, "log_every": 1, "patience": 1, "sample_every": 1, "seed": 0, "max_epochs": 1,
         "max_time": 5e-324, "max_steps": MAX_STEPS, "batch_size": 1, "seq_len": 1},
    ],
    ids=["top", "bottom"],
)  # fmt: skip
def test_values_at_the_ends_of_their_ranges_train_or_fail_with_one_line(toy_corpus, extremes):
    """validate()'s promise: what it lets through trains (or diverges, a clear error), never an internal error."""
    from lstmgen.errors import LstmgenError
    from lstmgen.train import train

    from .conftest import tiny_config

    cfg = tiny_config(**{k: repr(v) for k, v in extremes.items()})
    if extremes["max_time"] < 1:  # the bottom's 5e-324 s budget: over before the first step, a clear error
        with pytest.raises(LstmgenError, match="ran out before the first step"):
            train(cfg, toy_corpus)
        cfg = tiny_config(**{k: repr(v) for k, v in extremes.items() if k != "max_time"})  # the rest still trains
    try:
        summary = train(cfg, toy_corpus)
    except LstmgenError as e:
        assert "diverged" in str(e)
    else:
        assert summary["stop_reason"] in ("max_steps", "max_time", "early_stop")  # patience 1 at the bottom
        assert checkpoint_steps(cfg.name) == summary["steps"]


def test_lstm_size_is_capped_by_its_parameter_count():
    import torch

    from lstmgen.config import MAX_LSTM_PARAMETERS, ModelConfig, lstm_parameters

    for e, h, n in [(8, 16, 2), (3, 5, 3), (64, 256, 1)]:  # the count the cap uses is nn.LSTM's
        assert lstm_parameters(ModelConfig(embed=e, hidden=h, n_layer=n)) == sum(
            p.numel() for p in torch.nn.LSTM(e, h, n).parameters()
        )
    load_config(None, [f"model.hidden={MAX_WIDTH}", f"model.embed={MAX_WIDTH}", "model.n_layer=1"])
    too_many = f"make an LSTM of 1,073,872,896 parameters, more than {MAX_LSTM_PARAMETERS:,}"
    with pytest.raises(ConfigError, match=too_many):
        load_config(None, [f"model.hidden={MAX_WIDTH}", f"model.embed={MAX_WIDTH}", "model.n_layer=2"])
    with pytest.raises(ConfigError, match="make it narrower or shallower"):
        load_config(None, ["model.hidden=4096", "model.n_layer=64"])


def checkpoint_steps(name: str) -> int:
    from lstmgen import checkpoint

    return checkpoint.load(name, "last").step
