"""Per-language evaluation: macro-F1, accuracy, confusion matrices, plots and a results table.

The headline metric ``f1_macro_avg`` is the unweighted mean of per-language macro-F1, so a
language with few test rows counts as much as English.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sentibridge.labels import LABELS  # noqa: E402
from sentibridge.statistics import macro_f1  # noqa: E402
from sentibridge.tables import markdown_table  # noqa: E402


@dataclass
class EvalReport:
    """``metrics``: flat dict for tracking; ``table``: one row per language;
    ``confusion``: language -> (3, 3) counts, rows true, columns predicted."""

    metrics: dict[str, float]
    table: pd.DataFrame
    confusion: dict[str, np.ndarray]


def evaluate_predictions(
    languages: Sequence[str], y_true: Sequence[int], y_pred: Sequence[int]
) -> EvalReport:
    """Per-language macro-F1, accuracy, support and confusion matrix, plus ``f1_macro_avg``.

    Metric keys: ``f1_<lang>``, ``accuracy_<lang>``, ``support_<lang>``, ``f1_macro_avg``,
    ``accuracy_overall``. Macro-F1 averages over the labels present in truth or predictions
    of that language (sklearn's default), so a language without neutral rows is not
    penalised for a class it cannot score.
    """
    frame = pd.DataFrame({"language": list(languages), "true": list(y_true), "pred": list(y_pred)})
    if frame.empty:
        raise ValueError("evaluate_predictions needs at least one row")
    rows, confusion, metrics = [], {}, {}
    classes = len(LABELS)
    # numpy, not sklearn's metrics: their input validation cost ~10 ms per call, and the gate and
    # `experiment` evaluate every language of every decision.
    for language, group in frame.groupby("language", sort=True):
        true, pred = group["true"].to_numpy(dtype=int), group["pred"].to_numpy(dtype=int)
        f1 = macro_f1(true, pred)
        accuracy = float(np.mean(true == pred))
        rows.append({"language": language, "support": len(group), "accuracy": accuracy, "f1_macro": f1})
        confusion[language] = np.bincount(true * classes + pred, minlength=classes * classes).reshape(classes, classes)
        metrics[f"f1_{language}"] = f1
        metrics[f"accuracy_{language}"] = accuracy
        metrics[f"support_{language}"] = float(len(group))
    table = pd.DataFrame(rows)
    metrics["f1_macro_avg"] = float(table["f1_macro"].mean())
    metrics["accuracy_overall"] = float(np.mean(frame["true"].to_numpy(dtype=int) == frame["pred"].to_numpy(dtype=int)))
    return EvalReport(metrics=metrics, table=table, confusion=confusion)


_CANDIDATE_COLOR = "#4C72B0"
_REFERENCE_COLOR = "#A0A0A0"


def _language_label(language: str, support: int | None) -> str:
    return f"{language}\nn={int(support)}" if support is not None else language


def plot_f1_by_language(report: EvalReport, out_dir: Path) -> Path:
    """Bar chart of macro-F1 per language (test rows in the labels) with the average as a line; returns the PNG path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(report.table) + 2), 3.5))
    labels = [_language_label(row.language, row.support) for row in report.table.itertuples(index=False)]
    ax.bar(labels, report.table["f1_macro"], color=_CANDIDATE_COLOR)
    ax.axhline(report.metrics["f1_macro_avg"], color="#C44E52", linestyle="--", label="mean over languages")
    ax.set_ylim(0, 1)
    ax.set_ylabel("macro-F1")
    ax.set_title("Macro-F1 by language (test rows)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = out_dir / "f1_by_language.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def f1_vs_reference_figure(
    candidate: Mapping[str, float],
    reference: Mapping[str, float],
    support: Mapping[str, int],
    names: tuple[str, str] = ("candidate", "reference"),
) -> Figure:
    """Per language, the candidate's and the reference's macro-F1 (0..1) side by side.

    Each pair is labelled with the language's test rows (``support``) and the delta in points,
    red where the candidate is worse, so the plot shows what the gate compared. A language
    scored by one side only has one bar. The two bar series are ``ax.containers[0]`` (candidate)
    and ``[1]`` (reference), labelled with ``names``.
    """
    languages = sorted(set(candidate) | set(reference))
    x = np.arange(len(languages))
    width = 0.4
    cand = [candidate.get(language, np.nan) for language in languages]
    ref = [reference.get(language, np.nan) for language in languages]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(languages) + 2), 4.0))
    ax.bar(x - width / 2, cand, width, label=names[0], color=_CANDIDATE_COLOR)
    ax.bar(x + width / 2, ref, width, label=names[1], color=_REFERENCE_COLOR)
    for k, (c, r) in enumerate(zip(cand, ref)):
        if not (np.isnan(c) or np.isnan(r)):
            delta = 100 * (c - r)
            ax.annotate(f"{delta:+.1f}", (x[k], max(c, r)), xytext=(0, 3), textcoords="offset points",
                        ha="center", fontsize=8, color="#C44E52" if delta < 0 else "black")
    ax.set_xticks(x, [_language_label(language, support.get(language)) for language in languages])
    ax.set_ylim(0, 1.1)  # room for the delta labels above bars near 1
    ax.set_ylabel("macro-F1")
    ax.set_title("Macro-F1 by language: candidate vs reference (delta in points, test rows n)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_f1_vs_reference(
    candidate: Mapping[str, float],
    reference: Mapping[str, float],
    support: Mapping[str, int],
    out_dir: Path,
    names: tuple[str, str] = ("candidate", "reference"),
) -> Path:
    """:func:`f1_vs_reference_figure` saved as ``f1_vs_reference.png`` in ``out_dir``; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = f1_vs_reference_figure(candidate, reference, support, names)
    path = out_dir / "f1_vs_reference.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion_matrices(report: EvalReport, out_dir: Path) -> Path:
    """A grid of per-language confusion matrices (counts); returns the PNG path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    languages = list(report.confusion)
    cols = min(4, len(languages))
    rows = -(-len(languages) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    short = [w[:3] for w in LABELS]
    for ax in axes.flat[len(languages) :]:
        ax.axis("off")
    for ax, language in zip(axes.flat, languages):
        matrix = report.confusion[language]
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            color = "white" if count > matrix.max() / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=9)
        ax.set_xticks(range(len(LABELS)), short)
        ax.set_yticks(range(len(LABELS)), short)
        ax.set_title(language)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    path = out_dir / "confusion_matrices.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def results_table(report: EvalReport, fmt: str = "markdown") -> str:
    """Per-language results as a Markdown or HTML table.

    The last row, ``overall``, has the pooled accuracy and ``f1_macro_avg`` (mean over languages).
    """
    table = report.table.copy()
    summary = {
        "language": "overall",
        "support": int(table["support"].sum()),
        "accuracy": report.metrics["accuracy_overall"],
        "f1_macro": report.metrics["f1_macro_avg"],
    }
    table = pd.concat([table, pd.DataFrame([summary])], ignore_index=True)
    if fmt == "html":
        return table.to_html(index=False, float_format=lambda v: f"{v:.3f}")
    if fmt != "markdown":
        raise ValueError(f"fmt must be 'markdown' or 'html', got {fmt!r}")
    rows = [[row.language, int(row.support), row.accuracy, row.f1_macro] for row in table.itertuples(index=False)]
    return markdown_table(["language", "support", "accuracy", "macro-F1"], rows)
