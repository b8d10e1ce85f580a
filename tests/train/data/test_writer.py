"""The writer: round trip, append (resume), discard, disk full, bad input."""
from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from synth_dataset import BINARY, SCORES, TASKS, make_dataset, synth_image, write_episode
from gr00t_rlhf_train.data import DatasetWriteError, DatasetWriter, LeRobotDataset
from gr00t_rlhf_train.data import features as F
from gr00t_rlhf_train.data import staging as S
from gr00t_rlhf_train.data.stats import compute_stats
from gr00t_rlhf_train.data.video import psnr

PSNR_MIN = 30.0  # dB; measured 32-36 dB on the synthetic picture (docs/datasets.md)


def test_round_trip_numeric_columns_identical_and_frames_within_codec_error(tiny_dataset):
    root, truth = tiny_dataset
    ds = LeRobotDataset(root)
    assert not len(ds.quirks)  # our own datasets have no quirks
    worst = np.inf
    for e, t in enumerate(truth):
        ep = ds.episode(e)
        np.testing.assert_array_equal(ep.state, np.stack(t.state))
        np.testing.assert_array_equal(ep.action, np.stack(t.action))
        np.testing.assert_array_equal(ep.feedback_keys, t.validity)
        np.testing.assert_array_equal(ep.reward, np.array(t.validity, np.float32))  # binary: reward = key
        # times are quantised (down) to the video's time grid (1/4096 s) so that each equals its frame's pts
        np.testing.assert_allclose(ep.times, np.array(t.timestamps) - t.timestamps[0], atol=1 / 4096 + 1e-7)
        assert ep.done.tolist() == [False] * (len(ep) - 1) + [True]
        assert ep.task_texts == [t.task] * len(ep)
        assert ep.feedback_texts[0] == BINARY[t.validity[0]]
        worst = min(worst, min(psnr(ep.frame(i), img) for i, img in enumerate(t.images)))
    assert worst > PSNR_MIN, f"worst PSNR {worst:.1f} dB"
    info = json.loads((root / F.INFO).read_text())
    # instructions and feedback texts are tasks, in the order of first use (GR00T convention)
    tasks = [json.loads(x) for x in (root / F.TASKS).read_text().splitlines()]
    assert tasks == [{"task_index": i, "task": t} for i, t in
                     enumerate([TASKS[0], BINARY[0], BINARY[1], TASKS[1]])]
    assert info["total_episodes"] == 2 and info["total_frames"] == 17 and info["total_tasks"] == 4
    episodes = [json.loads(x) for x in (root / F.EPISODES).read_text().splitlines()]
    assert [e["length"] for e in episodes] == [8, 9] and [e["tasks"] for e in episodes] == [[TASKS[0]], [TASKS[1]]]


def test_score_vocabulary_maps_reward_to_minus_one_one(tmp_path):
    make_dataset(tmp_path / "s", episodes=1, frames=12, vocabulary=SCORES)
    ds = LeRobotDataset(tmp_path / "s")
    ep = ds.episode(0)
    np.testing.assert_allclose(ep.reward, ep.feedback_keys / 5.0, rtol=1e-6)
    assert ds.vocabulary.texts == SCORES


def test_resume_appends_with_consistent_indices_and_stats(tiny_dataset):
    root, truth = tiny_dataset
    w = DatasetWriter.resume(root)
    assert w.num_episodes == 2 and w.num_frames == 17
    write_episode(w, 2, 5, task="A new task")
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 3 and ds.num_frames == 22
    assert np.concatenate([e.global_index for e in ds.load_all()]).tolist() == list(range(22))
    stored = [e.table.column(F.INDEX).to_pylist() for e in ds.load_all()]
    assert sum(stored, []) == list(range(22))
    assert ds.tasks[4] == "A new task" and ds.episode(2).task_indices.tolist() == [4] * 5
    stats = json.loads((root / F.STATS).read_text())
    expect = compute_stats({F.ACTION: np.concatenate([e.action for e in ds.load_all()])})
    np.testing.assert_allclose(stats[F.ACTION]["mean"], expect[F.ACTION]["mean"], rtol=1e-6)
    assert set(stats) >= {F.STATE, F.ACTION, F.TIMESTAMP, F.REWARD} and set(stats[F.STATE]) == set(F.STAT_NAMES)


def test_discard_leaves_nothing(tiny_dataset):
    root, _ = tiny_dataset
    w = DatasetWriter.resume(root)
    ep = w.start_episode("Find Blue cube")
    ep.add_frame(synth_image((64, 96), 0, 0), [0, 0, 0], [0, 0], 0.0, 1)
    ep.discard()
    assert not any((root / F.STAGING_DIR).iterdir())
    assert write_episode(w, 2, 3) and LeRobotDataset(root).num_episodes == 3  # the index is reused


