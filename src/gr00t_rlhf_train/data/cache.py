"""Frame cache: a dataset's frames decoded once, resized, JPEG-encoded, in per-episode parquet shards.

    build_cache("/work/shared/datasets/Policy_Data_results_0001", "/tmp/cache96", image_size=96)
    cache = FrameCache("/tmp/cache96")          # needs no video decoder: pyarrow + torchvision only
    ep = cache.episode(3)
    ep.frames([0, 5, 9])                        # uint8 [3, 96, 96, 3] (device="cuda" decodes on the GPU)
    ep.state, ep.action, ep.reward, ep.feedback, ep.task

Layout of a cache directory::

    cache.json                   format version, source + fingerprint, fps, image size, names, tasks,
                                 feedback vocabulary, per-episode rows/images/task/bytes, dataset stats
    episode_000000.parquet       one row per dataset row (all rows are kept, numeric columns as read)

Shard columns: ``timestamp`` f64 (seconds since the episode start, as the reader aligns them),
``state`` / ``action`` list<f32>, ``reward`` f32 (null: the dataset has no ``next.reward``),
``feedback`` i64 (null: no feedback column), ``task_index`` i64 (null: none), ``frame`` i32 (the
source video frame the row shows), ``image`` i32 (index of the row's picture in the episode's
list of distinct pictures) and ``jpeg`` binary: the picture, stored on the FIRST row that shows it
and null on the rows that repeat it. Rows of the seed datasets come at ~50 Hz while the video is
10 fps; storing each picture once keeps the cache ~5x smaller than one JPEG per row.

Pictures: the whole frame is resized to ``image_size`` (h, w) with antialiased bilinear
interpolation (no crop, the aspect ratio is not kept: the model's processor crops 95 % and
resizes to its square input anyway), then JPEG-encoded with ``torchvision.io.encode_jpeg``.

Building is atomic per shard (written to a temporary name, then renamed) and resumable: a rerun
into the same directory skips the shards already written for the same source fingerprint (a
hash of the dataset's meta files) and settings, and refuses a directory holding a cache of
another dataset or built with other settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as TF

from gr00t_rlhf_train.data import features as F
from gr00t_rlhf_train.data.errors import DatasetError
from gr00t_rlhf_train.feedback import FeedbackVocabulary

FORMAT = "gr00t-rlhf-frame-cache"
FORMAT_VERSION = 1
META_FILE = "cache.json"
SHARD = "episode_{:06d}.parquet"
FINGERPRINT_FILES = (F.INFO, F.EPISODES, F.TASKS, F.MODALITY, F.REWARDS)
RESIZE_BATCH = 32  # frames resized and encoded at once (bounds memory at ~100 MB for 720p frames)
# torchvision 0.29 deprecates its JPEG codec in favour of torchcodec (not a dependency here); the functions
# still work and are what a GPU machine without a video decoder has: that one notice is silenced.
_TV_NOTICE = "The image decoding and encoding capabilities of TorchVision"
SCHEMA = pa.schema([
    ("timestamp", pa.float64()), ("state", pa.list_(pa.float32())), ("action", pa.list_(pa.float32())),
    ("reward", pa.float32()), ("feedback", pa.int64()), ("task_index", pa.int64()),
    ("frame", pa.int32()), ("image", pa.int32()), ("jpeg", pa.binary()),
])


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# ---- settings -------------------------------------------------------------------------------------
def parse_size(image_size) -> tuple[int, int]:
    """96 -> (96, 96); (h, w) or "HxW" -> (h, w); anything else is a one-line ValueError."""
    if isinstance(image_size, str):
        parts = image_size.lower().split("x")
        try:
            image_size = tuple(int(p) for p in parts) if len(parts) == 2 else int(image_size)
        except ValueError:
            raise ValueError(f"image_size {image_size!r}: expected an integer or HxW (e.g. 96 or 96x128)") from None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (int(image_size), int(image_size))
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in image_size)):
        raise ValueError(f"image_size {image_size!r}: expected an integer or (height, width)")
    h, w = int(image_size[0]), int(image_size[1])
    if not (8 <= h <= 4096 and 8 <= w <= 4096):
        raise ValueError(f"image_size {(h, w)}: height and width must be in 8..4096")
    return h, w


def parse_episodes(spec: str) -> list[int]:
    """ "0-39,45" -> [0, 1, ..., 39, 45] (a one-line ValueError naming the bad part)."""
    out: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"episodes {spec!r}: {part!r} is not an index or a range like 0-39") from None
    return sorted(set(out))


def fingerprint(root: str | Path) -> str:
    """sha256 of the dataset's meta files (info, episodes, tasks, modality, rewards): who the cache is of."""
    root = Path(root)
    h = hashlib.sha256()
    for name in FINGERPRINT_FILES:
        p = root / name
        h.update(name.encode() + b"\0")
        if p.is_file():
            h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


