"""The on-disk format of an episode being recorded, and its finalisation and crash recovery.

While recording, episode ``k`` lives in ``<root>/.staging/episode_<k>/``:

* ``rows.arrows``  - Arrow IPC stream, one record batch per frame, flushed to the OS at once:
  after a SIGKILL every complete batch is still readable;
* ``video.mp4``    - fragmented MP4 written by :class:`VideoEncoder` (readable up to the last
  complete fragment); at commit it is replaced (atomically) by its remux into an ordinary MP4;
* ``episode.parquet`` + ``commit.json`` - written by the writer's ``_finalize``; ``commit.json``
  (atomic) marks the episode as complete: from then on the commit is rolled forward after a crash.

An episode interrupted mid-recording is recovered (:func:`recoverable_rows`, :func:`trim_video`):
it keeps the frames present in both the row log and the video (minus the last video packet of a
fragmented file, which may be torn), remuxes the video to exactly those frames (no re-encoding,
an ordinary MP4 like every committed video) and finalises.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gr00t_rlhf_train.data import features as F
from gr00t_rlhf_train.data.errors import DatasetError, DatasetWriteError
from gr00t_rlhf_train.data.meta import write_json_atomic
from gr00t_rlhf_train.data.video import quantize_times, remux

ROWS = "rows.arrows"
VIDEO = "video.mp4"
PARQUET = "episode.parquet"
COMMIT = "commit.json"

ROW_SCHEMA = pa.schema([
    ("timestamp", pa.float64()),  # as given by the caller (seconds, any origin)
    ("state", pa.list_(pa.float32(), 3)),
    ("action", pa.list_(pa.float32(), 2)),
    ("feedback", pa.int64()),
    ("task", pa.string()),
])


def staging_dir(root: Path, episode_index: int) -> Path:
    return root / F.STAGING_DIR / f"episode_{episode_index:06d}"


class RowLog:
    """Append-only log of the raw rows of the episode being recorded (Arrow IPC stream)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._file = open(path, "wb")
            self._writer = pa.ipc.new_stream(self._file, ROW_SCHEMA)
        except OSError as e:
            raise DatasetWriteError(path, None, f"cannot create ({e.strerror or e})", e.errno) from e

    def append(self, timestamp: float, state, action, feedback: int, task: str) -> None:
        batch = pa.record_batch([
            pa.array([timestamp], pa.float64()),
            pa.array([state], ROW_SCHEMA.field("state").type),
            pa.array([action], ROW_SCHEMA.field("action").type),
            pa.array([feedback], pa.int64()),
            pa.array([task], pa.string()),
        ], schema=ROW_SCHEMA)
        self._writer.write_batch(batch)
        self._file.flush()  # to the OS: survives a SIGKILL of this process

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            try:
                self._writer.close()
            finally:
                self._file.close()


def read_rows(path: Path) -> pa.Table:
    """Every complete row of a (possibly torn) row log."""
    batches = []
    try:
        with open(path, "rb") as f:
            reader = pa.ipc.open_stream(f)
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
    except (pa.ArrowInvalid, OSError):
        pass  # torn tail (or no complete schema): keep what was read
    return pa.Table.from_batches(batches, ROW_SCHEMA)


def relative_times(ts: np.ndarray) -> np.ndarray:
    """float32 seconds since the first row, on the video's time grid: equal to each frame's pts."""
    return quantize_times(ts - ts[0])  # [N], as the writer computed each frame's pts


def episode_table(rows: pa.Table, episode_index: int, offset: int, task_index: dict[str, int],
                  rewards: np.ndarray, feedback_index: np.ndarray) -> pa.Table:
    """The final parquet table of one episode from its raw rows.

    ``feedback_index`` [N]: the tasks.jsonl index of each row's feedback text (GR00T convention).
    """
    n = rows.num_rows
    ts = rows.column("timestamp").to_numpy()
    task_idx = np.array([task_index[t] for t in rows.column("task").to_pylist()], np.int64)  # [N]
    done = np.zeros(n, bool)
    done[-1] = True
    return pa.table({
        F.STATE: rows.column("state").cast(pa.list_(pa.float32())),
        F.ACTION: rows.column("action").cast(pa.list_(pa.float32())),
        F.TIMESTAMP: pa.array(relative_times(ts)),  # seconds since the episode start
        F.TASK_DESCRIPTION: pa.array(task_idx),
        F.TASK_INDEX: pa.array(task_idx),
        F.VALIDITY: pa.array(np.asarray(feedback_index, np.int64)),
        F.EPISODE_INDEX: pa.array(np.full(n, episode_index, np.int64)),
        F.INDEX: pa.array(offset + np.arange(n, dtype=np.int64)),
        F.REWARD: pa.array(rewards.astype(np.float32)),
        F.DONE: pa.array(done),
    })


def write_parquet_durable(table: pa.Table, path: Path) -> None:
    try:
        pq.write_table(table, path)
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    except OSError as e:
        raise DatasetWriteError(path, None, f"cannot write parquet ({e.strerror or e})", e.errno) from e


def mark_committed(stage: Path, record: dict) -> None:
    write_json_atomic(stage / COMMIT, record)


def read_commit(stage: Path) -> dict | None:
    p = stage / COMMIT
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def usable_video_frames(path: Path) -> int:
    """Frames of a possibly torn staged video that certainly decode.

    A fragmented file may end in a torn packet: its last packet is dropped. An ordinary MP4 (the
    commit's remux, renamed into place atomically) is complete: all its packets count.
    """
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            complete = s.frames > 0  # only a finished, non-fragmented MP4 has a sample table
            packets = 0
            try:
                for p in c.demux(s):
                    if p.size:
                        packets += 1
            except av.error.FFmpegError:
                pass
    except (av.error.FFmpegError, IndexError, OSError):
        return 0
    return packets if complete else max(packets - 1, 0)


def trim_video(src: Path, dst: Path, frames: int) -> None:
    """Copy the first ``frames`` packets of ``src`` into an ordinary MP4 ``dst`` (no re-encoding), then verify."""
    remux(src, dst, frames)
    with av.open(str(dst)) as c:
        got = sum(1 for _ in c.decode(video=0))
    if got != frames:
        raise DatasetError(dst, "video", f"recovered video decodes {got} frames, expected {frames}")


def recoverable_rows(stage: Path) -> tuple[pa.Table, int, str]:
    """(rows, frames to keep, reason if none) of an interrupted staged episode."""
    rows = read_rows(stage / ROWS) if (stage / ROWS).is_file() else pa.Table.from_batches([], ROW_SCHEMA)
    if rows.num_rows == 0:
        return rows, 0, "no complete row was logged"
    if not (stage / VIDEO).is_file():
        return rows, 0, "no video file"
    frames = usable_video_frames(stage / VIDEO)
    if frames == 0:
        return rows, 0, "the video has no complete frame"
    return rows, min(rows.num_rows, frames), ""


def remove(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)
