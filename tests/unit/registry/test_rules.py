"""The gate's rule table: every ``gate.mode`` is one function, and a new rule needs nothing else."""

from __future__ import annotations

from typing import get_args

from sentibridge.config import GateConfig
from sentibridge.registry.gate import decide
from sentibridge.registry.rules import RULES, Evidence, gate_rule, rule_text


def test_every_gate_mode_literal_has_a_rule_and_nothing_else():
    modes = set(get_args(GateConfig.model_fields["mode"].annotation))
    assert set(RULES) == modes
    for name, rule in RULES.items():
        assert rule.decide.__name__ == name and rule_text(GateConfig(mode=name).model_dump(mode="json"))


def test_a_new_rule_is_one_decorated_function():
    @gate_rule("mean +{min_gain:g} points, drops ignored")
    def mean_only(evidence: Evidence, rule: GateConfig, reasons: list[str]) -> str:
        if evidence.mean["delta"] < rule.min_gain:
            reasons.append(f"mean gains {evidence.mean['delta']:+.2f} points")
        return "rejected" if reasons else "promoted"

    try:
        # The rule's literal in GateConfig.mode is the other half; model_copy skips that check here.
        rule = GateConfig().model_copy(update={"mode": "mean_only", "min_gain": 1.0})
        passed = decide({"en": 0.80, "fr": 0.50}, {"en": 0.70, "fr": 0.55}, rule, "champion", "3", "2")
        failed = decide({"en": 0.70}, {"en": 0.70}, rule, "champion", "4", "2")
        assert passed.outcome == "promoted" and "rule: mean +1 points, drops ignored" in passed.text()
        assert failed.outcome == "rejected" and failed.run_name() == "v4 rejected: mean +0.0"
    finally:
        RULES.pop("mean_only")
