"""bench/seed_noise.py is a thin caller of `sentibridge experiment`: its numbers come from the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.seed_noise import seed_noise_result
from sentibridge.statistics import pooled_seed_spread


def test_pooled_spread_centres_each_recipe_on_its_own_mean():
    good = [{"de": 0.70, "hi": 0.50}, {"de": 0.72, "hi": 0.54}]
    bad = [{"de": 0.40, "hi": 0.30}, {"de": 0.44, "hi": 0.30}]
    spread = pooled_seed_spread([good, bad, [{"de": 0.1, "hi": 0.1}]])  # a one-run group adds nothing
    # variances (points^2): good de 2, hi 8; bad de 8, hi 0 -> mean per group 5 and 4, pooled 4.5.
    assert spread["per_language_points"] == pytest.approx(np.sqrt(4.5), abs=0.01)
    # means: good 60, 63 (var 4.5); bad 35, 37 (var 2) -> pooled 3.25.
    assert spread["mean_points"] == pytest.approx(np.sqrt(3.25), abs=0.01)
    assert spread["degrees_of_freedom"] == 2
    assert pooled_seed_spread([[{"de": 0.5}]]) is None


def test_result_fields_come_from_the_experiment_report():
    report = {
        "test_rows": 27,
        "seed_noise": {"per_language_points": 2.0, "mean_points": 1.0, "degrees_of_freedom": 1},
        "recipes": {"default": {"seeds": [42, 7], "per_language": {
            "de": {"f1": 0.5, "sd_points": 1.234}, "mean": {"f1": 0.5, "sd_points": 0.5}}}},
        "runs": [
            {"recipe": "default", "seed": 42, "status": "ok", "seconds": 61.2, "f1_macro_avg": 0.49, "per_language": {"de": 0.49}},
            {"recipe": "default", "seed": 7, "status": "failed", "seconds": 3.0, "f1_macro_avg": None, "per_language": {}},
        ],
    }
    result = seed_noise_result(report, Path("configs/default.yaml"), [])
    assert result["seeds"] == [42, 7] and list(result["runs"]) == [42]
    assert result["per_language_std_points"] == {"de": 1.23}
    assert result["measured_seed_std"] == report["seed_noise"]
