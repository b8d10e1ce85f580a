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
import pyarrow.parquet as pq

from gr00t_rlhf_train.data import features as F
from gr00t_rlhf_train.data.columns import (  # noqa: F401 - vector_column is also used by the writer
    check_finite, guard_video, integer_column, one_line, scalar_column, vector_column)
from gr00t_rlhf_train.data.errors import DatasetError
from gr00t_rlhf_train.data.meta import read_json, read_jsonl, read_vocabulary_lenient, require
from gr00t_rlhf_train.data.quirks import QuirkLog
from gr00t_rlhf_train.data.stats import compute_stats, stats_mismatch
from gr00t_rlhf_train.data.video import VideoReader
from gr00t_rlhf_train.feedback import KEY_STYLE, TASK_STYLE, FeedbackColumn, FeedbackVocabulary, resolve_feedback_column

_REQUIRED_COLUMNS = (F.STATE, F.ACTION, F.TIMESTAMP)
# A video that ends more than VIDEO_SHORT_ERROR_S before the episode's last row, or misses more than
# VIDEO_SHORT_ERROR_FRACTION of it, is an error for that episode; a shorter gap (> 1 frame) is a
# warning. The seed datasets miss 0.2-1.2 s (<= 6 %), Reward_Results_with_505_Reward up to 2.9 s
# (17 %): they stay readable, with a warning.
VIDEO_SHORT_ERROR_S = 5.0
VIDEO_SHORT_ERROR_FRACTION = 0.2


_KEYS_AS_STORED = FeedbackColumn(KEY_STYLE, {})  # the column holds keys: no feedback text is a task


@dataclass(frozen=True)
class EpisodeMeta:
    index: int  # episode index
    length: int  # parquet rows
    offset: int  # global row index of the first row
    tasks: tuple  # as listed in episodes.jsonl (texts or task indices)
    data_path: Path
    video_paths: dict[str, Path]