def test_disk_full_stops_episode_naming_the_path(tiny_dataset, monkeypatch):
    root, _ = tiny_dataset
    w = DatasetWriter.resume(root)
    ep = w.start_episode("Find Blue cube")
    ep.add_frame(synth_image((64, 96), 0, 0), [0, 0, 0], [0, 0], 0.0, 1)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(S.RowLog, "append", full)
    with pytest.raises(DatasetWriteError, match="disk full") as exc:
        ep.add_frame(synth_image((64, 96), 0, 1), [0, 0, 0], [0, 0], 0.1, 1)
    assert "rows.arrows" in str(exc.value) and exc.value.errno == errno.ENOSPC
    with pytest.raises(RuntimeError):
        ep.add_frame(synth_image((64, 96), 0, 2), [0, 0, 0], [0, 0], 0.2, 1)
    monkeypatch.undo()
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 2 and ds.num_frames == 17
    assert w.current is None and write_episode(w, 2, 3)  # recording can go on once space is back


def test_disk_full_while_writing_meta_keeps_earlier_episodes(tiny_dataset, monkeypatch):
    root, _ = tiny_dataset
    w = DatasetWriter.resume(root)
    import gr00t_rlhf_train.data.meta as meta

    real = meta.write_atomic

    def full_for_episodes(path, text):
        if path.name == "episodes.jsonl":
            raise DatasetWriteError(path, None, "cannot write (No space left on device)", errno.ENOSPC)
        real(path, text)

    monkeypatch.setattr(meta, "write_atomic", full_for_episodes)
    with pytest.raises(DatasetWriteError, match="episodes.jsonl"):
        write_episode(w, 2, 4)
    monkeypatch.undo()
    assert LeRobotDataset(root, warn=False).num_episodes == 2  # the moved files are ignored until committed
    w2 = DatasetWriter.resume(root)
    assert w2.resume_report.rolled_forward == [2]
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 3 and not len(ds.quirks) and ds.num_frames == 21


def test_bad_frames_are_rejected_with_the_parameter_named(tmp_path):
    w = DatasetWriter.create(tmp_path / "d", fps=10, image_size=(64, 96), vocabulary=BINARY)
    ep = w.start_episode("t")
    img = synth_image((64, 96), 0, 0)
    with pytest.raises(ValueError, match="image must be uint8"):
        ep.add_frame(img[:, :10], [0, 0, 0], [0, 0], 0.0, 1)
    with pytest.raises(ValueError, match="state must have 3"):
        ep.add_frame(img, [0, 0], [0, 0], 0.0, 1)
    with pytest.raises(ValueError, match="validity=7"):
        ep.add_frame(img, [0, 0, 0], [0, 0], 0.0, 7)
    ep.add_frame(img, [0, 0, 0], [0, 0], 1.0, 1)
    with pytest.raises(ValueError, match="not after"):
        ep.add_frame(img, [0, 0, 0], [0, 0], 1.0, 1)
    with pytest.raises(RuntimeError, match="still open"):
        w.start_episode("t2")
    with pytest.raises(Exception, match="not empty"):
        DatasetWriter.create(tmp_path / "d", fps=10, image_size=(64, 96), vocabulary=BINARY)


def test_bad_gop_and_ambiguous_vocabulary_are_refused_naming_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="gop_frames=0 must be a positive integer"):
        DatasetWriter.create(tmp_path / "a", fps=10, image_size=(64, 96), vocabulary=BINARY, gop_frames=0)
    with pytest.raises(ValueError, match="keys 0 and 1 share the text 'same'"):
        DatasetWriter.create(tmp_path / "b", fps=10, image_size=(64, 96), vocabulary={0: "same", 1: "same"})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_gop_frames_sets_the_keyframe_interval(tmp_path):
    import av

    w = DatasetWriter.create(tmp_path / "d", fps=10, image_size=(64, 96), vocabulary=BINARY, gop_frames=3)
    write_episode(w, 0, 7)
    path = LeRobotDataset(tmp_path / "d").episodes[0].video_paths[F.EGO_VIEW]
    with av.open(str(path)) as c:
        assert [p.is_keyframe for p in c.demux(video=0) if p.size] == [i % 3 == 0 for i in range(7)]


def test_resume_refuses_a_dataset_with_feedback_keys_in_the_annotation_column(tiny_dataset):
    """The seed style (keys in annotation.human.validity): appending would mix two meanings of the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, truth = tiny_dataset
    meta = LeRobotDataset(root).episodes[0]
    t = pq.read_table(meta.data_path)
    keys = pa.array(np.array(truth[0].validity, np.int64))
    pq.write_table(t.set_column(t.schema.get_field_index(F.VALIDITY), F.VALIDITY, keys), meta.data_path)
    with pytest.raises(Exception, match=r"episode_000000.parquet \[annotation.human.validity\]: values \[0\] are not "
                                        "indices of feedback texts"):
        DatasetWriter.resume(root)