# ---- images ---------------------------------------------------------------------------------------
def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> uint8 [N, 3, h, w]: the whole frame, antialiased bilinear (no crop).

    Interpolates the uint8 channels-last tensor directly (torch's fast CPU path, ~17x faster than
    float; results within 1 grey level of it)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # [N, 3, H, W], channels-last memory
    if tuple(x.shape[-2:]) != tuple(size):
        x = TF.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)  # [N, 3, h, w]
    return x.contiguous()


def encode_jpegs(images: torch.Tensor, quality: int) -> list[bytes]:
    """uint8 [N, 3, h, w] -> N JPEG byte strings (torchvision, CPU)."""
    from torchvision.io import encode_jpeg
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TV_NOTICE, category=DeprecationWarning)
        return [bytes(t.numpy().tobytes()) for t in encode_jpeg(list(images), quality=quality)]


def decode_jpegs(blobs: Sequence[bytes], device: str | torch.device = "cpu",
                 order: np.ndarray | None = None) -> torch.Tensor:
    """JPEG byte strings -> uint8 [N, h, w, 3] on ``device`` (torchvision; on a GPU with device="cuda").

    ``order`` (optional indices into ``blobs``) picks and repeats pictures: the result is then
    [len(order), h, w, 3]. On the CPU the stacking runs in numpy (small torch ops cost ~1 ms each
    when the cores are busy)."""
    from torchvision.io import ImageReadMode, decode_jpeg
    if len(blobs) == 0:
        raise ValueError("decode_jpegs: no images given")
    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TV_NOTICE, category=DeprecationWarning)
        out = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)  # N x [3, h, w]
    if torch.device(device).type == "cpu":
        a = np.stack([t.numpy() for t in out])  # [N, 3, h, w]
        a = a if order is None else a[np.asarray(order)]
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 3, 1)))  # [N, h, w, 3]
    x = torch.stack(out)  # [N, 3, h, w]
    if order is not None:
        x = x[torch.as_tensor(np.asarray(order), device=x.device)]
    return x.permute(0, 2, 3, 1).contiguous()  # [N, h, w, 3]


# ---- building -------------------------------------------------------------------------------------
def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, doc: dict) -> None:
    _write_atomic(path, lambda p: p.write_text(json.dumps(doc, indent=1) + "\n"))


def _settings(size: tuple[int, int], quality: int, video_key: str) -> dict:
    return {"image_size": list(size), "quality": int(quality), "video_key": video_key,
            "resize": "whole frame, antialiased bilinear", "codec": "jpeg (torchvision)"}


def _modality(ds) -> dict:
    """{"state": {name: [start, end]}, "action": {...}} from the reader's modality slices (GR00T keys)."""
    out: dict = {"state": {}, "action": {}}
    for key, (_, start, end) in sorted(ds.modality_slices.items(), key=lambda kv: (kv[1][0], kv[1][1])):
        group, name = key.split(".", 1)
        if group in out:
            out[group][name] = [int(start), int(end)]
    return out


def _episode_task(ds, ep) -> str:
    """The episode's instruction: the task text of its first row, else its episodes.jsonl task."""
    texts = [t for t in ep.task_texts if t is not None]
    if texts:
        return texts[0]
    for t in ep.meta.tasks:
        if isinstance(t, str):
            return t
        if isinstance(t, int) and t in ds.tasks:
            return ds.tasks[t]
    return ""


