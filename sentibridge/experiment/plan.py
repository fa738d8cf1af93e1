"""What an experiment runs: recipes (a config plus overrides) times training seeds.

A plan comes from ``--config`` files (one recipe each) or from one plan YAML that lists
variants of a base config. Every recipe is validated before anything trains, and all of them
must score the same test rows, so their differences are paired.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentibridge.config import Settings
from sentibridge.config_loading import load_settings, read_yaml_mapping
from sentibridge.errors import ConfigError

#: Seeds taken in order by ``--seeds N``: 42 is the config default, 7 and 123 the soup's.
SEED_ORDER = (42, 7, 123, 1, 2, 3, 4, 5, 6, 8, 9, 10)
#: Settings that decide which test rows are scored: recipes must agree on them.
SHARED_TEST_ROWS = ("data.path", "data.min_text_chars", "data.max_text_chars", "split", "eval.max_rows_per_language")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PLAN_KEYS = {"name", "base", "seeds", "set", "recipes"}
#: Settings that decide how a run executes, not what it trains: changing them keeps finished runs.
EXECUTION_ONLY = ("train.checkpoint_every", "train.resume")


@dataclass(frozen=True)
class Recipe:
    """One recipe: defaults, then ``config`` (if any), then ``overrides`` (``key=value``)."""

    name: str
    config: Path | None
    overrides: tuple[str, ...] = ()
    #: The plan file that lists the recipe (its overrides live there), named first in its errors.
    source: Path | None = None

    def settings(self, seed: int | None = None) -> Settings:
        """The recipe's settings; with ``seed``, trained with that ``train.seed``.

        A config problem raises ``ConfigError`` naming the recipe's file (or the recipe).
        """
        extra = [f"train.seed={seed}"] if seed is not None else []
        try:
            return load_settings(self.config, [*self.overrides, *extra])
        except ConfigError as exc:
            where = str(self.config) if self.config is not None else f"recipe '{self.name}'"
            if self.source is not None:
                where = f"{self.source}: recipe '{self.name}'" + (f" (config {self.config})" if self.config else "")
            message = str(exc)
            raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


@dataclass(frozen=True)
class Plan:
    """Recipes x seeds; the first recipe is the reference every other one is compared with."""

    name: str
    recipes: tuple[Recipe, ...]
    seeds: tuple[int, ...]

    def grid(self) -> list[tuple[Recipe, int]]:
        """Every (recipe, seed), seed by seed, so an interrupted grid has every recipe at its first seeds."""
        return [(recipe, seed) for seed in self.seeds for recipe in self.recipes]


def parse_seeds(text: str | int) -> tuple[int, ...]:
    """``3`` -> the first three of ``SEED_ORDER``; ``42,7,123`` -> those seeds."""
    raw = str(text).strip()
    try:
        if "," in raw:
            seeds = tuple(int(part) for part in raw.split(",") if part.strip())
        else:
            count = int(raw)
            if not 1 <= count <= len(SEED_ORDER):
                raise ConfigError(f"--seeds takes 1..{len(SEED_ORDER)} seeds, or a list like 42,7,123; got {count}")
            seeds = SEED_ORDER[:count]
    except ValueError:
        raise ConfigError(f"--seeds expects a count (3) or a list (42,7,123), got '{raw}'") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"--seeds: seeds must be distinct and at least one, got '{raw}'")
    return seeds


def plan_from_configs(configs: list[Path], overrides: list[str], seeds: tuple[int, ...], name: str | None) -> Plan:
    """One recipe per config file, named by its stem (``-2``, ``-3`` when stems repeat)."""
    if not configs:
        raise ConfigError("experiment needs at least one --config (or a --plan file)")
    recipes: list[Recipe] = []
    for path in configs:
        stem, k = path.stem, 2
        while any(r.name == stem for r in recipes):
            stem, k = f"{path.stem}-{k}", k + 1
        recipes.append(Recipe(stem, path, tuple(overrides)))
    return Plan(_name(name or "-vs-".join(r.name for r in recipes)), tuple(recipes), seeds)


def plan_from_file(path: Path, overrides: list[str], seeds: tuple[int, ...] | None, name: str | None) -> Plan:
    """A plan YAML: ``name``, ``base`` (a config), ``seeds``, ``set`` (for every recipe), ``recipes``.

    ``recipes`` maps a name to its overrides, e.g. ``drop: {data.label_issues: drop}`` (or
    ``{config: other.yaml, set: {...}}``); the first recipe is the reference.
    """
    tree = read_yaml_mapping(path, "experiment plan", "a mapping with a 'recipes' section")
    unknown = set(tree) - _PLAN_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown plan key '{sorted(unknown)[0]}' (known: {', '.join(sorted(_PLAN_KEYS))})")
    listed = tree.get("recipes")
    if not isinstance(listed, dict) or not listed:
        raise ConfigError(f"{path}: 'recipes' must map recipe names to their overrides")
    base = _relative(path, tree["base"]) if tree.get("base") else None
    shared = [*_pairs(path, "set", tree.get("set") or {}), *overrides]
    recipes = []
    for recipe_name, body in listed.items():
        body = body or {}
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: recipe '{recipe_name}' must map keys to values")
        config = _relative(path, body["config"]) if "config" in body else base
        keys = {k: v for k, v in body.items() if k not in ("config", "set")}
        own = _pairs(path, f"recipes.{recipe_name}", {**keys, **(body.get("set") or {})})
        recipes.append(Recipe(_name(str(recipe_name)), config, (*shared, *own), path))
    plan_seeds = seeds or (parse_seeds(",".join(map(str, tree["seeds"]))) if isinstance(tree.get("seeds"), list)
                           else parse_seeds(tree.get("seeds", 3)))
    return Plan(_name(name or str(tree.get("name") or path.stem)), tuple(recipes), plan_seeds)


def check_plan(plan: Plan) -> dict[str, Settings]:
    """Validate every recipe before anything trains; they must agree on the test rows."""
    settings = {recipe.name: recipe.settings(plan.seeds[0]) for recipe in plan.recipes}
    reference = plan.recipes[0].name
    ref_tree = settings[reference].model_dump(mode="json")
    for recipe in plan.recipes[1:]:
        tree = settings[recipe.name].model_dump(mode="json")
        for dotted in SHARED_TEST_ROWS:
            if _get(tree, dotted) != _get(ref_tree, dotted):
                raise ConfigError(
                    f"recipe '{recipe.name}' sets {dotted} differently from '{reference}': recipes must score the "
                    "same test rows to be compared"
                )
    return settings


def settings_digest(settings: Settings) -> str:
    """A short hash of resolved settings: a finished run is reused only for the same recipe.

    Only values that differ from the defaults count, so a release that adds a setting (with a
    default that keeps the old behaviour) still reuses the runs an earlier release finished.
    Settings in ``EXECUTION_ONLY`` do not count either: a plan can add checkpoints to a grid
    (so a run cut off by the end of a session resumes its training) and keep what it finished.
    """
    tree = settings.model_dump(mode="json", exclude_defaults=True)
    for dotted in EXECUTION_ONLY:
        section, _, key = dotted.partition(".")
        tree.get(section, {}).pop(key, None)
    blob = json.dumps({k: v for k, v in tree.items() if v != {}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _pairs(path: Path, where: str, mapping: Any) -> list[str]:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{path}: '{where}' must map dotted keys to values")
    return [f"{key}={json.dumps(value)}" for key, value in mapping.items()]


def _relative(plan_path: Path, value: Any) -> Path:
    """Config paths in a plan are relative to the working directory, else to the plan's folder."""
    candidate = Path(str(value))
    return candidate if candidate.is_absolute() or candidate.exists() else plan_path.parent / candidate


def _name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"experiment and recipe names take letters, digits, '.', '_' and '-': got '{name}'")
    return name


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node
