"""Processor: normalisation round trip, batching, errors, LeRobot stats splitting."""
from __future__ import annotations

import numpy as np
import pytest

from gr00t_rlhf_train.model.normalization import MODES, StatsError, normalize, unnormalize
from gr00t_rlhf_train.model.processor import ModalityConfig, stats_from_lerobot

STATS = {"min": [-5.0, -4.0], "max": [5.0, 3.0], "mean": [0.3, -0.2], "std": [2.0, 1.5],
         "q01": [-4.5, -3.5], "q99": [4.5, 2.5]}


@pytest.mark.parametrize("mode", MODES)
def test_action_round_trip_is_exact(mode):
    rng = np.random.default_rng(0)
    x = rng.uniform([-4.5, -3.5], [4.5, 2.5], size=(16, 2))
    np.testing.assert_allclose(unnormalize(normalize(x, STATS, mode), STATS, mode), x, rtol=0, atol=1e-12)


def test_processor_action_round_trip(tiny_policy, observation):
    obs = observation(batch=2, actions=True)
    batch = tiny_policy.processor(obs)
    back = tiny_policy.processor.decode_actions(batch["action"].double().numpy())
    np.testing.assert_allclose(back["action.wheel_commands"], obs["action.wheel_commands"], atol=1e-5)
    assert batch["action_mask"][..., :2].all() and not batch["action_mask"][..., 2:].any()


def test_min_max_maps_range_to_unit_interval():
    y = normalize(np.array([[-5.0, -4.0], [5.0, 3.0]]), STATS, "min_max")
    np.testing.assert_array_equal(y, [[-1, -1], [1, 1]])


def test_batched_and_single_observations_agree(tiny_policy, observation):
    single = tiny_policy.processor(observation(seed=4))
    batched = tiny_policy.processor({k: (np.asarray(v)[None] if k != "task" else [v])
                                     for k, v in observation(seed=4).items()})
    for k in ("pixel_values", "input_ids", "state"):
        np.testing.assert_array_equal(single[k].numpy(), batched[k].numpy())
    assert int((single["input_ids"] == tiny_policy.model.image_token_id).sum()) == 4


def test_concatenated_state_equals_named_keys(tiny_policy, observation):
    obs = observation(seed=2)
    concat = {k: v for k, v in obs.items() if not k.startswith("state.")}
    concat["observation.state"] = np.concatenate([obs["state.left_wheel"], obs["state.right_wheel"],
                                                  obs["state.acceleration"]])
    np.testing.assert_array_equal(tiny_policy.processor(obs)["state"].numpy(),
                                  tiny_policy.processor(concat)["state"].numpy())


def test_missing_keys_are_named(tiny_policy, observation):
    obs = observation()
    del obs["task"]
    with pytest.raises(KeyError, match="instruction"):
        tiny_policy.processor(obs)
    obs = observation()
    del obs["video.ego_view"]
    with pytest.raises(KeyError, match="video.ego_view"):
        tiny_policy.processor(obs)
    with pytest.raises(ValueError, match="uint8"):
        tiny_policy.processor(observation() | {"video.ego_view": np.zeros((8, 8, 3), np.float32)})


def test_stats_from_lerobot_splits_by_modality():
    modality = ModalityConfig()
    stats = {"observation.state": {k: [1.0, 2.0, 3.0] for k in STATS},
             "action": {k: v for k, v in STATS.items()}}
    out = stats_from_lerobot(stats, modality)
    assert out["state"]["right_wheel"]["max"] == [2.0] and out["state"]["acceleration"]["min"] == [3.0]
    assert out["action"]["wheel_commands"]["max"] == [5.0, 3.0]
    with pytest.raises(StatsError, match="observation.state"):
        stats_from_lerobot({"action": stats["action"]}, modality)
