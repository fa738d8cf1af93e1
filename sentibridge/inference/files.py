"""Reading texts to predict on, and writing predictions, for ``sentibridge predict``.

Input is read by :mod:`sentibridge.data.reading`, as training data is: a .csv, .tsv,
.jsonl/.ndjson, .parquet or .txt file, or a folder of them (read in path order as one input).

Every input record becomes exactly one row, in file order: a bad record is kept with an
``error`` and ``text`` None, so output rows line up with input records. A row's error is one of:
bytes that are not UTF-8, a broken JSON line, a CSV/TSV row with more fields than the header,
a missing or empty text (a blank line included), a text or language that is not a string, or
an unknown language code (ISO 639-1 only, ``languages.is_language_code``, as in training data).
Only mistakes about the whole file (missing, wrong format, no text column, a header that is not
UTF-8) raise :class:`DataError`. A text may be of any length.

Both sides stream: :func:`iter_prediction_input` yields tables of at most ``chunk_rows`` rows
and :class:`PredictionWriter` appends them to a temporary file that replaces the target only
when complete, so memory does not grow with the file and a failure leaves no partial output.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from sentibridge.data.reading import SUFFIXES, TEXT, DataFile, input_files, open_file
from sentibridge.errors import DataError
from sentibridge.languages import is_language_code

INPUT_SUFFIXES = SUFFIXES
OUTPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
#: Rows read, scored and written at a time by ``sentibridge predict``: a few MB of text per
#: chunk, and enough rows per chunk that the model's batches stay full.
CHUNK_ROWS = 10_000
#: Columns of :func:`read_prediction_input`'s table, in order.
INPUT_COLUMNS = ["row", "id", "text", "language", "error"]

#: (id when the record has none, id, text, language, error) of one input record, before it is checked.
_Record = tuple["str | None", object, object, object, "str | None"]


def iter_prediction_input(
    path: Path, text_column: str = "text", language_column: str = "language", chunk_rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Stream a file or folder (formats in the module docstring) as ``INPUT_COLUMNS`` tables of
    at most ``chunk_rows`` rows; ``row`` counts on across chunks and files.

    Every file, its format and its header are checked before this returns. A record without an
    ``id`` gets its row number, or ``<file relative to the folder>:<line>`` when ``path`` is a
    folder (as training ingestion names rows).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    path = Path(path)
    paths = input_files(path, INPUT_SUFFIXES)
    if not paths:
        raise DataError(f"{path}: no {', '.join(INPUT_SUFFIXES)} files in this folder")
    opened = [open_file(p, INPUT_SUFFIXES) for p in paths]
    for data in opened:
        if data.columns and data.suffix != ".txt" and text_column not in data.columns:
            raise DataError(f"{data.path}: no '{text_column}' column (columns: {', '.join(data.columns)})")
    root = path if path.is_dir() else None
    records = itertools.chain.from_iterable(_records(data, text_column, language_column, root) for data in opened)
    return _chunks(records, chunk_rows)


def read_prediction_input(
    path: Path, text_column: str = "text", language_column: str = "language"
) -> pd.DataFrame:
    """The whole input as one ``INPUT_COLUMNS`` table (:func:`iter_prediction_input` in one chunk)."""
    return next(iter_prediction_input(path, text_column, language_column, chunk_rows=sys.maxsize), _frame([]))


def check_texts(texts: Sequence[object], languages: Sequence[object] | None = None) -> pd.DataFrame:
    """Texts given in memory (a served request, a Spark batch) checked as a file's records are:
    an ``INPUT_COLUMNS`` table, ``row`` and ``id`` numbered from 0, a bad text kept with its ``error``."""
    languages = [None] * len(texts) if languages is None else languages
    return _frame([_make_row(row, None, None, _present(text), _present(language), None)
                   for row, (text, language) in enumerate(zip(texts, languages))])


def _present(value: object) -> object:
    """None for a missing value as pandas or Arrow hand it over (NaN, NA), else ``value``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


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


def _records(data: DataFile, text_column: str, language_column: str, root: Path | None) -> Iterator[_Record]:
    """One file's records as ``_Record``s; a blank line is a record with an empty text."""
    text_field = TEXT if data.suffix == ".txt" else text_column
    name = data.path.relative_to(root).as_posix() if root is not None else None
    for record in data.records(("id", text_field, language_column)):
        fallback = f"{name}:{record.line}" if name is not None else None
        if record.error is not None:
            yield fallback, None, None, None, record.error
        elif record.fields is None:
            yield fallback, None, "", None, None
        else:
            fields = record.fields
            yield fallback, fields.get("id"), fields.get(text_field), fields.get(language_column), None


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
    row: int, fallback: str | None, id_: object, text: object, language: object, error: str | None
) -> tuple[int, str, str | None, str | None, str | None]:
    """Check one record; the first problem found becomes its ``error``. Without an id the row
    is named ``fallback``, else its row number."""
    if id_ is None or id_ == "":
        id_str = str(row) if fallback is None else fallback
    else:
        id_str = str(id_)
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
