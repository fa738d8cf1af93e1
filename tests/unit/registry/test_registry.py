"""Registry aliases on a real MLflow (SQLite): promotion under two processes, manual promote, rollback,
and what the registry UI shows: descriptions, per-language tags, run names and dataset inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sentibridge.registry import promotion as registry
from sentibridge.config import GateConfig
from sentibridge.errors import SentibridgeError
from sentibridge.registry.gate import decide
from sentibridge.registry.lock import PromotionLock
from sentibridge.registry.registration import f1_tags

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = registry.client(uri)
    return uri, client, root


def _versions(client, root: Path, name: str, scores: list[dict]) -> list[str]:
    client.create_registered_model(name)
    out = []
    for k, per_language in enumerate(scores):
        source = root / name / str(k)
        source.mkdir(parents=True)
        version = client.create_model_version(name, source.as_uri(), tags={
            **f1_tags(per_language), "f1_macro_avg": str(sum(per_language.values()) / len(per_language)),
            "data_version": "abc.dir",
        })
        out.append(str(version.version))
    return out


def _aliases(client, name: str) -> dict[str, str]:
    return {v["version"]: ",".join(v["aliases"]) for v in registry.list_versions(client, name)}




@pytest.mark.slow  # two interpreters importing MLflow
def test_two_processes_cannot_both_become_champion(mlflow_db, tmp_path):
    uri, client, root = mlflow_db
    name = "race"
    # Equal candidates: each beats the base model, neither beats the other.
    a, b = _versions(client, root, name, [{"en": 0.8, "hi": 0.6}, {"en": 0.8, "hi": 0.6}])
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.promotion_racer", name, v, str(barrier),
                          "--lock-dir", str(tmp_path / "locks")],
                         cwd=REPO, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for v in (a, b)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    promoted = [r for r in results if r["promoted"]]
    assert len(promoted) == 1, results
    loser = next(r for r in results if not r["promoted"])
    assert any("champion moved" in reason for reason in loser["reasons"])
    aliases = _aliases(client, name)
    assert aliases[promoted[0]["version"]] == "champion" and aliases[loser["version"]] == "challenger"


def test_gate_decision_moves_aliases_and_tags(mlflow_db, tmp_path):
    _, client, root = mlflow_db
    name = "gated"
    v1, v2, v3 = _versions(client, root, name, [{"en": 0.6}, {"en": 0.7}, {"en": 0.65}])
    locks = PromotionLock(tmp_path / "locks", 60)
    never = lambda current: pytest.fail("the champion did not move")  # noqa: E731
    registry.apply_decision(client, name, v1, decide({"en": 0.6}, {"en": 0.3}, GateConfig(), "base_zero_shot", v1), locks, never)
    registry.apply_decision(client, name, v2, decide({"en": 0.7}, {"en": 0.6}, GateConfig(), "champion", v2, v1), locks, never)
    registry.apply_decision(client, name, v3, decide({"en": 0.65}, {"en": 0.7}, GateConfig(), "champion", v3, v2), locks, never)
    assert _aliases(client, name) == {v1: "", v2: "champion", v3: "challenger"}
    tags = client.get_model_version(name, v2).tags
    assert tags["previous_champion"] == v1 and tags["gate"] == "promoted"
    assert "retired_at" in client.get_model_version(name, v1).tags
    rejected = client.get_model_version(name, v3)
    assert rejected.tags["gate"] == "rejected" and "gate_decision" not in rejected.tags
    assert rejected.description.startswith("### Gate: not promoted")
    assert "| en | 65.0 | 70.0 | -5.0 |" in rejected.description and "- en drops -5.0 points" in rejected.description
    assert "| en | 70.0 | 60.0 | +10.0 |" in client.get_model_version(name, v2).description


def test_manual_promote_and_rollback(mlflow_db, tmp_path):
    _, client, root = mlflow_db
    name = "manual"
    v1, v2 = _versions(client, root, name, [{"en": 0.6}, {"en": 0.5}])
    locks = PromotionLock(tmp_path / "locks", 60)
    with pytest.raises(SentibridgeError, match="no champion to roll back"):
        registry.rollback(client, name, locks)
    assert registry.promote(client, name, v1, "first model", locks) is None
    assert registry.promote(client, name, v2, "hotfix for a new product line", locks) == v1
    note = json.loads(client.get_model_version(name, v2).tags["manual_promotion"])
    assert note["reason"] == "hotfix for a new product line" and note["replaced"] == v1
    described = client.get_model_version(name, v2).description
    assert "**Promoted by hand** to champion, replacing v1" in described and "Reason: hotfix for a new product line" in described
    assert registry.rollback(client, name, locks, reason="v2 mislabels Hindi") == (v2, v1)
    assert _aliases(client, name) == {v1: "champion", v2: "challenger"}
    assert "rolled_back" in client.get_model_version(name, v2).tags
    # Notes are appended: v2 keeps its promotion note above the rollback's.
    sections = client.get_model_version(name, v2).description.split("\n\n---\n\n")
    assert "Promoted by hand" in sections[0] and "**Rolled back**" in sections[1]
    assert "champion went back to v1" in sections[1] and "Reason: v2 mislabels Hindi" in sections[1]
    assert "**Champion again**" in client.get_model_version(name, v1).description
    with pytest.raises(SentibridgeError, match="nothing to roll back to"):
        registry.rollback(client, name, locks)
    with pytest.raises(SentibridgeError, match="has no version 9"):
        registry.promote(client, name, "9", "typo", locks)


def test_list_versions_newest_first(mlflow_db):
    _, client, root = mlflow_db
    name = "listing"
    _versions(client, root, name, [{"en": 0.5, "hi": 0.7}, {"en": 0.8, "hi": 0.6}])
    client.set_registered_model_alias(name, "champion", "2")
    versions = registry.list_versions(client, name)
    assert [v["version"] for v in versions] == ["2", "1"]
    assert versions[0]["aliases"] == ["champion"] and versions[0]["per_language"] == {"en": 0.8, "hi": 0.6}
    assert versions[0]["f1_macro_avg"] == pytest.approx(0.7) and versions[0]["data_version"] == "abc.dir"
    assert registry.list_versions(client, "no-such-model") == []
    tags = client.get_model_version(name, "2").tags
    assert tags["f1_en"] == "0.8000" and tags["f1_hi"] == "0.6000" and "per_language_f1" not in tags


def test_predict_model_names_the_champion_or_an_existing_version(mlflow_db):
    _, client, root = mlflow_db
    name = "serving"
    _versions(client, root, name, [{"en": 0.5}, {"en": 0.6}])
    with pytest.raises(SentibridgeError, match="serving has no champion yet: train one, or pass --model VERSION"):
        registry.resolve_version(client, name, "champion")
    client.set_registered_model_alias(name, "champion", "2")
    assert registry.resolve_version(client, name, "champion") == "2"
    assert registry.resolve_version(client, name, "1") == "1"
    with pytest.raises(SentibridgeError, match="has no version 7"):
        registry.resolve_version(client, name, "7")


def test_list_versions_reads_the_json_blob_of_older_versions(mlflow_db):
    _, client, root = mlflow_db
    name = "older"
    client.create_registered_model(name)
    (root / name).mkdir()
    client.create_model_version(name, (root / name).as_uri(), tags={
        "per_language_f1": json.dumps({"en": 0.5, "fr": 0.25}), "f1_macro_avg": "0.375",
    })
    assert registry.list_versions(client, name)[0]["per_language"] == {"en": 0.5, "fr": 0.25}
