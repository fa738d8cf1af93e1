"""Likely label errors, found by confident learning (cleanlab) on sentence embeddings.

Per language, a logistic regression on the embeddings gives out-of-fold class probabilities;
cleanlab flags rows whose given label disagrees with them more than the estimated noise rates
allow. Train rows are judged from train rows alone, so val/test labels never decide which train
rows are dropped; val (test) rows are judged from train+val (train+test) of their language.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues as _cleanlab_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from sentibridge.labels import LABELS
from sentibridge.tables import markdown_table

SPLITS = ("train", "val", "test")
FLAGGED_COLUMNS = ["id", "split", "language", "label", "suggested", "quality", "text"]
MODES = ("report", "drop", "downweight")
#: Inverse regularisation strengths tried per language: e5 vectors are unit length, so small
#: languages need weak regularisation (C 30-100 on the sample) and 2k-row ones more (C 3 on UMSAB).
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
#: Languages whose out-of-fold log loss is not this share below the label prior's are not judged:
#: their probabilities carry no signal, so cleanlab's flags would be noise.
MIN_GAIN = 0.05
_EXAMPLES = 3
_EXAMPLE_CHARS = 160


def skip_reason(labels: np.ndarray) -> str | None:
    """Why ``labels`` cannot be cross-validated, or None when they can."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(LABELS))
    present = counts[counts > 0]
    if len(present) < 2:
        return "only one class" if len(present) else "no rows"
    if present.min() < 2:
        word = LABELS[int(np.flatnonzero(counts == present.min())[0])]
        return f"class '{word}' has fewer than 2 rows"
    return None


def cross_validate(
    vectors: np.ndarray, labels: np.ndarray, folds: int, seed: int, cs: Sequence[float] = C_GRID
) -> tuple[np.ndarray, float] | None:
    """Out-of-fold probabilities at the strength in ``cs`` with the lowest log loss, and that C."""
    labels = np.asarray(labels, dtype=int)
    if skip_reason(labels) is not None:
        return None
    counts = np.bincount(labels, minlength=len(LABELS))
    folds = min(folds, int(counts[counts > 0].min()))
    if folds < 2:
        return None
    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(vectors, labels))
    best: tuple[np.ndarray, float] | None = None
    for c in cs:
        probs = np.zeros((len(labels), len(LABELS)))
        for fit_rows, held in splits:
            # newton-cg: the same optimum as lbfgs, 5-10x faster on a few thousand 384-d rows.
            model = LogisticRegression(C=c, solver="newton-cg", max_iter=1000).fit(vectors[fit_rows], labels[fit_rows])
            # An absent label keeps probability 0: cleanlab needs all label columns in LABELS order.
            probs[np.ix_(held, model.classes_)] = model.predict_proba(vectors[held])
        if best is None or log_loss(labels, probs) < log_loss(labels, best[0]):
            best = (probs, float(c))
    return best


