"""Reading datasets into one row table, with normalised labels and languages.

Accepted inputs (files are read by :mod:`sentibridge.data.reading`, as ``predict`` reads them):
- a CSV, TSV, JSONL/NDJSON or Parquet file with columns ``text,label,language`` and optional
  ``id,split`` (column names in any case, padded or not);
- a folder of such files (read as one dataset);
- a TweetEval-style folder ``<language>/{train,val,test}_{text,labels}.txt`` (UMSAB's layout).

Every physical record becomes exactly one row: nothing is dropped here (a blank line of a
CSV/TSV/JSONL file is no record). Rows that break the schema are marked (e.g. an unknown label
becomes ``INVALID_LABEL``) and quarantined by validation, so ``rows_in == rows_valid +
rows_quarantined`` can be checked end to end. A record that cannot be read at all (not UTF-8, a
broken JSON line) fails the file with a one-line ``DataError`` naming its line: training data
is fixed at the source, not labelled around.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from sentibridge.data.reading import TABLE_SUFFIXES, TEXT, DataFile, input_files, open_file
from sentibridge.errors import DataError
from sentibridge.labels import normalise_label
from sentibridge.languages import normalise_language

REQUIRED_COLUMNS = ("text", "label", "language")
TWEETEVAL_SPLITS = ("train", "val", "test")

#: Columns of the ingested table, in order.
ROW_COLUMNS = ["id", "text", "label", "label_raw", "language", "language_raw", "split", "source", "line"]

_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}


def normalise_split(value: object) -> str | None:
    """``"validation"``/``"dev"`` -> ``"val"``; empty -> None (assigned later); unknown stays as written."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    raw = str(value).strip().lower()
    if not raw:
        return None
    return _SPLIT_ALIASES.get(raw, raw)


def read_dataset(path: str | Path) -> pd.DataFrame:
    """Read ``path`` (file or folder) into the ingested row table (``ROW_COLUMNS``).

    Raises ``DataError`` with one clear line for anything that cannot be read.
    """
    path = Path(path)
    if path.is_dir() and _is_tweeteval(path):
        return _finish(_read_tweeteval(path), path)
    files = input_files(path, TABLE_SUFFIXES)
    if not files:
        raise DataError(
            f"{path}: empty folder (no {', '.join(TABLE_SUFFIXES)} files and no "
            "<language>/{train,val,test}_{text,labels}.txt)"
        )
    root = path.parent if path.is_file() else path
    return _finish(pd.concat([_read_table(f) for f in files], ignore_index=True), root)


def read_unlabelled(path: str | Path) -> pd.DataFrame:
    """Read an unlabelled pool (a file or folder of the formats above, with text and language columns).

    Returns ``id, text, language`` with languages normalised and blank texts dropped.
    """
    path = Path(path)
    files = input_files(path, TABLE_SUFFIXES)
    if not files:
        raise DataError(f"{path}: no {', '.join(TABLE_SUFFIXES)} files")
    frame = pd.concat([_read_table(f, ("text", "language")) for f in files], ignore_index=True)
    frame["text"] = frame["text"].map(_text)
    frame = frame[frame["text"].str.strip().ne("")].reset_index(drop=True)
    frame["language"] = frame["language"].map(normalise_language)
    frame["id"] = [f"pool-{i}" for i in range(len(frame))]
    return frame[["id", "text", "language"]]


def _is_tweeteval(folder: Path) -> bool:
    return any(folder.glob("*/*_text.txt"))


