"""Reading expert data and labelled routing data from .txt, .jsonl and .csv files."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from compllm_graph.errors import CompLLMError
from compllm_graph.types import BASE

_TEXT_FIELDS = ("text", "question")
_BASE_LABELS = ("", BASE, "none", "null")


class DataFileError(CompLLMError, ValueError):
    """A data file is missing, of an unknown type, or lacks the expected fields."""


def read_texts(path: str | os.PathLike[str]) -> list[str]:
    """Texts from `.txt` (one per line), `.jsonl` (`text` or `question`) or `.csv` (`question`).

    Blank texts are skipped.

    Raises:
        DataFileError: unreadable file, unknown extension, or a record without a text field.
    """
    return [text for text, _ in _records(Path(path), label_field=None)]


def read_labelled(path: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """(text, expert) pairs from `.jsonl` or `.csv` with an `expert` field.

    An empty, `base`, `none` or null expert means the text belongs to no expert.

    Raises:
        DataFileError: as `read_texts`, or a record without an `expert` field.
    """
    return list(_records(Path(path), label_field="expert"))


def read_pairs(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(question, answer) pairs from `.jsonl` or `.csv` records with both string fields.

    Records whose question or answer is blank are skipped.

    Raises:
        DataFileError: as `read_texts`, or a record without `question` and `answer` strings.
    """
    path = Path(path)
    if path.suffix.lower() == ".txt":
        raise DataFileError(f"{path}: question-answer data must be .jsonl or .csv")
    pairs = []
    for number, row in enumerate(_rows(path), 1):
        if not has_pair(row):
            raise DataFileError(f"{path}: record {number} needs 'question' and 'answer' strings")
        if row["question"].strip() and row["answer"].strip():
            pairs.append((row["question"].strip(), row["answer"].strip()))
    return pairs


def has_pair(row: Any) -> bool:
    """Whether a record holds a question and its answer (the `answer` training objective)."""
    return isinstance(row, dict) and all(
        isinstance(row.get(k), str) for k in ("question", "answer")
    )


def first_record(path: str | os.PathLike[str]) -> Any:
    """The first record of a `.jsonl` or `.csv` file (None for `.txt` or an empty file).

    Raises:
        DataFileError: as `read_texts`.
    """
    path = Path(path)
    if path.suffix.lower() == ".txt":
        return None
    rows = _rows(path)
    return rows[0] if rows else None


def _records(path: Path, label_field: str | None) -> list[tuple[str, str | None]]:
    if label_field and path.suffix.lower() == ".txt":
        raise DataFileError(f"{path}: labelled data must be .jsonl or .csv with an 'expert' field")
    if path.suffix.lower() == ".txt":
        try:
            return [(line.strip(), None) for line in _read(path).splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataFileError(f"cannot read {path}: {exc}") from exc
    records = [_record(path, number, row, label_field) for number, row in enumerate(_rows(path), 1)]
    return [(text, label) for text, label in records if text]


def _rows(path: Path) -> list[Any]:
    """The records of a `.jsonl` or `.csv` file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows: list[Any] = []
            # JSON strings may hold U+2028 and other breaks that `splitlines` would cut at.
            for number, line in enumerate(_read(path).split("\n"), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except ValueError as exc:
                        raise DataFileError(f"{path}:{number}: not JSON: {exc}") from exc
            return rows
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as handle:
                return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
    raise DataFileError(f"{path}: unknown data file type {suffix!r} (.txt, .jsonl, .csv)")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _record(path: Path, number: int, row: Any, label_field: str | None) -> tuple[str, str | None]:
    """One record's stripped text and label (None: no expert)."""
    fields = [
        key for key in _TEXT_FIELDS if isinstance(row, dict) and isinstance(row.get(key), str)
    ]
    if not fields:
        raise DataFileError(f"{path}: record {number} has no 'text' or 'question' string field")
    text = str(row[fields[0]]).strip()
    if label_field is None:
        return text, None
    if label_field not in row:
        raise DataFileError(f"{path}: record {number} has no {label_field!r} field")
    label = row[label_field]
    if label is None or str(label).strip().lower() in _BASE_LABELS:
        return text, None
    return text, str(label).strip()


__all__ = [
    "DataFileError",
    "first_record",
    "has_pair",
    "read_labelled",
    "read_pairs",
    "read_texts",
]
