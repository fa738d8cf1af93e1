"""The promotion gate: the rule's two modes, the bootstrap, and properties over random scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from hypothesis import given, settings
from hypothesis import strategies as st

from sentibridge.config import GateConfig
from sentibridge.registry.gate import (
    ChampionRecord,
    Decision,
    Reference,
    bootstrap_deltas,
    choose_reference,
    decide,
    fingerprint_rows,
    gate_predictions,
    paired_bootstrap,
)

LANGS = ["ar", "de", "en", "hi"]
f1 = st.floats(0.0, 1.0, allow_nan=False)
scores = st.fixed_dictionaries({lang: f1 for lang in LANGS})
rules = st.builds(
    GateConfig,
    mode=st.sampled_from(["no_regression", "all_improve"]),
    max_drop=st.floats(0.0, 5.0),
    min_gain=st.floats(0.0, 5.0),
)


@settings(max_examples=300, deadline=None)
@given(reference=scores, candidate=scores, rule=rules)
def test_never_promotes_when_a_language_drops_beyond_tolerance(reference, candidate, rule):
    decision = decide(candidate, reference, rule)
    if any(100 * (candidate[l] - reference[l]) < -rule.max_drop - 1e-6 for l in LANGS):
        assert not decision.promote


@settings(max_examples=300, deadline=None)
@given(reference=st.fixed_dictionaries({lang: st.floats(0.0, 0.9) for lang in LANGS}), rule=rules,
       gains=st.lists(st.floats(0.0, 10.0), min_size=len(LANGS), max_size=len(LANGS)))
def test_always_promotes_a_dominating_candidate(reference, rule, gains):
    # Every language at least min_gain better (and at most 1.0).
    candidate = {l: min(1.0, reference[l] + (rule.min_gain + g) / 100) for l, g in zip(LANGS, gains)}
    if any(100 * (candidate[l] - reference[l]) < rule.min_gain for l in LANGS):
        return  # clipped at F1 = 1.0: not dominating by min_gain
    assert decide(candidate, reference, rule).promote


@settings(max_examples=200, deadline=None)
@given(reference=scores, candidate=scores, rule=rules)
def test_decision_round_trips_and_prints(reference, candidate, rule):
    decision = decide(candidate, reference, rule, candidate_version="3", champion_version="2")
    assert Decision.from_dict(decision.to_dict()) == decision
    text = decision.text()
    assert ("NOT PROMOTED" in text) != decision.promote and "v3" in text and "champion v2" in text
    assert decision.reasons  # a decision always says why


def test_default_rule_mean_gain_and_no_drop():
    ref = {"en": 0.70, "hi": 0.50}
    assert decide({"en": 0.71, "hi": 0.50}, ref, GateConfig()).promote  # mean +0.5, no drop
    blocked = decide({"en": 0.80, "hi": 0.499}, ref, GateConfig())
    assert not blocked.promote and any("hi drops -0.1" in r for r in blocked.reasons)
    same = decide(ref, ref, GateConfig())
    assert not same.promote and any("mean gains +0.00" in r for r in same.reasons)
    assert decide({"en": 0.80, "hi": 0.49}, ref, GateConfig(max_drop=1.0)).promote


def test_all_improve_needs_every_language():
    ref = {"en": 0.70, "hi": 0.50}
    assert not decide({"en": 0.80, "hi": 0.502}, ref, GateConfig(mode="all_improve")).promote
    assert decide({"en": 0.80, "hi": 0.506}, ref, GateConfig(mode="all_improve")).promote


def test_missing_language_is_not_comparable():
    decision = decide({"en": 0.9}, {"en": 0.5, "hi": 0.5}, GateConfig())
    assert not decision.promote and any("hi: no candidate score" in r for r in decision.reasons)


def _predictions(n: int, flip: float, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    ref = np.where(rng.random(n) < 0.5, y, rng.integers(0, 3, n))
    cand = np.where(rng.random(n) < flip, y, ref)  # fixes a share of the reference's errors
    return y, cand, ref


def _f1(y, p) -> float:
    return float(f1_score(y, p, average="macro"))


def test_bootstrap_blocks_noise_and_passes_a_real_gain():
    rule = GateConfig(bootstrap_confidence=0.95, bootstrap_resamples=200)
    y, _, ref = _predictions(40, 0.0, 0)
    cand = ref.copy()
    wrong = np.flatnonzero(ref != y)[:1]
    cand[wrong] = y[wrong]  # one fixed row of 40: over +0.5 points, but noise-sized
    assert 100 * (_f1(y, cand) - _f1(y, ref)) >= 0.5
    assert decide({"en": _f1(y, cand)}, {"en": _f1(y, ref)}, GateConfig()).promote  # without the bootstrap
    deltas = bootstrap_deltas({"en": (y, cand, ref)}, 200, seed=0)
    noisy = decide({"en": _f1(y, cand)}, {"en": _f1(y, ref)}, rule, deltas=deltas)
    assert not noisy.promote and any("bootstrap" in r for r in noisy.reasons)

    y, cand, ref = _predictions(600, 0.6, 1)
    deltas = bootstrap_deltas({"en": (y, cand, ref)}, 200, seed=0)
    real = decide({"en": _f1(y, cand)}, {"en": _f1(y, ref)}, rule, deltas=deltas)
    assert real.promote and real.mean["p_better"] >= 0.95


def test_bootstrap_rule_without_predictions_fails_safe():
    decision = decide({"en": 0.9}, {"en": 0.5}, GateConfig(bootstrap_confidence=0.9))
    assert not decision.promote and any("no paired predictions" in r for r in decision.reasons)


def test_paired_bootstrap_is_seeded_and_zero_for_identical_models():
    y, cand, ref = _predictions(50, 0.3, 2)
    assert np.array_equal(paired_bootstrap(y, cand, ref, 50, 7), paired_bootstrap(y, cand, ref, 50, 7))
    assert not paired_bootstrap(y, ref, ref, 50, 7).any()


@pytest.mark.parametrize("bad", [{"mode": "best"}, {"min_gain": -1}, {"bootstrap_confidence": 0.3}])
def test_rule_config_is_validated(bad):
    with pytest.raises(ValueError):
        GateConfig(**bad)


# --- the reference: stored numbers only when they are fresh ------------------------------------


def _preds(pred: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(pred))], "language": ["en", "en", "hi", "hi"][: len(pred)],
                         "label": [0, 2, 1, 2][: len(pred)], "pred": pred})


class _Calls:
    def __init__(self):
        self.calls: list[str] = []

    def stored(self, record):
        self.calls.append("stored")
        return _preds([0, 2, 1, 0])

    def champion(self, record):
        self.calls.append(f"re-evaluate v{record.version}")
        return _preds([0, 0, 1, 0])

    def base(self):
        self.calls.append("base")
        return _preds([1, 1, 1, 1])


@pytest.mark.parametrize(
    "record,expected,source",
    [
        (None, ["base"], "measured"),
        (ChampionRecord("3", "d1", "t1"), ["stored"], "stored"),
        (ChampionRecord("3", "d0", "t1"), ["re-evaluate v3"], "re-evaluated"),  # another data version
        (ChampionRecord("3", "d1", "t0"), ["re-evaluate v3"], "re-evaluated"),  # other test rows
        (ChampionRecord("3", None, None), ["re-evaluate v3"], "re-evaluated"),  # nothing recorded
    ],
)
def test_reference_is_never_stale(record, expected, source):
    calls = _Calls()
    reference = choose_reference(record, "d1", "t1", calls.stored, calls.champion, calls.base)
    assert calls.calls == expected and reference.source == source
    assert reference.kind == ("base_zero_shot" if record is None else "champion")


def test_stored_predictions_missing_fall_back_to_re_evaluation():
    calls = _Calls()
    reference = choose_reference(ChampionRecord("3", "d1", "t1"), "d1", "t1", lambda r: None, calls.champion, calls.base)
    assert calls.calls == ["re-evaluate v3"] and reference.source == "re-evaluated"


def test_gate_predictions_joins_rows_by_id_and_says_where_the_reference_came_from():
    candidate = _preds([0, 2, 1, 2])  # all right
    reference = choose_reference(None, "d", "t", None, None, lambda: _preds([0, 2, 1, 0]).iloc[::-1])
    decision = gate_predictions(candidate, reference, GateConfig(), "2")
    assert decision.promote and decision.reference == "base_zero_shot"
    assert {r["language"]: round(r["delta"], 1) for r in decision.languages} == {"en": 0.0, "hi": 66.7}
    assert "reference scores: measured" in decision.reasons
    with pytest.raises(ValueError, match="miss 2 of the candidate's 4"):
        gate_predictions(candidate, Reference("champion", "1", _preds([0, 2]), "stored"), GateConfig(), "2")
    boot = gate_predictions(candidate, reference, GateConfig(bootstrap_confidence=0.9, bootstrap_resamples=100), "2")
    assert boot.mean["p_better"] is not None


def test_fingerprint_ignores_order_but_not_rows():
    frame = _preds([0, 1, 2, 0])
    assert fingerprint_rows(frame) == fingerprint_rows(frame.iloc[::-1])
    assert fingerprint_rows(frame) != fingerprint_rows(frame.assign(label=[0, 2, 1, 1]))
