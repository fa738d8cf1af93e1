"""Reading data files: the one reader behind training ingestion and ``sentibridge predict``.

Formats, by suffix (any case):

- ``.csv`` and ``.tsv``: a header row, then one record per row; a quoted field may span lines
  and may be of any length;
- ``.jsonl`` / ``.ndjson``: one JSON object per line;
- ``.parquet``: one record per table row, streamed a record batch at a time;
- ``.txt``: one text per line, read into the field ``text``.

A folder is read as every such file below it, sorted by path (:func:`input_files`).

Text is strict UTF-8 (silently replaced bytes would feed the model mojibake): a leading BOM is
dropped and lines end at ``\\n`` or ``\\r\\n`` (CSV/TSV also at a lone ``\\r``), never at U+2028
and friends, which stay inside a text. Mistakes about the whole file (missing, unknown suffix,
not Parquet, a header that is not UTF-8) raise :class:`DataError` with one line. A record that
cannot be read (bytes that are not UTF-8, a broken JSON line, a CSV row with more fields than
the header) comes out with its ``error`` instead, so the caller decides what it costs: one row
of a prediction, or the whole training file.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sentibridge.errors import DataError

#: Formats whose records have named columns.
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet")
#: Every format read; ``.txt`` has one unnamed column, read as :data:`TEXT`.
SUFFIXES = (*TABLE_SUFFIXES, ".txt")
#: The field each line of a ``.txt`` file is read into.
TEXT = "text"

BOM = b"\xef\xbb\xbf"
#: Bytes read at a time; a block is cut at its last newline, so memory stays bounded.
BLOCK = 1 << 20
#: Parquet rows converted to records at a time.
PARQUET_BATCH_ROWS = 4096

#: What ``errors="surrogateescape"`` turns each byte that is not UTF-8 into. Strict UTF-8
#: decoding never yields these code points, so finding one means the record was not UTF-8.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_NOT_UTF8_ERROR = "not UTF-8 text"

_KINDS = {".csv": "CSV", ".tsv": "TSV", ".jsonl": "JSON", ".ndjson": "JSON", ".parquet": "Parquet", ".txt": "text"}


class Record(NamedTuple):
    """One record of a file.

    ``line`` is where it starts (from 1; for Parquet the row number from 1). ``fields`` maps
    column to value; it is None for a blank line and for a record that could not be read, whose
    ``error`` says why.
    """

    line: int
    fields: dict[str, Any] | None
    error: str | None = None

    @property
    def blank(self) -> bool:
        """A blank line: no record at all in CSV/TSV/JSONL (a ``.txt`` blank line is an empty text)."""
        return self.fields is None and self.error is None


@dataclass(frozen=True)
class DataFile:
    """A checked input file: its format and header. :meth:`records` streams it (again on each call)."""

    path: Path
    suffix: str
    #: Column names as written: the CSV/TSV header, the Parquet schema, ``(TEXT,)`` for
    #: ``.txt``; None for JSONL, whose lines name their own; ``()`` for an empty file.
    columns: tuple[str, ...] | None

    @property
    def kind(self) -> str:
        """The format's name for messages: ``CSV``, ``TSV``, ``JSON``, ``Parquet`` or ``text``."""
        return _KINDS[self.suffix]

    def records(self, columns: Collection[str] | None = None) -> Iterator[Record]:
        """Every record in file order; ``fields`` keep only ``columns`` (all when None).

        Raises :class:`DataError` only for what breaks the file itself mid-way (an unreadable
        Parquet page, a disk error).
        """
        if self.columns == ():
            return iter(())
        if self.suffix in (".csv", ".tsv"):
            return _delimited_records(self, columns)
        if self.suffix == ".parquet":
            return _parquet_records(self.path, columns)
        if self.suffix == ".txt":
            return (
                Record(n, None, _NOT_UTF8_ERROR) if line is None else Record(n, {TEXT: line}) for n, line in _lines(self.path)
            )
        return _jsonl_records(self.path, columns)


def open_file(path: str | Path, suffixes: tuple[str, ...] = SUFFIXES) -> DataFile:
    """Check ``path`` (exists, a file, one of ``suffixes``) and read its header."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise DataError(f"{path}: unsupported format '{suffix or '(no suffix)'}' (supported: {', '.join(suffixes)})")
    if path.stat().st_size == 0:
        return DataFile(path, suffix, ())
    if suffix in (".csv", ".tsv"):
        return DataFile(path, suffix, _header(path, suffix))
    if suffix == ".parquet":
        return DataFile(path, suffix, tuple(_parquet_file(path).schema_arrow.names))
    return DataFile(path, suffix, (TEXT,) if suffix == ".txt" else None)


def input_files(path: str | Path, suffixes: tuple[str, ...] = SUFFIXES) -> list[Path]:
    """``[path]`` for a file; for a folder every file below it with one of ``suffixes``, sorted
    by path (other files are ignored, so a folder may hold a README). May be empty."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


# --- text: blocks and lines ---------------------------------------------------------------


