"""Reading datasets into one row table, with normalised labels and languages.

Accepted inputs:
- a CSV, JSONL or Parquet file with columns ``text,label,language`` and optional ``id,split``;
- a folder of such files (read as one dataset);
- a TweetEval-style folder ``<language>/{train,val,test}_{text,labels}.txt`` (UMSAB's layout).

Every physical record becomes exactly one row: nothing is dropped here. Rows that break the
schema are marked (e.g. an unknown label becomes ``INVALID_LABEL``) and quarantined by
validation, so ``rows_in == rows_valid + rows_quarantined`` can be checked end to end.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from sentibridge.data.text import text_lines
from sentibridge.errors import DataError
from sentibridge.labels import normalise_label
from sentibridge.languages import normalise_language

REQUIRED_COLUMNS = ("text", "label", "language")
TABULAR_SUFFIXES = (".csv", ".jsonl", ".parquet")
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
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        return _finish(_read_tabular(path), path.parent)
    if _is_tweeteval(path):
        return _finish(_read_tweeteval(path), path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TABULAR_SUFFIXES)
    if not files:
        raise DataError(
            f"{path}: empty folder (no {', '.join(TABULAR_SUFFIXES)} files and no "
            "<language>/{train,val,test}_{text,labels}.txt)"
        )
    return _finish(pd.concat([_read_tabular(f) for f in files], ignore_index=True), path)


def read_unlabelled(path: str | Path) -> pd.DataFrame:
    """Read an unlabelled pool (CSV/JSONL/Parquet file or folder with text and language columns).

    Returns ``id, text, language`` with languages normalised and blank texts dropped.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in TABULAR_SUFFIXES)
    if not files:
        raise DataError(f"{path}: no {', '.join(TABULAR_SUFFIXES)} files")
    frame = pd.concat([_read_tabular(f, ("text", "language")) for f in files], ignore_index=True)
    frame["text"] = frame["text"].astype(str)
    frame = frame[frame["text"].str.strip().ne("")].reset_index(drop=True)
    frame["language"] = frame["language"].map(normalise_language)
    frame["id"] = [f"pool-{i}" for i in range(len(frame))]
    return frame[["id", "text", "language"]]


def _is_tweeteval(folder: Path) -> bool:
    return any(folder.glob("*/*_text.txt"))


def _read_tabular(path: Path, required: tuple[str, ...] = REQUIRED_COLUMNS) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in TABULAR_SUFFIXES:
        raise DataError(f"{path}: unknown format '{suffix or path.name}' (expected {', '.join(TABULAR_SUFFIXES)})")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    try:
        if suffix == ".csv":
            frame, lines = _read_csv(path)
        elif suffix == ".jsonl":
            frame, lines = _read_jsonl(path)
        else:
            frame = pd.read_parquet(path)
            lines = list(range(1, len(frame) + 1))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot decode as UTF-8 (byte {exc.start}: {exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid, a ValueError
        raise DataError(f"{path}: cannot read {suffix[1:]} ({str(exc).strip().splitlines()[0]})") from None
    if frame.empty:
        raise DataError(f"{path}: empty file (no rows)")
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(frame.columns) or 'none'})"
        )
    out = pd.DataFrame({c: frame[c] for c in required})
    out["id"] = frame["id"].astype(str) if "id" in frame.columns else None
    out["split"] = frame["split"] if "split" in frame.columns else None
    out["source"] = str(path)
    out["line"] = lines
    return out


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """CSV with physical line numbers: pandas cannot say where a quoted multi-line record starts."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty file")
        records, lines = [], []
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row:  # a blank line is no record
                continue
            if len(row) > len(header):
                raise DataError(f"{path}:{start}: malformed CSV ({len(row)} fields, header has {len(header)})")
            records.append(dict(zip(header, row + [""] * (len(header) - len(row)))))
            lines.append(start)
    return pd.DataFrame.from_records(records, columns=header), lines


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    records: list[dict] = []
    lines: list[int] = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: broken JSON line ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
            lines.append(number)
    if not records:
        raise DataError(f"{path}: empty file (no JSON lines)")
    return pd.DataFrame.from_records(records), lines


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
            texts, labels = list(text_lines(text_file)), list(text_lines(label_file))
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
    out["text"] = frame["text"].map(lambda t: "" if t is None or (isinstance(t, float) and pd.isna(t)) else str(t))
    out["label"] = frame["label"].map(normalise_label).astype("int64")
    out["label_raw"] = frame["label"].map(lambda v: "" if v is None else str(v))
    out["language"] = frame["language"].map(normalise_language)
    out["language_raw"] = frame["language"].map(lambda v: "" if v is None else str(v))
    out["split"] = frame["split"].map(normalise_split).astype(object)
    out["source"] = frame["source"].astype(str)
    out["line"] = frame["line"].astype("int64")
    return out[ROW_COLUMNS]
