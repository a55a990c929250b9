"""File import: CSV and JSON Lines, read as pages of rows.

A row the reader cannot make sense of (bad JSON, wrong number of cells, invalid UTF-8) is
still yielded, as a ``RawRow`` with an error, so it is landed and reported, never dropped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

csv.field_size_limit(10 * 1024 * 1024)


class FileReadError(Exception):
    """The file as a whole cannot be read (missing, unreadable, no header)."""


@dataclass
class RawRow:
    position: int  # CSV row number (header is row 1) or JSON Lines line number
    payload: dict[str, Any]
    error: str = ""


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    raise FileReadError(f"{path.name}: unknown file type {suffix!r} (use .csv or .jsonl)")


def read_rows(path: str | Path) -> Iterator[RawRow]:
    path = Path(path)
    if not path.is_file():
        raise FileReadError(f"{path}: no such file")
    fmt = detect_format(path)
    try:
        handle = path.open(encoding="utf-8-sig", errors="replace", newline="")
    except OSError as exc:
        raise FileReadError(f"{path}: {exc.strerror}") from None
    with handle:
        if fmt == "jsonl":
            yield from _read_jsonl(handle)
        else:
            yield from _read_csv(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")


def _bad_text(values: Any) -> bool:
    return "\ufffd" in json.dumps(values, ensure_ascii=False)


def _read_jsonl(handle) -> Iterator[RawRow]:
    for number, line in enumerate(handle, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RawRow(number, {"_raw": text}, f"invalid JSON ({exc.msg})")
            continue
        if not isinstance(value, dict):
            yield RawRow(number, {"_raw": text}, "expected a JSON object")
            continue
        error = "invalid UTF-8" if _bad_text(value) else ""
        yield RawRow(number, value, error)


def _read_csv(handle, *, delimiter: str) -> Iterator[RawRow]:
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise FileReadError("the file is empty (no header row)") from None
    except csv.Error as exc:
        raise FileReadError(f"the header row cannot be read: {exc}") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise FileReadError("the header row is empty")
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise FileReadError(f"duplicate column names in the header: {', '.join(dupes)}")
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            number = reader.line_num
            yield RawRow(number, {"_raw_line": number}, f"malformed CSV ({exc})")
            continue
        number = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        payload = dict(zip(header, cells, strict=False))
        error = ""
        if len(cells) != len(header):
            payload["_cells"] = cells
            error = f"{len(cells)} cells, the header has {len(header)}"
        elif _bad_text(payload):
            error = "invalid UTF-8"
        yield RawRow(number, payload, error)
