from pathlib import Path

import pytest

from lstmgen.config import CONFIG_DIR, Config, ConfigError, find_config, load_config, packaged_configs

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
        ("model: {hidden: 0}\n", "model.hidden must be positive"),
        ("train: {seq_len: -4}\n", "train.seq_len must be positive"),
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
