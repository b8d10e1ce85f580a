"""Our recordings read the way Isaac-GR00T's ``LeRobotSingleDataset`` reads them (without importing GR00T).

What its loader does, re-implemented here from its public description (gr00t/data/dataset.py,
gr00t/utils/video.py): a video frame for row ``r`` is fetched by the row's parquet ``timestamp``;
the PyAV-based ``torchvision_av`` backend seeks to the keyframe at or before that time and decodes
forward. Its N1/N1.5 release returns the first decoded frame for a single timestamp; the later one
decodes until a frame's time is >= the timestamp and takes that frame. Both are emulated, and so
is the later code's ``torchcodec`` path (snap the timestamp to a multiple of 1/average_fps, take
the frame shown then; it needs rows on the 1/fps grid with no gap). A
language annotation ``annotation.<k>`` (modality.json ``annotation`` entry, column = its
``original_key`` or the key itself) holds task indices, resolved through tasks.jsonl.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from synth_dataset import BINARY, SCORES, TASKS, synth_image
from gr00t_rlhf_train.data import DatasetWriter, LeRobotDataset
from gr00t_rlhf_train.data import features as F

SIZE = (48, 64)  # small frames: the test is about timing and indices, not pixels
FPS = 10.0


def record(root: Path, vocabulary: dict[int, str], episodes: int = 2, frames: int = 23, gop_frames: int = 1,
           low_latency: bool = True, jitter: bool = True) -> list[dict]:
    """Episodes with changing feedback; returns the truth per episode.

    ``jitter``: timestamps of a timer with +-20 ms jitter; else on the recorder's tick grid
    ``t0 + k / fps`` (what the aligner produces), far from the origin like a ROS clock.
    """
    rng = np.random.default_rng(7)
    w = DatasetWriter.create(root, fps=FPS, image_size=SIZE, vocabulary=vocabulary, gop_frames=gop_frames,
                             low_latency=low_latency)
    keys = sorted(vocabulary)
    truth = []
    for e in range(episodes):
        task = TASKS[e % len(TASKS)]
        ep = w.start_episode(task)
        t0 = t = 1_700_000_000.0 + 37.3 * e
        fb = []
        for i in range(frames):
            t = t + 1.0 / FPS + rng.uniform(-0.02, 0.02) if jitter else t0 + (i + 1) / FPS
            k = keys[(3 * e + i // 4) % len(keys)]
            ep.add_frame(synth_image(SIZE, e, i), [i, 0, 0], [0, 0], t, k)
            fb.append(k)
        ep.commit()
        truth.append({"task": task, "feedback": fb})
    return truth


def gr00t_tasks(root: Path) -> dict[int, str]:
    """tasks.jsonl indexed by task_index (their ``self.tasks.loc[...]["task"]``)."""
    rows = [json.loads(x) for x in (root / F.TASKS).read_text().splitlines() if x.strip()]
    return {r["task_index"]: r["task"] for r in rows}


def gr00t_language(root: Path, table, key: str) -> list[str]:
    """Their get_language for every row: the annotation column's values looked up in tasks.jsonl."""
    modality = json.loads((root / F.MODALITY).read_text())
    sub = key.removeprefix("annotation.")
    column = modality["annotation"][sub].get("original_key") or key
    tasks = gr00t_tasks(root)
    return [tasks[int(i)] for i in table.column(column).to_pylist()]  # KeyError = their .loc failing


def gr00t_frames_torchcodec(path: Path, timestamps: np.ndarray) -> list[np.ndarray]:
    """Their ``torchcodec`` fetch (later code): snap each timestamp to the nearest multiple of
    1/average_fps (an error if that is >= 1 % of a frame interval away), then the frame shown
    at that time (the last frame whose pts is <= it)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        interval = 1 / float(s.average_rate)  # frames / duration, as the decoder's metadata says
        decoded = [(float(f.pts * s.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(s)]
    pts = np.array([t for t, _ in decoded])
    out = []
    for t in timestamps.astype(np.float64):
        snapped = np.round(t / interval) * interval
        assert abs(snapped - t) / interval < 0.01, f"GR00T would refuse timestamp {t}"
        out.append(decoded[int(np.searchsorted(pts, snapped, side="right")) - 1][1])
    return out


def gr00t_frame(path: Path, timestamp: np.float32, first_only: bool) -> np.ndarray:
    """Their ``torchvision_av`` fetch of one timestamp: keyframe seek, decode forward."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        c.seek(int(round(float(timestamp) / float(s.time_base))), stream=s, backward=True, any_frame=False)
        frame = None
        for f in c.decode(s):
            frame = f.to_ndarray(format="rgb24")
            if first_only or float(f.pts * s.time_base) >= timestamp:
                break
        return frame


def top_level_boxes(path: Path) -> list[str]:
    """The MP4 box types at the top level of ``path``, in file order."""
    out, data = [], path.read_bytes()
    i = 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8:i + 16])[0]
        out.append(kind.decode("latin-1"))
        if size < 8:
            break
        i += size
    return out


