"""The files under ``meta/``: typed loading with errors naming file and field, atomic writing.

Atomic write = write a temporary file next to the target, flush + fsync it, ``os.replace`` it
over the target, fsync the directory. A reader (or a process killed at any moment) sees either
the old or the new file, never a torn one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from gr00t_rlhf_train.data.errors import DatasetError, DatasetWriteError
from gr00t_rlhf_train.feedback import SCORE_KEY, VALIDITY_KEY, FeedbackVocabulary


# ---- reading ---------------------------------------------------------------------------------
def read_text(path: Path) -> str:
    """The UTF-8 text of a meta file; missing, not a file, unreadable or not UTF-8: DatasetError."""
    if not path.exists():
        raise DatasetError(path, None, "required meta file is missing")
    if not path.is_file():
        raise DatasetError(path, None, "is not a regular file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(path, None, f"not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DatasetError(path, None, f"cannot read ({e.strerror or e})") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except (ValueError, RecursionError) as e:  # json.JSONDecodeError is a ValueError
        raise DatasetError(path, None, f"not valid JSON ({e})") from None


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise DatasetError(path, f"line {n}", f"not valid JSON ({e})") from None
        if not isinstance(row, dict):
            raise DatasetError(path, f"line {n}", "expected a JSON object")
        rows.append(row)
    return rows


def require(d: dict, key: str, path: Path, where: str = "", types=None) -> Any:
    field = f"{where}{key}"
    if not isinstance(d, dict) or key not in d:
        raise DatasetError(path, field, "missing field")
    v = d[key]
    if types is not None and (not isinstance(v, types) or isinstance(v, bool)):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise DatasetError(path, field, f"{v!r} is a {type(v).__name__}, expected {names}")
    return v


def read_vocabulary(path: Path) -> FeedbackVocabulary:
    """The feedback vocabulary of ``meta/rewards.jsonl``; DatasetError naming the file if malformed."""
    try:
        return FeedbackVocabulary.from_rows(read_jsonl(path), str(path))
    except ValueError as e:
        raise DatasetError(path, None, str(e).removeprefix(f"{path}").lstrip(": ")) from None


def read_vocabulary_lenient(path: Path) -> tuple[FeedbackVocabulary | None, str | None]:
    """(vocabulary, problem) of a rewards.jsonl that may use an unknown key (real case: ``...validity1``).

    A file that is not JSON lines, a label that is not an integer, or two keys with one text are a
    DatasetError. A row keyed by an unknown field (``{"annotation.human.validity1": 0, "feedback":
    ...}``) is read with its single integer field as the key, and ``problem`` says so; a file
    that cannot be read that way gives (None, problem): the labels are then taken from the data.
    """
    rows = read_jsonl(path)
    try:
        return FeedbackVocabulary.from_rows(rows, str(path)), None
    except ValueError as e:
        strict_error = str(e).removeprefix(f"{path}").lstrip(": ")
    texts: dict[int, str] = {}
    fields: set[str] = set()
    for n, row in enumerate(rows, 1):
        others = {k: v for k, v in row.items() if k != "feedback"}
        if not isinstance(row.get("feedback"), str) or len(others) != 1:
            return None, f"{path}: {strict_error}; the feedback labels are taken from the data, without texts"
        (field, key), = others.items()
        if not isinstance(key, int) or isinstance(key, bool):
            raise DatasetError(path, f"line {n}: {field}", f"{key!r} is not an integer feedback label")
        fields.add(field)
        texts[key] = row["feedback"]
    if not texts:
        return None, f"{path}: {strict_error}; the feedback labels are taken from the data, without texts"
    key_field = SCORE_KEY if any("score" in f for f in fields) else VALIDITY_KEY
    try:
        voc = FeedbackVocabulary(texts, key_field)
    except ValueError as e:
        raise DatasetError(path, None, str(e)) from None
    return voc, (f"{path} [{', '.join(sorted(fields))}]: unknown key (expected {VALIDITY_KEY!r} or {SCORE_KEY!r}); "
                 f"read as {key_field!r}")


# ---- writing ---------------------------------------------------------------------------------
def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (temp file + fsync + os.replace + dir fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except OSError as e:
        raise DatasetWriteError(path, None, f"cannot write ({e.strerror or e})", e.errno) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=4) + "\n")


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