def _episode_table(ds, ep, video_key: str, size, quality: int) -> tuple[pa.Table, int]:
    """One episode -> (shard table, number of distinct pictures); each video frame is decoded once."""
    n = len(ep)
    video = ep.video(video_key)
    frame_of_row = np.array([video.index_at(t) for t in ep.times], np.int32)  # [N], non-decreasing
    first = np.flatnonzero(np.r_[True, frame_of_row[1:] != frame_of_row[:-1]])  # rows that show a new picture
    image_of_row = (np.cumsum(np.r_[True, frame_of_row[1:] != frame_of_row[:-1]]) - 1).astype(np.int32)  # [N]
    jpegs: list[bytes] = []
    for s in range(0, len(first), RESIZE_BATCH):
        rows = first[s:s + RESIZE_BATCH]
        frames = np.stack([ep.frame(int(r), video_key) for r in rows])  # [B, H, W, 3], sequential decode
        jpegs.extend(encode_jpegs(resize_frames(frames, size), quality))
    jpeg_col: list[bytes | None] = [None] * n
    for r, b in zip(first, jpegs):
        jpeg_col[int(r)] = b
    has_reward = F.REWARD in ds.columns
    cols = {
        "timestamp": pa.array(ep.times, pa.float64()),
        "state": pa.array(list(ep.state.astype(np.float32)), pa.list_(pa.float32())),
        "action": pa.array(list(ep.action.astype(np.float32)), pa.list_(pa.float32())),
        "reward": pa.array(ep.reward if has_reward else [None] * n, pa.float32()),
        "feedback": pa.array(ep.feedback_keys if ep.feedback_keys is not None else [None] * n, pa.int64()),
        "task_index": pa.array(ep.task_indices if ep.task_indices is not None else [None] * n, pa.int64()),
        "frame": pa.array(frame_of_row, pa.int32()),
        "image": pa.array(image_of_row, pa.int32()),
        "jpeg": pa.array(jpeg_col, pa.binary()),
    }
    return pa.table(cols, schema=SCHEMA), len(first)


def _shard_ok(path: Path, rows: int) -> bool:
    """A shard written before (resume): readable footer, the expected rows and columns."""
    try:
        md = pq.ParquetFile(path).metadata
        return md.num_rows == rows and set(md.schema.to_arrow_schema().names) == set(SCHEMA.names)
    except (pa.ArrowException, OSError, ValueError):
        return False