class _Blocks:
    """A file's text in blocks of about ``BLOCK`` bytes that end at a ``\\n``, BOM dropped.

    Whole blocks, not lines, so decoding and splitting stay in C. Bytes that are not UTF-8 are
    kept as surrogates (``surrogateescape``) and ``dirty`` turns True from that block on, so
    readers look for them in each record only once there can be any.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dirty = False

    def __iter__(self) -> Iterator[str]:
        pending: list[bytes] = []
        first = True
        try:
            with self.path.open("rb") as handle:
                while data := handle.read(BLOCK):
                    cut = data.rfind(b"\n") + 1
                    if not cut:  # a line longer than a block: keep reading
                        pending.append(data)
                        continue
                    pending.append(data[:cut])
                    block, pending = b"".join(pending), [data[cut:]]
                    yield self._decode(block.removeprefix(BOM) if first else block)
                    first = False
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        if last := b"".join(pending):
            yield self._decode(last.removeprefix(BOM) if first else last)

    def _decode(self, block: bytes) -> str:
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError:
            self.dirty = True
            return block.decode("utf-8", errors="surrogateescape")


def _lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """(line number from 1, line without its ``\\n`` or ``\\r\\n``; None when not UTF-8).

    Splits on ``\\n`` only: ``str.splitlines`` would also split on U+2028 inside a text. A final
    newline ends the last line; it does not start a new one.
    """
    blocks = _Blocks(path)
    number = 0
    for block in blocks:
        lines = block.split("\n")
        if lines[-1] == "":
            lines.pop()
        for line in lines:
            number += 1
            yield number, None if blocks.dirty and _NOT_UTF8.search(line) else line.removesuffix("\r")


# --- CSV and TSV --------------------------------------------------------------------------


def _allow_long_fields() -> None:
    """Lift the csv module's 128 KiB field limit: one long article must not fail a file.

    ``sys.maxsize`` overflows the C long on some platforms (Windows), so halve until it fits.
    """
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def _rows(path: Path, suffix: str) -> tuple[Iterator[tuple[int, list[str]]], _Blocks]:
    """(first line, cells) of each CSV/TSV row, header included; a blank line has no cells."""
    _allow_long_fields()
    blocks = _Blocks(path)
    # A StringIO per block splits lines as open(newline="") would, \r and \r\n included.
    reader = csv.reader(
        itertools.chain.from_iterable(io.StringIO(block, newline="") for block in blocks),
        delimiter="\t" if suffix == ".tsv" else ",",
    )

    def rows() -> Iterator[tuple[int, list[str]]]:
        end = 0
        try:
            for cells in reader:
                start, end = end + 1, reader.line_num
                yield start, cells
        except csv.Error as exc:  # rare once the field limit is lifted; the reader cannot resume
            raise DataError(f"{path}:{reader.line_num}: malformed {_KINDS[suffix]} ({exc})") from None

    return rows(), blocks


def _header(path: Path, suffix: str) -> tuple[str, ...]:
    """The first non-blank row; ``()`` when there is none."""
    rows, blocks = _rows(path, suffix)
    for line, cells in rows:
        if cells:
            if blocks.dirty and any(_NOT_UTF8.search(cell) for cell in cells):
                raise DataError(f"{path}:{line}: the header is not UTF-8 text (save the file as UTF-8)")
            return tuple(cells)
    return ()


def _delimited_records(data: DataFile, columns: Collection[str] | None) -> Iterator[Record]:
    header = data.columns or ()
    wanted = header if columns is None else [name for name in header if name in columns]
    positions = [(name, header.index(name)) for name in dict.fromkeys(wanted)]
    rows, blocks = _rows(data.path, data.suffix)
    for line, cells in rows:  # the header is the first row with cells
        if cells:
            break
    for line, cells in rows:
        if not cells:
            yield Record(line, None)
        elif blocks.dirty and any(_NOT_UTF8.search(cell) for cell in cells):
            yield Record(line, None, _NOT_UTF8_ERROR)
        elif len(cells) > len(header):
            yield Record(line, None, f"{len(cells)} fields, the header has {len(header)}")
        else:  # a short row lacks its last fields: absent, not empty
            yield Record(line, {name: cells[i] for name, i in positions if i < len(cells)})


# --- JSONL --------------------------------------------------------------------------------


def _jsonl_records(path: Path, columns: Collection[str] | None) -> Iterator[Record]:
    """Decoded and parsed line by line, so one bad line costs one record, not the file."""
    for number, line in _lines(path):
        if line is None:
            yield Record(number, None, _NOT_UTF8_ERROR)
            continue
        if not line.strip():
            yield Record(number, None)
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Record(number, None, f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(value, dict):
            yield Record(number, None, "not a JSON object")
            continue
        yield Record(number, value if columns is None else {k: v for k, v in value.items() if k in columns})


# --- Parquet ------------------------------------------------------------------------------


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid, a ValueError
        raise DataError(f"{path}: cannot read parquet ({_first_line(exc)})") from None


def _parquet_records(path: Path, columns: Collection[str] | None) -> Iterator[Record]:
    """Streamed with ``iter_batches``: memory holds one batch, not the table."""
    source = _parquet_file(path)
    names = None if columns is None else [name for name in source.schema_arrow.names if name in columns]
    line = 0
    try:
        for batch in source.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=names):
            for fields in batch.to_pylist():
                line += 1
                yield Record(line, fields)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read parquet after row {line} ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
