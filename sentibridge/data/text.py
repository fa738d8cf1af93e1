"""Strict UTF-8 text files read as a stream: blocks that end at a newline, and lines.

Ingestion (TweetEval text files) and batch prediction (txt and CSV inputs) read text the same
way: strict UTF-8 (silently replacing bytes would feed the model mojibake), a leading BOM
dropped, and lines split on ``\\n`` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sentibridge.errors import DataError

BOM = b"\xef\xbb\xbf"
#: Bytes read at a time; a block is cut at its last newline, so memory stays bounded.
BLOCK = 1 << 20


def text_lines(path: Path) -> Iterator[str]:
    """A UTF-8 text file's lines, streamed, without their ``\\n`` or ``\\r\\n``.

    Splits on ``\\n`` only: ``str.splitlines`` would also split on U+2028 and friends inside a
    text. A final newline ends the last line; it does not start a new one.
    """
    for block in text_blocks(path):
        lines = block.split("\n")
        if lines[-1] == "":
            lines.pop()
        yield from (line.removesuffix("\r") for line in lines)


def text_blocks(path: Path) -> Iterator[str]:
    """The file as strict UTF-8 text in blocks of about ``BLOCK`` bytes that end at a ``\\n``.

    Strict: silently replacing bytes would feed the model mojibake. Whole blocks, not lines,
    so decoding and splitting stay in C.
    """
    offset, pending = 0, []
    try:
        with path.open("rb") as handle:
            while data := handle.read(BLOCK):
                cut = data.rfind(b"\n") + 1
                if not cut:  # a line longer than a block: keep reading
                    pending.append(data)
                    continue
                pending.append(data[:cut])
                block, pending = b"".join(pending), [data[cut:]]
                yield _decode(path, block, offset)
                offset += len(block)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if last := b"".join(pending):
        yield _decode(path, last, offset)


def _decode(path: Path, block: bytes, offset: int) -> str:
    start = len(BOM) if offset == 0 and block.startswith(BOM) else 0
    try:
        return block[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (bad byte at offset {offset + start + exc.start})") from None
