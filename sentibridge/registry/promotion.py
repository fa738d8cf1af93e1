"""The model registry at the edge: MLflow aliases, promotion under a lock, rollback, listing.

``champion`` is the version users get; a candidate that does not pass the gate gets
``challenger``. Each champion carries a ``previous_champion`` tag naming the version it
replaced, so ``rollback`` can walk back one step at a time.

Two pipelines finishing at once must not both become champion. Promotion runs under the
promotion lock (``registry/lock.py``: a file lock in the home, or a database lock that holds
across machines) and re-reads the alias inside it (compare-and-set): if the champion moved
since the gate looked, the gate decides again against the new one before anything is written.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.exceptions import MlflowException

from sentibridge.errors import SentibridgeError
from sentibridge.registry.lock import PromotionLock
from sentibridge.registry.registration import f1_from_tags

if TYPE_CHECKING:  # the gate pulls in sklearn and matplotlib; `retrain` only reads aliases
    from sentibridge.registry.decision import Decision

CHAMPION = "champion"
CHALLENGER = "challenger"


def client(tracking_uri: str | None = None) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=tracking_uri)


#: The only MLflow answers that mean "there is none": no such model or version, and (MLflow's
#: code for it) no such alias or a version that is not a number. An outage, a 5xx or a refused
#: login is raised, so that no command reads "no champion yet" from a server it could not ask.
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def alias_version(mlflow_client: mlflow.MlflowClient, name: str, alias: str) -> Any | None:
    """The model version behind ``alias``, or None when the alias (or the model) does not exist."""
    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return None
        raise


def _now(seconds: float | None = None) -> str:
    """UTC ISO time of ``seconds`` since the epoch (default: now)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _make_champion(mlflow_client: mlflow.MlflowClient, name: str, version: str, previous: str | None) -> None:
    if previous and previous != version:
        mlflow_client.set_model_version_tag(name, version, "previous_champion", previous)
        mlflow_client.set_model_version_tag(name, previous, "retired_at", _now())
    mlflow_client.set_registered_model_alias(name, CHAMPION, version)
    challenger = alias_version(mlflow_client, name, CHALLENGER)
    if challenger is not None and str(challenger.version) == version:
        mlflow_client.delete_registered_model_alias(name, CHALLENGER)
    mlflow_client.set_model_version_tag(name, version, "promoted_at", _now())


def apply_decision(
    mlflow_client: mlflow.MlflowClient,
    name: str,
    candidate: str,
    decision: Decision,
    lock: PromotionLock,
    redecide: Callable[[str], Decision],
) -> Decision:
    """Move ``champion`` (or ``challenger``) for ``candidate`` as ``decision`` says.

    Compare-and-set: inside the lock the champion is read again; if it is no longer the version
    ``decision`` was made against, ``redecide(new_champion_version)`` decides again first.
    """
    with lock.hold(name):
        current = alias_version(mlflow_client, name, CHAMPION)
        current_version = str(current.version) if current is not None else None
        if current_version != decision.champion_version and current_version is not None:
            decision = redecide(current_version)
            decision.reasons.append(
                f"the champion moved to v{current_version} while this run was gated, so it was compared again"
            )
        if decision.promote:
            _make_champion(mlflow_client, name, candidate, current_version)
        else:
            mlflow_client.set_registered_model_alias(name, CHALLENGER, candidate)
        # promoted, rejected or inconclusive (too few test rows to tell): only promoted moves the champion.
        mlflow_client.set_model_version_tag(name, candidate, "gate", decision.outcome)
        for key, value in decision.tags().items():  # gate_mean, gate_<lang>: delta, interval and p
            mlflow_client.set_model_version_tag(name, candidate, key, value)
        _add_to_description(mlflow_client, name, candidate, decision.markdown(max_chars=GATE_DESCRIPTION_CHARS))
    return decision


def promote(mlflow_client: mlflow.MlflowClient, name: str, version: str, reason: str, lock: PromotionLock) -> str | None:
    """Manual override: make ``version`` champion; returns the version it replaced.

    The reason, user and time go to the version's description and its ``manual_promotion`` tag.
    """
    require_version(mlflow_client, name, version)
    with lock.hold(name):
        current = alias_version(mlflow_client, name, CHAMPION)
        previous = str(current.version) if current is not None else None
        _make_champion(mlflow_client, name, version, previous)
        mlflow_client.set_model_version_tag(name, version, "gate", "manual")
        note = {"reason": reason, "by": _user(), "at": _now(), "replaced": previous}
        mlflow_client.set_model_version_tag(name, version, "manual_promotion", json.dumps(note))
        replaced = f", replacing v{previous}" if previous and previous != version else ""
        _add_to_description(mlflow_client, name, version, (
            f"**Promoted by hand** to champion{replaced}, by {note['by']} at {note['at']}.\n\n"
            f"Reason: {_short(reason)}"
        ))
    return previous


def rollback(
    mlflow_client: mlflow.MlflowClient, name: str, lock: PromotionLock, reason: str | None = None
) -> tuple[str, str]:
    """Move ``champion`` back to the version the current champion replaced: (from, to).

    Both versions' descriptions say so (with ``reason`` when given); the old champion also gets
    the ``rolled_back`` tag.
    """
    with lock.hold(name):
        current = alias_version(mlflow_client, name, CHAMPION)
        if current is None:
            raise SentibridgeError(f"'{name}' has no champion to roll back")
        target = current.tags.get("previous_champion")
        if not target:
            raise SentibridgeError(f"champion v{current.version} of '{name}' replaced no earlier version; nothing to roll back to")
        require_version(mlflow_client, name, target)
        mlflow_client.set_registered_model_alias(name, CHAMPION, target)
        note = {"by": _user(), "at": _now(), "to": target}
        mlflow_client.set_model_version_tag(name, str(current.version), "rolled_back", json.dumps({**note, "reason": reason}))
        mlflow_client.set_registered_model_alias(name, CHALLENGER, str(current.version))
        why = f"\n\nReason: {_short(reason)}" if reason else ""
        by = f"by {note['by']} at {note['at']}"
        _add_to_description(mlflow_client, name, str(current.version), (
            f"**Rolled back** {by}: champion went back to v{target}; this version is challenger.{why}"
        ))
        _add_to_description(mlflow_client, name, target, f"**Champion again** {by}, rolled back from v{current.version}.{why}")
    return str(current.version), target


