"""Crash safety: a recording process killed with SIGKILL mid-episode."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np

from synth_dataset import make_dataset
from gr00t_rlhf_train.data import DatasetWriter, LeRobotDataset
from gr00t_rlhf_train.data import features as F

HERE = Path(__file__).resolve().parent

RECORDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {here!r})
    from synth_dataset import synth_image
    from gr00t_rlhf_train.data import DatasetWriter
    w = DatasetWriter.resume({root!r})
    ep = w.start_episode("Find Blue cube")
    for i in range({frames}):
        ep.add_frame(synth_image(w.image_size, 9, i), [i, 0, 0], [0, i], 50.0 + i / w.fps, 1)
    print("RECORDED", flush=True)
    time.sleep(60)  # killed here, mid-episode
""")


def record_and_kill(root: Path, frames: int) -> None:
    code = RECORDER.format(here=str(HERE), root=str(root), frames=frames)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "RECORDED"
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


def test_sigkill_mid_episode_keeps_earlier_episodes_and_resume_recovers(tmp_path):
    root = tmp_path / "ds"
    truth = make_dataset(root, episodes=2, frames=6)
    record_and_kill(root, frames=35)  # 3.5 s at 10 fps: several video fragments
    assert (root / F.STAGING_DIR / "episode_000002").is_dir()

    ds = LeRobotDataset(root)  # loads without the partial episode
    assert ds.num_episodes == 2 and ds.num_frames == 13
    np.testing.assert_array_equal(ds.episode(1).state, np.stack(truth[1].state))

    w = DatasetWriter.resume(root)
    kept = w.resume_report.recovered[2]
    assert 5 <= kept <= 35
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 3 and not len(ds.quirks)
    ep = ds.episode(2)
    assert len(ep) == kept and len(ep.video()) == kept and ep.done[-1]
    assert ep.state[:, 0].tolist() == list(range(kept))
    assert ep.global_index.tolist() == list(range(13, 13 + kept))
    ep.frame(kept - 1)
    assert not (root / F.STAGING_DIR / "episode_000002").exists()
    with av.open(str(ds.episodes[2].video_paths[F.EGO_VIEW])) as c:  # an ordinary MP4, like a normal commit
        assert c.streams.video[0].frames == kept
    assert ds.tasks[ep.table.column(F.VALIDITY)[0].as_py()] == "Doing good"  # keys -> task indices on recovery too


def test_crash_between_remux_and_commit_keeps_every_frame(tmp_path):
    """Killed after the commit's remux replaced the staged video, before commit.json: nothing is lost."""
    from gr00t_rlhf_train.data import staging as S
    from gr00t_rlhf_train.data.video import remux

    root = tmp_path / "ds"
    make_dataset(root, episodes=1, frames=4)
    record_and_kill(root, frames=12)
    stage = root / F.STAGING_DIR / "episode_000001"
    frames = remux(stage / S.VIDEO, stage / S.VIDEO)  # what commit() does before writing commit.json
    assert frames >= 1  # (the last few frames may still have been queued in the encoder when killed)
    w = DatasetWriter.resume(root)
    assert w.resume_report.recovered == {1: frames}  # a complete MP4: no last packet dropped as maybe torn


def test_sigkill_before_any_frame_is_discarded_on_resume(tmp_path):
    root = tmp_path / "ds"
    make_dataset(root, episodes=1, frames=4)
    record_and_kill(root, frames=0)
    w = DatasetWriter.resume(root)
    assert list(w.resume_report.discarded.values()) == ["no complete row was logged"]
    assert LeRobotDataset(root).num_episodes == 1
    assert w.num_episodes == 1
