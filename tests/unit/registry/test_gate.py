"""The promotion gate: the noise-aware default, the older point rules, the bootstrap, properties, calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from sentibridge.config import GateConfig
from sentibridge.errors import SentibridgeError
from sentibridge.registry.compare import compare_predictions
from sentibridge.registry.decision import Decision
from sentibridge.registry.gate import decide, fingerprint_rows, gate_predictions, seed_noise
from sentibridge.registry.reference import ChampionRecord, Reference, choose_reference
from sentibridge.registry.rules import rows_needed
from sentibridge.statistics import bootstrap_deltas, holm, macro_f1_rows, paired_bootstrap

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


def test_no_regression_rule_mean_gain_and_no_drop():
    old = GateConfig(mode="no_regression")  # the default before issue 13, kept by name
    ref = {"en": 0.70, "hi": 0.50}
    assert decide({"en": 0.71, "hi": 0.50}, ref, old).promote  # mean +0.5, no drop
    blocked = decide({"en": 0.80, "hi": 0.499}, ref, old)
    assert not blocked.promote and any("hi drops -0.1" in r for r in blocked.reasons)
    same = decide(ref, ref, old)
    assert not same.promote and any("mean gains +0.00" in r for r in same.reasons)
    assert decide({"en": 0.80, "hi": 0.49}, ref, GateConfig(mode="no_regression", max_drop=1.0)).promote


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
    rule = GateConfig(mode="no_regression", bootstrap_confidence=0.95, bootstrap_resamples=200)
    y, _, ref = _predictions(40, 0.0, 0)
    cand = ref.copy()
    wrong = np.flatnonzero(ref != y)[:1]
    cand[wrong] = y[wrong]  # one fixed row of 40: over +0.5 points, but noise-sized
    assert 100 * (_f1(y, cand) - _f1(y, ref)) >= 0.5
    assert decide({"en": _f1(y, cand)}, {"en": _f1(y, ref)}, GateConfig(mode="no_regression")).promote  # without it
    deltas = bootstrap_deltas({"en": (y, cand, ref)}, 200, seed=0)
    noisy = decide({"en": _f1(y, cand)}, {"en": _f1(y, ref)}, rule, deltas=deltas)
    assert not noisy.promote and any("bootstrap" in r for r in noisy.reasons)

    y, cand, ref = _predictions(600, 0.6, 1)
    deltas = bootstrap_deltas({"en": (y, cand, ref)}, 200, seed=0)
    real = decide({"en": _f1(y, cand)}, {"en": _f1(y, ref)}, rule, deltas=deltas)
    assert real.promote and real.mean["p_better"] >= 0.95


def test_bootstrap_rule_without_predictions_fails_safe():
    decision = decide({"en": 0.9}, {"en": 0.5}, GateConfig(mode="no_regression", bootstrap_confidence=0.9))
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
    decision = gate_predictions(candidate, reference, GateConfig(mode="no_regression"), "2")
    assert decision.promote and decision.reference == "base_zero_shot"
    assert {r["language"]: round(r["delta"], 1) for r in decision.languages} == {"en": 0.0, "hi": 66.7}
    assert "reference scores: measured" in decision.reasons
    with pytest.raises(ValueError, match="miss 2 of the candidate's 4"):
        gate_predictions(candidate, Reference("champion", "1", _preds([0, 2]), "stored"), GateConfig(), "2")
    boot = gate_predictions(
        candidate, reference, GateConfig(mode="no_regression", bootstrap_confidence=0.9, bootstrap_resamples=100), "2"
    )
    assert boot.mean["p_better"] is not None


def test_fingerprint_ignores_order_but_not_rows():
    frame = _preds([0, 1, 2, 0])
    assert fingerprint_rows(frame) == fingerprint_rows(frame.iloc[::-1])
    assert fingerprint_rows(frame) != fingerprint_rows(frame.assign(label=[0, 2, 1, 1]))


# --- the noise-aware default: paired tests, Holm, three outcomes --------------------------------


def _languages(n_rows: int, n_languages: int, p_ref, p_cand, agree: float, seed: int) -> pd.DataFrame:
    """Synthetic predictions of two models with true accuracies ``p_ref``/``p_cand`` (scalars, or one per language).

    A shared latent per row makes their errors correlated (``agree``: the share of rows whose
    latent both models see), as two fine-tunes of one base model are; a wrong prediction is
    one of the two other classes at random.
    """
    rng = np.random.default_rng(seed)
    frames = []
    refs, cands = np.broadcast_to(p_ref, n_languages), np.broadcast_to(p_cand, n_languages)
    for k, (p_ref, p_cand) in enumerate(zip(refs, cands)):
        y = rng.integers(0, 3, n_rows)
        latent = rng.random(n_rows)
        own = np.where(rng.random(n_rows) < agree, latent, rng.random(n_rows))

        def guess(correct):
            return np.where(correct, y, (y + rng.integers(1, 3, n_rows)) % 3)

        frames.append(pd.DataFrame({"id": [f"l{k}:{i}" for i in range(n_rows)], "language": f"l{k}", "label": y,
                                    "ref": guess(latent < p_ref), "pred": guess(own < p_cand)}))
    return pd.concat(frames, ignore_index=True)


def _gate(frame: pd.DataFrame, rule: GateConfig) -> Decision:
    reference = Reference("champion", "1", frame[["id", "language", "label", "ref"]].rename(columns={"ref": "pred"}), "stored")
    return gate_predictions(frame[["id", "language", "label", "pred"]], reference, rule, "2")


#: Bootstrapped decisions are slow to shrink; a failing example is printed as found.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
# The default rule at any effect sizes and confidence (the older rules promote ties at min_gain 0).
noise_rules = st.builds(
    GateConfig,
    max_drop=st.floats(0.0, 5.0),
    min_gain=st.floats(0.0, 1.5),
    confidence=st.floats(0.8, 0.99),
    bootstrap_resamples=st.just(200),
    seed=st.integers(0, 1000),
    seed_std=st.sampled_from([0.0, 0.5, 2.0, 5.0]),
    seed_std_mean=st.sampled_from([0.0, 0.3, 1.0, 3.0]),
)
#: The synthetic models below have no training noise: only the test rows' noise is simulated.
NO_SEED_NOISE = {"seed_std": 0.0, "seed_std_mean": 0.0}


@settings(max_examples=60, deadline=None, phases=NO_SHRINK)
@given(rule=noise_rules, n_rows=st.integers(3, 200), n_languages=st.integers(1, 6), seed=st.integers(0, 10_000),
       accuracy=st.floats(0.2, 0.95))
def test_never_promotes_predictions_equal_to_the_champion(rule, n_rows, n_languages, seed, accuracy):
    frame = _languages(n_rows, n_languages, accuracy, accuracy, 1.0, seed)
    frame["pred"] = frame["ref"]
    decision = _gate(frame, rule)
    assert not decision.promote and decision.outcome in {"rejected", "inconclusive"}
    assert all(row["delta"] == 0 and row["ci_low"] <= 0 <= row["ci_high"] for row in decision.languages)
    if rule.seed_std == 0:
        assert all(row["ci_low"] == row["ci_high"] == 0 for row in decision.languages)


@settings(max_examples=40, deadline=None, phases=NO_SHRINK)
@given(n_rows=st.integers(40, 300), n_languages=st.integers(1, 6), seed=st.integers(0, 10_000),
       confidence=st.floats(0.8, 0.99), max_drop=st.floats(0.0, 3.0), min_gain=st.floats(0.0, 1.5))
def test_never_promotes_a_credibly_worse_permutation(n_rows, n_languages, seed, confidence, max_drop, min_gain):
    # The champion is right on ~85% of rows; the candidate shuffles its predictions (same label
    # counts, no link to the text): credibly worse in every language.
    frame = _languages(n_rows, n_languages, 0.85, 0.85, 1.0, seed)
    frame["pred"] = frame.groupby("language")["ref"].transform(lambda s: s.sample(frac=1.0, random_state=seed).to_numpy())
    rule = GateConfig(confidence=confidence, max_drop=max_drop, min_gain=min_gain, bootstrap_resamples=200, seed=seed)
    decision = _gate(frame, rule)
    assert decision.mean["ci_high"] < 0  # credibly worse
    assert not decision.promote and decision.outcome == "rejected"


def test_three_outcomes_and_visible_reasoning():
    rule = GateConfig(bootstrap_resamples=400, **NO_SEED_NOISE)
    # Small test set, same true accuracy: too few rows to tell -> inconclusive, with rows needed.
    small = _gate(_languages(15, 8, 0.6, 0.6, 0.7, 0), rule)
    assert small.outcome == "inconclusive" and not small.promote
    why = next(r for r in small.reasons if r.startswith("inconclusive"))
    needed = int(why.split("; about ")[1].split(" test rows")[0])
    assert needed > 15 * 4, why
    assert small.run_name().startswith("v2 inconclusive: mean")
    # Many rows, same true accuracy: the rows could have confirmed a 2-point gain -> rejected.
    large = _gate(_languages(3000, 4, 0.6, 0.6, 0.8, 2), rule)
    assert large.outcome == "rejected" and any(r.startswith("mean gains") for r in large.reasons), large.reasons
    # A fine-tuned model against the base model zero-shot: a huge gain passes even on 15 rows.
    huge = _gate(_languages(15, 8, 0.34, 0.95, 0.0, 3), rule)
    assert huge.outcome == "promoted" and huge.promote and huge.mean["ci_low"] > rule.min_gain
    for decision in (small, large, huge):
        for row in [*decision.languages, decision.mean]:
            assert row["ci_low"] <= row["delta"] + 1e-9 or row["ci_low"] <= row["ci_high"]
            assert row["ci_low"] <= row["ci_high"] and 0.0 <= row["p_better"] <= 1.0
        assert all(0.0 <= row["p_drop"] <= 1.0 and row["rows"] for row in decision.languages)
        round_trip = Decision.from_dict(decision.to_dict())
        assert round_trip == decision and round_trip.outcome == decision.outcome
        assert "90% interval" in decision.text() and "p(drop)" in decision.markdown()
    assert "### Gate: inconclusive" in small.markdown() and ": inconclusive (rule:" in small.text()
    assert small.summary()["outcome"] == "inconclusive" and set(small.summary()["languages"]) == {f"l{k}" for k in range(8)}


def test_a_credible_drop_in_one_language_rejects_and_a_noisy_one_does_not():
    rule = GateConfig(bootstrap_resamples=400)
    frame = _languages(400, 4, 0.6, 0.68, 0.8, 4)  # truly better by 8 points everywhere...
    first = frame["language"] == "l0"
    frame.loc[first, "pred"] = (frame.loc[first, "label"] + 1) % 3  # ...except l0: always wrong
    decision = _gate(frame, rule)
    assert decision.outcome == "rejected" and decision.run_name().startswith("v2 rejected: l0 -")
    assert [row["language"] for row in decision.failing_languages()] == ["l0"]
    # A point-estimate dip of ~1 point in one of 8 languages is noise for the default rule.
    frame = _languages(300, 8, 0.6, 0.66, 0.8, 5)
    decision = _gate(frame, rule)
    assert decision.outcome == "promoted", decision.reasons


def test_holm_adjusts_step_down_and_stays_monotone():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adjusted == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})
    assert holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}


def test_vectorised_macro_f1_is_sklearns():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, (50, 12)), rng.integers(0, 3, (50, 12))
    p[0] = y[0]  # perfect
    p[1], y[1] = 1, 1  # one class only
    got = macro_f1_rows(y, p, [0, 1, 2])
    assert got == pytest.approx([f1_score(y[i], p[i], average="macro", zero_division=0) for i in range(50)])


def test_rows_needed_grows_with_the_square_of_the_noise():
    rule = GateConfig()
    assert rows_needed(100, 1.0, rule) * 4 == pytest.approx(rows_needed(100, 2.0, rule), rel=0.01)
    assert rows_needed(100, 0.0, rule) == 0


def test_old_records_without_outcome_load_and_mismatches_fail():
    decision = decide({"en": 0.9}, {"en": 0.5}, GateConfig(mode="no_regression"))
    old = {k: v for k, v in decision.to_dict().items() if k != "outcome"}
    assert Decision.from_dict(old).outcome == "promoted"
    with pytest.raises(ValueError, match="does not match"):
        Decision.from_dict({**decision.to_dict(), "outcome": "inconclusive"})


def test_detectable_margin_sits_above_any_required_gain():
    assert GateConfig(min_gain=3.0).min_gain == 3.0  # no clash between the effect size and the power target
    assert rows_needed(100, 1.0, GateConfig(detectable_margin=3.0)) * 4 == pytest.approx(
        rows_needed(100, 1.0, GateConfig(detectable_margin=1.5)), rel=0.02
    )
    with pytest.raises(ValueError):
        GateConfig(detectable_margin=0)


@pytest.mark.parametrize("true_gain,expect_old_below", [(0.0, None), (0.03, 0.8)])
def test_mini_calibration_on_synthetic_predictions(true_gain, expect_old_below):
    """8 languages x 300 rows: noise is rarely promoted; a real +3 points usually is, unlike the old rule."""
    new, old = GateConfig(bootstrap_resamples=200, **NO_SEED_NOISE), GateConfig(mode="no_regression", bootstrap_resamples=100)
    trials = 24
    promoted = {"new": 0, "old": 0}
    for trial in range(trials):
        frame = _languages(300, 8, 0.6, 0.6 + true_gain, 0.8, 100 + trial)
        promoted["new"] += _gate(frame, new).promote
        promoted["old"] += _gate(frame, old).promote
    if true_gain == 0:
        assert promoted["new"] / trials <= 0.10  # goal 5%; 24 trials leave sampling slack
    else:
        assert promoted["new"] / trials >= 0.8
        assert promoted["old"] < promoted["new"] and promoted["old"] / trials < expect_old_below


def test_compare_two_versions_on_their_shared_rows():
    frame = _languages(120, 3, 0.6, 0.7, 0.8, 7)
    a = frame[["id", "language", "label", "ref"]].rename(columns={"ref": "pred"})
    b = frame[["id", "language", "label", "pred"]].iloc[10:]  # b was not scored on a's first 10 rows
    b = pd.concat([b, pd.DataFrame({"id": ["new:1"], "language": ["l0"], "label": [1], "pred": [1]})])  # nor a on this one
    comparison = compare_predictions(a, b, GateConfig(bootstrap_resamples=200), "3", "4")
    assert comparison.rows == 350 and comparison.left_out == 11
    same = _gate(frame.iloc[10:], GateConfig(bootstrap_resamples=200))
    payload = comparison.to_dict()
    assert [row["delta"] for row in payload["languages"]] == pytest.approx([row["delta"] for row in same.languages])
    assert payload["languages"][0]["f1_v3"] == pytest.approx(same.languages[0]["reference"])
    assert all(row["ci_low"] <= row["ci_high"] for row in payload["languages"])
    text = comparison.text()
    assert "v3 F1" in text and "P(v4 better)" in text and "11 rows scored by only one" in text
    with pytest.raises(SentibridgeError, match="share no test rows"):
        compare_predictions(a, b.assign(id=b["id"] + "x"), GateConfig(), "3", "4")


# --- training-seed noise: what the test rows' bootstrap cannot see ---------------------------


def test_seed_noise_widens_intervals_twice_as_much_between_two_trained_versions():
    frame = _languages(300, 4, 0.6, 0.6, 0.8, 11)
    widths = {}
    noisy = GateConfig(seed_std=2.0, seed_std_mean=1.0)
    for name, rule, kind in (("none", GateConfig(**NO_SEED_NOISE), "champion"), ("champion", noisy, "champion"),
                             ("base", noisy, "base_zero_shot")):
        reference = Reference(kind, "1" if kind == "champion" else None,
                              frame[["id", "language", "label", "ref"]].rename(columns={"ref": "pred"}), "stored")
        decision = gate_predictions(frame[["id", "language", "label", "pred"]], reference, rule, "2")
        widths[name] = np.mean([row["ci_high"] - row["ci_low"] for row in decision.languages])
    assert widths["none"] < widths["base"] < widths["champion"]
    per_language, mean = seed_noise(GateConfig(seed_std=2.0, seed_std_mean=1.0), "champion", ["a", "b"], 20_000)
    assert np.std(per_language["a"]) == pytest.approx(2.0 * np.sqrt(2), rel=0.03)
    assert np.std(mean) == pytest.approx(np.sqrt(2), rel=0.03)
    assert "seed noise 2/1 points" in decision.text()


def test_seed_only_retrains_are_not_promoted_once_the_seed_noise_is_counted():
    """Simulated seed luck: each training lands a few points off its config's true accuracy, partly shared
    across languages. The test-row bootstrap alone promotes one seed over another often; with seed noise
    of that size counted, rarely."""
    rng = np.random.default_rng(0)
    seed_std, shared = 0.03, 0.015  # per language and shared across languages, as accuracy (0..1)
    promoted = {"rows_only": 0, "with_seed_noise": 0}
    trials = 60
    for trial in range(trials):
        luck = [rng.normal(0, shared) + rng.normal(0, seed_std, 4) for _ in range(2)]
        frame = _languages(300, 4, 0.6 + luck[0], 0.6 + luck[1], 0.8, 200 + trial)
        promoted["rows_only"] += _gate(frame, GateConfig(bootstrap_resamples=200, **NO_SEED_NOISE)).promote
        promoted["with_seed_noise"] += _gate(frame, GateConfig(bootstrap_resamples=200, seed_std=3.4, seed_std_mean=2.1)).promote
    # What the issue saw: seed luck passes as a gain more often than the 5% goal allows (here 6 of 60).
    assert promoted["rows_only"] / trials > 0.05, promoted
    assert promoted["with_seed_noise"] / trials <= 0.05 and promoted["with_seed_noise"] < promoted["rows_only"], promoted


def test_when_seed_noise_alone_hides_the_margin_no_number_of_rows_is_enough():
    rule = GateConfig(detectable_margin=1.5, seed_std_mean=2.0)
    assert rows_needed(300, 1.0, rule, seed_spread=2.0 * np.sqrt(2)) is None
    assert rows_needed(300, 1.0, rule, seed_spread=0.1) > rows_needed(300, 1.0, rule)
    decision = _gate(_languages(15, 8, 0.6, 0.6, 0.7, 0), GateConfig(bootstrap_resamples=300, seed_std_mean=2.0))
    assert decision.outcome == "inconclusive"
    assert any("training-seed noise alone" in reason for reason in decision.reasons), decision.reasons


def _member(f1: dict[str, float]) -> dict:
    return {"f1_macro_avg": sum(f1.values()) / len(f1), "per_language": {k: {"f1": v} for k, v in f1.items()}}


def test_soup_members_measure_the_seed_noise_from_three_on():
    from sentibridge.registry.gate import rule_with_member_noise

    members = [_member({"de": 0.60, "hi": 0.50}), _member({"de": 0.62, "hi": 0.46}), _member({"de": 0.64, "hi": 0.54})]
    rule = GateConfig()
    measured, source = rule_with_member_noise(rule, members)
    assert source == "measured on 3 soup members"
    # de: sd of 60/62/64 = 2; hi: sd of 50/46/54 = 4; their root mean square; the means 55/54/59.
    assert measured.seed_std == pytest.approx(np.sqrt((2**2 + 4**2) / 2))
    assert measured.seed_std_mean == pytest.approx(np.std([55, 54, 59], ddof=1))
    kept, why = rule_with_member_noise(rule, members[:2])
    assert kept is rule and why == "configured, 2 soup members"
    off = GateConfig(seed_std_from_members=False)
    kept, why = rule_with_member_noise(off, members)
    assert kept is off and "seed_std_from_members is off" in why
    assert rule_with_member_noise(rule, []) == (rule, "configured")