@pytest.mark.parametrize("low_latency", [True, False], ids=["recorded", "converted"])
def test_committed_video_is_an_ordinary_mp4_with_exact_frames_and_duration(tmp_path, low_latency):
    root = tmp_path / "ds"
    record(root, BINARY, low_latency=low_latency)
    ds = LeRobotDataset(root)
    for meta in ds.episodes:
        table = pq.read_table(meta.data_path)
        path = meta.video_paths[F.EGO_VIEW]
        boxes = top_level_boxes(path)
        assert "moof" not in boxes and boxes.index("moov") < boxes.index("mdat"), boxes  # not fragmented, faststart
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            assert s.frames == table.num_rows
            duration = float(s.duration * s.time_base)
            times = table.column(F.TIMESTAMP).to_numpy()
            assert abs(duration - (times[-1] + 1 / FPS)) < 1 / FPS, (duration, times[-1])
            packets = [(p.pts, p.is_keyframe) for p in c.demux(s) if p.size]
        pts = np.array([p for p, _ in packets]) * float(s.time_base)
        assert all(k for _, k in packets)  # default GOP: every frame a keyframe
        np.testing.assert_array_equal(pts.astype(np.float32), times)  # each row's timestamp is its frame's pts


@pytest.mark.parametrize("jitter", [True, False], ids=["jittered", "tick-grid"])
@pytest.mark.parametrize("first_only", [True, False], ids=["gr00t-n1", "gr00t-later"])
def test_gr00t_seek_by_timestamp_returns_our_frame_for_every_row(tmp_path, first_only, jitter):
    root = tmp_path / "ds"
    record(root, BINARY, jitter=jitter)
    ds = LeRobotDataset(root)
    for e in range(ds.num_episodes):
        ep = ds.episode(e)
        times = pq.read_table(ds.episodes[e].data_path).column(F.TIMESTAMP).to_numpy()  # float32, as they read it
        path = ds.episodes[e].video_paths[F.EGO_VIEW]
        for r, t in enumerate(times):
            theirs, ours = gr00t_frame(path, t, first_only), ep.frame(r)
            assert ep.video().index_at(float(t)) == r
            assert np.array_equal(theirs, ours), f"episode {e} row {r} t={t}: GR00T gets another frame than ours"


def test_gr00t_torchcodec_snapping_to_frame_times_returns_our_frame_for_every_row(tmp_path):
    """Their torchcodec path needs rows on the 1/fps grid (the recorder's ticks, none dropped)."""
    root = tmp_path / "ds"
    record(root, BINARY, frames=150, jitter=False)
    ds = LeRobotDataset(root)
    for e in range(ds.num_episodes):
        ep, meta = ds.episode(e), ds.episodes[e]
        times = pq.read_table(meta.data_path).column(F.TIMESTAMP).to_numpy()
        theirs = gr00t_frames_torchcodec(meta.video_paths[F.EGO_VIEW], times)
        for r, t in enumerate(times):
            assert np.array_equal(theirs[r], ep.frame(r)), f"episode {e} row {r} t={t}: GR00T gets another frame"


def test_gop_2_is_exact_only_for_loaders_that_decode_forward(tmp_path):
    """Why the default is one keyframe per frame: with GOP 2 the N1 loader gets the previous frame."""
    root = tmp_path / "ds"
    record(root, BINARY, episodes=1, frames=12, gop_frames=2)
    ds = LeRobotDataset(root)
    ep, meta = ds.episode(0), ds.episodes[0]
    times = pq.read_table(meta.data_path).column(F.TIMESTAMP).to_numpy()
    path = meta.video_paths[F.EGO_VIEW]
    later = [np.array_equal(gr00t_frame(path, t, False), ep.frame(r)) for r, t in enumerate(times)]
    n1 = [np.array_equal(gr00t_frame(path, t, True), ep.frame(r)) for r, t in enumerate(times)]
    assert all(later)
    assert n1 == [r % 2 == 0 for r in range(len(times))]  # keyframes only


@pytest.mark.parametrize("vocabulary", [BINARY, SCORES], ids=["binary", "scores"])
def test_gr00t_resolves_annotations_to_feedback_texts_and_instructions(tmp_path, vocabulary):
    root = tmp_path / "ds"
    truth = record(root, vocabulary)
    ds = LeRobotDataset(root, warn=False)
    rewards = [json.loads(x) for x in (root / F.REWARDS).read_text().splitlines()]
    assert {r[next(k for k in r if k != "feedback")]: r["feedback"] for r in rewards} == vocabulary  # unchanged
    episodes = [json.loads(x) for x in (root / F.EPISODES).read_text().splitlines()]
    for e, want in enumerate(truth):
        table = pq.read_table(ds.episodes[e].data_path)
        assert gr00t_language(root, table, F.VALIDITY) == [vocabulary[k] for k in want["feedback"]]
        assert gr00t_language(root, table, F.TASK_DESCRIPTION) == [want["task"]] * table.num_rows
        voc_max = 1 if set(vocabulary) <= {0, 1} else max(abs(k) for k in vocabulary)
        np.testing.assert_allclose(table.column(F.REWARD).to_numpy(), np.array(want["feedback"]) / voc_max, rtol=1e-6)
        assert episodes[e]["tasks"] == [want["task"]]  # instructions only
        # the rule the reader uses to tell this style from the seed's keys
        tasks, texts = gr00t_tasks(root), set(vocabulary.values())
        assert all(int(i) in tasks and tasks[int(i)] in texts for i in table.column(F.VALIDITY).to_pylist())
