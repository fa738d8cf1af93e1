"""The noise-aware gate end to end on the sample data: a seed-only retrain, its intervals, compare.

Real ZenML store, real MLflow, real Gemma-3-270M for a couple of steps. The first version is
made champion by hand when it does not pass (a 2-step model need not beat the base model), so
that the retrain, which changes nothing but ``train.seed``, meets the default (noise-aware)
rule against it.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO, SAMPLE, TINY_TRAIN, cli_env
from tests.integration.test_validate_cli import SENTIBRIDGE, last_json

pytestmark = pytest.mark.integration

#: About all of the sample's test rows per language (the gate's noise is the point here).
TEST_ROWS = ["--set", "eval.max_rows_per_language=15"]


@pytest.fixture(scope="module")
def seed_retrain(tmp_path_factory):
    """train (seed 42) -> champion -> retrain with only ``train.seed=7``; models and compare after."""
    home = tmp_path_factory.mktemp("gate_noise") / "home"

    def cli(*args: str) -> dict:
        # A longer timeout than run_cli's: two pipelines with 15 test rows per language on a shared machine.
        proc = subprocess.run([*SENTIBRIDGE, *args, "--json"], cwd=REPO, env=cli_env(home), capture_output=True,
                              text=True, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return {**last_json(proc), "stdout": proc.stdout}

    first = cli("train", "--data", str(SAMPLE), *TINY_TRAIN, *TEST_ROWS)
    if not first["promoted"]:
        cli("promote", "1", "--reason", "a champion for the seed-only retrain to meet")
    retrain = cli("retrain", "--data", str(SAMPLE), *TINY_TRAIN, *TEST_ROWS, "--set", "train.seed=7")
    return {"first": first, "retrain": retrain, "models": cli("models"), "compare": cli("compare", "1", "2")}


def test_every_decision_has_intervals_and_models_and_compare_show_them(seed_retrain):
    first, retrain = seed_retrain["first"], seed_retrain["retrain"]
    assert all(row["ci_low"] is not None for row in first["decision"]["languages"])  # against the base model too
    decision = retrain["decision"]
    assert decision["rule"]["mode"] == "noise_aware" and decision["reference"] == "champion"
    assert decision["outcome"] in {"promoted", "rejected", "inconclusive"} and len(decision["languages"]) >= 8
    for row in decision["languages"]:
        assert row["ci_low"] <= row["ci_high"] and row["rows"] > 0
        assert 0.0 <= row["p_better"] <= 1.0 and 0.0 <= row["p_drop"] <= 1.0
    assert "90% interval" in retrain["stdout"]

    versions = {v["version"]: v for v in seed_retrain["models"]["versions"]}
    assert versions["2"]["gate"] == decision["outcome"]
    detail = versions["2"]["gate_detail"]
    assert set(detail["languages"]) == {r["language"] for r in decision["languages"]}
    assert all({"delta", "ci_low", "ci_high", "p_better"} <= set(row) for row in detail["languages"].values())

    compared = seed_retrain["compare"]
    assert compared["rows"] == sum(row["rows"] for row in decision["languages"]) and compared["left_out"] == 0
    by_language = {row["language"]: row for row in compared["languages"]}
    for row in decision["languages"]:  # the same rows, the same bootstrap: what the gate saw
        assert by_language[row["language"]]["delta"] == pytest.approx(row["delta"])
        assert by_language[row["language"]]["ci_low"] == pytest.approx(row["ci_low"])


@pytest.mark.xfail(
    strict=True,
    reason="2-step models are near-degenerate and seed-dependent: here seed 7 fixes rows in ar/en/fr and breaks none "
    "(mean +4.4 [+1.4, +7.3] on 135 rows), a real difference on these rows that the test-row bootstrap cannot call "
    "noise; training-seed variance is not in the gate's interval (issue 13, open)",
)
def test_a_seed_only_retrain_is_not_promoted(seed_retrain):
    retrain = seed_retrain["retrain"]
    assert retrain["promoted"] is False and retrain["decision"]["outcome"] in {"rejected", "inconclusive"}
    assert "champion" in {v["version"]: v for v in seed_retrain["models"]["versions"]}["1"]["aliases"]
