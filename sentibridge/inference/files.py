"""Reading texts to predict on, and writing predictions, for ``sentibridge predict``.

Every input record becomes exactly one row, in file order: a bad record is kept with an
``error`` and ``text`` None, so output rows line up with input lines. Only mistakes about the
whole file (missing, wrong format, no text column, not UTF-8) raise :class:`DataError`. A
language code must be ISO 639-1 (``languages.is_language_code``), as in training data.

Both sides stream: :func:`iter_prediction_input` yields tables of at most ``chunk_rows`` rows
and :class:`PredictionWriter` appends them to a temporary file that replaces the target only
when complete, so memory does not grow with the file and a failure leaves no partial output.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from sentibridge.data.text import BOM, text_blocks, text_lines
from sentibridge.errors import DataError
from sentibridge.languages import is_language_code

INPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".txt")
OUTPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
#: Rows read, scored and written at a time by ``sentibridge predict``: a few MB of text per
#: chunk, and enough rows per chunk that the model's batches stay full.
CHUNK_ROWS = 10_000
#: Columns of :func:`read_prediction_input`'s table, in order.
INPUT_COLUMNS = ["row", "id", "text", "language", "error"]

#: (id, text, language, error) of one input record, before it is checked.
_Record = tuple[object, object, object, "str | None"]


def iter_prediction_input(
    path: Path, text_column: str = "text", language_column: str = "language", chunk_rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Stream a .csv, .tsv, .jsonl/.ndjson or .txt file as ``INPUT_COLUMNS`` tables of at most
    ``chunk_rows`` rows; ``row`` counts on across chunks.

    The format, the file and a CSV/TSV header are checked before this returns; a byte that is
    not UTF-8 raises :class:`DataError` when the stream reaches it.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    path = Path(path)
    suffix = _suffix(path, INPUT_SUFFIXES, "input")
    _check_readable(path)
    if suffix in (".jsonl", ".ndjson"):
        records: Iterable[_Record] = _jsonl_records(path, text_column, language_column)
    elif suffix == ".txt":
        records = ((None, line, None, None) for line in text_lines(path))
    else:
        records = _delimited_records(path, "\t" if suffix == ".tsv" else ",", text_column, language_column)
    return _chunks(records, chunk_rows)


def read_prediction_input(
    path: Path, text_column: str = "text", language_column: str = "language"
) -> pd.DataFrame:
    """The whole file as one ``INPUT_COLUMNS`` table (:func:`iter_prediction_input` in one chunk)."""
    return next(iter_prediction_input(path, text_column, language_column, chunk_rows=sys.maxsize), _frame([]))


class PredictionWriter:
    """Writes a predictions table chunk by chunk, in the format of ``path``'s suffix.

    Chunks go to a temporary file beside ``path`` that :meth:`close` renames into place, so a
    crash or an exception inside ``with`` never leaves a half-written output (nor touches an
    existing one). Every chunk must have the first chunk's columns.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._suffix = _suffix(self.path, OUTPUT_SUFFIXES, "output")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A plain open (not mkstemp) so the file gets the usual umask permissions, not 0600.
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp")
        self._handle = None if self._suffix == ".parquet" else self._tmp.open("x", encoding="utf-8", newline="")
        self._parquet: Any = None  # a pyarrow.parquet.ParquetWriter, opened by the first chunk
        self._schema: Any = None
        self._chunks = 0
        self._records = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self._suffix == ".parquet":
            self._write_parquet(frame)
        elif self._suffix in (".csv", ".tsv"):
            frame.to_csv(self._handle, sep="\t" if self._suffix == ".tsv" else ",", index=False,
                         header=self._chunks == 0, na_rep="", lineterminator="\n")
        else:
            for record in _json_records(frame):
                line = json.dumps(record, ensure_ascii=False, default=_json_default)
                if self._suffix == ".jsonl":
                    self._handle.write(f"{line}\n")
                else:  # one JSON array: "[" before the first record, "," between records
                    self._handle.write(("[\n" if self._records == 0 else ",\n") + line)
                self._records += 1
        self._chunks += 1

    def close(self) -> Path:
        """Finish the file and move it to ``path``."""
        try:
            if self._suffix == ".json":
                self._handle.write("\n]\n" if self._records else "[]\n")
            if self._handle is not None:
                self._handle.close()
            if self._suffix == ".parquet":
                if self._parquet is None:  # no chunk at all: still a readable (empty) file
                    self._write_parquet(pd.DataFrame())
                self._parquet.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        """Drop the temporary file; ``path`` stays as it was."""
        if self._handle is not None:
            self._handle.close()
        if self._parquet is not None:
            self._parquet.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self._tmp, self._schema)
        else:  # the first chunk's schema, so a column that was all-null there still types the same
            table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        self._parquet.write_table(table)


def write_predictions(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` by suffix, atomically, so a crash never leaves a half-written output."""
    with PredictionWriter(path) as writer:
        writer.write(frame)
    return writer.path


def _suffix(path: Path, allowed: tuple[str, ...], kind: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise DataError(f"{path}: unsupported {kind} format '{suffix or '(no suffix)'}' (supported: {', '.join(allowed)})")
    return suffix


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")


def _raw_lines(path: Path) -> Iterator[bytes]:
    """The file's ``\\n``-terminated lines, ending kept, BOM dropped."""
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle):
                yield raw.removeprefix(BOM) if number == 0 else raw
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _delimited_records(path: Path, delimiter: str, text_column: str, language_column: str) -> Iterator[_Record]:
    """Reads and checks the header now; the records stream from the returned iterator."""
    # A StringIO per block splits lines as open(newline="") would, \r and \r\n included.
    lines = itertools.chain.from_iterable(io.StringIO(block, newline="") for block in text_blocks(path))
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: {exc}") from exc
    if header is None:
        return iter(())
    if text_column not in header:
        raise DataError(f"{path}: no '{text_column}' column (columns: {', '.join(header) or 'none'})")
    index = {name: header.index(name) for name in ("id", text_column, language_column) if name in header}
    return _delimited_rows(path, reader, len(header), [index.get(name) for name in ("id", text_column, language_column)])


def _delimited_rows(path: Path, reader: Any, width: int, positions: list[int | None]) -> Iterator[_Record]:
    try:
        for cells in reader:
            cells = cells or [""] * width  # a blank line is an empty record, not a skipped one
            fields = [cells[p] if p is not None and p < len(cells) else None for p in positions]
            yield fields[0], fields[1], fields[2], None
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: {exc}") from exc


def _jsonl_records(path: Path, text_column: str, language_column: str) -> Iterator[_Record]:
    """Decode line by line, so one bad line costs one row, not the file."""
    for raw in _raw_lines(path):
        try:
            line = raw.removesuffix(b"\n").decode("utf-8")
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


def _chunks(records: Iterable[_Record], chunk_rows: int) -> Iterator[pd.DataFrame]:
    rows: list[tuple[int, str, str | None, str | None, str | None]] = []
    for number, record in enumerate(records):
        rows.append(_make_row(number, *record))
        if len(rows) == chunk_rows:
            yield _frame(rows)
            rows = []
    if rows:
        yield _frame(rows)


def _frame(rows: list[tuple[int, str, str | None, str | None, str | None]]) -> pd.DataFrame:
    columns = list(zip(*rows)) or [()] * len(INPUT_COLUMNS)
    # object dtype, not pandas 3's default str dtype, so missing values stay None (not NaN).
    return pd.DataFrame(
        {name: pd.Series(values, dtype="int64" if name == "row" else object)
         for name, values in zip(INPUT_COLUMNS, columns)}
    )


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
            if code is None or is_language_code(code):
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