def _read_table(path: Path, required: tuple[str, ...] = REQUIRED_COLUMNS) -> pd.DataFrame:
    """One file as ``required`` + ``id, split, source, line`` columns (object dtype, None when absent)."""
    data = open_file(path, TABLE_SUFFIXES)
    if data.columns == ():
        raise DataError(f"{path}: empty file")
    if data.columns is not None:  # a header: check it before reading a row
        _check_columns(path, [_column(c) for c in data.columns], required)
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for record in data.records():
        if record.blank:
            continue
        if record.error is not None:
            raise DataError(f"{path}:{record.line}: broken {data.kind} line ({record.error})")
        records.append({_column(k): v for k, v in record.fields.items()})
        lines.append(record.line)
    if not records:
        raise DataError(f"{path}: empty file (no rows)")
    if data.columns is None:  # JSONL: the lines name the columns
        _check_columns(path, list(dict.fromkeys(k for r in records for k in r)), required)
    names = [*required, "id", "split"]
    out = pd.DataFrame({name: pd.Series([r.get(name) for r in records], dtype=object) for name in names})
    out["source"] = str(path)
    out["line"] = lines
    return out


def _text(value: object) -> str:
    """A text cell as a string: a missing one (None, NaN) is empty, a number is written out."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _column(name: object) -> str:
    return str(name).strip().lower()


def _check_columns(path: Path, found: list[str], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in found]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(found) or 'none'})")


def _text_lines(data: DataFile) -> list[str]:
    """A TweetEval file's lines; a blank line is a record (an empty tweet)."""
    lines = []
    for record in data.records():
        if record.error is not None:
            raise DataError(f"{data.path}:{record.line}: broken {data.kind} line ({record.error})")
        lines.append(record.fields[TEXT])
    return lines


def _read_tweeteval(folder: Path) -> pd.DataFrame:
    parts: list[pd.DataFrame] = []
    for lang_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for split in TWEETEVAL_SPLITS:
            text_file = lang_dir / f"{split}_text.txt"
            label_file = lang_dir / f"{split}_labels.txt"
            if not text_file.exists() and not label_file.exists():
                continue
            if not (text_file.exists() and label_file.exists()):
                present, absent = (text_file, label_file) if text_file.exists() else (label_file, text_file)
                raise DataError(f"{present}: has no partner file {absent.name}")
            texts = _text_lines(open_file(text_file, (".txt",)))
            labels = _text_lines(open_file(label_file, (".txt",)))
            if len(texts) != len(labels):
                raise DataError(
                    f"{text_file}: {len(texts)} lines but {label_file.name} has {len(labels)}; "
                    "text and label files must have the same number of lines"
                )
            if not texts:
                raise DataError(f"{text_file}: empty file")
            parts.append(
                pd.DataFrame(
                    {
                        "text": texts,
                        "label": labels,
                        "language": lang_dir.name,
                        "id": [f"{lang_dir.name}/{split}:{i}" for i in range(1, len(texts) + 1)],
                        "split": split,
                        "source": str(text_file),
                        "line": range(1, len(texts) + 1),
                    }
                )
            )
    if not parts:
        raise DataError(f"{folder}: empty folder (no <language>/<split>_text.txt files)")
    return pd.concat(parts, ignore_index=True)


def _finish(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Normalise labels, languages and splits; give every row an id.

    A generated id is ``<path relative to root>:<line>``, unique across subfolders.
    """
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame()
    missing_id = frame["id"].isna() | (frame["id"].astype(str).str.strip() == "")
    generated = frame["source"].map(lambda s: Path(s).relative_to(root).as_posix()) + ":" + frame["line"].astype(str)
    out["id"] = frame["id"].where(~missing_id, generated).astype(str)
    out["text"] = frame["text"].map(_text)
    out["label"] = frame["label"].map(normalise_label).astype("int64")
    out["label_raw"] = frame["label"].map(lambda v: "" if v is None else str(v))
    out["language"] = frame["language"].map(normalise_language)
    out["language_raw"] = frame["language"].map(lambda v: "" if v is None else str(v))
    out["split"] = frame["split"].map(normalise_split).astype(object)
    out["source"] = frame["source"].astype(str)
    out["line"] = frame["line"].astype("int64")
    return out[ROW_COLUMNS]
