"""Errors and warnings of the dataset library; each names the file and the field at fault."""
from __future__ import annotations

from pathlib import Path


class DatasetError(Exception):
    """A dataset cannot be read or written as asked: the message names the file and the field."""

    def __init__(self, path: str | Path, field: str | None, message: str):
        self.path = Path(path)
        self.field = field
        self.message = message
        where = f"{self.path}" + (f" [{field}]" if field else "")
        super().__init__(f"{where}: {message}")


class DatasetWriteError(DatasetError, OSError):
    """Writing failed (disk full, permission, I/O error); earlier episodes are untouched."""

    def __init__(self, path: str | Path, field: str | None, message: str, errno: int | None = None):
        DatasetError.__init__(self, path, field, message)
        self.errno = errno


class DatasetQuirkWarning(UserWarning):
    """A known defect of a dataset that the reader works around (reported once per dataset)."""
