"""Model behaviour (the "model" kind of test): what the trained model answers, not how it is built.

A clearly positive and a clearly negative text in every sample language must come out right,
and harmless edits (a trailing URL, an @user mention) must not change any label. The base
model zero-shot fails both (3 of the 18 texts wrong, 13 of the 36 edits flip a label), and the
integration tests' 2-step models are barely trained, so this module uses the `make run` model
(the session's ``default_model``: the default config on the sample data) and scores through the
registered MLflow model, as a served model or `sentibridge predict` would.
"""

from __future__ import annotations

from collections.abc import Callable

import mlflow
import pandas as pd
import pytest

from tests.conftest import SAMPLE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: (clearly positive, clearly negative) per sample language, written for this test.
POLAR: dict[str, tuple[str, str]] = {
    "en": ("I love this phone, it works perfectly!", "Terrible phone, it broke after one day. I hate it."),
    "es": ("¡Me encanta este restaurante, la comida es excelente!", "Pésimo servicio, la comida estaba fría y asquerosa."),
    "fr": ("J'adore cet hôtel, le personnel est merveilleux !", "Hôtel horrible, chambre sale et personnel très impoli."),
    "de": ("Ich liebe dieses Buch, es ist einfach wunderbar!", "Schrecklicher Service, ich bin total enttäuscht und wütend."),
    "pt": ("Adorei este produto, é excelente e chegou rápido!", "Produto horrível, quebrou no primeiro dia. Péssimo!"),
    "ar": ("أحببت هذا المطعم كثيرا، الطعام رائع والخدمة ممتازة!", "خدمة سيئة جدا، الطعام بارد ومقرف. تجربة فظيعة."),
    "hi": ("मुझे यह फ़ोन बहुत पसंद है, यह शानदार है!", "बहुत खराब सेवा, खाना ठंडा और बेस्वाद था। बेकार अनुभव।"),
    "ru": ("Мне очень понравился этот отель, всё было замечательно!", "Ужасный сервис, еда холодная и невкусная. Никогда больше!"),
    "zh": ("这家餐厅太棒了，菜很好吃，服务也非常好！", "服务太差了，菜又冷又难吃，再也不来了。"),
}

#: Edits that carry no sentiment: the label must stay what it was without them.
EDITS: dict[str, Callable[[str], str]] = {
    "trailing URL": lambda text: f"{text} https://example.com/review/8841",
    "@user mention": lambda text: f"@user {text}",
}


def _texts() -> pd.DataFrame:
    """Every polar text as written and under every edit: language, expected, edit, text."""
    rows = [
        {"language": lang, "expected": expected, "edit": "", "text": text}
        for lang, pair in POLAR.items()
        for expected, text in zip(("positive", "negative"), pair)
    ]
    rows += [{**row, "edit": name, "text": edit(row["text"])} for name, edit in EDITS.items() for row in list(rows)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def predictions(default_model) -> pd.DataFrame:
    """``_texts()`` with the label the registered model gives each text."""
    result = default_model.result
    texts = _texts()
    mlflow.set_tracking_uri(result["tracking_uri"])
    try:
        model = mlflow.pyfunc.load_model(f"models:/{result['registered_model']}/{result['model_version']}")
    finally:
        mlflow.set_tracking_uri(None)  # later tests choose their own store
    scored = model.predict(texts[["text", "language"]])
    print(f"behaviour model v{result['model_version']}: mean F1 {result['f1_macro_avg']:.3f}, trained in {result['seconds']} s")
    return texts.assign(label=scored["label"].to_numpy())


def test_every_sample_language_has_behaviour_texts():
    languages = set(pd.read_json(SAMPLE / "reviews.jsonl", lines=True)["language"])
    assert set(POLAR) == languages


@pytest.mark.parametrize("language", sorted(POLAR))
def test_clearly_polar_texts_come_out_right(predictions, language):
    rows = predictions[(predictions["language"] == language) & (predictions["edit"] == "")]
    assert len(rows) == 2
    assert (rows["label"] == rows["expected"]).all(), rows[["text", "expected", "label"]].to_string()


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_harmless_edit_keeps_every_label(predictions, edit):
    plain = predictions[predictions["edit"] == ""].reset_index(drop=True)
    edited = predictions[predictions["edit"] == edit].reset_index(drop=True)
    assert len(edited) == len(plain) == 2 * len(POLAR)
    changed = edited["label"] != plain["label"]
    # The mask first: assigning a column to an empty frame would give it the column's rows.
    assert not changed.any(), edited[changed].assign(was=plain["label"][changed])[["text", "was", "label"]].to_string()