def require_version(mlflow_client: mlflow.MlflowClient, name: str, version: str) -> None:
    try:
        mlflow_client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code not in _NOT_FOUND:
            raise
        raise SentibridgeError(f"'{name}' has no version {version}") from None


def resolve_version(mlflow_client: mlflow.MlflowClient, name: str, model: str) -> str:
    """The version ``model`` names (``predict --model``): the champion's for ``champion``, else a version that exists."""
    if model == CHAMPION:
        champion = alias_version(mlflow_client, name, CHAMPION)
        if champion is None:
            raise SentibridgeError(f"{name} has no champion yet: train one, or pass --model VERSION")
        return str(champion.version)
    require_version(mlflow_client, name, str(model))
    return str(model)


#: MLflow's SQL stores keep at most this many characters of a version's description.
DESCRIPTION_MAX_CHARS = 5000
#: The gate's table leaves room for the notes of later manual promotions and rollbacks.
GATE_DESCRIPTION_CHARS = 3500
_REASON_CHARS = 500
_SECTION_BREAK = "\n\n---\n\n"


def _short(reason: str) -> str:
    return reason if len(reason) <= _REASON_CHARS else reason[: _REASON_CHARS - 1] + "…"


def _add_to_description(mlflow_client: mlflow.MlflowClient, name: str, version: str, section: str) -> None:
    """Append ``section`` to the version's Markdown description (what MLflow's UI shows first).

    Past the store's limit the oldest notes after the first section (the gate's decision) go,
    whole, so the description never ends mid-table.
    """
    old = mlflow_client.get_model_version(name, version).description or ""
    sections = [part for part in old.split(_SECTION_BREAK) if part.strip()] + [section]
    while len(_SECTION_BREAK.join(sections)) > DESCRIPTION_MAX_CHARS and len(sections) > 1:
        del sections[1 if len(sections) > 2 else 0]
    mlflow_client.update_model_version(name, version, description=_SECTION_BREAK.join(sections))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry inside some containers
        return "unknown"


def list_versions(mlflow_client: mlflow.MlflowClient, name: str) -> list[dict[str, Any]]:
    """Every version, newest first: aliases, scores, data version, creation time, gate outcome."""
    try:
        versions = mlflow_client.search_model_versions(f"name='{name}'")
        # Searches leave ``aliases`` empty on some stores; the registered model has them all.
        by_version: dict[str, list[str]] = {}
        for alias, version in (mlflow_client.get_registered_model(name).aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return []
        raise
    rows = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        tags = v.tags or {}
        f1 = tags.get("f1_macro_avg")
        rows.append(
            {
                "version": str(v.version),
                "aliases": sorted(by_version.get(str(v.version), [])),
                "f1_macro_avg": float(f1) if f1 else None,
                "per_language": f1_from_tags(tags),
                "data_version": tags.get("data_version"),
                "created": _now(v.creation_timestamp / 1000),
                "gate": tags.get("gate"),
                "gate_detail": _gate_detail(tags),
            }
        )
    return rows


def versions_text(versions: list[dict[str, Any]]) -> str:
    """``list_versions`` as a table, then the per-language gate of the newest version that has one."""
    from sentibridge.registry.decision import summary_mean_text, summary_table
    from sentibridge.tables import text_table

    rows = [
        [v["version"], ",".join(v["aliases"]), v["f1_macro_avg"], v["gate"] or "", summary_mean_text(v.get("gate_detail")),
         (v["data_version"] or "")[:12], v["created"]]
        for v in versions
    ]
    lines = [text_table(["version", "aliases", "mean F1", "gate", "gate delta [interval]", "data", "created"], rows)]
    gated = next((v for v in versions if v.get("gate_detail")), None)
    if gated is not None:
        lines.append(f"\ngate of v{gated['version']} ({gated['gate']}), per language in F1 points; --json has every version's:")
        lines.append(summary_table(gated["gate_detail"]))
    return "\n".join(lines)


def _gate_detail(tags: dict[str, str]) -> dict[str, Any] | None:
    """The gate's mean and per-language delta, interval (points) and p, from ``Decision.tags``; None before them."""
    if "gate_mean" not in tags:
        return None
    languages = {key[len("gate_"):]: json.loads(value) for key, value in sorted(tags.items())
                 if key.startswith("gate_") and key != "gate_mean"}
    return {"mean": json.loads(tags["gate_mean"]), "languages": languages}


def set_zenml_production(model_name: str, mlflow_version: str) -> str | None:
    """Put the ZenML Model version linked to ``mlflow_version`` in production (archiving the old).

    Returns the ZenML version name, or None when no ZenML version carries that link.
    """
    from zenml.client import Client
    from zenml.enums import ModelStages

    zenml_client = Client()
    try:
        versions = zenml_client.list_model_versions(model_name_or_id=model_name, size=1000).items
    except KeyError:
        return None
    for version in versions:
        if str(version.run_metadata.get("mlflow_model_version")) == str(mlflow_version):
            version.set_stage(ModelStages.PRODUCTION, force=True)
            return version.name
    return None
