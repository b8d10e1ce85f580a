"""reward_node's clip logic and scoring step, without ROS: spacing, padding, drop-when-behind, actions,
skips, and one real scoring step with the tiny reward model."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gr00t_rlhf_ros.reward_stream import (LANGUAGE_KEY, STATE_KEYS, VIDEO_KEY, ClipUnavailable, RewardStream,
                                          StreamConfig)

TASK = "Find Blue cube"


def frame(i: int, h: int = 24, w: int = 32) -> np.ndarray:
    """A frame whose pixels all hold its index (to tell frames apart in a clip)."""
    return np.full((h, w, 3), i, dtype=np.uint8)


def ids(clip) -> list[int]:
    return [int(f[0, 0, 0]) for f in clip.frames]


def feed_sensors(stream: RewardStream, t_end: float, rate: float = 50.0, t_start: float = 0.0) -> None:
    """joint_states / imu at ``rate`` Hz: left wheel = its stamp, right = -stamp, acceleration = 10 + stamp."""
    for k in range(int(round((t_end - t_start) * rate)) + 1):
        t = t_start + k / rate
        stream.add_wheels(t, t, -t)
        stream.add_acceleration(t, 10.0 + t)


def test_frames_are_spaced_at_the_models_frame_rate_not_the_cameras():
    s = RewardStream(StreamConfig(horizon=3, frame_rate=10.0), TASK)
    feed_sensors(s, 2.0)
    for i in range(61):                      # a 30 Hz camera: frame i at i/30 s
        s.add_frame(i / 30, frame(i))
    clip = s.take(0.0)
    assert ids(clip) == [54, 57, 60]         # t0 = 2.0 s, ticks 1.8, 1.9, 2.0 s
    assert clip.stamp == pytest.approx(2.0)
    # states: the latest at or before each tick (50 Hz stamps hit the ticks exactly)
    np.testing.assert_allclose(clip.wheels[:, 0], [1.8, 1.9, 2.0], atol=1e-6)
    np.testing.assert_allclose(clip.wheels[:, 1], [-1.8, -1.9, -2.0], atol=1e-6)
    np.testing.assert_allclose(clip.acceleration[:, 0], [11.8, 11.9, 12.0], atol=1e-6)


def test_a_gap_uses_the_latest_frame_before_the_tick():
    s = RewardStream(StreamConfig(horizon=3, frame_rate=10.0), TASK)
    feed_sensors(s, 1.0)
    for i, t in ((0, 0.0), (1, 0.1), (2, 0.45), (3, 1.0)):   # frames missing around 0.6..0.9 s
        s.add_frame(t, frame(i))
    assert ids(s.take(0.0)) == [2, 2, 3]                   # ticks 0.8, 0.9 -> the 0.45 s frame


@pytest.mark.parametrize("horizon", [1, 2, 4])
def test_clips_match_training_reward_clips_including_the_padding_at_the_start(horizon):
    """RewardClips: rows seq[max(k-H+1 .. k, 0)], rows before the episode start repeat the first one."""
    s = RewardStream(StreamConfig(horizon=horizon, frame_rate=10.0), TASK)
    for k in range(8):
        t = k / 10
        s.add_wheels(t, float(k), 0.0)
        s.add_acceleration(t, float(k))
        s.add_frame(t, frame(k))
        clip = s.take(0.0)
        rows = np.maximum(np.arange(k - horizon + 1, k + 1), 0)
        assert ids(clip) == rows.tolist()
        assert clip.wheels[:, 0].tolist() == rows.astype(float).tolist()
        assert clip.acceleration[:, 0].tolist() == rows.astype(float).tolist()


def test_drops_when_behind_newest_frame_wins_nothing_queues():
    s = RewardStream(StreamConfig(horizon=2, frame_rate=10.0), TASK)
    feed_sensors(s, 1.0)
    for i in range(6):                       # the scorer was busy for six frames
        s.add_frame(i / 10, frame(i))
    clip = s.take(0.0)
    assert ids(clip) == [4, 5]               # the newest, and its clip still uses the dropped frame 4
    assert (s.received, s.dropped, s.taken) == (6, 5, 1)
    assert s.take(0.05) is None              # nothing queued behind it


def test_take_waits_for_a_frame_from_another_thread():
    import threading

    s = RewardStream(StreamConfig(horizon=1, frame_rate=10.0), TASK)
    feed_sensors(s, 0.1)
    threading.Timer(0.05, lambda: s.add_frame(0.1, frame(7))).start()
    clip = s.take(2.0)
    assert clip is not None and ids(clip) == [7]


def test_frames_without_task_or_state_are_not_scored_and_say_why():
    s = RewardStream(StreamConfig(horizon=2, frame_rate=10.0, max_state_age=0.3))
    s.add_frame(1.0, frame(1))
    with pytest.raises(ClipUnavailable, match="no task") as e:
        s.take(0.0)
    assert e.value.reason == "no task"
    s.set_task(TASK)
    s.add_frame(1.1, frame(2))
    with pytest.raises(ClipUnavailable, match="no joint_states message"):
        s.take(0.0)
    s.add_wheels(0.5, 0.0, 0.0)
    s.add_acceleration(1.1, 9.8)
    s.add_frame(1.2, frame(3))
    with pytest.raises(ClipUnavailable, match=r"joint_states is 0.70 s older than the frame") as e:
        s.take(0.0)
    assert e.value.reason == "stale joint_states"
    s.add_wheels(1.25, 0.0, 0.0)             # a state stamped after the frame does not count for it...
    s.add_frame(1.3, frame(4))               # ...but does for the next one
    assert ids(s.take(0.0)) == [3, 4]


def test_the_last_k_commands_are_the_actions_and_stale_ones_count_as_zero():
    s = RewardStream(StreamConfig(horizon=1, frame_rate=10.0, action_horizon=3, command_timeout=0.25), TASK)
    feed_sensors(s, 1.0)
    s.add_command(0.5, 1.0, 1.0)             # at 0.8 s it is 0.3 s old: stale -> zeros
    s.add_command(0.85, 2.0, -2.0)
    s.add_command(0.95, 3.0, -3.0)
    s.add_frame(1.0, frame(1))
    clip = s.take(0.0)
    assert clip.actions.tolist() == [[0.0, 0.0], [2.0, -2.0], [3.0, -3.0]]   # ticks 0.8, 0.9, 1.0 s
    assert clip.model_input()["actions"].shape == (3, 2)
    no_actions = RewardStream(StreamConfig(horizon=1, frame_rate=10.0), TASK)
    feed_sensors(no_actions, 0.1)
    no_actions.add_frame(0.1, frame(1))
    assert "actions" not in no_actions.take(0.0).model_input()


def test_model_input_has_the_inference_api_keys_and_shapes():
    s = RewardStream(StreamConfig(horizon=4, frame_rate=10.0), TASK)
    feed_sensors(s, 1.0)
    s.add_frame(1.0, frame(1, 48, 64))
    m = s.take(0.0).model_input()
    assert m[VIDEO_KEY].shape == (4, 48, 64, 3) and m[VIDEO_KEY].dtype == np.uint8
    assert all(m[k].shape == (4, 1) and m[k].dtype == np.float32 for k in STATE_KEYS)
    assert m[LANGUAGE_KEY] == TASK


def test_camera_size_change_and_time_going_back_restart_the_history():
    s = RewardStream(StreamConfig(horizon=3, frame_rate=10.0), TASK)
    feed_sensors(s, 2.0)
    s.add_frame(0.9, frame(1))
    s.add_frame(1.0, frame(2))
    note = s.add_frame(1.1, frame(3, 48, 64))
    assert "size changed from 32x24 to 64x48" in note
    assert ids(s.take(0.0)) == [3, 3, 3]
    note = s.add_frame(0.2, frame(4, 48, 64))          # a sim reset with sim time
    assert "went back in time" in note
    feed_sensors(s, 0.2)                                # states go back too: their history restarts
    assert ids(s.take(0.0)) == [4, 4, 4]
    assert s.restarts["camera size"] == 1 and s.restarts["camera time"] == 1 and s.restarts["joint_states time"] == 1


def test_history_is_bounded():
    s = RewardStream(StreamConfig(horizon=2, frame_rate=10.0), TASK)
    for i in range(300):
        t = i / 30
        s.add_frame(t, frame(i % 256))
        s.add_wheels(t, 0.0, 0.0)
        s.add_acceleration(t, 0.0)
    assert len(s._frames) <= 5               # 0.1 s span at 30 Hz + the frame before it
    assert len(s._wheels) <= 60


@pytest.mark.parametrize("kwargs,match", [
    (dict(horizon=0, frame_rate=10.0), "horizon"),
    (dict(horizon=2, frame_rate=0.0), "frame_rate"),
    (dict(horizon=2, frame_rate=math.nan), "frame_rate"),
    (dict(horizon=2, frame_rate=10.0, action_horizon=-1), "action_horizon"),
    (dict(horizon=2, frame_rate=10.0, max_state_age=0), "max_state_age"),
    (dict(horizon=True, frame_rate=10.0), "horizon"),
])
def test_bad_config_is_a_one_line_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StreamConfig(**kwargs)


# ---- one scoring step with the real tiny reward model ---------------------------------------------

@pytest.fixture(scope="module")
def tiny_reward():
    import torch

    from gr00t_rlhf_train.inference import LocalReward
    from gr00t_rlhf_train.model.policy import Gr00tPolicy
    from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
    from gr00t_rlhf_train.model.reward_model import RewardModel

    torch.manual_seed(0)
    rm = RewardModel.from_policy(Gr00tPolicy.from_config("tiny", seed=0),
                                 RewardHeadConfig(kind="dit", horizon=2, num_layers=2, num_heads=4, head_dim=16,
                                                  hidden_size=64))
    return LocalReward(rm, frame_rate=10.0, cuda_graphs=False, source="tiny")


def scored_clip(image_size=(48, 64)):
    s = RewardStream(StreamConfig(horizon=2, frame_rate=10.0), TASK)
    feed_sensors(s, 0.5)
    rng = np.random.default_rng(0)
    for i in range(6):
        s.add_frame(i / 10, rng.integers(0, 256, (*image_size, 3), dtype=np.uint8))
    return s.take(0.0)


def test_scorer_scores_a_stream_clip_and_draws_its_overlay(tiny_reward):
    from gr00t_rlhf_ros.reward_scoring import OK, RewardScorer

    scorer = RewardScorer(tiny_reward, history_seconds=5.0)
    clip = scored_clip()
    out = scorer.score(clip)
    assert out.status == OK and math.isfinite(out.value) and out.latency_s > 0
    assert out.value == scorer.score(clip).value                 # deterministic
    assert scorer.history.points()[-1].tolist() == [clip.stamp, out.value]
    scorer.stats.add(out, delay_s=0.02)
    assert scorer.stats.outcomes[OK] == 1 and scorer.stats.rate() > 0
    img = scorer.overlay(out)
    assert img.shape == clip.image.shape and not np.array_equal(img, clip.image)


def test_scorer_reports_a_nan_model_and_never_raises(tiny_reward):
    import torch

    from gr00t_rlhf_ros.reward_scoring import ERROR, RewardScorer

    scorer = RewardScorer(tiny_reward)
    bias = tiny_reward.model.head.reward_decoder[-1].bias
    saved = bias.detach().clone()
    try:
        with torch.no_grad():
            bias.fill_(math.nan)
        out = scorer.score(scored_clip())
    finally:
        with torch.no_grad():
            bias.copy_(saved)
    assert out.status == ERROR and out.value is None and "non-finite" in out.detail
    assert len(scorer.history.points()) == 0


def test_a_model_reading_other_keys_is_refused_and_frames_are_resized_to_the_training_size():
    from gr00t_rlhf_ros.reward_scoring import check_spec, resize_frames
    from gr00t_rlhf_train.inference import InferenceError, ObservationSpec

    assert check_spec(ObservationSpec(image_size=(96, 96)), "rm") == (96, 96)
    assert check_spec(ObservationSpec(), "rm") is None
    with pytest.raises(InferenceError, match=r"reward model rm: reads .*state.x.*reward_node provides"):
        check_spec(ObservationSpec(state_keys=[("state.x", 3)]), "rm")
    frames = np.random.default_rng(0).integers(0, 256, (3, 240, 320, 3), dtype=np.uint8)
    small = resize_frames(frames, (96, 96))
    assert small.shape == (3, 96, 96, 3) and small.dtype == np.uint8
    from gr00t_rlhf_train.data.cache import resize_frames as cache_resize     # exactly the training frames' resize
    np.testing.assert_array_equal(small, cache_resize(frames, (96, 96)).permute(0, 2, 3, 1).numpy())
    assert resize_frames(frames, None) is frames


def test_an_action_conditioned_model_scores_the_last_commands():
    import torch

    from gr00t_rlhf_ros.reward_scoring import OK, RewardScorer
    from gr00t_rlhf_train.inference import LocalReward
    from gr00t_rlhf_train.model.policy import Gr00tPolicy
    from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
    from gr00t_rlhf_train.model.reward_model import RewardModel

    torch.manual_seed(0)
    rm = RewardModel.from_policy(Gr00tPolicy.from_config("tiny", seed=0),
                                 RewardHeadConfig(kind="dit", horizon=2, action_horizon=3, num_layers=2, num_heads=4,
                                                  head_dim=16, hidden_size=64))
    with torch.no_grad():                                  # spread the scores (a fresh decoder is near zero)
        for p in rm.head.reward_decoder.parameters():
            p.mul_(20.0)
    scorer = RewardScorer(LocalReward(rm, frame_rate=10.0, cuda_graphs=False, source="tiny+actions"))

    def score(command: float) -> float:
        s = RewardStream(StreamConfig(horizon=2, frame_rate=10.0, action_horizon=3), TASK)
        feed_sensors(s, 1.0)
        for k in range(11):
            s.add_command(k / 10, command, -command)
        s.add_frame(0.9, frame(1, 48, 64))
        s.add_frame(1.0, frame(2, 48, 64))
        out = scorer.score(s.take(0.0))
        assert out.status == OK, out.detail
        return out.value

    assert score(2.0) != score(-2.0)                       # the commands reach the model
