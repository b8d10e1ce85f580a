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
from gr00t_rlhf_train.feedback import FeedbackVocabulary


# ---- reading ---------------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(path, None, "required meta file is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(path, None, f"not valid JSON ({e})") from None


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(path, None, "required meta file is missing")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
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
        raise DatasetError(path, field, f"{v!r} has the wrong type (expected {types})")
    return v


def read_vocabulary(path: Path) -> FeedbackVocabulary:
    """The feedback vocabulary of ``meta/rewards.jsonl``; DatasetError naming the file if malformed."""
    try:
        return FeedbackVocabulary.from_rows(read_jsonl(path), str(path))
    except ValueError as e:
        raise DatasetError(path, None, str(e).removeprefix(f"{path}").lstrip(": ")) from None


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
