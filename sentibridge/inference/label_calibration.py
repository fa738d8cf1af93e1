"""Per-language label calibration: offsets on the label log-probabilities, fitted on val rows.

A model whose answers lean to one label in a language loses macro-F1 there even when it ranks
that language's rows well. ``prior`` calibration adds one offset per label and language so that
the mean predicted distribution on the language's val rows equals their label shares (a prior
shift adjustment: no search over the test metric, nothing fitted on test). The offsets are
saved with the model (``calibration.json``) and serving applies them, so a served model answers
what was evaluated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sentibridge.labels import LABELS, SCORE_COLUMNS

CALIBRATION_FILE = "calibration.json"

#: language -> one offset per label (label 0's is 0), added to the label log-probabilities.
Offsets = dict[str, list[float]]


def prior_offsets(probs: np.ndarray, labels: np.ndarray, iterations: int = 200) -> np.ndarray:
    """Offsets whose shifted distribution, averaged over rows, matches the label shares of ``labels``.

    ``probs``: (rows, labels) probabilities; ``labels``: true label ids. A fixed-point iteration
    (Saerens et al.'s prior update with known target priors); label 0's offset is pinned to 0.
    """
    log_probs = _log(probs)
    target = np.bincount(labels, minlength=probs.shape[1]) / len(labels)
    offsets = np.zeros(probs.shape[1])
    for _ in range(iterations):
        offsets += np.log(np.clip(target, 1e-6, None) / np.clip(_softmax(log_probs + offsets).mean(axis=0), 1e-12, None))
    return offsets - offsets[0]


def calibration_rows(val_rows: pd.DataFrame, min_rows: int) -> pd.DataFrame:
    """The val rows of the languages that can be calibrated: ``min_rows`` rows or more with every
    label among them (offsets from a handful of rows, or toward a label never seen, would be
    noise). The other languages are served uncalibrated, and their val rows need no scoring."""
    if val_rows.empty:
        return val_rows
    by_language = val_rows.groupby("language")["label"]
    enough = (by_language.transform("size") >= min_rows) & (by_language.transform("nunique") == len(LABELS))
    return val_rows[enough].reset_index(drop=True)


def fit_offsets(probs: np.ndarray, languages: Sequence[str], labels: Sequence[int]) -> Offsets:
    """``prior_offsets`` per language of scored val rows (``calibration_rows``)."""
    languages, labels = np.asarray(languages), np.asarray(labels, dtype=int)
    offsets: Offsets = {}
    for language in sorted(set(languages.tolist())):
        mask = languages == language
        offsets[str(language)] = [round(float(v), 6) for v in prior_offsets(probs[mask], labels[mask])]
    return offsets


def apply_offsets(probs: np.ndarray, languages: Sequence[str], offsets: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Calibrated probabilities: the softmax of log-probabilities plus the row's language offsets.

    Rows of a language without offsets keep their probabilities unchanged.
    """
    out = np.array(probs, dtype=np.float64, copy=True)
    languages = np.asarray(languages)
    for language, shift in offsets.items():
        mask = languages == language
        if mask.any():
            out[mask] = _softmax(_log(out[mask]) + np.asarray(shift, dtype=np.float64))
    return out


def calibrated(predictions: pd.DataFrame, offsets: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """``predictions`` (a table with ``language`` and the ``SCORE_COLUMNS``) with calibrated
    scores and ``pred`` their argmax."""
    probs = apply_offsets(predictions[SCORE_COLUMNS].to_numpy(dtype=np.float64), predictions["language"], offsets)
    out = predictions.copy()
    out[SCORE_COLUMNS] = probs
    out["pred"] = probs.argmax(axis=1).astype(int)
    return out


@dataclass(frozen=True)
class CalibratedScores:
    """Test predictions before and after calibration, the offsets, and how many val rows fitted them."""

    raw: pd.DataFrame
    predictions: pd.DataFrame
    offsets: Offsets
    val_rows: int


def score_calibrated(
    score: Callable[[pd.DataFrame], pd.DataFrame],
    test_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    method: str,
    min_rows: int,
) -> CalibratedScores:
    """Fit ``method``'s offsets on the scored ``val_rows`` (``calibration_rows`` of them), then
    score ``test_rows`` and calibrate them. ``score`` maps rows to a predictions table; ``none``,
    or no language with enough val rows, scores no val row and leaves the test scores raw."""
    fit_rows = calibration_rows(val_rows, min_rows) if method != "none" else val_rows.iloc[:0]
    offsets: Offsets = {}
    if len(fit_rows):
        scored = score(fit_rows)
        offsets = fit_offsets(scored[SCORE_COLUMNS].to_numpy(), scored["language"], scored["label"])
    raw = score(test_rows)
    return CalibratedScores(raw, calibrated(raw, offsets) if offsets else raw, offsets, len(fit_rows))


def save_offsets(folder: Path, offsets: Mapping[str, Sequence[float]], method: str = "prior") -> Path:
    """Write ``calibration.json`` into a model folder; returns its path."""
    path = Path(folder) / CALIBRATION_FILE
    payload = {"method": method, "offsets": {k: list(v) for k, v in sorted(offsets.items())}}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def load_offsets(folder: Path) -> Offsets:
    """The offsets saved with a model; empty for a model saved without calibration."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return {}
    return {str(k): [float(x) for x in v] for k, v in json.loads(path.read_text(encoding="utf-8"))["offsets"].items()}


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-30, None))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
