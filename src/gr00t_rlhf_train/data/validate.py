"""Check a whole dataset and list every problem: errors (unusable) and worked-around quirks.

Beyond what the reader checks while loading (every file, column, value and video), ``validate``
compares the episodes with each other and with info.json: ``episode_index`` values against
episodes.jsonl, each episode's row rate against the others' (one 30 fps episode appended to a
10 fps dataset), each video's frame rate against info.json ``fps``, and meta/stats.json against
the data. Errors are listed one per episode; warnings (quirks) once per kind with a count.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gr00t_rlhf_train.data import features as F
from gr00t_rlhf_train.data.errors import DatasetError
from gr00t_rlhf_train.data.columns import guard_video
from gr00t_rlhf_train.data.reader import Episode, LeRobotDataset

RATE_TOLERANCE = 0.25  # an episode's row or video rate may differ this much (relative) from the reference


@dataclass
class ValidationReport:
    root: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dataset: LeRobotDataset | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def _rate(dt: np.ndarray) -> float | None:
    """Rate in Hz from the median step of ``dt`` (None if no step)."""
    dt = dt[dt > 0]
    return float(1.0 / np.median(dt)) if len(dt) else None


def _reference_rate(rates: dict[int, float], fps: float) -> float:
    """The rate most episodes share (rounded to 1 Hz); ties go to the one nearest info.json fps."""
    counts = Counter(round(r) for r in rates.values())
    best = max(counts.items(), key=lambda kv: (kv[1], -abs(kv[0] - fps)))[0]
    return float(np.median([r for r in rates.values() if round(r) == best]))


def check_episode_index(ep: Episode) -> str | None:
    """The parquet's ``episode_index`` column against the episode's place in episodes.jsonl."""
    stored = ep.stored_episode_index
    if stored is None or np.all(stored == ep.index):
        return None
    bad = np.flatnonzero(stored != ep.index)
    return (f"{ep.meta.data_path} [{F.EPISODE_INDEX}]: episode {ep.index} of episodes.jsonl holds episode_index "
            f"{sorted(set(stored[bad].tolist()))[:5]} from row {bad[0]} ({len(bad)} of {len(stored)} rows)")


def check_rates(ds: LeRobotDataset, eps: list[Episode], videos: dict[tuple[int, str], np.ndarray]) -> list[str]:
    """Mixed rates: episodes whose row rate differs from the others', videos whose rate differs from fps."""
    out = []
    rows = {e.index: r for e in eps if (r := _rate(np.diff(e.times))) is not None}
    if len(rows) >= 2:
        ref = _reference_rate(rows, ds.fps)
        for i, r in sorted(rows.items()):
            if abs(r - ref) > RATE_TOLERANCE * ref:
                out.append(f"{ds.episodes[i].data_path} [{F.TIMESTAMP}]: episode {i} has rows at {r:.3g} Hz, the other "
                           f"episodes at {ref:.3g} Hz (info.json fps {ds.fps:g}): mixed rates")
    for (i, key), times in sorted(videos.items()):
        r = _rate(np.diff(times))
        if r is not None and abs(r - ds.fps) > RATE_TOLERANCE * ds.fps:
            out.append(f"{ds.episodes[i].video_paths[key]} [{key}]: episode {i}'s video runs at {r:.3g} fps, "
                       f"info.json says {ds.fps:g}")
    return out


def check_gaps(ds: LeRobotDataset, eps: list[Episode]) -> list[str]:
    """Episodes with missing ticks (a step over 1.5 frames): one warning for all of them.

    The recorder drops a tick whose sensors are stale rather than invent data; the episode stays
    usable for our reader, but LeRobot's timestamp check and Isaac-GR00T's torchcodec backend,
    which expect one row every 1/fps, refuse such an episode."""
    gaps = {}
    for e in eps:
        dt = np.diff(e.times)
        n = int(np.sum(np.round(dt[dt > 1.5 / ds.fps] * ds.fps) - 1))
        if n > 0:
            gaps[e.index] = (n, float(dt.max()))
    if not gaps:
        return []
    first = min(gaps)
    n, largest = gaps[first]
    more = f" (and {len(gaps) - 1} more episodes)" if len(gaps) > 1 else ""
    return [f"{ds.episodes[first].data_path} [{F.TIMESTAMP}]: episode {first} misses {n} tick(s) of the "
            f"{ds.fps:g} fps grid (largest step {largest:.2f}s){more}; LeRobot's timestamp check and GR00T's "
            "torchcodec video backend refuse episodes with gaps"]


def validate(root: str | Path, decode: bool = True) -> ValidationReport:
    """Open ``root``, load every episode and (``decode``) the first and last frame of every video."""
    rep = ValidationReport(Path(root))
    try:
        ds = LeRobotDataset(root, warn=False)
    except DatasetError as e:
        rep.errors.append(str(e))
        return rep
    rep.dataset = ds
    loaded: list[Episode] = []
    videos: dict[tuple[int, str], np.ndarray] = {}
    for i in range(ds.num_episodes):
        try:
            ep = ds.episode(i)
        except DatasetError as e:
            rep.errors.append(str(e))
            continue
        loaded.append(ep)
        if (msg := check_episode_index(ep)) is not None:
            rep.errors.append(msg)
        for key in ds.video_keys:
            try:
                v = ep.video(key)
                videos[(i, key)] = v.frame_times
                if decode:
                    guard_video(v.path, v.frame, 0)
                    guard_video(v.path, v.frame, len(v) - 1)
            except DatasetError as e:
                rep.errors.append(str(e))
    rep.errors.extend(check_rates(ds, loaded, videos))
    rep.warnings.extend(check_gaps(ds, loaded))
    if not rep.errors:
        try:
            ds.stats  # noqa: B018 - reports a stats.json that does not match the data as a quirk
        except DatasetError as e:
            rep.errors.append(str(e))
    staging = ds.root / F.STAGING_DIR
    try:
        if staging.is_dir() and any(staging.iterdir()):
            rep.warnings.append(f"{staging}: holds an interrupted episode; DatasetWriter.resume() recovers or discards it")
    except OSError as e:
        rep.warnings.append(f"{staging}: cannot be listed ({e.strerror or e})")
    for q in ds.quirks:
        rep.warnings.append(q.message + (f" (and {q.count - 1} more)" if q.count > 1 else ""))
    ds.close()
    return rep
