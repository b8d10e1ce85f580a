"""Training samples over a frame cache: keys and shapes the model eats, padding, splits, DataLoader workers."""
from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader

from gr00t_rlhf_train.data.cache import FrameCache, build_cache
from gr00t_rlhf_train.data.samples import (INSTRUCTION, PolicySamples, RewardClips, collate, decode_batch,
                                           model_inputs, split_episodes, worker_context)
from synth_dataset import make_dataset

pytestmark = pytest.mark.filterwarnings("ignore::gr00t_rlhf_train.data.DatasetQuirkWarning")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Two episodes of 8 and 9 rows (one picture per row), 32x32 pictures, binary feedback."""
    d = tmp_path_factory.mktemp("samples")
    make_dataset(d / "ds")
    return FrameCache(build_cache(d / "ds", d / "cache", image_size=32, progress=False))


def test_policy_sample_keys_shapes_and_chunk_padding(cache):
    ds = PolicySamples(cache, action_horizon=16)
    assert len(ds) == 17
    s = ds[0]
    assert set(s) == {"video.ego_view", "state.left_wheel", "state.right_wheel", "state.acceleration",
                      "action.wheel_commands", INSTRUCTION, "episode", "row"}
    assert s["video.ego_view"].shape == (1, 32, 32, 3) and s["video.ego_view"].dtype == np.uint8
    assert s["state.acceleration"].shape == (1, 1) and s["state.acceleration"].dtype == np.float32
    ep = cache.episode(0)
    np.testing.assert_array_equal(s["action.wheel_commands"][:8], ep.action[:8])
    np.testing.assert_array_equal(s["action.wheel_commands"][8:], np.repeat(ep.action[7:8], 8, 0))  # last row repeated
    last = ds[7]
    assert last["row"] == 7 and last["episode"] == 0
    np.testing.assert_array_equal(last["action.wheel_commands"], np.repeat(ep.action[7:8], 16, 0))
    np.testing.assert_array_equal(ds[3]["state.right_wheel"][0], ep.state[3, 1:2])
    assert s[INSTRUCTION] == ep.task and ds[8]["episode"] == 1
    with pytest.raises(ValueError, match="action_horizon=0"):
        PolicySamples(cache, action_horizon=0)


def test_reward_clips_repeat_the_first_row_before_the_episode_start(cache):
    ds = RewardClips(cache, episodes=[1], horizon=3, target="feedback")
    assert len(ds) == 9
    ep = cache.episode(1)
    first, second = ds[0], ds[1]
    frames = ep.frames([0, 1]).numpy()
    assert first["video.ego_view"].shape == (3, 32, 32, 3)
    for k in range(3):
        np.testing.assert_array_equal(first["video.ego_view"][k], frames[0])
    np.testing.assert_array_equal(second["video.ego_view"][:2], np.stack([frames[0], frames[0]]))
    np.testing.assert_array_equal(second["video.ego_view"][2], frames[1])
    np.testing.assert_array_equal(second["state.left_wheel"][:, 0], ep.state[[0, 0, 1], 0])
    assert second["feedback"] == int(ep.feedback[1]) and second["target"] == float(ep.feedback[1])  # binary
    assert "Doing" not in str(second)  # the feedback text never enters a sample
    strided = RewardClips(cache, horizon=1, stride=4)
    assert [s["row"] for s in strided] == [0, 4, 0, 4, 8]
    labels = strided.labels()  # the same, without decoding
    for key in ("target", "episode", "row", "time", "feedback"):
        np.testing.assert_array_equal(labels[key], [s[key] for s in strided])


def test_reward_clip_errors_name_the_argument(cache):
    with pytest.raises(ValueError, match=r"horizon=10: longer than every selected episode \(the longest has 9"):
        RewardClips(cache, horizon=10)
    with pytest.raises(ValueError, match="target='score'"):
        RewardClips(cache, target="score")
    with pytest.raises(ValueError, match=r"episodes \[7\] are not in the cache"):
        RewardClips(cache, episodes=[0, 7])


def test_split_is_deterministic_and_keeps_the_holdout_out(cache):
    train, val, test = split_episodes(100, holdout=list(range(40, 50)) + list(range(90, 100)), val_fraction=0.1, seed=0)
    assert test == list(range(40, 50)) + list(range(90, 100))
    assert len(val) == 8 and len(train) == 72 and not set(train) & set(val) and not set(train + val) & set(test)
    assert sorted(train + val + test) == list(range(100))
    assert split_episodes(100, holdout=range(90, 100), seed=0) == split_episodes(100, holdout=range(90, 100), seed=0)
    assert split_episodes(100, holdout=range(90, 100), seed=1)[1] != split_episodes(100, holdout=range(90, 100))[1]
    assert split_episodes(cache, holdout=[1]) == ([0], [], [1])  # one left: nothing to carve
    good_bad = {e: int(e >= 50) for e in range(100)}  # Reward_New_Data_WithBadEp: 0-49 good, 50-99 bad
    train, val, test = split_episodes(100, list(range(40, 50)) + list(range(90, 100)), 0.1, 0, strata=good_bad)
    assert sum(e < 50 for e in val) == 4 and sum(e >= 50 for e in val) == 4 and len(train) == 72
    with pytest.raises(ValueError, match=r"strata: episodes \[0\] have no group"):
        split_episodes(3, [2], strata={1: "a"})
    with pytest.raises(ValueError, match=r"holdout: episodes \[5\] do not exist"):
        split_episodes(cache, holdout=[5])


def test_dataloader_with_two_workers_matches_in_process(cache):
    ds = RewardClips(cache, horizon=2)
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate, multiprocessing_context=worker_context(2))
    batches = list(loader)
    assert [len(b["row"]) for b in batches] == [8, 8, 1]
    b = batches[0]
    assert b["video.ego_view"].shape == (8, 2, 32, 32, 3) and b["state.left_wheel"].shape == (8, 2, 1)
    assert isinstance(b[INSTRUCTION], list) and len(b[INSTRUCTION]) == 8 and b["target"].shape == (8,)
    local = collate([ds[i] for i in range(8)])
    for key, value in local.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(b[key], value)
    jpeg = collate([RewardClips(cache, horizon=2, decode=False)[i] for i in range(8)])
    np.testing.assert_array_equal(decode_batch(jpeg)["video.ego_view"].numpy(), b["video.ego_view"])


def test_batches_feed_the_model_processor(cache):
    from gr00t_rlhf_train.model.policy import Gr00tPolicy
    from gr00t_rlhf_train.model.processor import ModalityConfig, stats_from_lerobot
    from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
    from gr00t_rlhf_train.model.reward_model import RewardModel

    modality = ModalityConfig(**cache.modality_dims())
    policy = Gr00tPolicy.from_config("tiny", modality, stats_from_lerobot(cache.stats, modality))
    batch = policy.processor(collate([PolicySamples(cache)[i] for i in (0, 5, 12)]))
    assert batch["action"].shape[:2] == (3, 16) and batch["state"].shape[0] == 3
    rm = RewardModel.from_policy(policy, RewardHeadConfig(horizon=2))
    clip = collate([RewardClips(cache, horizon=2)[i] for i in (0, 9)])
    assert rm.prepare(model_inputs(clip))["state"].shape[:2] == (2, 2)


def test_seed_rows_at_the_video_rate(datasets_dir, tmp_path):
    out = build_cache(datasets_dir / "Policy_Data_results_0001", tmp_path / "c", image_size=16, episodes=[0],
                      progress=False)
    cache = FrameCache(out)
    ep = cache.episode(0)
    frames, every = RewardClips(cache, horizon=4), RewardClips(cache, horizon=4, rows="all")
    assert len(every) == len(ep) and len(ep.jpeg) <= len(frames) < len(ep) / 3
    rows = [frames[k]["row"] for k in range(len(frames))]
    assert len(set(ep.image[rows[:len(ep.jpeg)]])) == len(ep.jpeg)  # one sample per picture, then the tail
    assert np.all(np.diff(ep.times[rows]) > 0.05)  # ~0.1 s apart at 10 fps (the rows come every 0.02 s)
    clip = frames[10]["video.ego_view"]
    assert not any(np.array_equal(clip[j], clip[j + 1]) for j in range(3))  # 4 different pictures
    chunk = PolicySamples(cache)[10]["action.wheel_commands"]
    np.testing.assert_array_equal(chunk, ep.action[rows[10:26]])


def test_reward_clip_actions_follow_the_model_action_order(cache):
    """The actions of a clip are joined in the model's ``ModalityConfig.action`` order, not the cache's."""
    split = FrameCache(cache.path)
    split.modality = dict(split.modality) | {"action": {"left": (0, 1), "right": (1, 2)}}  # two 1-dim keys
    ep = split.episode(0)
    as_cached = RewardClips(split, episodes=[0], horizon=1, action_horizon=3)[2]["actions"]
    swapped = RewardClips(split, episodes=[0], horizon=1, action_horizon=3,
                          action_keys=["action.right", "left"])[2]["actions"]
    np.testing.assert_array_equal(as_cached, ep.action[2:5, :2])
    np.testing.assert_array_equal(swapped, ep.action[2:5, [1, 0]])
    only = RewardClips(split, episodes=[0], horizon=1, action_horizon=3, action_keys=["right"])[2]["actions"]
    np.testing.assert_array_equal(only, ep.action[2:5, 1:2])
    with pytest.raises(ValueError, match=r"action_keys=\['action.elbow'\]: \['elbow'\] not among the action keys "
                                         r"of the cache .* \(left, right\)"):
        RewardClips(split, horizon=1, action_horizon=3, action_keys=["action.elbow"])