def _previous(out: Path, fp: str, source: str, settings: dict) -> dict:
    """The cache.json already in ``out`` (or {}); a cache of another dataset or other settings is an error."""
    meta_path = out / META_FILE
    if not meta_path.exists():
        others = [p.name for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
        if others:
            raise DatasetError(out, None, f"is not empty and holds no {META_FILE} (e.g. {others[0]}); "
                               "choose an empty or new directory for the cache")
        return {}
    old = _read_meta(meta_path)
    if old.get("fingerprint") != fp:
        raise DatasetError(meta_path, "fingerprint", f"this directory holds a cache of another dataset "
                           f"({old.get('source')!r}, fingerprint {str(old.get('fingerprint'))[:12]}), not of "
                           f"{source!r} ({fp[:12]}); choose another output directory")
    if old.get("settings") != settings:
        raise DatasetError(meta_path, "settings", f"this cache was built with {old.get('settings')}, asked "
                           f"{settings}; choose another output directory")
    return old


def build_cache(dataset, out: str | Path, image_size=(96, 96), episodes: Iterable[int] | None = None,
                quality: int = 90, progress: bool = True, video_key: str = F.EGO_VIEW, skip_bad: bool = False) -> Path:
    """Decode every selected episode's video once and write the frame cache at ``out``; -> ``out``.

    ``dataset``: a path or a ``LeRobotDataset``; ``image_size``: int or (h, w); ``episodes``:
    indices (default all); ``quality``: JPEG quality 1..100. Rerunning into the same directory
    finishes an interrupted build (written shards are kept) or adds episodes. ``skip_bad``: an
    episode the reader cannot read (damaged parquet or video) is left out and listed in
    ``cache.json`` ``"skipped"`` (episode -> the one-line error) instead of stopping the build.
    """
    from gr00t_rlhf_train.data.reader import LeRobotDataset  # the only part that needs PyAV

    size = parse_size(image_size)
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"quality {quality!r}: must be an integer in 1..100")
    ds = dataset if isinstance(dataset, LeRobotDataset) else LeRobotDataset(dataset)
    if video_key not in ds.video_keys:
        raise DatasetError(ds.root / F.INFO, video_key, f"no such video feature (videos: {ds.video_keys})")
    wanted = list(range(ds.num_episodes)) if episodes is None else sorted(set(int(e) for e in episodes))
    bad = [e for e in wanted if not 0 <= e < ds.num_episodes]
    if bad or not wanted:
        raise ValueError(f"episodes {bad or wanted}: the dataset has episodes 0..{ds.num_episodes - 1}")
    out = Path(out)
    source = str(ds.root.resolve())
    if out.resolve() == ds.root.resolve() or ds.root.resolve() in out.resolve().parents:
        raise DatasetError(out, None, f"is inside the dataset {source}; a cache goes elsewhere (the dataset is "
                           "read-only)")
    fp = fingerprint(ds.root)
    settings = _settings(size, quality, video_key)
    _previous(out, fp, source, settings)  # refuse before creating anything
    out.mkdir(parents=True, exist_ok=True)
    with _build_lock(out):  # several processes (e.g. one per GPU) may build the same cache: one at a time
        old = _previous(out, fp, source, settings)  # what an earlier holder of the lock left
        for stale in out.glob(".*.tmp-*"):  # left by a build that was killed mid-write
            stale.unlink()
        entries = {int(k): v for k, v in old.get("episodes", {}).items() if (out / v["shard"]).is_file()}

        def done(i: int) -> bool:
            prev, shard = entries.get(i), out / SHARD.format(i)
            return (prev is not None and prev.get("rows") == ds.episodes[i].length and shard.is_file()
                    and prev.get("bytes") == shard.stat().st_size and _shard_ok(shard, ds.episodes[i].length))

        todo = [i for i in wanted if not done(i)]
        if old.get("complete") and not todo:
            return out  # nothing to do: the cache is left untouched (readers never see it incomplete)
        doc = {"format": FORMAT, "version": FORMAT_VERSION, "complete": False, "source": source, "fingerprint": fp,
               "settings": settings, "episodes": {str(k): v for k, v in sorted(entries.items())}}
        _write_json(out / META_FILE, doc)  # claims the directory before the first shard
        t0 = time.perf_counter()
        skipped: dict[str, str] = {}
        for i in _progress(todo, progress):
            shard = out / SHARD.format(i)
            try:
                ep = ds.episode(i)
                table, images = _episode_table(ds, ep, video_key, size, quality)
            except DatasetError as e:
                if not skip_bad:
                    raise
                skipped[str(i)] = _one_line(e)
                entries.pop(i, None)
                continue
            _write_atomic(shard, lambda p: pq.write_table(table, p, compression="zstd"))
            entries[i] = {"shard": shard.name, "rows": len(ep), "images": images, "task": _episode_task(ds, ep),
                          "duration": float(ep.times[-1]), "bytes": shard.stat().st_size}
            doc["episodes"] = {str(k): v for k, v in sorted(entries.items())}
            _write_json(out / META_FILE, doc)  # progress survives an interruption
        voc = ds.vocabulary
        doc.update({
            "complete": True, "fps": ds.fps, "image_size": list(size), "video_key": video_key,
            "modality": _modality(ds), "tasks": {str(k): v for k, v in sorted(ds.tasks.items())},
            "vocabulary": None if voc is None else {"key_field": voc.key_field, "default": voc.default,
                                                    "texts": {str(k): v for k, v in sorted(voc.texts.items())}},
            "has_reward": F.REWARD in ds.columns, "stats": ds.stats, "skipped": skipped,
            "build_seconds": round(time.perf_counter() - t0, 2), "episodes": {str(k): v for k, v in sorted(entries.items())},
        })
        _write_json(out / META_FILE, doc)
    return out


