"""Config: defaults in one place, YAML and ``--set`` only override, unknown keys fail loudly."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from sentibridge.config import (
    EMBEDDED_BASE_MODEL,
    EMBEDDED_EMBEDDER,
    EMBEDDED_MULTILINGUAL_EMBEDDER,
    EmbeddingConfig,
    Settings,
)
from sentibridge.config_loading import (
    MOVED_KEYS,
    load_settings,
    parse_overrides,
    saved_value,
)
from sentibridge.errors import ConfigError
from sentibridge.tracking import settings_to_flat_dict


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


# --- the embedding section, and keys that moved to it --------------------------------------


def test_embedding_section_defaults_and_overrides(tmp_path):
    s = load_settings()
    assert s.embedding == EmbeddingConfig()
    assert (s.embedding.model, s.embedding.label_issues_model) == (EMBEDDED_EMBEDDER, EMBEDDED_MULTILINGUAL_EMBEDDER)
    assert (s.embedding.batch_size, s.embedding.precision) == (64, "auto")
    path = write(tmp_path, "embedding:\n  model: embedded:multilingual-e5-small\n  batch_size: 16\n")
    s = load_settings(path, ["embedding.precision=fp32"])
    assert (s.embedding.model, s.embedding.batch_size, s.embedding.precision) == (EMBEDDED_MULTILINGUAL_EMBEDDER, 16, "fp32")
    assert s.embedding.label_issues_model == EMBEDDED_MULTILINGUAL_EMBEDDER  # siblings keep their defaults


def test_embedding_batch_size_is_checked():
    with pytest.raises(ConfigError, match="'embedding.batch_size'"):
        load_settings(None, ["embedding.batch_size=0"])


@pytest.mark.parametrize("old, new", sorted(MOVED_KEYS.items()))
def test_a_moved_key_names_its_new_place_in_yaml(tmp_path, old, new):
    section, key = old.split(".")
    path = write(tmp_path, f"{section}:\n  {key}: fp32\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == f"{path}: {old} moved to {new}"


@pytest.mark.parametrize("old, new", sorted(MOVED_KEYS.items()))
def test_a_moved_key_names_its_new_place_in_set(old, new):
    with pytest.raises(ConfigError) as info:
        load_settings(None, ["train.max_steps=1", f"{old}=fp32"])
    assert str(info.value) == f"--set: {old} moved to {new}"


def test_moved_keys_point_at_existing_keys_and_no_longer_exist():
    for old, new in MOVED_KEYS.items():
        old_section, old_key = old.split(".")
        new_section, new_key = new.split(".")
        assert old_key not in Settings.model_fields[old_section].annotation.model_fields, old
        assert new_key in Settings.model_fields[new_section].annotation.model_fields, new


def test_saved_value_reads_a_moved_key_under_its_old_name():
    assert saved_value({"embedding": {"precision": "bf16"}}, "embedding.precision", "auto") == "bf16"
    assert saved_value({"augment": {"embed_precision": "fp32"}}, "embedding.precision", "auto") == "fp32"
    both = {"embedding": {"precision": "bf16"}, "augment": {"embed_precision": "fp32"}}
    assert saved_value(both, "embedding.precision", "auto") == "bf16"  # the new name wins
    assert saved_value({"model": {"max_length": 64}}, "embedding.precision", "auto") == "auto"
    assert saved_value({"eval": {"batch_size": 3}}, "eval.batch_size", 16) == 3  # a key that never moved


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


# --- one stage, one setting: precisions and seeds ------------------------------------------


def test_each_stage_has_its_own_precision_and_seed():
    s = load_settings()
    assert (s.train.precision, s.eval.precision, s.embedding.precision) == ("auto", "auto", "auto")
    # 42 everywhere: the same numbers as when split.seed seeded augmentation, templates and the gate.
    assert (s.split.seed, s.augment.seed, s.instructions.seed, s.train.seed, s.gate.seed) == (42, 42, 42, 42, 42)
    s = load_settings(None, ["eval.precision=fp32", "embedding.precision=bf16", "instructions.seed=3", "gate.seed=4"])
    assert (s.train.precision, s.eval.precision, s.embedding.precision) == ("auto", "fp32", "bf16")
    assert (s.instructions.seed, s.gate.seed, s.split.seed) == (3, 4, 42)


@pytest.mark.parametrize(
    "pair, where",
    [("eval.precision=fp16", "'eval.precision'"), ("embedding.precision=half", "'embedding.precision'")],
)
def test_stage_precisions_are_checked(pair, where):
    with pytest.raises(ConfigError, match=where):
        load_settings(None, [pair])


def test_train_seed_alone_leaves_every_other_section_alone():
    base, reseeded = load_settings(), load_settings(None, ["train.seed=7"])
    changed = {name for name in Settings.model_fields if getattr(base, name) != getattr(reseeded, name)}
    assert changed == {"train"}
    assert reseeded.train.model_copy(update={"seed": 42}) == base.train


# --- what each step is given ----------------------------------------------------------------

STEP_NAMES = ("ingest", "split", "label_issues", "augment", "demonstrations", "instructions", "train", "evaluate", "register",
              "gate")
#: Steps only a soup (``train.soup_seeds``) calls.
SOUP_STEPS = ("soup",)


def _steps() -> dict:
    """Every ZenML step defined in steps/, by name."""
    import importlib
    import pkgutil

    from zenml.steps import BaseStep

    import steps

    found = {}
    for info in pkgutil.iter_modules(steps.__path__):
        for obj in vars(importlib.import_module(f"steps.{info.name}")).values():
            if isinstance(obj, BaseStep):
                found[obj.name] = obj
    return found


def test_no_step_takes_the_whole_settings():
    import inspect
    import typing

    found = _steps()
    assert set(STEP_NAMES) <= set(found)
    for name, step in found.items():
        hints = typing.get_type_hints(step.entrypoint)
        params = inspect.signature(step.entrypoint).parameters
        assert "settings" not in params, name
        for param in params:
            hint = hints.get(param)
            assert hint is not Settings and Settings not in typing.get_args(hint), f"{name}.{param}"


def _wiring(monkeypatch, settings: Settings) -> dict[str, dict]:
    """The keyword arguments the pipeline passes to each step (steps replaced by recorders)."""
    import typing

    import pipelines.sentibridge_pipeline as module

    outputs = {}
    for name, step in _steps().items():
        ret = typing.get_type_hints(step.entrypoint, include_extras=True)["return"]
        outputs[name] = len(typing.get_args(ret)) if typing.get_origin(ret) is tuple else 1
    calls: dict[str, dict] = {}

    def recorder(name: str):
        def call(id: str | None = None, **kwargs):  # noqa: A002 - ZenML's invocation-id keyword
            calls[id or name] = {k: v for k, v in kwargs.items() if k != "run_config"}
            values = tuple(f"{name}:{i}" for i in range(outputs[name]))
            return values if len(values) > 1 else values[0]

        return call

    for name in (*STEP_NAMES, *SOUP_STEPS):
        monkeypatch.setattr(module, name, recorder(name))
    module.sentibridge_pipeline.entrypoint(settings=settings, data_version={"data_version": "x"}, data_only=False)
    return calls


@pytest.mark.parametrize(
    "pair, steps_changed",
    [
        ("train.seed=7", {"train"}),  # the null case: same data, augmentation and templates
        ("train.precision=fp32", {"train"}),
        ("split.seed=7", {"split", "label_issues", "evaluate"}),  # label issues: its folds; evaluate: capped test rows
        ("augment.seed=7", {"augment"}),
        ("instructions.seed=7", {"instructions"}),
        ("gate.seed=7", {"gate"}),
        ("gate.min_gain=2", {"gate"}),
        ("eval.precision=fp32", {"augment", "evaluate", "gate"}),  # augment: the self-alignment labeler
        ("embedding.precision=fp32", {"label_issues", "augment", "demonstrations", "instructions", "evaluate"}),
        ("embedding.model=other-embedder", {"augment", "demonstrations"}),  # the rest read the store's embedder
        ("embedding.batch_size=8", {"augment", "demonstrations"}),
        ("embedding.label_issues_model=other-embedder", {"label_issues"}),
        ("data.label_issues=drop", {"ingest", "split", "label_issues"}),  # the data section: cache keys of data steps
        ("data.max_rows_by_language.en=3", {"ingest", "split", "label_issues"}),
        ("demonstrations.k=2", {"demonstrations", "register"}),
    ],
)
def test_a_setting_reaches_only_the_steps_that_read_it(monkeypatch, pair, steps_changed):
    base = _wiring(monkeypatch, load_settings())
    changed = _wiring(monkeypatch, load_settings(None, [pair]))
    assert set(base) == set(STEP_NAMES)
    assert {name for name in STEP_NAMES if base[name] != changed[name]} == steps_changed


def test_a_soup_trains_and_evaluates_each_seed_then_gates_one_model(monkeypatch):
    calls = _wiring(monkeypatch, load_settings(None, ["train.soup_seeds=[42, 7, 123]"]))
    assert {"train_seed42", "train_seed7", "train_seed123", "evaluate_seed42", "soup", "evaluate"} <= set(calls)
    assert "train" not in calls
    assert [calls[f"train_seed{seed}"]["train_cfg"].seed for seed in (42, 7, 123)] == [42, 7, 123]
    assert all(calls[f"train_seed{seed}"]["train_cfg"].soup_seeds is None for seed in (42, 7, 123))
    assert calls["soup"]["seeds"] == [42, 7, 123]
    assert calls["evaluate"]["lora_adapter"] == "soup:0" and calls["register"]["lora_adapter"] == "soup:0"
    assert calls["gate"]["member_metrics"] == ["evaluate:0"] * 3  # each member's metrics (recorders share a name)
    assert calls["evaluate_seed7"]["member"] == "seed7"


def test_only_train_and_register_get_the_whole_config_and_only_as_a_record():
    import inspect

    takers = {name for name, step in _steps().items() if "run_config" in inspect.signature(step.entrypoint).parameters}
    assert takers == {"train", "register"}


# --- serving reads the config saved with the model ---------------------------------------------


@pytest.fixture
def serving_without_weights(monkeypatch):
    """``SentimentModel.load`` with model loading stubbed out: only the config reading is real."""
    from sentibridge.inference import serving

    loaded = {}
    monkeypatch.setattr(serving, "load_tokenizer", lambda path, cfg: "tokenizer")
    monkeypatch.setattr(serving, "load_causal_lm", lambda path, cfg, device, dtype: loaded.setdefault("dtype", dtype))
    monkeypatch.setattr(serving, "load_for_model", lambda folder, precision: loaded.setdefault("embed", precision) and (None, None))
    monkeypatch.setattr(serving, "default_device", lambda: "cpu")
    # Pin the hardware answer: the test is about reading the saved config, and an explicit bf16
    # on a CPU without native bf16 rightly falls back to fp32 (CI machines differ).
    monkeypatch.setattr("sentibridge.model.precision.cpu_supports_bf16", lambda: True)
    return serving.SentimentModel, loaded


def test_serving_takes_batch_size_and_precision_from_the_saved_config(tmp_path, serving_without_weights):
    import json

    import torch

    from sentibridge.config import EvalConfig
    from sentibridge.model.merge import CONFIG_FILE

    model_class, loaded = serving_without_weights
    saved = Settings(eval=EvalConfig(batch_size=3, precision="bf16"), embedding={"precision": "fp32"}).model_dump(mode="json")
    (tmp_path / CONFIG_FILE).write_text(json.dumps(saved), encoding="utf-8")
    model = model_class().load(tmp_path)
    assert (model.batch_size, model.precision, loaded["dtype"]) == (3, "bf16", torch.bfloat16)
    assert loaded["embed"] == "fp32"  # demonstrations are retrieved with the run's embedding precision
    assert model_class().load(tmp_path, precision="fp32").precision == "fp32"  # an explicit choice wins


def test_serving_reads_the_embedding_precision_of_a_model_saved_before_the_embedding_section(
    tmp_path, serving_without_weights
):
    import json

    from sentibridge.model.merge import CONFIG_FILE

    model_class, loaded = serving_without_weights
    saved = {"model": {"max_length": 64}, "augment": {"embedder": "embedded:all-minilm-l6-v2", "embed_precision": "fp32"}}
    (tmp_path / CONFIG_FILE).write_text(json.dumps(saved), encoding="utf-8")
    model_class().load(tmp_path)
    assert loaded["embed"] == "fp32"


def test_serving_falls_back_to_eval_defaults_for_an_older_model(tmp_path, serving_without_weights):
    import json

    from sentibridge.config import EvalConfig
    from sentibridge.model.merge import CONFIG_FILE

    model_class, _ = serving_without_weights
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"model": {"max_length": 64}}), encoding="utf-8")
    model = model_class().load(tmp_path)
    assert model.batch_size == EvalConfig().batch_size and model.max_length == 64
    assert model.precision in ("bf16", "fp32")  # "auto", resolved for this CPU


def test_serving_applies_the_calibration_saved_with_the_model(tmp_path, serving_without_weights, monkeypatch):
    import pandas as pd

    from sentibridge.inference.label_calibration import save_offsets

    model_class, _ = serving_without_weights
    assert model_class().load(tmp_path).offsets == {}  # saved without calibration: raw scores
    save_offsets(tmp_path, {"hi": [0.0, -0.5, 0.25]})
    model = model_class().load(tmp_path)
    seen = {}
    monkeypatch.setattr("sentibridge.inference.serving.predict_rows", lambda *a, **kw: seen.update(kw))
    model.predict_rows(pd.DataFrame({"id": ["1"], "text": ["x"], "language": ["hi"]}))
    assert seen["offsets"] == {"hi": [0.0, -0.5, 0.25]}


def test_a_bare_yaml_off_turns_label_issues_off():
    assert load_settings(None, ["data.label_issues=off"]).data.label_issues == "off"
    with pytest.raises(ConfigError, match="data.label_issues"):
        load_settings(None, ["data.label_issues=true"])
