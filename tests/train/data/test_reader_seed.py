"""The reader on the three real seed datasets: everything loads, quirks are reported once each."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import SEED_DATASETS
from gr00t_rlhf_train.data import DatasetQuirkWarning, LeRobotDataset
from gr00t_rlhf_train.data import features as F


@pytest.mark.parametrize("name", SEED_DATASETS)
def test_seed_dataset_loads_completely(datasets_dir, name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = LeRobotDataset(datasets_dir / name)
        eps = ds.load_all()
        for ep in (eps[0], eps[-1]):  # a sample of frames: first, middle, last row
            for row in (0, len(ep) // 2, len(ep) - 1):
                img = ep.frame(row)
                assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
                assert img.shape[:2] == ep.video().size
    assert sum(len(e) for e in eps) == ds.num_frames == int(ds._offsets[-1])
    assert ds.num_episodes == len(eps) == ds.info["total_episodes"]
    for ep in eps:
        assert ep.state.shape == (len(ep), 3) and ep.action.shape == (len(ep), 2)
        assert ep.times[0] == 0 and np.all(np.diff(ep.times) > 0)
        assert ep.done[-1] and not ep.done[:-1].any()
        assert ep.global_index[0] == ds.episodes[ep.index].offset
        assert ep.modality("state.acceleration").shape == (len(ep), 1)
        assert ep.modality("action.wheel_commands").shape == (len(ep), 2)
        assert all(t is not None for t in ep.feedback_texts[:5]) and ep.task_texts[0] is not None
    quirk_warnings = [str(w.message) for w in caught if issubclass(w.category, DatasetQuirkWarning)]
    assert len(quirk_warnings) == len(ds.quirks) == len(set(quirk_warnings))  # each kind once
    for kind in ("state-width", "absolute-time", "index", "video-codec"):
        assert kind in ds.quirks
    ds.close()


def test_score_vocabulary_is_read_from_rewards_jsonl(datasets_dir):
    ds = LeRobotDataset(datasets_dir / "Reward_Results_with_505_Reward", warn=False)
    assert ds.vocabulary.key_field == F.SCORE and sorted(ds.vocabulary.texts) == list(range(-5, 6))
    ep = ds.episode(0)
    assert set(ep.feedback_keys.tolist()) <= set(range(-5, 6))
    assert "backup" in ds.quirks.quirks["extra-files"].message
    ep.video()  # opening the video reports its real size (304x542, info.json says 294x522)
    assert "video-size" in ds.quirks


def test_rows_align_to_the_latest_frame_within_the_episode(datasets_dir):
    ds = LeRobotDataset(datasets_dir / "Reward_New_Data_WithBadEp", warn=False)
    ep = ds.episode(1)  # timestamps start at ~29.8 s: alignment must be episode-relative
    assert [ep.frame_index(r) for r in (0, 4, 5, 10)] == [0, 0, 1, 2]  # 50 Hz rows, 10 fps video
    assert ep.frame_index(len(ep) - 1) == len(ep.video()) - 1  # video shorter: clamped to the last frame
    sample = ds[ds.episodes[1].offset + 5]
    assert sample[F.EPISODE_INDEX] == 1 and sample[F.EGO_VIEW].shape == (294, 522, 3)
