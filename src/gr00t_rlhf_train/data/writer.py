"""Streaming, crash-safe writer of LeRobot v2.0 (GR00T flavour) datasets.

    writer = DatasetWriter.create(root, fps=10, image_size=(240, 320),
                                  vocabulary={0: "Doing bad", 1: "Doing good"})
    ep = writer.start_episode("Find Blue cube")
    ep.add_frame(image, state, action, timestamp, validity)   # encoded/logged at once
    index = ep.commit()                                       # or ep.discard()

Crash safety (details in docs/datasets.md): an episode is recorded into
``<root>/.staging/episode_<k>/`` (row log + fragmented MP4, bounded memory), and committed by
writing its parquet + ``commit.json`` there, moving parquet and video into place and then
rewriting the meta files atomically (``episodes.jsonl`` is the commit point). A process killed at
any moment leaves every earlier episode intact and the dataset loadable. ``DatasetWriter.resume``
rolls a staged episode with ``commit.json`` forward, and *recovers* an interrupted one (keeps the
frames present in both the row log and the video; nothing usable: discards it).

Videos: staged as fragmented MP4 (crash-safe), committed as an ordinary MP4 (``moov`` first, exact
frame count) by a packet-copy remux; keyframe every ``gop_frames`` frames (default 1) and frame pts
equal to the row's float32 ``timestamp`` (see :mod:`video`), so loaders that seek by time (Isaac-GR00T,
LeRobot) get exactly the row's frame.

Feedback, the GR00T way: ``annotation.human.validity`` holds an index into ``tasks.jsonl`` whose
text is the feedback text of the frame's key (each text becomes a task the first time it is used,
like instructions); ``next.reward`` = ``vocabulary.reward(key)`` (binary {0, 1}: the key; scores:
key / max|key|, so -5..5 -> -1..1); the vocabulary stays in ``rewards.jsonl``. ``episodes.jsonl``
lists the instruction(s) of an episode only. Statistics of ``annotation.human.validity`` in
``stats.json`` are those of the stored column (task indices), like ``task_index``.
"""
from __future__ import annotations

import errno as errno_mod
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gr00t_rlhf_train.data import features as F
from gr00t_rlhf_train.data import staging as S
from gr00t_rlhf_train.data.errors import DatasetError, DatasetWriteError
from gr00t_rlhf_train.feedback import TASK_STYLE, FeedbackVocabulary, resolve_feedback_column
from gr00t_rlhf_train.data.meta import (read_vocabulary, fsync_dir, read_json, read_jsonl, write_json_atomic,
                                        write_jsonl_atomic)
from gr00t_rlhf_train.data.stats import compute_stats
from gr00t_rlhf_train.data.video import (DEFAULT_GOP_FRAMES, TIME_BASE, VideoEncoder, check_gop_frames, quantize_time,
                                         remux)


def _info(fps: float, image_size: tuple[int, int], robot_type: str, chunks_size: int) -> dict:
    h, w = image_size
    scalar = lambda dtype: {"dtype": dtype, "shape": [1]}  # noqa: E731
    return {
        "codebase_version": F.CODEBASE_VERSION, "robot_type": robot_type,
        "total_episodes": 0, "total_frames": 0, "total_tasks": 0, "total_videos": 0, "total_chunks": 0,
        "chunks_size": chunks_size, "fps": float(fps), "splits": {},
        "data_path": F.DATA_PATH, "video_path": F.VIDEO_PATH,
        "features": {
            F.EGO_VIEW: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channel"],
                         "video_info": {"video.fps": float(fps), "video.codec": "h264", "video.pix_fmt": "yuv420p",
                                        "video.is_depth_map": False, "has_audio": False}},
            F.STATE: {"dtype": "float32", "shape": [len(F.STATE_NAMES)], "names": list(F.STATE_NAMES)},
            F.ACTION: {"dtype": "float32", "shape": [len(F.ACTION_NAMES)], "names": list(F.ACTION_NAMES)},
            F.TIMESTAMP: scalar("float32"), F.TASK_DESCRIPTION: scalar("int64"), F.TASK_INDEX: scalar("int64"),
            F.VALIDITY: scalar("int64"), F.EPISODE_INDEX: scalar("int64"), F.INDEX: scalar("int64"),
            F.REWARD: scalar("float32"), F.DONE: scalar("bool"),
        },
    }


