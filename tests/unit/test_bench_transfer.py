"""The pure helpers of bench/transfer.py: the left-out dataset and the comparison with zero-shot and in-language."""

from __future__ import annotations

import pandas as pd
import pytest

from sentibridge.config_loading import load_settings


@pytest.fixture(scope="module")
def transfer(import_bench):
    return import_bench("transfer")


def _rows() -> pd.DataFrame:
    rows = []
    for lang in ("hi", "pt", "en"):
        for i in range(60):
            rows.append({"id": f"{lang}{i}", "text": f"{lang} distinct sentence number {i}", "label": i % 3,
                         "label_raw": str(i % 3), "language": lang, "language_raw": lang, "split": None, "source": "x",
                         "line": i})
    return pd.DataFrame(rows)


def test_the_left_out_language_is_only_in_test(transfer):
    settings = load_settings(None, ["data.max_rows_per_language=null"])
    data = transfer.transfer_dataset(_rows(), settings, "hi")
    by_split = data.groupby("split")["language"].agg(lambda s: sorted(set(s))).to_dict()
    assert by_split == {"test": ["hi"], "train": ["en", "pt"], "val": ["en", "pt"]}
    # The other languages keep exactly the pipeline's train rows: leaving one out changes nothing else.
    data_pt = transfer.transfer_dataset(_rows(), settings, "pt")
    en_train = lambda d: set(d[(d["split"] == "train") & (d["language"] == "en")]["id"])  # noqa: E731
    assert en_train(data) == en_train(data_pt) and len(en_train(data)) > 30


def _payload(reference: str = "base_zero_shot") -> dict:
    row = {"language": "hi", "candidate": 0.50, "reference": 0.40, "delta": 10.0, "ci_low": 4.0, "ci_high": 16.0,
           "p_better": 0.99}
    return {"decision": {"reference": reference, "languages": [row]}, "per_language": {"hi": {"support": 870}}}


def test_transfer_against_zero_shot_and_in_language(transfer):
    summary = transfer.transfer_summary("hi", _payload(), {"hi": 0.55})
    assert summary["vs_zero_shot_points"]["ci_low"] == 4.0 and summary["test_rows"] == 870
    assert summary["vs_in_language_points"] == pytest.approx(-5.0)
    assert summary["recovered"] == pytest.approx(10 / 15)  # 10 of the 15 points in-language training gains
    assert transfer.transfer_summary("hi", _payload(), None)["recovered"] is None


def test_a_champion_reference_is_refused(transfer):
    with pytest.raises(ValueError, match="not the base model zero-shot"):
        transfer.transfer_summary("hi", _payload("champion"), None)
