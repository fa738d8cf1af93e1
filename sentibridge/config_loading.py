"""Reading a configuration: defaults, then a YAML file, then ``--set`` overrides, into ``Settings``.

Unknown or mistyped keys fail loudly, both in YAML files and in ``--set`` overrides, with one
line naming the key; a key that moved to another section (``MOVED_KEYS``) fails with its new name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sentibridge.config import Settings
from sentibridge.errors import ConfigError

#: Keys that moved to another section, old dotted key -> new one: naming the old key says where it went.
MOVED_KEYS = {
    "augment.embedder": "embedding.model",
    "augment.embed_batch_size": "embedding.batch_size",
    "augment.embed_precision": "embedding.precision",
    "data.label_issue_embedder": "embedding.label_issues_model",
}


def _check_moved(tree: dict[str, Any], where: str, prefix: str = "") -> None:
    """One line naming a moved key (``where``: the YAML file or ``--set``) and its new name."""
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if dotted in MOVED_KEYS:
            raise ConfigError(f"{where}: {dotted} moved to {MOVED_KEYS[dotted]}")
        if isinstance(value, dict):
            _check_moved(value, where, f"{dotted}.")


def saved_value(config: dict[str, Any], dotted: str, default: Any) -> Any:
    """``section.key`` of a config saved with a model (``sentibridge_config.json``), else ``default``.

    A model saved before the key moved has it under its old name (``MOVED_KEYS``), read as well.
    """
    old = {new: old for old, new in MOVED_KEYS.items()}.get(dotted)
    for key in (dotted, old) if old else (dotted,):
        section, _, name = key.partition(".")
        node = config.get(section)
        if isinstance(node, dict) and name in node:
            return node[name]
    return default


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def _check_known(tree: dict[str, Any], model: type[BaseModel], prefix: str = "") -> None:
    """Name the first unknown key with its full dotted path (pydantic's message is harder to read)."""
    for key, value in tree.items():
        field = model.model_fields.get(key)
        if field is None:
            known = ", ".join(sorted(model.model_fields))
            raise ConfigError(f"unknown config key '{prefix}{key}' (known here: {known})")
        sub = field.annotation
        if isinstance(value, dict) and isinstance(sub, type) and issubclass(sub, BaseModel):
            _check_known(value, sub, f"{prefix}{key}.")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["train.max_steps=1", ...]`` into a nested dict; values are parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got '{pair}'")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _set_dotted(tree, key.strip(), value)
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml_mapping(path: Path, kind: str, shape: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; any problem is one ``ConfigError`` line.

    ``kind`` names the file in messages ("config", "run config"); ``shape`` says what it must be.
    """
    if not path.is_file():
        raise ConfigError(f"{kind} file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot parse {kind} {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{kind} {path} must be {shape}")
    return loaded


def load_settings(path: str | Path | None = None, overrides: list[str] | None = None) -> Settings:
    """Defaults, then the YAML file at ``path``, then ``--set`` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        tree = read_yaml_mapping(Path(path), "config", "a mapping of sections")
        _check_moved(tree, str(path))
    tree = {k: ({} if v is None else v) for k, v in tree.items()}  # an empty "data:" section
    overridden = parse_overrides(overrides or [])
    _check_moved(overridden, "--set")
    tree = _merge(tree, overridden)
    _check_known(tree, Settings)
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid config value for '{where}': {err['msg']}") from None
