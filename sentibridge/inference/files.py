"""Reading texts to predict on, and writing predictions, for ``sentibridge predict``.

Every input record becomes exactly one row, in file order: a bad record is kept with an
``error`` and ``text`` None, so output rows line up with input lines. Only mistakes about the
whole file (missing, wrong format, no text column, not UTF-8) raise :class:`DataError`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentibridge.errors import DataError

INPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".txt")
OUTPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
#: Columns of :func:`read_prediction_input`'s table, in order.
INPUT_COLUMNS = ["row", "id", "text", "language", "error"]

_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")


def read_prediction_input(
    path: Path, text_column: str = "text", language_column: str = "language"
) -> pd.DataFrame:
    """Read a .csv, .tsv, .jsonl/.ndjson or .txt file into the ``INPUT_COLUMNS`` table."""
    path = Path(path)
    suffix = _suffix(path, INPUT_SUFFIXES, "input")
    data = _read_bytes(path)
    if suffix in (".jsonl", ".ndjson"):
        records = _jsonl_records(data, text_column, language_column)
    elif suffix == ".txt":
        records = ((None, line, None, None) for line in _lines(_decode(path, data)))
    else:
        records = _delimited_records(path, _decode(path, data), "\t" if suffix == ".tsv" else ",",
                                     text_column, language_column)
    rows = [_make_row(i, *record) for i, record in enumerate(records)]
    columns = list(zip(*rows)) or [()] * len(INPUT_COLUMNS)
    # object dtype, not pandas 3's default str dtype, so missing values stay None (not NaN).
    return pd.DataFrame(
        {name: pd.Series(values, dtype="int64" if name == "row" else object)
         for name, values in zip(INPUT_COLUMNS, columns)}
    )


def write_predictions(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` by suffix, atomically, so a crash never leaves a half-written output."""
    path = Path(path)
    suffix = _suffix(path, OUTPUT_SUFFIXES, "output")
    path.parent.mkdir(parents=True, exist_ok=True)
    # A plain open (not mkstemp) so the file gets the usual umask permissions, not 0600.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif suffix in (".csv", ".tsv"):
            with tmp.open("x", encoding="utf-8", newline="") as handle:
                frame.to_csv(handle, sep="\t" if suffix == ".tsv" else ",", index=False,
                             na_rep="", lineterminator="\n")
        else:
            lines = [json.dumps(record, ensure_ascii=False, default=_json_default)
                     for record in _json_records(frame)]
            text = "".join(f"{line}\n" for line in lines) if suffix == ".jsonl" else (
                "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n")
            with tmp.open("x", encoding="utf-8", newline="") as handle:
                handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _suffix(path: Path, allowed: tuple[str, ...], kind: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise DataError(f"{path}: unsupported {kind} format '{suffix or '(no suffix)'}' (supported: {', '.join(allowed)})")
    return suffix


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _decode(path: Path, data: bytes) -> str:
    """Strict UTF-8: silently replacing bytes would feed the model mojibake."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from exc


def _lines(text: str) -> list[str]:
    """Split on newlines only (not str.splitlines, which also splits on U+2028 and friends)."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # a final newline ends the last line; it does not start a new one
    return [line.removesuffix("\r") for line in lines]


def _delimited_records(
    path: Path, text: str, delimiter: str, text_column: str, language_column: str
) -> Iterator[tuple[object, object, object, str | None]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            return
        if text_column not in header:
            raise DataError(f"{path}: no '{text_column}' column (columns: {', '.join(header) or 'none'})")
        index = {name: header.index(name) for name in ("id", text_column, language_column) if name in header}
        for cells in reader:
            cells = cells or [""] * len(header)  # a blank line is an empty record, not a skipped one
            fields = [cells[index[name]] if index.get(name, len(cells)) < len(cells) else None
                      for name in ("id", text_column, language_column)]
            yield fields[0], fields[1], fields[2], None
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: {exc}") from exc


def _jsonl_records(
    data: bytes, text_column: str, language_column: str
) -> Iterator[tuple[object, object, object, str | None]]:
    """Decode line by line, so one bad line costs one row, not the file."""
    if not data:
        return
    raw_lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()
    for raw in raw_lines:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield None, None, None, "not UTF-8"
            continue
        if not line.strip():
            yield None, None, None, "invalid JSON: empty line"
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield None, None, None, f"invalid JSON: {exc.msg} at column {exc.colno}"
            continue
        if not isinstance(record, dict):
            yield None, None, None, "not a JSON object"
            continue
        yield record.get("id"), record.get(text_column), record.get(language_column), None


def _make_row(
    row: int, id_: object, text: object, language: object, error: str | None
) -> tuple[int, str, str | None, str | None, str | None]:
    """Check one record; the first problem found becomes its ``error``."""
    id_str = str(row) if id_ is None or id_ == "" else str(id_)
    if error is None:
        if text is None:
            error = "missing text"
        elif not isinstance(text, str):
            error = "text is not a string"
        elif not text.strip():
            error = "empty text"
        elif language is not None and not isinstance(language, str):
            error = "language is not a string"
        else:
            code = (language.strip().lower() or None) if isinstance(language, str) else None
            if code is None or _LANGUAGE_CODE.match(code):
                return row, id_str, text, code, None
            error = f"unknown language code {code!r}"
    return row, id_str, None, None, error


def _json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = [str(column) for column in frame.columns]
    return [
        {column: _json_value(value) for column, value in zip(columns, values)}
        for values in frame.itertuples(index=False, name=None)
    ]


def _json_value(value: Any) -> Any:
    """NaN/NA/NaT -> None (JSON null); numpy scalars -> Python ones."""
    if isinstance(value, np.generic) and not isinstance(value, (np.datetime64, np.timedelta64)):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
