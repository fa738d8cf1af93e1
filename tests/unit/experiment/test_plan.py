"""The experiment plan: recipes x seeds, validated before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sentibridge.errors import ConfigError
from sentibridge.experiment.plan import (
    SEED_ORDER,
    Plan,
    Recipe,
    check_plan,
    parse_seeds,
    plan_from_configs,
    plan_from_file,
    settings_digest,
)

REPO = Path(__file__).resolve().parents[3]
DEFAULT = REPO / "configs" / "default.yaml"


def _write_plan(folder: Path, recipes: dict, **top) -> Path:
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump({"base": str(DEFAULT), **top, "recipes": recipes}, sort_keys=False),
                    encoding="utf-8")
    return path


# --- seeds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("3", (42, 7, 123)), (3, (42, 7, 123)), ("1", (42,)), (" 2 ", (42, 7)), ("42,7", (42, 7)),
     ("5, 9", (5, 9)), ("11", SEED_ORDER[:11]), (str(len(SEED_ORDER)), SEED_ORDER)],
)
def test_parse_seeds(text, seeds):
    """A single number is a count of seeds taken from SEED_ORDER; a list is the seeds themselves."""
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("bad", ["0", "-1", str(len(SEED_ORDER) + 1), "abc", "4.5", "42,42", ",", "", "42,x"])
def test_bad_seeds_are_one_line_config_errors(bad):
    with pytest.raises(ConfigError) as caught:
        parse_seeds(bad)
    message = str(caught.value)
    assert "--seeds" in message and "\n" not in message


# --- plan files -----------------------------------------------------------------------------


def test_plan_from_file_keeps_recipe_order_with_the_reference_first(tmp_path):
    path = _write_plan(
        tmp_path,
        {"zeta": {}, "alpha": {"lora.r": 64}, "mid": {"lora.r": 8, "lora.alpha": 16}},
        name="ranks", seeds=[7, 42], set={"train.max_steps": 3},
    )
    plan = plan_from_file(path, [], None, None)
    assert plan.name == "ranks"
    assert plan.seeds == (7, 42)
    assert [r.name for r in plan.recipes] == ["zeta", "alpha", "mid"]  # file order, not sorted
    settings = {r.name: r.settings() for r in plan.recipes}
    assert [settings[n].lora.r for n in ("zeta", "alpha", "mid")] == [16, 64, 8]
    assert settings["mid"].lora.alpha == 16
    # ``set`` applies to every recipe; the base config is read (its gate.seed_std is 7.1, the default 3.6).
    assert all(s.train.max_steps == 3 and s.gate.seed_std == 7.1 for s in settings.values())
    assert plan.recipes[1].settings(123).train.seed == 123


def test_command_line_seeds_name_and_overrides_win_over_the_plan(tmp_path):
    path = _write_plan(tmp_path, {"ref": {}, "big": {"lora.r": 64}}, name="ranks", seeds=[7, 42],
                       set={"train.max_steps": 3})
    plan = plan_from_file(path, ["train.max_steps=5", "lora.dropout=0.0"], (1, 2, 3), "mine")
    assert plan.name == "mine" and plan.seeds == (1, 2, 3)
    for recipe in plan.recipes:
        assert recipe.settings().train.max_steps == 5
        assert recipe.settings().lora.dropout == 0.0
    # A recipe's own overrides come last: they win over the shared ones.
    assert plan.recipes[1].settings().lora.r == 64


def test_plan_defaults_name_from_file_and_seed_count(tmp_path):
    path = _write_plan(tmp_path, {"ref": None, "other": {"lora.r": 4}}, seeds=2)
    plan = plan_from_file(path, [], None, None)
    assert plan.name == "plan" and plan.seeds == (42, 7)
    assert plan.recipes[0].overrides == ()
    assert plan_from_file(_write_plan(tmp_path, {"ref": {}}), [], None, None).seeds == (42, 7, 123)


def test_a_recipe_may_name_its_own_config_relative_to_the_plan(tmp_path):
    (tmp_path / "my_recipe_config_for_test.yaml").write_text("lora:\n  r: 4\n", encoding="utf-8")
    path = _write_plan(tmp_path, {"ref": {}, "own": {"config": "my_recipe_config_for_test.yaml", "lora.alpha": 8}})
    own = plan_from_file(path, [], None, None).recipes[1]
    assert own.config == tmp_path / "my_recipe_config_for_test.yaml"
    assert (own.settings().lora.r, own.settings().lora.alpha) == (4, 8)


def test_an_unknown_plan_key_names_the_file_and_the_key(tmp_path):
    path = _write_plan(tmp_path, {"ref": {}}, sed=[1, 2])
    with pytest.raises(ConfigError) as caught:
        plan_from_file(path, [], None, None)
    assert str(path) in str(caught.value) and "'sed'" in str(caught.value)


@pytest.mark.parametrize("recipes", [{}, None, ["a", "b"]])
def test_recipes_must_be_a_non_empty_mapping(tmp_path, recipes):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"recipes": recipes}), encoding="utf-8")
    with pytest.raises(ConfigError, match="recipes"):
        plan_from_file(path, [], None, None)


def test_a_missing_plan_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        plan_from_file(tmp_path / "nope.yaml", [], None, None)


@pytest.mark.parametrize("name", ["has space", "-dash-first", "a/b"])
def test_recipe_names_must_be_safe_folder_names(tmp_path, name):
    with pytest.raises(ConfigError, match="names take"):
        plan_from_file(_write_plan(tmp_path, {"ref": {}, name: {}}), [], None, None)


@pytest.mark.parametrize(
    ("override", "key"), [({"train.nope": 1}, "train.nope"), ({"lora.r": 0}, "lora.r"), ({"nosection.x": 1}, "nosection")]
)
def test_a_bad_recipe_override_names_the_plan_file_the_recipe_and_the_key(tmp_path, override, key):
    """The key lives in the plan file: the one-line error must send the user there, not to the base config."""
    path = _write_plan(tmp_path, {"reference": {}, "broken": override})
    plan = plan_from_file(path, [], None, None)  # parsing alone does not validate values
    with pytest.raises(ConfigError) as caught:
        check_plan(plan)
    message = str(caught.value)
    assert str(path) in message and key in message and "broken" in message
    assert "\n" not in message


def test_a_bad_recipe_from_configs_names_its_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora:\n  r: 0\n", encoding="utf-8")
    plan = plan_from_configs([DEFAULT, bad], [], (42,), None)
    with pytest.raises(ConfigError) as caught:
        check_plan(plan)
    assert str(caught.value).startswith(str(bad)) and "lora.r" in str(caught.value)


def test_plan_from_configs_names_recipes_by_stem():
    plan = plan_from_configs([DEFAULT, DEFAULT, DEFAULT], ["train.max_steps=2"], (42, 7), None)
    assert [r.name for r in plan.recipes] == ["default", "default-2", "default-3"]
    assert plan.name == "default-vs-default-2-vs-default-3"
    assert all(r.overrides == ("train.max_steps=2",) for r in plan.recipes)
    with pytest.raises(ConfigError):
        plan_from_configs([], [], (42,), None)


# --- check_plan -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [("eval.max_rows_per_language=5", "eval.max_rows_per_language"), ("data.max_text_chars=100", "data.max_text_chars"),
     ("split.test_fraction=0.3", "split"), ("data.path=elsewhere", "data.path")],
)
def test_check_plan_refuses_recipes_that_score_other_test_rows(override, key):
    plan = Plan("p", (Recipe("ref", DEFAULT), Recipe("other", DEFAULT, (override,))), (42,))
    with pytest.raises(ConfigError) as caught:
        check_plan(plan)
    message = str(caught.value)
    assert "'other'" in message and f" {key} " in message and "same test rows" in message


def test_check_plan_accepts_recipes_that_differ_in_training_only():
    plan = Plan("p", (Recipe("ref", DEFAULT), Recipe("big", DEFAULT, ("lora.r=64", "train.epochs=2")),
                      Recipe("no_hi", DEFAULT, ('data.max_rows_by_language={"hi": 0}',))), (7, 42))
    settings = check_plan(plan)
    assert list(settings) == ["ref", "big", "no_hi"]
    assert settings["big"].lora.r == 64 and settings["no_hi"].data.max_rows_by_language == {"hi": 0}
    assert all(s.train.seed == 7 for s in settings.values())  # validated at the plan's first seed


# --- grid and digest ------------------------------------------------------------------------


def test_grid_is_seed_major():
    a, b = Recipe("a", None), Recipe("b", None, ("lora.r=4",))
    assert Plan("p", (a, b), (42, 7, 123)).grid() == [(a, 42), (b, 42), (a, 7), (b, 7), (a, 123), (b, 123)]


def test_settings_digest_tells_recipes_and_seeds_apart_and_is_stable():
    ref, big = Recipe("ref", DEFAULT), Recipe("big", DEFAULT, ("lora.r=64",))
    digest = settings_digest(ref.settings(42))
    assert len(digest) == 16
    assert digest == settings_digest(ref.settings(42)) == settings_digest(Recipe("renamed", DEFAULT).settings(42))
    assert digest != settings_digest(big.settings(42))
    assert digest != settings_digest(ref.settings(7))


def test_settings_digest_counts_only_values_that_differ_from_the_defaults():
    """A setting spelled out at its default value (or added later with its default) reuses old runs."""
    plain = settings_digest(Recipe("r", None).settings(42))
    assert settings_digest(Recipe("r", None, ("lora.r=16", "train.seed=42")).settings(42)) == plain
    assert settings_digest(Recipe("r", None, ("lora.r=17",)).settings(42)) != plain


def test_settings_digest_ignores_how_a_run_executes():
    """Checkpoints added to a grid later keep its finished runs; what a run trains still counts."""
    plain = settings_digest(Recipe("r", None).settings(42))
    executed = Recipe("r", None, ("train.checkpoint_every=50", "train.resume=false"))
    assert settings_digest(executed.settings(42)) == plain
    assert settings_digest(Recipe("r", None, ("train.checkpoint_every=50", "lora.r=8")).settings(42)) != plain


def test_settings_digest_survives_a_release_that_adds_a_defaulted_setting():
    """The documented point of hashing only non-defaults: a new setting at its default keeps old runs reusable."""
    from sentibridge.config import Settings

    class Later(Settings):  # a later release: one more setting, whose default keeps the old behaviour
        new_knob: int = 5

    for recipe in (Recipe("r", None), Recipe("big", None, ("lora.r=64",))):
        now = recipe.settings(7)
        later = Later(**now.model_dump())
        assert settings_digest(later) == settings_digest(now)
        assert settings_digest(later.model_copy(update={"new_knob": 6})) != settings_digest(now)


@pytest.mark.parametrize("path", sorted((REPO / "bench" / "experiments").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_the_shipped_plans_are_valid(path):
    plan = plan_from_file(path, [], None, None)
    assert len(check_plan(plan)) == len(plan.recipes) >= 2
