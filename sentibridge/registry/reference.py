"""The gate's reference: the champion's predictions on the candidate's test rows, or the base model's.

Never stale numbers: the champion's stored predictions count only when they come from the same
data version and the same test rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

@dataclass(frozen=True)
class ChampionRecord:
    """What the registry stores about the champion: enough to tell whether its numbers are fresh."""

    version: str
    data_version: str | None
    test_set: str | None


#: A predictions table: ``id, language, label, pred`` (the evaluate step's output).
Evaluator = Callable[[], pd.DataFrame]


@dataclass
class Reference:
    kind: str  # "champion" or "base_zero_shot"
    version: str | None
    predictions: pd.DataFrame
    source: str  # "stored", "re-evaluated" or "measured"


def choose_reference(
    champion: ChampionRecord | None,
    data_version: str,
    test_set: str,
    stored: Callable[[ChampionRecord], pd.DataFrame | None],
    evaluate_champion: Callable[[ChampionRecord], pd.DataFrame],
    evaluate_base: Evaluator,
) -> Reference:
    """The reference predictions on the candidate's test rows; never stale numbers.

    The champion's stored predictions count only when they come from the same data version and
    the same test rows; otherwise the champion is scored again now. Without a champion, the
    base model is scored zero-shot in this run.
    """
    if champion is None:
        return Reference("base_zero_shot", None, evaluate_base(), "measured")
    if champion.data_version == data_version and champion.test_set == test_set:
        predictions = stored(champion)
        if predictions is not None:
            return Reference("champion", champion.version, predictions, "stored")
    return Reference("champion", champion.version, evaluate_champion(champion), "re-evaluated")

