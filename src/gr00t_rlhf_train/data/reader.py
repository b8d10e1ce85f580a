"""Read-only access to a LeRobot v2.0 (GR00T flavour) dataset: episodes, arrays, frames, texts.

``LeRobotDataset(root)`` loads the meta files and every parquet footer at once (cheap; a missing
or truncated file fails here, naming it), and episodes and videos lazily. Rows are aligned to
video frames by time *within* the episode: row r shows the latest frame at or before
``timestamp[r] - timestamp[0]`` (parquet rows may be ~50 Hz while the video is 10 fps, and
timestamps may be absolute, continuing across episodes). The known defects of the seed datasets
are worked around and each kind is reported once (see :mod:`gr00t_rlhf_train.data.quirks`).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gr00t_rlhf_train.data import features as F
from gr00t_rlhf_train.data.errors import DatasetError
from gr00t_rlhf_train.data.meta import read_vocabulary, read_json, read_jsonl, require
from gr00t_rlhf_train.data.quirks import QuirkLog
from gr00t_rlhf_train.data.stats import compute_stats
from gr00t_rlhf_train.data.video import VideoReader

_REQUIRED_COLUMNS = (F.STATE, F.ACTION, F.TIMESTAMP)


@dataclass(frozen=True)
class EpisodeMeta:
    index: int  # episode index
    length: int  # parquet rows
    offset: int  # global row index of the first row
    tasks: tuple  # as listed in episodes.jsonl (texts or task indices)
    data_path: Path
    video_paths: dict[str, Path]


def vector_column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    """A list<float> (or scalar) column as a float32 array [N, D]; ragged rows are an error."""
    if name not in table.column_names:
        raise DatasetError(path, name, f"column is missing (columns: {table.column_names})")
    col = table.column(name).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths.min() != lengths.max()):
            raise DatasetError(path, name, f"rows have between {lengths.min()} and {lengths.max()} values")
        width = int(lengths[0]) if len(lengths) else 0
        flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32)
        return flat.reshape(len(col), width)  # [N, D]
    try:
        return col.to_numpy(zero_copy_only=False).astype(np.float32)[:, None]  # [N, 1]
    except (pa.ArrowException, TypeError, ValueError) as e:
        raise DatasetError(path, name, f"not a numeric column ({col.type}): {e}") from None


def scalar_column(table: pa.Table, name: str, dtype, default=None) -> np.ndarray | None:
    if name not in table.column_names:
        return default
    return table.column(name).to_numpy().astype(dtype)


class Episode:
    """One loaded episode: per-modality arrays, texts and the video frame of every row."""

    def __init__(self, dataset: "LeRobotDataset", meta: EpisodeMeta, table: pa.Table):
        self.dataset, self.meta, self.table = dataset, meta, table
        p = meta.data_path
        n = table.num_rows
        self.state = vector_column(table, F.STATE, p)  # [N, Ds]
        self.action = vector_column(table, F.ACTION, p)  # [N, Da]
        ts = table.column(F.TIMESTAMP) if F.TIMESTAMP in table.column_names else None
        if ts is None:
            raise DatasetError(p, F.TIMESTAMP, f"column is missing (columns: {table.column_names})")
        self.timestamps = ts.to_numpy().astype(np.float64)  # [N] as stored (maybe absolute)
        self.times = self.timestamps - self.timestamps[0]  # [N] seconds since the episode start
        if n > 1 and np.any(np.diff(self.times) <= 0):
            raise DatasetError(p, F.TIMESTAMP, "timestamps are not strictly increasing")
        self.global_index = meta.offset + np.arange(n)  # [N]
        done = scalar_column(table, F.DONE, bool)
        self.done = np.zeros(n, bool) if done is None else done.copy()  # [N]
        self.reward = scalar_column(table, F.REWARD, np.float32, np.zeros(n, np.float32))  # [N]
        self.task_indices = scalar_column(table, F.TASK_DESCRIPTION, np.int64,
                                          scalar_column(table, F.TASK_INDEX, np.int64))  # [N] or None
        self.feedback_keys = dataset._feedback_keys(table, p)  # [N] int64 or None
        dataset._check_episode(self)

    def __len__(self) -> int:
        return self.meta.length

    @property
    def index(self) -> int:
        return self.meta.index

    def modality(self, key: str) -> np.ndarray:
        """A GR00T modality key (e.g. ``state.acceleration``) as [N, D] (video keys: use frames)."""
        if key == F.REWARD:
            return self.reward[:, None]
        if key == F.DONE:
            return self.done[:, None]
        try:
            column, start, end = self.dataset.modality_slices[key]
        except KeyError:
            raise KeyError(f"{self.dataset.root}: no modality {key!r} (known: {sorted(self.dataset.modality_slices)})") from None
        return (self.state if column == F.STATE else self.action)[:, start:end]

    @property
    def task_texts(self) -> list[str | None]:
        """The language annotation of every row (tasks.jsonl text)."""
        if self.task_indices is None:
            return [None] * len(self)
        return [self.dataset.tasks.get(int(i)) for i in self.task_indices]

    @property
    def feedback_texts(self) -> list[str | None]:
        """The feedback text of every row (rewards.jsonl text for the row's feedback key)."""
        voc = self.dataset.vocabulary
        if voc is None or self.feedback_keys is None:
            return [None] * len(self)
        return [voc.text(k) for k in self.feedback_keys]

    def video(self, key: str = F.EGO_VIEW) -> VideoReader:
        return self.dataset._video(self.meta, key)

    def frame_index(self, row: int, key: str = F.EGO_VIEW) -> int:
        return self.video(key).index_at(self.times[row])

    def frame(self, row: int, key: str = F.EGO_VIEW) -> np.ndarray:
        """The video frame shown at row ``row``: uint8 [H, W, 3] RGB."""
        return self.video(key).frame_at(self.times[row])

    def row(self, row: int, with_video: bool = True) -> dict[str, Any]:
        """One row as a LeRobot-style sample dict."""
        out = {
            F.STATE: self.state[row], F.ACTION: self.action[row], F.TIMESTAMP: float(self.times[row]),
            F.EPISODE_INDEX: self.index, F.INDEX: int(self.global_index[row]),
            F.REWARD: float(self.reward[row]), F.DONE: bool(self.done[row]),
            "task": self.task_texts[row], "feedback": self.feedback_texts[row],
        }
        if self.feedback_keys is not None:
            out[F.VALIDITY] = int(self.feedback_keys[row])
        if with_video:
            for key in self.dataset.video_keys:
                out[key] = self.frame(row, key)
        return out


class LeRobotDataset:
    """A LeRobot v2.0 (GR00T flavour) dataset opened read-only."""

    def __init__(self, root: str | Path, warn: bool = True, episode_cache: int = 256, video_cache: int = 4):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(self.root, None, "dataset directory does not exist")
        self.quirks = QuirkLog(str(self.root), emit=warn)
        self._episodes: OrderedDict[int, Episode] = OrderedDict()
        self._videos: OrderedDict[tuple[int, str], VideoReader] = OrderedDict()
        self._episode_cache, self._video_cache = episode_cache, video_cache
        self._load_meta()
        self._load_footers()
        self._check_layout()
        self.modality_slices: dict[str, tuple[str, int, int]] = {}
        self._state_width: int | None = None

    # ---- meta --------------------------------------------------------------------------------
    def _load_meta(self) -> None:
        r = self.root
        info_path = r / F.INFO
        self.info = read_json(info_path)
        if not isinstance(self.info, dict):
            raise DatasetError(info_path, None, "expected a JSON object")
        fps = require(self.info, "fps", info_path, types=(int, float))
        if fps <= 0:
            raise DatasetError(info_path, "fps", f"{fps!r} must be positive")
        self.fps = float(fps)
        self.chunks_size = int(require(self.info, "chunks_size", info_path, types=int))
        self.data_path_template = self.info.get("data_path", F.DATA_PATH)
        self.video_path_template = self.info.get("video_path", F.VIDEO_PATH)
        self.robot_type = self.info.get("robot_type")
        feats = require(self.info, "features", info_path, types=dict)
        self.video_keys = [k for k, f in feats.items() if isinstance(f, dict) and
                           (f.get("dtype") == "video" or k.startswith("observation.images."))]
        for k in self.video_keys:
            if feats[k].get("dtype") != "video":
                self.quirks.report("video-dtype", f"{info_path} [features.{k}.dtype]: {feats[k].get('dtype')!r} "
                                   "for a video feature (expected 'video'); read as video")

        ep_path = r / F.EPISODES
        rows = read_jsonl(ep_path)
        if not rows:
            raise DatasetError(ep_path, None, "no episodes listed")
        self._listed = []
        for n, row in enumerate(rows, 1):
            idx = require(row, "episode_index", ep_path, f"line {n}: ", int)
            length = require(row, "length", ep_path, f"line {n}: ", int)
            self._listed.append((idx, length, tuple(row.get("tasks", ()))))
        idxs = [i for i, _, _ in self._listed]
        if idxs != list(range(len(idxs))):
            raise DatasetError(ep_path, "episode_index", "episodes must be listed as 0, 1, 2, ... in order")

        task_path = r / F.TASKS
        self.tasks: dict[int, str] = {}
        for n, row in enumerate(read_jsonl(task_path), 1):
            self.tasks[require(row, "task_index", task_path, f"line {n}: ", int)] = str(
                require(row, "task", task_path, f"line {n}: ", str))

        mod_path = r / F.MODALITY
        self.modality = read_json(mod_path)
        if not isinstance(self.modality, dict):
            raise DatasetError(mod_path, None, "expected a JSON object")
        if "next" not in self.modality:
            self.quirks.report("modality-next", f"{mod_path} [next]: missing; next.reward and next.done are read from "
                               "the parquet columns")

        rew_path = r / F.REWARDS
        self.vocabulary = None
        if rew_path.is_file():
            self.vocabulary = read_vocabulary(rew_path)
        else:
            self.quirks.report("no-rewards", f"{rew_path}: missing; no feedback texts")
        self.stats_path = r / F.STATS

    def _load_footers(self) -> None:
        self.episodes: list[EpisodeMeta] = []
        offset = 0
        columns = None
        for idx, listed_len, tasks in self._listed:
            chunk = idx // self.chunks_size
            dp = self.root / self.data_path_template.format(episode_chunk=chunk, episode_index=idx)
            if not dp.is_file():
                raise DatasetError(dp, "data", f"parquet file of episode {idx} is missing")
            try:
                md = pq.ParquetFile(dp).metadata
            except (pa.ArrowException, OSError) as e:
                raise DatasetError(dp, "data", f"unreadable parquet ({e})") from None
            if md.num_rows == 0:
                raise DatasetError(dp, "data", "episode has no rows")
            names = tuple(md.schema.to_arrow_schema().names)
            if columns is None:
                columns = names
                for c in _REQUIRED_COLUMNS:
                    if c not in names:
                        raise DatasetError(dp, c, f"column is missing (columns: {list(names)})")
            elif set(names) != set(columns):
                raise DatasetError(dp, "columns", f"columns {sorted(names)} differ from episode 0's {sorted(columns)}")
            if md.num_rows != listed_len:
                self.quirks.report("episode-length", f"{self.root / F.EPISODES} [length]: episode {idx} lists "
                                   f"{listed_len} rows, the parquet has {md.num_rows}; using the parquet")
            vps = {k: self.root / self.video_path_template.format(episode_chunk=chunk, video_key=k, episode_index=idx)
                   for k in self.video_keys}
            for k, vp in vps.items():
                if not vp.is_file():
                    raise DatasetError(vp, k, f"video of episode {idx} is missing")
            self.episodes.append(EpisodeMeta(idx, md.num_rows, offset, tasks, dp, vps))
            offset += md.num_rows
        self.columns = columns
        self.num_frames = offset
        self._offsets = np.cumsum([0] + [e.length for e in self.episodes])  # [E + 1]
        # the info.json features vs. the parquet columns
        info_path = self.root / F.INFO
        declared = {k for k in self.info["features"] if k not in self.video_keys}
        if declared != set(columns):
            self.quirks.report("info-features", f"{info_path} [features]: declares {sorted(declared - set(columns))} "
                               f"not in the parquet, and lacks {sorted(set(columns) - declared)}; using the parquet")
        for key, actual in (("total_episodes", len(self.episodes)), ("total_frames", self.num_frames),
                            ("total_tasks", len(self.tasks))):
            if self.info.get(key) != actual:
                self.quirks.report(f"info-{key}", f"{info_path} [{key}]: says {self.info.get(key)!r}, actually {actual}")

    def _check_layout(self) -> None:
        """Files under data/ and videos/ that no episode uses (e.g. a 'backup' dir) are ignored."""
        used = {e.data_path for e in self.episodes} | {p for e in self.episodes for p in e.video_paths.values()}
        for top in ("data", "videos"):
            d = self.root / top
            if not d.is_dir():
                continue
            for p in sorted(d.rglob("*")):
                if p.is_file() and p not in used:
                    self.quirks.report("extra-files", f"{p.parent}: holds files no episode uses (e.g. {p.name}); ignored")
                    break

    # ---- modality / per-episode checks --------------------------------------------------------
    def _resolve_modality(self, state_width: int, action_width: int, path: Path) -> None:
        mod_path = self.root / F.MODALITY
        slices = {}
        for group, column in (("state", F.STATE), ("action", F.ACTION)):
            for name, spec in (self.modality.get(group) or {}).items():
                start = require(spec, "start", mod_path, f"{group}.{name}.", int)
                end = require(spec, "end", mod_path, f"{group}.{name}.", int)
                slices[f"{group}.{name}"] = (column, start, end)
        state_end = max((e for c, _, e in slices.values() if c == F.STATE), default=0)
        declared = self.info["features"].get(F.STATE, {}).get("shape", [state_width])
        if state_end != state_width or declared != [state_width]:
            if state_width == len(F.STATE_NAMES):
                self.quirks.report("state-width", f"{path} [{F.STATE}]: has {state_width} values while info.json says "
                                   f"{declared} and modality.json covers {state_end}; read as {list(F.STATE_NAMES)}")
                slices = {k: v for k, v in slices.items() if v[0] != F.STATE}
                slices.update(F.MODALITY_STATE)
            else:
                raise DatasetError(path, F.STATE, f"has {state_width} values per row, but info.json says {declared}, "
                                   f"modality.json covers {state_end} and the robot has {len(F.STATE_NAMES)}")
        action_end = max((e for c, _, e in slices.values() if c == F.ACTION), default=action_width)
        if action_end > action_width:
            raise DatasetError(path, F.ACTION, f"has {action_width} values per row, but modality.json reads up to {action_end}")
        if not any(c == F.ACTION for c, _, _ in slices.values()):
            slices.update(F.MODALITY_ACTION)
        self.modality_slices = slices
        self._state_width, self._action_width = state_width, action_width

    def _check_episode(self, ep: Episode) -> None:
        p = ep.meta.data_path
        if self._state_width is None:
            self._resolve_modality(ep.state.shape[1], ep.action.shape[1], p)
        if ep.state.shape[1] != self._state_width:
            raise DatasetError(p, F.STATE, f"has {ep.state.shape[1]} values per row, other episodes {self._state_width}")
        if ep.action.shape[1] != self._action_width:
            raise DatasetError(p, F.ACTION, f"has {ep.action.shape[1]} values per row, other episodes {self._action_width}")
        if ep.timestamps[0] > 1.5 / self.fps:
            self.quirks.report("absolute-time", f"{p} [{F.TIMESTAMP}]: starts at {ep.timestamps[0]:.2f}s (absolute time "
                               "continuing across episodes); aligned within the episode")
        dt = np.diff(ep.timestamps)
        if len(dt) and np.median(dt) < 0.75 / self.fps:
            self.quirks.report("row-rate", f"{p} [{F.TIMESTAMP}]: rows every {np.median(dt):.3f}s while the video is "
                               f"{self.fps:g} fps; each row gets the latest frame at or before it")
        if F.INDEX in ep.table.column_names:
            stored = ep.table.column(F.INDEX).to_numpy()
            if not np.array_equal(stored, ep.global_index):
                self.quirks.report("index", f"{p} [{F.INDEX}]: not the global row index (episode {ep.index} starts at "
                                   f"{stored[0]}, expected {ep.global_index[0]}); recomputed")
        if not ep.done[-1] or ep.done[:-1].any():
            self.quirks.report("done", f"{p} [{F.DONE}]: not true exactly on the last row; derived from the episode end")
            ep.done[:] = False
            ep.done[-1] = True
        rtype = ep.table.schema.field(F.REWARD).type if F.REWARD in ep.table.column_names else None
        if rtype is not None and not pa.types.is_floating(rtype):
            self.quirks.report("reward-dtype", f"{p} [{F.REWARD}]: stored as {rtype}; read as float32")

    def _feedback_keys(self, table: pa.Table, path: Path) -> np.ndarray | None:
        voc = self.vocabulary
        field = voc.key_field if voc is not None else F.VALIDITY
        if field not in table.column_names and field == F.SCORE and F.REWARD in table.column_names:
            self.quirks.report("score-key", f"{self.root / F.REWARDS} [{F.SCORE}]: the vocabulary is keyed by scores but "
                               f"the parquet has no such column; scores are read from {F.REWARD}")
            field = F.REWARD
        keys = scalar_column(table, field, np.int64)
        if keys is not None and voc is not None:
            unknown = sorted(set(np.unique(keys).tolist()) - set(voc.texts))
            if unknown:
                raise DatasetError(path, field, f"feedback keys {unknown} are not in rewards.jsonl {sorted(voc.texts)}")
        return keys

    # ---- episodes and rows --------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    def __len__(self) -> int:
        return self.num_frames

    def episode(self, i: int) -> Episode:
        if not 0 <= i < len(self.episodes):
            raise IndexError(f"{self.root}: episode {i} out of range 0..{len(self.episodes) - 1}")
        ep = self._episodes.get(i)
        if ep is None:
            meta = self.episodes[i]
            try:
                table = pq.read_table(meta.data_path)
            except (pa.ArrowException, OSError) as e:
                raise DatasetError(meta.data_path, "data", f"unreadable parquet ({e})") from None
            ep = Episode(self, meta, table)
            self._episodes[i] = ep
            while len(self._episodes) > self._episode_cache:
                self._episodes.popitem(last=False)
        else:
            self._episodes.move_to_end(i)
        return ep

    def locate(self, index: int) -> tuple[int, int]:
        """Global row index -> (episode index, row within the episode)."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"{self.root}: row {index} out of range 0..{self.num_frames - 1}")
        e = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return e, index - int(self._offsets[e])

    def __getitem__(self, index: int) -> dict[str, Any]:
        e, r = self.locate(index)
        return self.episode(e).row(r)

    def frame(self, index: int, key: str = F.EGO_VIEW) -> np.ndarray:
        e, r = self.locate(index)
        return self.episode(e).frame(r, key)

    def _video(self, meta: EpisodeMeta, key: str) -> VideoReader:
        k = (meta.index, key)
        v = self._videos.get(k)
        if v is None:
            if key not in meta.video_paths:
                raise KeyError(f"{self.root}: no video key {key!r} (known: {self.video_keys})")
            v = VideoReader(meta.video_paths[key])
            self._check_video(meta, key, v)
            self._videos[k] = v
            while len(self._videos) > self._video_cache:
                self._videos.popitem(last=False)[1].close()
        else:
            self._videos.move_to_end(k)
        return v

    def _check_video(self, meta: EpisodeMeta, key: str, v: VideoReader) -> None:
        feat = self.info["features"].get(key, {})
        vinfo = feat.get("video_info", {})
        said = vinfo.get("video.codec")
        if said is not None and said != v.codec:
            self.quirks.report("video-codec", f"{v.path} [{key}]: info.json says codec {said!r}, the file is {v.codec!r}")
        shape = feat.get("shape")
        if shape and list(shape[:2]) != list(v.size):
            self.quirks.report("video-size", f"{v.path} [{key}]: info.json says {shape[0]}x{shape[1]} (HxW), "
                               f"the video is {v.size[0]}x{v.size[1]}")
        ep = self.episode(meta.index)
        short = ep.times[-1] - (v.frame_times[-1] + 1.0 / self.fps)
        if short > 1.0 / self.fps:
            self.quirks.report("video-short", f"{v.path} [{key}]: the video ends {short:.2f}s before the last parquet row; "
                               "the last rows reuse the last frame")

    # ---- whole-dataset views ------------------------------------------------------------------
    def load_all(self) -> list[Episode]:
        return [self.episode(i) for i in range(self.num_episodes)]

    def compute_stats(self) -> dict[str, dict[str, list[float]]]:
        """Statistics of the numeric columns computed from the data (not meta/stats.json)."""
        eps = self.load_all()
        cols = {F.STATE: np.concatenate([e.state for e in eps]), F.ACTION: np.concatenate([e.action for e in eps]),
                F.TIMESTAMP: np.concatenate([e.times for e in eps]), F.REWARD: np.concatenate([e.reward for e in eps])}
        if all(e.feedback_keys is not None for e in eps):
            cols[F.VALIDITY] = np.concatenate([e.feedback_keys for e in eps])
        return compute_stats(cols)

    @cached_property
    def stats(self) -> dict[str, dict[str, list[float]]]:
        """meta/stats.json if it matches the data, else statistics computed from the data."""
        if self.stats_path.is_file():
            stored = read_json(self.stats_path)
            ep0 = self.episode(0)
            widths = {F.STATE: ep0.state.shape[1], F.ACTION: ep0.action.shape[1]}
            if all(isinstance(stored.get(k), dict) and len(stored[k].get("mean", [])) == w for k, w in widths.items()):
                return stored
            self.quirks.report("stats", f"{self.stats_path} [{F.STATE}]: does not match the data widths {widths}; "
                               "recomputed from the data")
        else:
            self.quirks.report("stats", f"{self.stats_path}: missing; recomputed from the data")
        return self.compute_stats()

    def close(self) -> None:
        for v in self._videos.values():
            v.close()
        self._videos.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"LeRobotDataset({str(self.root)!r}, episodes={self.num_episodes}, frames={self.num_frames}, fps={self.fps:g})"
