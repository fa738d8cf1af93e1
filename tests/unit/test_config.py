"""Config: defaults in one place, YAML and ``--set`` only override, unknown keys fail loudly."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from sentibridge.config import (
    EMBEDDED_BASE_MODEL,
    Settings,
    load_settings,
    parse_overrides,
    settings_to_flat_dict,
)
from sentibridge.errors import ConfigError


def write(tmp_path, text: str, name: str = "cfg.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults -------------------------------------------------------------------------------


def test_defaults_without_file_or_overrides():
    s = load_settings()
    assert s == Settings()
    assert s.data.path == "data/sample"
    assert s.data.max_quarantine_fraction == 0.05
    assert s.data.max_rows_per_language is None
    assert (s.split.seed, s.split.val_fraction, s.split.test_fraction) == (42, 0.1, 0.2)
    assert s.split.remove_leaks_from_train is True
    assert s.model.base == EMBEDDED_BASE_MODEL
    assert s.lora.target_modules == "all-linear"


def test_settings_do_not_share_section_instances():
    # A default section object shared between instances would let one run's edits leak into the next.
    first = load_settings()
    first.data.path = "elsewhere"
    first.split.seed = 7
    second = load_settings()
    assert second.data.path == "data/sample"
    assert second.split.seed == 42


# --- YAML -----------------------------------------------------------------------------------


def test_yaml_overrides_only_the_keys_it_names(tmp_path):
    path = write(tmp_path, "data:\n  path: other/data.csv\ntrain:\n  max_steps: 3\n  lr_scheduler: linear\n")
    s = load_settings(path)
    assert s.data.path == "other/data.csv"
    assert s.train.max_steps == 3
    assert s.train.lr_scheduler == "linear"
    # untouched keys of the same sections keep their defaults
    assert s.data.min_text_chars == 1
    assert s.train.learning_rate == 2e-4
    assert s.split == Settings().split


def test_empty_yaml_file_means_defaults(tmp_path):
    assert load_settings(write(tmp_path, "")) == Settings()


def test_set_beats_yaml_and_merges_within_a_section(tmp_path):
    path = write(tmp_path, "train:\n  max_steps: 3\n  batch_size: 4\n")
    s = load_settings(path, ["train.max_steps=1", "lora.r=8"])
    assert s.train.max_steps == 1  # override wins
    assert s.train.batch_size == 4  # sibling from YAML survives the merge
    assert s.lora.r == 8
    assert s.lora.alpha == 32


def test_later_set_wins_over_earlier_set():
    assert load_settings(None, ["split.seed=1", "split.seed=2"]).split.seed == 2


@pytest.mark.parametrize(
    "yaml_text, key",
    [
        ("datta:\n  path: x\n", "'datta'"),
        ("data:\n  pathh: x\n", "'data.pathh'"),
        ("train:\n  max_step: 1\n", "'train.max_step'"),
        ("data.path: x\n", "'data.path'"),  # a dotted key is not a section in YAML
    ],
)
def test_unknown_yaml_key_names_the_dotted_key(tmp_path, yaml_text, key):
    with pytest.raises(ConfigError, match="unknown config key") as info:
        load_settings(write(tmp_path, yaml_text))
    assert key in str(info.value)


@pytest.mark.parametrize(
    "yaml_text, phrase",
    [
        ("data: [unclosed\n", "cannot parse config"),
        ("- a\n- b\n", "must be a mapping of sections"),
        ("just a string\n", "must be a mapping of sections"),
    ],
)
def test_unreadable_yaml_raises_config_error(tmp_path, yaml_text, phrase):
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError, match=phrase) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_yaml_that_is_not_utf8_raises_config_error(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes("data:\n  path: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot parse config"):
        load_settings(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_settings(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value)


# --- --set ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pair, expected",
    [
        ("train.max_steps=1", {"train": {"max_steps": 1}}),
        ("train.learning_rate=0.001", {"train": {"learning_rate": 0.001}}),
        ("split.val_fraction=0.25", {"split": {"val_fraction": 0.25}}),
        ("split.remove_leaks_from_train=false", {"split": {"remove_leaks_from_train": False}}),
        ("model.revision=", {"model": {"revision": None}}),
        ("model.revision=null", {"model": {"revision": None}}),
        ("model.base=google/gemma-3-270m", {"model": {"base": "google/gemma-3-270m"}}),
        ("lora.target_modules=[q_proj, v_proj]", {"lora": {"target_modules": ["q_proj", "v_proj"]}}),
        ("data.path=a=b", {"data": {"path": "a=b"}}),  # only the first '=' separates
        (" split.seed =7", {"split": {"seed": 7}}),
        ("model.base=[unclosed", {"model": {"base": "[unclosed"}}),  # unparsable YAML stays a string
    ],
)
def test_parse_overrides_values_are_yaml_scalars(pair, expected):
    assert parse_overrides([pair]) == expected


def test_set_values_reach_typed_fields():
    # PyYAML reads "1e-3" as a string; the typed field must still end up a float.
    s = load_settings(None, ["train.learning_rate=1e-3", "train.epochs=2", "data.max_rows_per_language=null"])
    assert s.train.learning_rate == pytest.approx(1e-3)
    assert isinstance(s.train.epochs, float) and s.train.epochs == 2.0
    assert s.data.max_rows_per_language is None


@pytest.mark.parametrize(
    "pair, section, key, value",
    [
        ("registry.experiment=2024", "registry", "experiment", "2024"),
        ("model.revision=1234567", "model", "revision", "1234567"),
    ],
)
def test_str_fields_accept_numeric_looking_values(pair, section, key, value):
    assert getattr(getattr(load_settings(None, [pair]), section), key) == value


def test_parse_overrides_builds_one_tree():
    assert parse_overrides(["train.seed=1", "train.epochs=2", "data.path=x"]) == {
        "train": {"seed": 1, "epochs": 2},
        "data": {"path": "x"},
    }


@pytest.mark.parametrize(
    "pairs, phrase",
    [
        (["train.max_steps"], "expects key=value, got 'train.max_steps'"),
        (["=1"], "expects key=value, got '=1'"),
        (["  =1"], "expects key=value"),
        (["data=5", "data.path=x"], "'data' is a value, not a section"),
    ],
)
def test_parse_overrides_rejects_malformed_pairs(pairs, phrase):
    with pytest.raises(ConfigError) as info:
        parse_overrides(pairs)
    assert phrase in str(info.value)


@pytest.mark.parametrize(
    "pair, key",
    [
        ("train.max_stepz=1", "'train.max_stepz'"),
        ("tran.max_steps=1", "'tran'"),
        ("data.path.x=1", None),  # a value, not a section: fails one way or another
        ("lora.rank=4", "'lora.rank'"),
    ],
)
def test_unknown_set_key_fails_loudly(pair, key):
    with pytest.raises(ConfigError) as info:
        load_settings(None, [pair])
    if key is not None:
        assert "unknown config key" in str(info.value)
        assert key in str(info.value)


@pytest.mark.parametrize(
    "overrides, where",
    [
        (["train.max_steps=abc"], "'train.max_steps'"),
        (["train.lr_scheduler=exponential"], "'train.lr_scheduler'"),
        (["train.batch_size=0"], "'train.batch_size'"),
        (["train.learning_rate=0"], "'train.learning_rate'"),
        (["train.precision=fp16"], "'train.precision'"),
        (["data.min_text_chars=0"], "'data.min_text_chars'"),
        (["data.max_quarantine_fraction=1.5"], "'data.max_quarantine_fraction'"),
        (["data.max_rows_per_language=0"], "'data.max_rows_per_language'"),
        (["data.min_text_chars=10", "data.max_text_chars=5"], "'data'"),
        (["split.val_fraction=0.5", "split.test_fraction=0.5"], "'split'"),
        (["split.test_fraction=0"], "'split.test_fraction'"),
        (["model.max_length=8"], "'model.max_length'"),
        (["lora.dropout=1"], "'lora.dropout'"),
        (["lora.target_modules={a: 1}"], "'lora.target_modules"),
        (["data=5"], "'data'"),
    ],
)
def test_invalid_value_raises_config_error_naming_the_key(overrides, where):
    with pytest.raises(ConfigError, match="invalid config value") as info:
        load_settings(None, overrides)
    assert where in str(info.value)
    assert "\n" not in str(info.value)


def test_cross_field_checks_name_the_rule():
    with pytest.raises(ConfigError, match="min_text_chars must not exceed"):
        load_settings(None, ["data.min_text_chars=10", "data.max_text_chars=5"])
    with pytest.raises(ConfigError, match="must be below 1"):
        load_settings(None, ["split.val_fraction=0.5", "split.test_fraction=0.5"])


def test_invalid_value_in_yaml_is_also_caught(tmp_path):
    with pytest.raises(ConfigError, match="'train.epochs'"):
        load_settings(write(tmp_path, "train:\n  epochs: -1\n"))


def test_config_error_has_its_own_exit_code():
    assert ConfigError.exit_code == 2


# --- flat dict for MLflow -------------------------------------------------------------------


def test_flat_dict_has_one_dotted_key_per_field():
    s = load_settings(None, ["train.max_steps=5", "lora.target_modules=[q_proj]"])
    flat = settings_to_flat_dict(s)

    def leaves(model, prefix=""):
        for name, field in model.model_fields.items():
            sub = field.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                yield from leaves(sub, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    assert set(flat) == set(leaves(Settings))
    assert flat["augment.self_alignment.knn_k"] == 10  # nested sections flatten all the way
    assert flat["train.max_steps"] == 5
    assert flat["data.path"] == "data/sample"
    assert flat["model.revision"] is None
    assert flat["lora.target_modules"] == ["q_proj"]  # a list is a value, not a section
    assert flat["split.remove_leaks_from_train"] is True