def out_of_fold_probabilities(vectors: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray | None:
    """(N, 3) out-of-fold logistic-regression probabilities; None when a CV is impossible."""
    fitted = cross_validate(vectors, labels, folds, seed)
    return None if fitted is None else fitted[0]


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log probability of the given labels."""
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))


def prior_log_loss(labels: np.ndarray) -> float:
    """The log loss of always predicting the label shares: what no signal at all scores."""
    shares = np.bincount(labels, minlength=len(LABELS)) / len(labels)
    return float(-np.sum(shares[shares > 0] * np.log(shares[shares > 0])))


@dataclass(frozen=True)
class LabelIssues:
    """Flagged rows (``FLAGGED_COLUMNS``) and, per split and language, what was checked."""

    flagged: pd.DataFrame
    checked: dict[str, dict[str, dict]] = field(default_factory=dict)

    def ids(self, split: str | None = None) -> list[str]:
        """Flagged ids, of one split or all; worst (lowest quality) first within a split and language."""
        rows = self.flagged if split is None else self.flagged[self.flagged["split"] == split]
        return [str(i) for i in rows["id"]]

    def report(self) -> dict:
        """Counts per language, split and label pair, the worst examples, and what was skipped."""
        flagged = self.flagged
        per_split = {}
        for split, languages in self.checked.items():
            counts = {lang: int(info.get("flagged", 0)) for lang, info in sorted(languages.items())}
            per_split[split] = {"rows": sum(int(info["rows"]) for info in languages.values()),
                                "flagged": sum(counts.values()), "per_language": counts}
        pairs = pd.Series([f"{LABELS[g]}->{LABELS[s]}" for g, s in zip(flagged["label"], flagged["suggested"])], dtype=str)
        examples: dict[str, list[dict]] = {}
        for lang, rows in flagged.sort_values("quality", kind="stable").groupby("language", sort=True):
            examples[str(lang)] = [
                {"id": str(r.id), "split": r.split, "text": str(r.text)[:_EXAMPLE_CHARS], "label": LABELS[r.label],
                 "suggested": LABELS[r.suggested], "quality": round(float(r.quality), 4)}
                for r in rows.head(_EXAMPLES).itertuples(index=False)
            ]
        skipped = {split: {lang: info["skipped"] for lang, info in sorted(languages.items()) if "skipped" in info}
                   for split, languages in self.checked.items()}
        return {
            "flagged": len(flagged),
            "ids": self.ids(),
            "per_language": {str(k): int(v) for k, v in flagged["language"].value_counts().sort_index().items()},
            "per_split": per_split,
            "label_pairs": {str(k): int(v) for k, v in pairs.value_counts().sort_index().items()},
            "examples": examples,
            "skipped": {split: reasons for split, reasons in skipped.items() if reasons},
        }

    def markdown(self) -> str:
        """A short report for people: flagged/rows per language and split, then examples."""
        report = self.report()
        languages = sorted({lang for langs in self.checked.values() for lang in langs})
        splits = [s for s in SPLITS if s in self.checked]

        def cell(split: str, lang: str) -> str:
            info = self.checked[split].get(lang)
            if info is None:
                return ""
            return f"{info['flagged']}/{info['rows']}" if "skipped" not in info else f"skipped ({info['rows']})"

        rows = [[lang, *(cell(s, lang) for s in splits)] for lang in languages]
        rows.append(["all", *(f"{report['per_split'][s]['flagged']}/{report['per_split'][s]['rows']}" for s in splits)])
        lines = [f"# Label issues: {report['flagged']} rows flagged", "",
                 markdown_table(["language", *(f"{s} flagged/rows" for s in splits)], rows), ""]
        for split, reasons in report["skipped"].items():
            lines += [f"- {split}/{lang} not checked: {reason}" for lang, reason in reasons.items()]
        for lang, examples in report["examples"].items():
            lines += ["", f"## {lang}", ""]
            lines += [f"- `{e['id']}` ({e['split']}) {e['label']} -> {e['suggested']} (quality {e['quality']:.2f}): "
                      f"{e['text']!r}" for e in examples]
        return "\n".join(lines).rstrip() + "\n"


def _flag(frame: pd.DataFrame, vectors: np.ndarray, judged: np.ndarray, folds: int, seed: int
          ) -> tuple[pd.DataFrame | None, dict]:
    """Flagged rows among ``frame[judged]``, cross-validated over all of ``frame``, and how they were judged."""
    labels = frame["label"].to_numpy(dtype=int)
    reason = skip_reason(labels)
    fitted = None if reason else cross_validate(vectors, labels, folds, seed)
    if fitted is None:
        return None, {"skipped": reason or "too few rows for cross-validation"}
    probs, c = fitted
    info = {"C": c, "log_loss": round(log_loss(labels, probs), 4), "prior_log_loss": round(prior_log_loss(labels), 4)}
    if info["log_loss"] > (1 - MIN_GAIN) * info["prior_log_loss"]:
        return None, {"skipped": f"no signal: out-of-fold log loss {info['log_loss']:.3f}, "
                                 f"label prior {info['prior_log_loss']:.3f}", **info}
    with warnings.catch_warnings():
        # Small languages warn per class; the per-language counts already tell the reader.
        warnings.filterwarnings("ignore", message="May not flag all label issues")
        mask = _cleanlab_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    keep = mask & judged
    out = frame.loc[keep, ["id", "split", "language", "label", "text"]].copy()
    out["suggested"] = probs[keep].argmax(axis=1)
    out["quality"] = quality[keep]
    return out, {"flagged": int(keep.sum()), **info}


def find_label_issues(
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    embed: Callable[[list[str]], np.ndarray],
    folds: int = 5,
    seed: int = 42,
) -> LabelIssues:
    """Flag likely label errors per language; embeds every distinct text once.

    A language is not judged (``checked[split][lang]["skipped"]``) when it cannot be
    cross-validated or its out-of-fold log loss is not ``MIN_GAIN`` below the label prior's.
    """
    parts = {name: frame.assign(split=name).reset_index(drop=True) for name, frame in zip(SPLITS, (train, val, test))}
    rows = pd.concat(list(parts.values()), ignore_index=True)
    rows["text"] = rows["text"].astype(str)
    rows["label"] = rows["label"].astype(int)
    rows["language"] = rows["language"].astype(str)
    texts = list(dict.fromkeys(rows["text"]))
    # Embedding dominates the cost: one call, each distinct text once.
    vectors = np.asarray(embed(texts), dtype=np.float64) if texts else np.zeros((0, 1))
    position = {text: i for i, text in enumerate(texts)}
    rows["_vector"] = rows["text"].map(position)
    found: list[pd.DataFrame] = []
    checked: dict[str, dict[str, dict]] = {name: {} for name in SPLITS}
    for lang, group in rows.groupby("language", sort=True):
        own_train = group[group["split"] == "train"]
        for name in SPLITS:
            own = group[group["split"] == name]
            if own.empty:
                continue
            pool = own_train if name == "train" else pd.concat([own_train, own])
            flagged, info = _flag(pool, vectors[pool["_vector"].to_numpy()], (pool["split"] == name).to_numpy(),
                                  folds, seed)
            checked[name][str(lang)] = {"rows": len(own), **info}
            if flagged is not None:
                found.append(flagged)
    flagged = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=FLAGGED_COLUMNS)
    flagged = flagged.astype({"label": int, "suggested": int, "quality": float})
    order = flagged["split"].map(SPLITS.index)
    flagged = flagged.assign(_order=order).sort_values(["_order", "language", "quality"], kind="stable")
    return LabelIssues(flagged=flagged[FLAGGED_COLUMNS].reset_index(drop=True), checked=checked)


def train_weights(train: pd.DataFrame, issues: LabelIssues, mode: str, weight: float) -> pd.DataFrame:
    """Train rows for training: unchanged (``report``), flagged ones dropped, or given ``weight``."""
    if mode not in MODES:
        raise ValueError(f"unknown label-issue mode '{mode}' (expected one of {', '.join(MODES)})")
    if mode == "report":
        return train
    flagged = train["id"].astype(str).isin(set(issues.ids("train")))
    if mode == "drop":
        return train[~flagged]
    return train.assign(weight=np.where(flagged, float(weight), 1.0))


def check_labels(
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    mode: str,
    weight: float,
    embed: Callable[[list[str]], np.ndarray],
    folds: int = 5,
    seed: int = 42,
) -> tuple[pd.DataFrame, LabelIssues | None, dict]:
    """The train rows to train on, the issues found (None when ``mode`` is off) and their summary.

    The summary is ``LabelIssues.report()`` plus the mode and how many train rows it changed;
    it goes into the data report, so ``validate --json`` and MLflow carry it.
    """
    if mode == "off":
        return train, None, {"mode": "off"}
    issues = find_label_issues(train, val, test, embed, folds=folds, seed=seed)
    kept = train_weights(train, issues, mode, weight)
    acted = len(issues.ids("train")) if mode != "report" else 0
    return kept, issues, {"mode": mode, **({"weight": weight} if mode == "downweight" else {}),
                          "train_rows_changed": acted, **issues.report()}