@contextmanager
def _build_lock(out: Path):
    """An exclusive advisory lock on ``out/.build.lock`` (POSIX flock; released when the process dies)."""
    import fcntl
    with open(out / ".build.lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _progress(items: list[int], enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm import tqdm
        return tqdm(items, desc="caching episodes", unit="ep", file=sys.stderr)
    except ImportError:
        return items


# ---- reading --------------------------------------------------------------------------------------
def _read_meta(path: Path) -> dict:
    if not path.is_file():
        what = "is missing" if not path.exists() else "is not a file"
        raise DatasetError(path, None, f"{what}: not a frame cache (build one with `gr00t-rlhf dataset cache`)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DatasetError(path, None, f"unreadable ({_one_line(e)}); rebuild the cache") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DatasetError(path, "format", f"not a frame cache (expected format {FORMAT!r})")
    if doc.get("version") != FORMAT_VERSION:
        raise DatasetError(path, "version", f"{doc.get('version')!r}: this code reads version {FORMAT_VERSION}; "
                           "rebuild the cache")
    return doc


@dataclass
class CachedEpisode:
    """One cached episode: numeric columns, the instruction, and its JPEG pictures (decoded on demand)."""

    index: int
    jpeg: list            # [P] bytes: the distinct pictures, in order
    image: np.ndarray     # [T] int32: the picture of each row (index into jpeg)
    times: np.ndarray     # [T] f64 seconds since the episode start
    state: np.ndarray     # [T, Ds] f32
    action: np.ndarray    # [T, Da] f32
    reward: np.ndarray | None    # [T] f32 (next.reward), None if the dataset has none
    feedback: np.ndarray | None  # [T] int64 feedback keys, None if the dataset has none
    task_index: np.ndarray | None  # [T] int64 tasks.jsonl index, None if none
    frame: np.ndarray     # [T] int32 source video frame of each row
    task: str             # the instruction (task text)

    def __len__(self) -> int:
        return len(self.times)

    def frames(self, rows, device: str | torch.device = "cpu") -> torch.Tensor:
        """uint8 [N, H, W, 3] pictures of ``rows`` (each distinct picture decoded once)."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"episode {self.index}: rows {rows.min()}..{rows.max()} out of range 0..{len(self) - 1}")
        pics, inverse = np.unique(self.image[rows], return_inverse=True)
        return decode_jpegs([self.jpeg[p] for p in pics], device, inverse.reshape(-1))  # [N, H, W, 3]

    def grid_rows(self, fps: float) -> np.ndarray:
        """Rows at the video rate: the first row showing each picture, then (where the video ended before
        the rows did) the first row at or after every further 1 / fps. All rows when rows come at the
        frame rate (our writer); ~1 in 5 rows of the 50 Hz seed datasets."""
        first = np.flatnonzero(np.r_[True, self.image[1:] != self.image[:-1]])  # [P]
        period = 1.0 / fps
        t_last = self.times[first[-1]]
        ticks = t_last + period * np.arange(1, int((self.times[-1] - t_last) / period + 1e-6) + 1)  # [K]
        tail = np.searchsorted(self.times, ticks - 1e-3, side="left")  # [K]
        return np.unique(np.r_[first, tail[tail < len(self)]]).astype(np.int64)


class FrameCache:
    """A frame cache opened read-only (needs pyarrow and torchvision; no video decoder)."""

    def __init__(self, path: str | Path, max_episodes: int = 256):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        self.meta = _read_meta(meta_path)
        if not self.meta.get("complete"):
            raise DatasetError(meta_path, "complete", "the build did not finish; rerun the same `dataset cache` "
                               "command to complete it")
        try:
            self._entries = {int(k): v for k, v in self.meta["episodes"].items()}
            self.fps = float(self.meta["fps"])
            self.image_size = tuple(int(v) for v in self.meta["image_size"])
            self.modality = {g: {n: tuple(se) for n, se in self.meta["modality"][g].items()} for g in ("state", "action")}
            self.tasks = {int(k): v for k, v in self.meta["tasks"].items()}
            voc = self.meta.get("vocabulary")
            self.vocabulary = None if voc is None else FeedbackVocabulary(
                {int(k): v for k, v in voc["texts"].items()}, voc["key_field"], voc["default"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DatasetError(meta_path, None, f"damaged ({type(e).__name__}: {_one_line(e)}); rebuild the cache") \
                from None
        self.episodes: list[int] = sorted(self._entries)
        if not self.episodes:
            raise DatasetError(meta_path, "episodes", "the cache holds no episodes")
        for i in self.episodes:
            shard = self.path / self._entries[i]["shard"]
            if not shard.is_file():
                raise DatasetError(shard, None, f"shard of episode {i} is missing; rebuild the cache")
        self._loaded: OrderedDict[int, CachedEpisode] = OrderedDict()
        self._max = max_episodes

    # picklable for DataLoader workers: the loaded episodes stay behind
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_loaded"] = OrderedDict()
        return state

    def __len__(self) -> int:
        return sum(int(self._entries[i]["rows"]) for i in self.episodes)

    @property
    def num_pictures(self) -> int:
        """Distinct pictures stored (rows that repeat a picture share it): the "frames" of the video."""
        return sum(int(self._entries[i]["images"]) for i in self.episodes)

    def __repr__(self) -> str:
        return (f"FrameCache({str(self.path)!r}, episodes={len(self.episodes)}, rows={len(self)}, "
                f"image_size={self.image_size})")

    @property
    def stats(self) -> dict:
        """The source dataset's statistics (meta/stats.json layout), for the model's normalisation."""
        return self.meta["stats"]

    @property
    def state_names(self) -> list[str]:
        return list(self.modality["state"])

    @property
    def action_names(self) -> list[str]:
        return list(self.modality["action"])

    @property
    def video_name(self) -> str:
        """The GR00T modality name of the camera: ``observation.images.ego_view`` -> ``ego_view``."""
        return str(self.meta["video_key"]).rsplit(".", 1)[-1]

    def modality_dims(self) -> dict:
        """Arguments for ``model.processor.ModalityConfig``: video names and state/action name -> width."""
        return {"video": [self.video_name],
                "state": {n: e - s for n, (s, e) in self.modality["state"].items()},
                "action": {n: e - s for n, (s, e) in self.modality["action"].items()}}

    def rows(self, i: int) -> int:
        return int(self._entry(i)["rows"])

    def task(self, i: int) -> str:
        return str(self._entry(i)["task"])

    def _entry(self, i: int) -> dict:
        try:
            return self._entries[int(i)]
        except KeyError:
            raise KeyError(f"{self.path}: episode {i} is not in the cache (episodes {_ranges(self.episodes)})") \
                from None

    def episode(self, i: int) -> CachedEpisode:
        """Episode ``i`` (loaded on first use, kept in a small LRU)."""
        i = int(i)
        ep = self._loaded.get(i)
        if ep is not None:
            self._loaded.move_to_end(i)
            return ep
        ep = self._load(i, self._entry(i))
        self._loaded[i] = ep
        while len(self._loaded) > self._max:
            self._loaded.popitem(last=False)
        return ep

    def _load(self, i: int, entry: dict) -> CachedEpisode:
        shard = self.path / entry["shard"]
        try:
            size = shard.stat().st_size
            if "bytes" in entry and size != entry["bytes"]:
                raise DatasetError(shard, None, f"damaged shard of episode {i}: {size} bytes, {META_FILE} says "
                                   f"{entry['bytes']}; rebuild the cache")
            t = pq.read_table(shard)
        except DatasetError:
            raise
        except (pa.ArrowException, OSError, ValueError) as e:
            raise DatasetError(shard, None, f"damaged shard of episode {i} ({_one_line(e)}); rebuild the cache") \
                from None
        missing = [c for c in SCHEMA.names if c not in t.column_names]
        if missing or t.num_rows != entry["rows"]:
            raise DatasetError(shard, None, f"damaged shard of episode {i}: {t.num_rows} rows (expected "
                               f"{entry['rows']}), missing columns {missing}; rebuild the cache")
        n = t.num_rows

        def vec(name: str) -> np.ndarray:
            col = t.column(name).combine_chunks()
            return col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, -1)

        def opt(name: str, dtype) -> np.ndarray | None:
            col = t.column(name)
            return None if col.null_count == n else col.to_numpy(zero_copy_only=False).astype(dtype)

        jpeg = [b for b in t.column("jpeg").to_pylist() if b is not None]
        image = t.column("image").to_numpy().astype(np.int32)
        if len(jpeg) != entry.get("images", len(jpeg)) or (n and (image.min() < 0 or image.max() >= len(jpeg))):
            raise DatasetError(shard, "jpeg", f"damaged shard of episode {i}: {len(jpeg)} pictures for picture "
                               f"indices up to {image.max() if n else -1}; rebuild the cache")
        return CachedEpisode(
            index=i, jpeg=jpeg, image=image, times=t.column("timestamp").to_numpy().astype(np.float64),
            state=vec("state"), action=vec("action"), reward=opt("reward", np.float32),
            feedback=opt("feedback", np.int64), task_index=opt("task_index", np.int64),
            frame=t.column("frame").to_numpy().astype(np.int32), task=str(entry["task"]))


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    out, start, prev = [], None, None
    for v in values:
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = v
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ",".join(out)


def directory_bytes(path: str | Path) -> int:
    """Bytes of the files of a cache directory (its size on disk, as copied to another machine)."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
