"""Tables for people: plain text for the terminal, Markdown for ZenML's dashboard (tabulate)."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

#: One format for every float column, or one per column ("" for columns without floats).
FloatFormat = str | Sequence[str]


def _render(headers: Sequence[str], rows: Sequence[Sequence[object]], tablefmt: str, floatfmt: FloatFormat) -> str:
    # Only columns whose values are Python numbers are numbers: tabulate would otherwise read
    # strings such as a version "12e3..." as floats and reformat them.
    text_columns = [
        i
        for i in range(len(headers))
        if not all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows if row[i] is not None)
    ]
    return tabulate(
        [list(row) for row in rows],
        headers=list(headers),
        tablefmt=tablefmt,
        floatfmt=floatfmt if isinstance(floatfmt, str) else list(floatfmt),
        numalign="right",
        missingval="",
        disable_numparse=text_columns if rows else True,  # tabulate counts columns from the rows
    )


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]], floatfmt: FloatFormat = ".3f") -> str:
    """A fixed-width table: a header, a rule, numbers right-aligned, None as an empty cell."""
    return _render(headers, rows, "simple", floatfmt)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], floatfmt: FloatFormat = ".3f") -> str:
    """A Markdown (pipe) table: numbers right-aligned, None as an empty cell."""
    return _render(headers, rows, "pipe", floatfmt)
