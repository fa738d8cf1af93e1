"""Per-language evaluation: macro-F1, accuracy, confusion matrices, plots and a results table.

The headline metric ``f1_macro_avg`` is the unweighted mean of per-language macro-F1, so a
language with few test rows counts as much as English.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score  # noqa: E402

from sentibridge.labels import LABELS  # noqa: E402


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
    for language, group in frame.groupby("language", sort=True):
        f1 = float(f1_score(group["true"], group["pred"], average="macro", zero_division=0))
        accuracy = float(accuracy_score(group["true"], group["pred"]))
        rows.append({"language": language, "support": len(group), "accuracy": accuracy, "f1_macro": f1})
        confusion[language] = confusion_matrix(group["true"], group["pred"], labels=list(range(len(LABELS))))
        metrics[f"f1_{language}"] = f1
        metrics[f"accuracy_{language}"] = accuracy
        metrics[f"support_{language}"] = float(len(group))
    table = pd.DataFrame(rows)
    metrics["f1_macro_avg"] = float(table["f1_macro"].mean())
    metrics["accuracy_overall"] = float(accuracy_score(frame["true"], frame["pred"]))
    return EvalReport(metrics=metrics, table=table, confusion=confusion)


def plot_f1_by_language(report: EvalReport, out_dir: Path) -> Path:
    """Bar chart of macro-F1 per language with the average as a line; returns the PNG path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(report.table) + 2), 3.5))
    ax.bar(report.table["language"], report.table["f1_macro"], color="#4C72B0")
    ax.axhline(report.metrics["f1_macro_avg"], color="#C44E52", linestyle="--", label="mean over languages")
    ax.set_ylim(0, 1)
    ax.set_ylabel("macro-F1")
    ax.set_title("Macro-F1 by language")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = out_dir / "f1_by_language.png"
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
    lines = ["| language | support | accuracy | macro-F1 |", "|---|---:|---:|---:|"]
    for row in table.itertuples(index=False):
        lines.append(f"| {row.language} | {int(row.support)} | {row.accuracy:.3f} | {row.f1_macro:.3f} |")
    return "\n".join(lines)