class Episode:
    """One loaded episode: per-modality arrays, texts and the video frame of every row."""

    def __init__(self, dataset: "LeRobotDataset", meta: EpisodeMeta, table: pa.Table):
        self.dataset, self.meta, self.table = dataset, meta, table
        p = meta.data_path
        n = table.num_rows
        self.state = vector_column(table, F.STATE, p)  # [N, Ds]
        self.action = vector_column(table, F.ACTION, p)  # [N, Da]
        if F.TIMESTAMP not in table.column_names:
            raise DatasetError(p, F.TIMESTAMP, f"column is missing (columns: {table.column_names})")
        self.timestamps = scalar_column(table, F.TIMESTAMP, np.float64, None, p)  # [N] as stored (maybe absolute)
        self.reward = scalar_column(table, F.REWARD, np.float32, np.zeros(n, np.float32), p)  # [N]
        for name, values in ((F.STATE, self.state), (F.ACTION, self.action), (F.TIMESTAMP, self.timestamps),
                             (F.REWARD, self.reward)):
            check_finite(values, p, name, meta.index)
        self.times = self.timestamps - self.timestamps[0]  # [N] seconds since the episode start
        if n > 1 and np.any(np.diff(self.times) <= 0):
            r = int(np.flatnonzero(np.diff(self.times) <= 0)[0]) + 1
            raise DatasetError(p, F.TIMESTAMP, f"episode {meta.index} row {r}: timestamps are not strictly increasing")
        self.global_index = meta.offset + np.arange(n)  # [N]
        done = scalar_column(table, F.DONE, bool, None, p)
        self.done = np.zeros(n, bool) if done is None else done.copy()  # [N]
        self.task_indices = None  # [N] or None: tasks.jsonl index of every row's instruction
        for name in (F.TASK_INDEX, F.TASK_DESCRIPTION):  # both hold task indices (GR00T and seed style)
            idx = integer_column(table, name, p, meta.index)
            if idx is not None:
                dataset._check_task_indices(idx, p, name, meta.index)
                self.task_indices = idx
        self.stored_episode_index = integer_column(table, F.EPISODE_INDEX, p, meta.index)  # [N] or None, as stored
        self.feedback_keys = dataset._feedback_keys(table, meta)  # [N] int64 or None
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
        v = self.video(key)
        return guard_video(v.path, v.frame_at, self.times[row])

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
            what = "is not a directory" if self.root.exists() else "does not exist"
            raise DatasetError(self.root, None, f"dataset directory {what}")
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
        if not np.isfinite(self.fps):
            raise DatasetError(info_path, "fps", f"{fps!r} must be finite")
        self.chunks_size = int(require(self.info, "chunks_size", info_path, types=int))
        if self.chunks_size <= 0:
            raise DatasetError(info_path, "chunks_size", f"{self.chunks_size} must be a positive integer")
        self.data_path_template = self._template("data_path", F.DATA_PATH, ("episode_chunk", "episode_index"))
        self.video_path_template = self._template("video_path", F.VIDEO_PATH,
                                                  ("episode_chunk", "video_key", "episode_index"))
        self.robot_type = self.info.get("robot_type")
        feats = require(self.info, "features", info_path, types=dict)
        for k, f in feats.items():
            if not isinstance(f, dict):
                raise DatasetError(info_path, f"features.{k}", f"{f!r} must be an object (dtype, shape, ...)")
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
            tasks = row.get("tasks", [])
            if not isinstance(tasks, list):
                raise DatasetError(ep_path, f"line {n}: tasks", f"{tasks!r} must be a list")
            if length < 0:
                raise DatasetError(ep_path, f"line {n}: length", f"{length} must not be negative")
            self._listed.append((idx, length, tuple(tasks)))
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

        for group in ("state", "action"):
            if not isinstance(self.modality.get(group, {}), dict):
                raise DatasetError(mod_path, group, f"must be an object of name -> {{start, end}}, "
                                   f"got {type(self.modality[group]).__name__}")

        rew_path = r / F.REWARDS
        self.vocabulary = None
        if rew_path.is_file() or rew_path.exists():
            self.vocabulary, problem = read_vocabulary_lenient(rew_path)
            if problem:
                self.quirks.report("rewards-vocabulary", problem)
        else:
            self.quirks.report("no-rewards", f"{rew_path}: missing; no feedback texts")
        self.stats_path = r / F.STATS
        self._feedback: dict[str, tuple] = {}  # column -> (FeedbackColumn or None, error), on first use
        self._rewards_problem_labels: list[int] | None = None

    def _template(self, key: str, default: str, fields: tuple[str, ...]) -> str:
        """A path template of info.json, checked by formatting it once (bad ones name the field)."""
        info_path = self.root / F.INFO
        t = self.info.get(key, default)
        if not isinstance(t, str) or not t:
            raise DatasetError(info_path, key, f"{t!r} must be a non-empty path template like {default!r}")
        try:
            sample = t.format(**{f: (0 if f != "video_key" else "k") for f in fields})
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
            raise DatasetError(info_path, key, f"{t!r} is not a valid template ({type(e).__name__}: {e}); "
                               f"fields: {', '.join(fields)}") from None
        if Path(sample).is_absolute() or ".." in Path(sample).parts:
            raise DatasetError(info_path, key, f"{t!r} must be a path inside the dataset")
        return t

    def _feature(self, key: str) -> dict:
        f = self.info["features"].get(key, {})
        return f if isinstance(f, dict) else {}

    def _load_footers(self) -> None:
        self.episodes: list[EpisodeMeta] = []
        offset = 0
        columns = None
        for idx, listed_len, tasks in self._listed:
            chunk = idx // self.chunks_size
            dp = self.root / self.data_path_template.format(episode_chunk=chunk, episode_index=idx)
            if not dp.is_file():
                what = "is not a regular file" if dp.exists() else "is missing"
                raise DatasetError(dp, "data", f"parquet file of episode {idx} {what}")
            try:
                md = pq.ParquetFile(dp).metadata
                names = tuple(md.schema.to_arrow_schema().names)
            except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as e:
                raise DatasetError(dp, "data", f"unreadable parquet ({one_line(e)})") from None
            if md.num_rows == 0:
                raise DatasetError(dp, "data", "episode has no rows")
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
                    what = "is not a regular file" if vp.exists() else "is missing"
                    raise DatasetError(vp, k, f"video of episode {idx} {what}")
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
            try:
                for p in sorted(d.rglob("*")):
                    if p.is_file() and p not in used:
                        self.quirks.report("extra-files", f"{p.parent}: holds files no episode uses (e.g. {p.name}); "
                                           "ignored")
                        break
            except OSError as e:
                self.quirks.report("unlisted", f"{d}: cannot be listed ({e.strerror or e}); extra files not checked")

    # ---- modality / per-episode checks --------------------------------------------------------
    def _resolve_modality(self, state_width: int, action_width: int, path: Path) -> None:
        mod_path = self.root / F.MODALITY
        slices = {}
        for group, column in (("state", F.STATE), ("action", F.ACTION)):
            for name, spec in (self.modality.get(group) or {}).items():
                start = require(spec, "start", mod_path, f"{group}.{name}.", int)
                end = require(spec, "end", mod_path, f"{group}.{name}.", int)
                if not 0 <= start < end:
                    raise DatasetError(mod_path, f"{group}.{name}", f"start {start} / end {end}: need 0 <= start < end")
                slices[f"{group}.{name}"] = (column, start, end)
        state_end = max((e for c, _, e in slices.values() if c == F.STATE), default=0)
        declared = self._feature(F.STATE).get("shape", [state_width])
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
            stored = integer_column(ep.table, F.INDEX, p, ep.index)
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

    def _check_task_indices(self, idx: np.ndarray, path: Path, name: str, episode: int) -> None:
        bad = np.flatnonzero(~np.isin(idx, np.fromiter(self.tasks, np.int64, len(self.tasks))))
        if len(bad):
            raise DatasetError(path, name, f"episode {episode} row {bad[0]}: task index {idx[bad[0]]} is not in "
                               f"{F.TASKS} (indices {sorted(self.tasks)[:10]})")

    def _feedback_field(self, columns) -> str:
        """The parquet column holding feedback: the vocabulary's key field, else the validity column."""
        voc = self.vocabulary
        field = voc.key_field if voc is not None else F.VALIDITY
        if field not in columns and field == F.SCORE:
            if F.VALIDITY in columns and self._column_style(F.VALIDITY) == TASK_STYLE:
                return F.VALIDITY  # our writer: scores stored as task indices of their texts
            if F.REWARD in columns:
                self.quirks.report("score-key", f"{self.root / F.REWARDS} [{F.SCORE}]: the vocabulary is keyed by "
                                   f"scores but the parquet has no such column; scores are read from {F.REWARD}")
                return F.REWARD
        return field

    def _scan_labels(self, field: str) -> tuple[list[int], dict[int, set[float]]]:
        """The integer values of ``field`` in every readable episode (unreadable ones fail on their own),
        and the ``next.reward`` values seen with each (to tell the two feedback styles apart)."""
        found: dict[int, set[float]] = {}
        for e in self.episodes:
            try:
                cols = [field] + ([F.REWARD] if F.REWARD in self.columns and field != F.REWARD else [])
                t = pq.read_table(e.data_path, columns=cols)
                values = integer_column(t, field, e.data_path)
                rewards = scalar_column(t, F.REWARD, np.float64, None, e.data_path) if len(cols) > 1 else None
            except (DatasetError, pa.ArrowException, OSError, ValueError, TypeError, KeyError):
                continue
            pairs = np.unique(np.stack([values, rewards if rewards is not None else np.zeros(len(values))]), axis=1)
            for v, r in pairs.T:
                found.setdefault(int(v), set())
                if rewards is not None and np.isfinite(r):
                    found[int(v)].add(float(r))
        return sorted(found), found

    def _resolution(self, field: str):
        """(FeedbackColumn or None, error text or None): the dataset-wide reading of a feedback column."""
        if field not in self._feedback and not set(self.tasks.values()) & set(self.vocabulary.texts.values()):
            self._feedback[field] = (_KEYS_AS_STORED, None)  # no feedback text is a task: keys (seed style)
        if field not in self._feedback:
            try:
                labels, rewards = self._scan_labels(field)
                self._feedback[field] = (resolve_feedback_column(labels, self.tasks, self.vocabulary, rewards), None)
            except ValueError as e:
                self._feedback[field] = (None, str(e))
        return self._feedback[field]

    def _column_style(self, field: str) -> str | None:
        """Dataset-wide style of a feedback column (see feedback.resolve_feedback_column); None: mixed."""
        res = self._resolution(field)[0]
        return None if res is None else res.style

    def _extend_vocabulary(self, labels, field: str) -> None:
        """Labels found in the data but not in rewards.jsonl: warn, and add them (text = the label)."""
        voc = self.vocabulary
        texts = dict(voc.texts)
        for k in labels:
            texts[int(k)] = texts.get(int(k), str(k))
        self.quirks.report("feedback-unknown", f"{self.root / F.REWARDS} [{field}]: labels {list(labels)} found in the "
                           f"data are not in the vocabulary {voc.keys}; added with their number as text")
        try:
            self.vocabulary = FeedbackVocabulary(texts, voc.key_field, voc.default)
        except ValueError as e:
            raise DatasetError(self.root / F.REWARDS, field, f"cannot add labels {list(labels)}: {e}") from None

    def _feedback_keys(self, table: pa.Table, meta: EpisodeMeta) -> np.ndarray | None:
        """The feedback key of every row (either storage style), or None if the dataset has none."""
        path = meta.data_path
        if self.vocabulary is None:
            if self._rewards_problem_labels is None and (self.root / F.REWARDS).exists():
                labels = self._scan_labels(F.VALIDITY)[0]
                self._rewards_problem_labels = labels
                if labels:
                    self.vocabulary = FeedbackVocabulary({k: str(k) for k in labels}, F.VALIDITY)
            if self.vocabulary is None:
                return integer_column(table, F.VALIDITY, path, meta.index)
        field = self._feedback_field(table.column_names)
        values = integer_column(table, field, path, meta.index)
        if values is None:
            return None
        res, mixed = self._resolution(field)
        if res is None:
            self.quirks.report("feedback-mixed", f"{self.root / F.REWARDS} [{field}]: {mixed}; resolved per episode")
            try:
                rewards: dict[int, set[float]] = {}
                if field != F.REWARD and F.REWARD in table.column_names:
                    for v, r in zip(values.tolist(), scalar_column(table, F.REWARD, np.float64, None, path).tolist()):
                        rewards.setdefault(v, set()).add(r)
                res = resolve_feedback_column(np.unique(values).tolist(), self.tasks, self.vocabulary, rewards)
            except ValueError as e:
                raise DatasetError(path, field, f"episode {meta.index}: {e}") from None
        if res.note:
            self.quirks.report("feedback-ambiguous", f"{self.root / F.REWARDS} [{field}]: {res.note}")
        if res is _KEYS_AS_STORED:
            unknown = sorted(set(np.unique(values).tolist()) - set(self.vocabulary.texts))
            if unknown:
                self._extend_vocabulary(unknown, field)
            return values
        uniq, inverse = np.unique(values, return_inverse=True)
        missing = [int(v) for v in uniq if int(v) not in res.keys]
        if missing:
            raise DatasetError(path, field, f"episode {meta.index}: values {missing} are neither feedback keys "
                               f"{self.vocabulary.keys} nor task indices of feedback texts")
        keys = np.array([res.keys[int(v)] for v in uniq], np.int64)[inverse]  # [N]
        unknown = sorted(set(keys.tolist()) - set(self.vocabulary.texts))
        if unknown:
            self._extend_vocabulary(unknown, field)
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
            except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as e:
                raise DatasetError(meta.data_path, "data", f"unreadable parquet ({one_line(e)})") from None
            if table.num_rows != meta.length:
                raise DatasetError(meta.data_path, "data", f"episode {i}: has {table.num_rows} rows, its footer said "
                                   f"{meta.length} (file changed while open?)")
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
            v = guard_video(meta.video_paths[key], VideoReader, meta.video_paths[key])
            try:
                self._check_video(meta, key, v)
            except DatasetError:
                v.close()
                raise
            self._videos[k] = v
            while len(self._videos) > self._video_cache:
                self._videos.popitem(last=False)[1].close()
        else:
            self._videos.move_to_end(k)
        return v

    def _check_video(self, meta: EpisodeMeta, key: str, v: VideoReader) -> None:
        feat = self._feature(key)
        vinfo = feat.get("video_info", {})
        said = vinfo.get("video.codec") if isinstance(vinfo, dict) else None
        if said is not None and said != v.codec:
            self.quirks.report("video-codec", f"{v.path} [{key}]: info.json says codec {said!r}, the file is {v.codec!r}")
        shape = feat.get("shape")
        if isinstance(shape, list) and shape and list(shape[:2]) != list(v.size):
            self.quirks.report("video-size", f"{v.path} [{key}]: info.json says {shape[0]}x{shape[1]} (HxW), "
                               f"the video is {v.size[0]}x{v.size[1]}")
        ep = self.episode(meta.index)
        duration = ep.times[-1] + 1.0 / self.fps  # the episode as its rows cover it
        covered = v.frame_times[-1] + 1.0 / self.fps
        short = duration - covered
        if short > VIDEO_SHORT_ERROR_S or short > VIDEO_SHORT_ERROR_FRACTION * duration:
            raise DatasetError(v.path, key, f"episode {meta.index}: the video covers {covered:.2f}s of the episode's "
                               f"{duration:.2f}s ({short:.2f}s, {100 * short / duration:.0f}% missing; at most "
                               f"{VIDEO_SHORT_ERROR_S:g}s and {100 * VIDEO_SHORT_ERROR_FRACTION:g}% may be missing)")
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
        """meta/stats.json if it matches the data, else statistics computed from the data (and a warning)."""
        computed = self.compute_stats()
        if not self.stats_path.exists():
            self.quirks.report("stats", f"{self.stats_path}: missing; recomputed from the data")
            return computed
        stored = read_json(self.stats_path)
        problems = stats_mismatch(stored, computed, (F.STATE, F.ACTION, F.REWARD))
        if problems:
            self.quirks.report("stats", f"{self.stats_path}: does not match the data ({'; '.join(problems)}); "
                               "recomputed from the data")
            return computed
        return stored

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
