"""Human-readable reports: plain-text tables for the terminal, Markdown for ZenML's dashboard."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

SPLIT_COLUMNS = ("train", "val", "test")


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A left/right aligned fixed-width table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) if rows else False for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "| " + " | ".join(map(str, headers)) + " |"
    rule = "|" + "|".join("---" for _ in headers) + "|"
    return "\n".join([head, rule] + ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows])


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


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
        parts.append(f"train rows left out by data.max_rows_per_language: {report['subsampled_out']}")
    return "\n".join(parts)


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
