"""Typed access to parquet columns: every dtype, null or value problem is a one-line DatasetError.

A column holding strings where numbers belong, nulls, ragged vectors, non-integer labels or
NaN/inf is reported naming the file, the column and (where it applies) the episode and row.
:func:`guard_video` does the same for whatever a damaged video makes the decoder raise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gr00t_rlhf_train.data.errors import DatasetError


def one_line(e: BaseException) -> str:
    """An exception as one line (library messages may span several)."""
    return " ".join(str(e).split()) or type(e).__name__


def _numeric_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _first_null(col: pa.ChunkedArray | pa.Array) -> int:
    return int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])


def vector_column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    """A list<number> (or scalar number) column as a float32 array [N, D].

    Ragged rows, nulls and non-numeric values (e.g. strings) are a DatasetError naming the column.
    """
    if name not in table.column_names:
        raise DatasetError(path, name, f"column is missing (columns: {table.column_names})")
    col = table.column(name).combine_chunks()
    if col.null_count:
        raise DatasetError(path, name, f"{col.null_count} null value(s), first at row {_first_null(col)}")
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        if not _numeric_type(col.type.value_type):
            raise DatasetError(path, name, f"holds {col.type}, expected a list of numbers")
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths.min() != lengths.max()):
            raise DatasetError(path, name, f"rows have between {lengths.min()} and {lengths.max()} values "
                               f"(row {int(np.flatnonzero(lengths != lengths[0])[0])} differs from row 0)")
        flat = pc.list_flatten(col)
        if flat.null_count:
            raise DatasetError(path, name, f"{flat.null_count} null entries inside its lists")
        width = int(lengths[0]) if len(lengths) else 0
        with np.errstate(over="ignore"):  # beyond float32: inf, reported by check_finite
            return flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), width)  # [N, D]
    if not _numeric_type(col.type):
        raise DatasetError(path, name, f"not a numeric column ({col.type})")
    with np.errstate(over="ignore"):
        return col.to_numpy(zero_copy_only=False).astype(np.float32)[:, None]  # [N, 1]


def scalar_column(table: pa.Table, name: str, dtype, default=None, path: Path | None = None) -> np.ndarray | None:
    """A scalar number column as ``dtype`` [N] (``default`` if absent); strings/lists/nulls: DatasetError."""
    if name not in table.column_names:
        return default
    col = table.column(name).combine_chunks()
    if not _numeric_type(col.type):
        raise DatasetError(path or "parquet", name, f"holds {col.type}, expected numbers")
    if col.null_count:
        raise DatasetError(path or "parquet", name, f"{col.null_count} null value(s), first at row {_first_null(col)}")
    with np.errstate(over="ignore", invalid="ignore"):
        return col.to_numpy(zero_copy_only=False).astype(dtype)


def integer_column(table: pa.Table, name: str, path: Path, episode: int | None = None) -> np.ndarray | None:
    """A column of integer labels as int64 [N]; non-integer values are a DatasetError naming the row."""
    x = scalar_column(table, name, np.float64, None, path)
    if x is None:
        return None
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~np.isfinite(x) | (x != np.round(x)) | (np.abs(x) > 2.0**53))
    if len(bad):
        where = f"episode {episode} row {bad[0]}" if episode is not None else f"row {bad[0]}"
        raise DatasetError(path, name, f"{where}: {float(x[bad[0]])!r} is not an integer label "
                           f"({len(bad)} such row(s))")
    return x.astype(np.int64)


def guard_video(path: Path, fn, *args):
    """Call a PyAV-backed ``fn``; whatever a damaged file makes the decoder raise becomes a DatasetError."""
    try:
        return fn(*args)
    except (DatasetError, IndexError, KeyError):
        raise
    except Exception as e:  # noqa: BLE001 - FFmpeg/PyAV fail in many ways on garbage bytes
        raise DatasetError(path, "video", f"undecodable video ({type(e).__name__}: {one_line(e)})") from None


def check_finite(values: np.ndarray, path: Path, name: str, episode: int) -> None:
    """NaN or inf anywhere in ``values`` ([N] or [N, D]) is a DatasetError naming episode, column and row."""
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
        v = values[rows[0]]
        raise DatasetError(path, name, f"episode {episode} row {rows[0]}: {v.tolist() if np.ndim(v) else float(v)} "
                           f"is not finite ({len(rows)} such row(s))")