def _modality() -> dict:
    return {
        "state": {k.split(".", 1)[1]: {"start": s, "end": e, "dtype": "float32"} for k, (_, s, e) in F.MODALITY_STATE.items()},
        "action": {k.split(".", 1)[1]: {"start": s, "end": e, "absolute": True, "dtype": "float32"}
                   for k, (_, s, e) in F.MODALITY_ACTION.items()},
        "video": {k.split(".", 1)[1]: {"original_key": v} for k, v in F.MODALITY_VIDEO.items()},
        "annotation": {k.split(".", 1)[1]: {} for k in F.MODALITY_ANNOTATION},
        "next": {"reward": {"start": 0, "end": 1, "dtype": "float32"}, "done": {"start": 0, "end": 1, "dtype": "bool"}},
    }


@dataclass
class ResumeReport:
    """What :meth:`DatasetWriter.resume` found in ``.staging``."""

    rolled_forward: list[int] = field(default_factory=list)  # commits finished after a crash
    recovered: dict[int, int] = field(default_factory=dict)  # episode -> frames kept
    discarded: dict[str, str] = field(default_factory=dict)  # staging dir -> why


class DatasetWriter:
    """Appends episodes to a dataset; one episode is recorded at a time."""

    def __init__(self, root: Path, info: dict, episodes: list[dict], tasks: list[str], vocabulary: FeedbackVocabulary,
                 columns: dict[str, list[np.ndarray]], crf: int, preset: str, low_latency: bool = True,
                 gop_frames: int = DEFAULT_GOP_FRAMES):
        self.root, self.info, self.episodes, self.tasks = root, info, episodes, tasks
        self.vocabulary, self._columns, self.crf, self.preset = vocabulary, columns, crf, preset
        self.low_latency = low_latency  # see VideoEncoder: True live, False for offline conversion
        self.gop_frames = gop_frames  # keyframe interval of the videos written from now on
        self.fps = float(info["fps"])
        self.image_size = tuple(info["features"][F.EGO_VIEW]["shape"][:2])
        self.chunks_size = int(info["chunks_size"])
        self.current: EpisodeWriter | None = None
        self.resume_report = ResumeReport()

    # ---- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, fps: float, image_size: tuple[int, int], vocabulary: dict[int, str] | FeedbackVocabulary,
               robot_type: str = "two_wheel", chunks_size: int = 1000, crf: int = 20, preset: str = "ultrafast", low_latency: bool = True,
               gop_frames: int = DEFAULT_GOP_FRAMES) -> "DatasetWriter":
        """A new, empty dataset at ``root`` (which must not exist or be empty).

        ``gop_frames``: keyframe interval of the videos in frames (1 = every frame, exact for loaders
        that seek by time; see docs/datasets.md for the size cost of each value).
        """
        root = Path(root)
        check_gop_frames(gop_frames, "DatasetWriter.create: gop_frames")
        if root.exists() and any(root.iterdir()):
            raise DatasetError(root, None, "exists and is not empty; use DatasetWriter.resume() to append")
        if not (isinstance(fps, (int, float)) and fps > 0):
            raise ValueError(f"DatasetWriter.create: fps={fps!r} must be a positive number")
        if len(image_size) != 2 or any(int(s) <= 0 or int(s) % 2 for s in image_size):
            raise ValueError(f"DatasetWriter.create: image_size={image_size!r} must be (height, width), positive and even")
        if not isinstance(chunks_size, int) or chunks_size < 1:
            raise ValueError(f"DatasetWriter.create: chunks_size={chunks_size!r} must be a positive integer")
        voc = FeedbackVocabulary.of(vocabulary)
        try:
            (root / F.META_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatasetWriteError(root, None, f"cannot create ({e.strerror or e})", e.errno) from e
        w = cls(root, _info(fps, (int(image_size[0]), int(image_size[1])), robot_type, chunks_size), [], [], voc,
                {k: [] for k in F.STATS_KEYS}, crf, preset, low_latency, gop_frames)
        write_json_atomic(root / F.MODALITY, _modality())
        write_jsonl_atomic(root / F.REWARDS, voc.to_jsonl_rows())
        w._write_meta()
        return w

    @classmethod
    def resume(cls, root: str | Path, crf: int = 20, preset: str = "ultrafast",
               low_latency: bool = True, gop_frames: int = DEFAULT_GOP_FRAMES) -> "DatasetWriter":
        """Open an existing dataset for appending; finish or recover what a crash left in .staging.

        Refused (DatasetError naming the parquet) if the dataset stores feedback keys in
        ``annotation.human.validity`` (the seed datasets' style, or this writer before it wrote
        task indices): appending would mix two meanings of the column.
        """
        from gr00t_rlhf_train.data.reader import LeRobotDataset  # the reader validates what exists

        check_gop_frames(gop_frames, "DatasetWriter.resume: gop_frames")
        root = Path(root)
        info = read_json(root / F.INFO)
        episodes = read_jsonl(root / F.EPISODES) if (root / F.EPISODES).is_file() else []
        rows = sorted(read_jsonl(root / F.TASKS), key=lambda r: r["task_index"]) if (root / F.TASKS).is_file() else []
        tasks = [r["task"] for r in rows]
        voc = read_vocabulary(root / F.REWARDS)
        columns = {k: [] for k in F.STATS_KEYS}
        if episodes:
            ds = LeRobotDataset(root, warn=False)
            paths = [meta.data_path for meta in ds.episodes]
            for path in paths:
                for k, v in record_columns(path).items():
                    columns[k].append(v)
            _check_task_style(columns[F.VALIDITY], paths, dict(enumerate(tasks)), voc)
        w = cls(root, info, episodes, tasks, voc, columns, crf, preset, low_latency, gop_frames)
        w._settle_staging()
        w._write_meta()
        return w

    # ---- recording ---------------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return sum(e["length"] for e in self.episodes)

    def start_episode(self, task: str) -> "EpisodeWriter":
        if self.current is not None:
            raise RuntimeError(f"{self.root}: episode {self.current.index} is still open; commit() or discard() it first")
        if not isinstance(task, str) or not task:
            raise ValueError(f"start_episode: task={task!r} must be a non-empty string")
        self._settle_staging()  # finish a commit whose meta update failed earlier (e.g. disk full)
        self.current = EpisodeWriter(self, self.num_episodes, task)
        return self.current

    def close(self) -> None:
        """Discard an episode left open (a normal shutdown commits or discards explicitly)."""
        if self.current is not None:
            self.current.discard()

    # ---- committing --------------------------------------------------------------------------
    def _commit_staged(self, stage: Path, record: dict) -> int:
        """Move a finalised staged episode into place and update the meta files (idempotent)."""
        idx = record["episode"]["episode_index"]
        chunk = idx // self.chunks_size
        data = self.root / F.DATA_PATH.format(episode_chunk=chunk, episode_index=idx)
        video = self.root / F.VIDEO_PATH.format(episode_chunk=chunk, video_key=F.EGO_VIEW, episode_index=idx)
        for src, dst in ((stage / S.VIDEO, video), (stage / S.PARQUET, data)):
            if src.is_file():
                try:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
                    fsync_dir(dst.parent)
                except OSError as e:
                    raise DatasetWriteError(dst, None, f"cannot move episode {idx} into place ({e.strerror or e})", e.errno) from e
            elif not dst.is_file():
                raise DatasetError(stage, None, f"committed episode {idx} has neither {src.name} nor {dst}")
        before = (list(self.tasks), len(self.episodes), {k: len(v) for k, v in self._columns.items()})
        self.tasks = list(record["tasks"])
        if len(self.episodes) == idx:
            self.episodes.append(record["episode"])
            for k, v in record_columns(data).items():
                self._columns[k].append(v)
        try:
            self._write_meta()
        except BaseException:  # keep memory equal to disk; the stage (commit.json) stays for a retry
            self.tasks, n, lens = before
            del self.episodes[n:]
            for k, v in self._columns.items():
                del v[lens[k]:]
            raise
        S.remove(stage)
        return idx

    def _write_meta(self) -> None:
        info = self.info
        info["total_episodes"] = len(self.episodes)
        info["total_frames"] = self.num_frames
        info["total_tasks"] = len(self.tasks)
        info["total_videos"] = len(self.episodes)
        info["total_chunks"] = (len(self.episodes) + self.chunks_size - 1) // self.chunks_size
        info["splits"] = {"train": f"0:{len(self.episodes)}"} if self.episodes else {}
        write_jsonl_atomic(self.root / F.TASKS, [{"task_index": i, "task": t} for i, t in enumerate(self.tasks)])
        cols = {k: np.concatenate(v) for k, v in self._columns.items() if v}
        write_json_atomic(self.root / F.STATS, compute_stats(cols) if cols else {})
        write_jsonl_atomic(self.root / F.EPISODES, self.episodes)  # the commit point
        write_json_atomic(self.root / F.INFO, info)

    # ---- resume ------------------------------------------------------------------------------
    def _settle_staging(self) -> None:
        base = self.root / F.STAGING_DIR
        if not base.is_dir():
            return
        for stage in sorted(p for p in base.iterdir() if p.is_dir()):
            record = S.read_commit(stage)
            try:
                idx = int(stage.name.split("_")[-1])
            except ValueError:
                self.resume_report.discarded[stage.name] = "not a staged episode"
                S.remove(stage)
                continue
            if idx < len(self.episodes):  # crash after the commit point: only cleanup was missing
                S.remove(stage)
                continue
            if idx != len(self.episodes):
                self.resume_report.discarded[stage.name] = f"episode {idx} does not follow the last one ({len(self.episodes) - 1})"
                S.remove(stage)
                continue
            if record is not None:
                self._commit_staged(stage, record)
                self.resume_report.rolled_forward.append(idx)
                continue
            rows, keep, why = S.recoverable_rows(stage)
            if not keep:
                self.resume_report.discarded[stage.name] = why
                S.remove(stage)
                continue
            trimmed = stage / "video.trimmed.mp4"
            try:
                S.trim_video(stage / S.VIDEO, trimmed, keep)
            except Exception as e:  # noqa: BLE001 - whatever fails, the partial episode is discarded
                self.resume_report.discarded[stage.name] = f"the video cannot be recovered ({e})"
                S.remove(stage)
                continue
            os.replace(trimmed, stage / S.VIDEO)
            self._finalize(stage, idx, rows.slice(0, keep))
            self.resume_report.recovered[idx] = keep

    def _finalize(self, stage: Path, idx: int, rows) -> int:
        """Write the parquet + commit.json of a staged episode (its video already remuxed), then commit it.

        Instructions and feedback texts become tasks in the order they are first used (row by row:
        the instruction, then the feedback text).
        """
        tasks = list(self.tasks)
        keys = [int(k) for k in rows.column("feedback").to_pylist()]
        for t, k in zip(rows.column("task").to_pylist(), keys):
            for text in (t, self.vocabulary.text(k)):
                if text is None:
                    raise DatasetError(stage / S.ROWS, "feedback", f"key {k} is not in the feedback vocabulary "
                                       f"{self.vocabulary.keys}")
                if text not in tasks:
                    tasks.append(text)
        task_index = {t: i for i, t in enumerate(tasks)}
        rewards = np.array([self.vocabulary.reward(k) for k in keys], np.float32)
        feedback_index = np.array([task_index[self.vocabulary.text(k)] for k in keys], np.int64)  # [N]
        table = S.episode_table(rows, idx, self.num_frames, task_index, rewards, feedback_index)
        S.write_parquet_durable(table, stage / S.PARQUET)
        ep_tasks = list(dict.fromkeys(rows.column("task").to_pylist()))
        record = {"episode": {"episode_index": idx, "tasks": ep_tasks, "length": table.num_rows}, "tasks": tasks}
        S.mark_committed(stage, record)
        return self._commit_staged(stage, record)


def _check_task_style(columns: list[np.ndarray], paths: list[Path], tasks: dict[int, str],
                      voc: FeedbackVocabulary) -> None:
    """Refuse to append unless annotation.human.validity holds task indices (the reader's rule)."""
    if len(columns) != len(paths):
        raise DatasetError(paths[0].parent, F.VALIDITY, "missing in some episodes; cannot append to this dataset")
    try:
        style = resolve_feedback_column(np.unique(np.concatenate(columns)).tolist(), tasks, voc).style
    except ValueError as e:
        style, why = None, str(e)
    if style == TASK_STYLE:
        return
    feedback_tasks = {i for i, t in tasks.items() if t in set(voc.texts.values())}
    path, bad = next((p, sorted(set(np.unique(c).tolist()) - feedback_tasks)) for p, c in zip(paths, columns)
                     if set(np.unique(c).tolist()) - feedback_tasks)
    raise DatasetError(path, F.VALIDITY, f"values {bad[:5]} are not indices of feedback texts in tasks.jsonl "
                       f"({'feedback keys, the seed style' if style else why}); this writer stores task indices "
                       "and cannot append to such a dataset: write a new one")


def record_columns(parquet: Path) -> dict[str, np.ndarray]:
    """The stats columns of one committed episode parquet, as stored."""
    import pyarrow.parquet as pq

    from gr00t_rlhf_train.data.reader import vector_column

    t = pq.read_table(parquet)
    out = {F.STATE: vector_column(t, F.STATE, parquet), F.ACTION: vector_column(t, F.ACTION, parquet),
           F.TIMESTAMP: t.column(F.TIMESTAMP).to_numpy().astype(np.float64), F.REWARD: t.column(F.REWARD).to_numpy()}
    for key in (F.VALIDITY, F.TASK_INDEX):
        if key in t.column_names:
            out[key] = t.column(key).to_numpy()
    return out


class EpisodeWriter:
    """One episode being recorded: frames are encoded and logged as they come."""

    def __init__(self, writer: DatasetWriter, index: int, task: str):
        self.writer, self.index, self.task = writer, index, task
        self.stage = S.staging_dir(writer.root, index)
        self.frames = 0
        self._t0: float | None = None
        self._last_t: float | None = None
        self._closed = False
        if self.stage.exists():  # leftover of a discarded/failed attempt at the same index
            S.remove(self.stage)
        try:
            self.stage.mkdir(parents=True)
        except OSError as e:
            raise DatasetWriteError(self.stage, None, f"cannot create ({e.strerror or e})", e.errno) from e
        write_json_atomic(self.stage / "episode.json", {"episode_index": index, "task": task, "started": time.time()})
        self._rows = S.RowLog(self.stage / S.ROWS)
        self._video = VideoEncoder(self.stage / S.VIDEO, writer.fps, writer.image_size, crf=writer.crf, preset=writer.preset,
                                  gop_frames=writer.gop_frames, low_latency=writer.low_latency)
        self._last_rel: float | None = None  # time of the last frame since the first, on the video's time grid

    def __len__(self) -> int:
        return self.frames

    def add_frame(self, image: np.ndarray, state, action, timestamp: float, validity: int, task: str | None = None) -> None:
        """Append one frame. ``image`` uint8 [H, W, 3] RGB; ``state`` [3]; ``action`` [2]; ``timestamp`` seconds."""
        self._check_open()
        h, w = self.writer.image_size
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != (h, w, 3):
            got = f"{image.dtype} {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"add_frame: image must be uint8 [{h}, {w}, 3] RGB, got {got}")
        state = np.asarray(state, np.float32).reshape(-1)  # [3]
        action = np.asarray(action, np.float32).reshape(-1)  # [2]
        if state.shape != (len(F.STATE_NAMES),):
            raise ValueError(f"add_frame: state must have {len(F.STATE_NAMES)} values {list(F.STATE_NAMES)}, got {state.shape[0]}")
        if action.shape != (len(F.ACTION_NAMES),):
            raise ValueError(f"add_frame: action must have {len(F.ACTION_NAMES)} values {list(F.ACTION_NAMES)}, got {action.shape[0]}")
        if not (np.all(np.isfinite(state)) and np.all(np.isfinite(action))):
            raise ValueError(f"add_frame: state {state.tolist()} / action {action.tolist()} must be finite")
        validity = int(validity)
        if validity not in self.writer.vocabulary.texts:
            raise ValueError(f"add_frame: validity={validity} is not a key of the feedback vocabulary {sorted(self.writer.vocabulary.texts)}")
        timestamp = float(timestamp)
        if not np.isfinite(timestamp):
            raise ValueError(f"add_frame: timestamp {timestamp} must be finite")
        if self._last_t is not None and not timestamp > self._last_t:
            raise ValueError(f"add_frame: timestamp {timestamp} is not after the previous frame's {self._last_t}")
        rel = quantize_time(timestamp - (timestamp if self._t0 is None else self._t0))  # = the parquet timestamp
        if self._last_rel is not None and not rel > self._last_rel:
            raise ValueError(f"add_frame: timestamp {timestamp} is less than one video time step "
                             f"({float(TIME_BASE):.6f} s) after the previous frame's {self._last_t}")
        if self._t0 is None:
            self._t0 = timestamp
        try:
            self._video.add(image, rel)
            self._rows.append(timestamp, state.tolist(), action.tolist(), validity, task or self.task)
        except DatasetWriteError as e:
            self._fail(e)
        except OSError as e:
            self._fail(DatasetWriteError(self._rows.path, "rows", f"cannot write ({e.strerror or e})", e.errno))
        self._last_t, self._last_rel = timestamp, rel
        self.frames += 1

    def commit(self) -> int:
        """Finish the episode and add it to the dataset; returns its episode index."""
        self._check_open()
        if self.frames == 0:
            raise DatasetError(self.stage, None, "cannot commit an episode without frames; discard() it")
        try:
            self._video.close()
            self._rows.close()
            rows = S.read_rows(self.stage / S.ROWS)
            if rows.num_rows != self.frames:
                raise DatasetError(self.stage / S.ROWS, "rows", f"holds {rows.num_rows} rows, {self.frames} were added")
            remux(self.stage / S.VIDEO, self.stage / S.VIDEO, self.frames)  # fragmented -> ordinary MP4, atomically
            idx = self.writer._finalize(self.stage, self.index, rows)
        except OSError as e:
            err = e if isinstance(e, DatasetWriteError) else DatasetWriteError(
                self.stage, None, f"cannot commit ({e.strerror or e})", e.errno)
            if (self.stage / S.COMMIT).is_file():  # complete on disk: keep it, roll forward later
                self._closed = True
                self.writer.current = None
                raise DatasetWriteError(err.path, err.field, f"episode {self.index} is complete in {self.stage} but the "
                                        f"meta update failed ({err.message}); the next start_episode() or "
                                        "DatasetWriter.resume() finishes the commit", err.errno) from e
            self._fail(err)
        self._closed = True
        self.writer.current = None
        return idx

    def discard(self) -> None:
        """Drop this episode (nothing of it stays on disk)."""
        if self._closed:
            return
        self._video.abort()
        try:
            self._rows.close()
        except OSError:
            pass
        S.remove(self.stage)
        self._closed = True
        self.writer.current = None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.stage}: episode {self.index} is already committed, discarded or failed")

    def _fail(self, err: DatasetWriteError):
        """A write failed (e.g. disk full): stop the episode, free its space, report the path."""
        self.discard()
        if err.errno == errno_mod.ENOSPC:
            raise DatasetWriteError(err.path, err.field, f"disk full, episode {self.index} stopped and discarded; "
                                    f"earlier episodes are intact ({err.message})", err.errno) from err
        raise DatasetWriteError(err.path, err.field, f"episode {self.index} stopped and discarded ({err.message})", err.errno) from err
