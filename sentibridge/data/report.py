"""The data report: plain text for ``sentibridge validate``, Markdown for ZenML's dashboard."""

from __future__ import annotations

import pandas as pd

from sentibridge.tables import markdown_table, text_table

SPLIT_COLUMNS = ("train", "val", "test")


def language_rows(report: dict) -> list[list[object]]:
    """Per language: rows in (given split or unassigned), then the prepared train/val/test."""
    rows = []
    for lang, out in report["languages"].items():
        given = report.get("languages_in", {}).get(lang, {})
        rows.append([lang, sum(given.values()), *(out.get(s, 0) for s in SPLIT_COLUMNS)])
    return rows


def data_report_text(report: dict) -> str:
    """What ``sentibridge validate`` prints."""
    parts = [
        f"data: {report['data_path']}  version: {report['data_version']} ({report['data_version_source']})",
        f"rows: {report['rows_in']} in = {report['rows_valid']} valid + {report['rows_quarantined']} quarantined",
        "",
        text_table(["language", "rows in", *SPLIT_COLUMNS], language_rows(report)),
        "",
    ]
    reasons = report.get("quarantine_reasons") or {}
    parts.append("quarantined: " + (", ".join(f"{k} {v}" for k, v in reasons.items()) or "none"))
    parts.append(
        f"duplicates removed: {report['duplicates_removed']} "
        f"(exact {report['duplicates_exact']}, normalised {report['duplicates_normalised']})"
    )
    by_lang = ", ".join(f"{k} {v}" for k, v in report.get("leaks_by_language", {}).items()) or "none"
    parts.append(
        f"leaks found: {report['leaks_found']} (exact {report['leaks_exact']}; {by_lang}), removed: {report['leaks_removed']}"
    )
    if report.get("subsampled_out"):
        parts.append(f"train rows left out by data.max_rows_per_language / max_rows_by_language: {report['subsampled_out']}")
    if "label_issues" in report:
        parts.append(label_issues_line(report["label_issues"]))
    return "\n".join(parts)


def label_issues_line(summary: dict) -> str:
    """One line for ``validate``: flagged rows per split and language, and what training does with them."""
    if summary.get("mode", "off") == "off":
        return "label issues: not checked (data.label_issues: off)"
    splits = "; ".join(
        f"{split} {info['flagged']}/{info['rows']}" for split, info in summary.get("per_split", {}).items()
    )
    languages = ", ".join(f"{lang} {n}" for lang, n in summary.get("per_language", {}).items()) or "none"
    action = {"report": "reported only", "drop": f"{summary['train_rows_changed']} train rows dropped",
              "downweight": f"{summary['train_rows_changed']} train rows weighted {summary.get('weight')}"}
    skipped = sorted({lang for reasons in summary.get("skipped", {}).values() for lang in reasons})
    tail = f"; not judged (no signal or too few rows): {', '.join(skipped)}" if skipped else ""
    return (f"label issues ({action[summary['mode']]}): {summary['flagged']} flagged ({splits}); "
            f"by language: {languages}{tail}")


def data_report_markdown(report: dict, quarantine: pd.DataFrame, show: int = 20) -> str:
    """The data report as Markdown, with the first quarantined rows."""
    md = [
        "# Data report",
        f"`{report['data_path']}` — version `{report['data_version']}` ({report['data_version_source']})",
        "",
        f"**{report['rows_in']}** rows in = **{report['rows_valid']}** valid + **{report['rows_quarantined']}** quarantined",
        "",
        markdown_table(["language", "rows in", *SPLIT_COLUMNS], language_rows(report)),
        "",
        f"Duplicates removed: {report['duplicates_removed']}; leaks found: {report['leaks_found']}, "
        f"removed: {report['leaks_removed']}.",
    ]
    if len(quarantine):
        md += ["", "## Quarantined rows", ""]
        md.append(
            markdown_table(
                ["source", "line", "reasons", "text"],
                [
                    [r.source, r.line, r.reasons, str(r.text)[:80].replace("|", "\\|")]
                    for r in quarantine.head(show).itertuples()
                ],
            )
        )
    return "\n".join(md)
