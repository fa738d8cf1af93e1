"""The label set: TweetEval order, and normalisation of the spellings users send."""

from __future__ import annotations

from typing import Any

#: Label words in TweetEval order; the index is the integer label.
LABELS: tuple[str, ...] = ("negative", "neutral", "positive")

#: A predictions table's probability columns, one per label in ``LABELS`` order.
SCORE_COLUMNS: list[str] = [f"score_{word}" for word in LABELS]

#: Marks a label that could not be normalised; validation quarantines it.
INVALID_LABEL = -1

_ALIASES: dict[str, int] = {
    **{word: i for i, word in enumerate(LABELS)},
    **{str(i): i for i in range(len(LABELS))},
    "neg": 0,
    "neu": 1,
    "pos": 2,
    "0.0": 0,
    "1.0": 1,
    "2.0": 2,
}


def normalise_label(value: Any) -> int:
    """Map ``"Positive"``, ``"pos"``, ``2``, ``"2"`` ... to 0/1/2; anything else to ``INVALID_LABEL``."""
    if isinstance(value, bool) or value is None:
        return INVALID_LABEL
    if isinstance(value, (int, float)):
        value = str(int(value)) if float(value).is_integer() else str(value)
    return _ALIASES.get(str(value).strip().lower(), INVALID_LABEL)
