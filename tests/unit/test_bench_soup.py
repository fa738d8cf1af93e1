"""The pure helpers of bench/soup.py: weight averaging, score ensembles and their comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

SCORES = ["score_negative", "score_neutral", "score_positive"]


@pytest.fixture(scope="module")
def soup(import_bench):
    return import_bench("soup")


def _member(folder, tensors):
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text("{}", encoding="utf-8")
    return folder


def test_a_soup_is_the_elementwise_mean_in_the_members_dtype(soup, tmp_path):
    a = _member(tmp_path / "a", {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "b": torch.zeros(3)})
    b = _member(tmp_path / "b", {"w": torch.tensor([3.0, 6.0], dtype=torch.bfloat16), "b": torch.ones(3)})
    out = soup.average_weights([a, b], tmp_path / "soup")
    mean = load_file(str(out / "model.safetensors"))
    assert mean["w"].dtype == torch.bfloat16
    assert mean["w"].tolist() == [2.0, 4.0]
    assert mean["b"].tolist() == [0.5, 0.5, 0.5]
    assert (out / "config.json").is_file()  # the rest of the model folder travels with it
    assert not (tmp_path / "soup.partial").exists()


def test_members_of_different_models_are_refused(soup, tmp_path):
    a = _member(tmp_path / "a", {"w": torch.zeros(2)})
    b = _member(tmp_path / "b", {"w": torch.zeros(3)})
    with pytest.raises(ValueError, match="not a retrain of one model"):
        soup.average_weights([a, b], tmp_path / "soup")


def test_combinations_are_every_subset_of_two_or_more(soup):
    assert soup.combinations(["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")]
    assert soup.combinations(["a"]) == []


def _noisy_member(seed: int, y: np.ndarray, languages: np.ndarray, split: np.ndarray) -> pd.DataFrame:
    """A model whose scores are the true label's signal plus its own noise (a retrain with another seed)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.3, size=(len(y), 3))
    logits[np.arange(len(y)), y] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(probs, columns=SCORES)
    return frame.assign(id=[f"r{i}" for i in range(len(y))], label=y, language=languages, split=split,
                        pred=np.argmax(probs, axis=1))


def test_an_ensemble_of_independent_noise_beats_its_members(soup):
    n = 3000
    y = np.arange(n) % 3
    languages = np.where(np.arange(n) % 2 == 0, "hi", "en")
    split = np.where(np.arange(n) < 600, "val", "test")
    members = [_noisy_member(seed, y, languages, split) for seed in (1, 2, 3)]
    ensemble = soup.ensemble_scores(members)
    assert np.allclose(ensemble[SCORES].to_numpy(), np.mean([m[SCORES].to_numpy() for m in members], axis=0))
    results = {f"m{i}": soup.evaluated(m) for i, m in enumerate(members)}
    combined = soup.evaluated(ensemble)
    comparison = soup.compared(combined, results)
    assert comparison["best_member"] == max(results, key=lambda k: results[k]["prior_mean"])
    assert comparison["vs_members_mean_points"] > 3.0
    vs = comparison["vs_best_member_points"]
    assert vs["ci_low"] > 0.0 and vs["ci_low"] <= vs["delta"] <= vs["ci_high"]


def test_an_ensemble_of_differently_ordered_rows_is_refused(soup):
    y = np.arange(30) % 3
    a = _noisy_member(1, y, np.array(["en"] * 30), np.array(["test"] * 30))
    b = a.iloc[::-1].reset_index(drop=True)
    with pytest.raises(ValueError, match="different rows"):
        soup.ensemble_scores([a, b])
