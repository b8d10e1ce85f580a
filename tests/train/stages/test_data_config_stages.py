"""The data config (``--data-config`` / ``--state-keys`` / ``--action-keys`` ...) wired into ``train sft`` and
``train reward``: a subset of keys in another order trains, is kept in the checkpoint and drives the vectors;
an unknown key is a one-line error (tiny preset, CPU, a few steps)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gr00t_rlhf_train.cli import main as cli_main
from gr00t_rlhf_train.data.cache import META_FILE, FrameCache, build_cache
from gr00t_rlhf_train.model.checkpoint import read_meta
from gr00t_rlhf_train.model.configuration import DataConfig
from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.reward_model import RewardModel
from gr00t_rlhf_train.stages import reward as stage
from gr00t_rlhf_train.stages.reward import RewardConfig, RewardConfigError, train_reward

from test_reward_stage_actions import K, write_action_dataset
from test_sft import observation, write_dataset

FAST = ["--steps", "2", "--batch-size", "4", "--warmup-steps", "1", "--eval-every", "0", "--save-every", "0",
        "--num-workers", "0", "--val-samples", "4", "--holdout", "4", "--val-fraction", "0.25"]


@pytest.fixture(scope="module")
def sft_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("dc_sft")
    write_dataset(root / "ds")
    return build_cache(root / "ds", root / "cache", image_size=48, progress=False)


def test_sft_with_a_reordered_subset_of_state_keys(sft_cache, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli_main(["train", "sft", "--data", str(sft_cache), "--out", str(out), *FAST,
                   "--state-keys", "state.acceleration,state.left_wheel", "--state-mode", "mean_std"])
    assert rc == 0, capsys.readouterr().err
    meta = read_meta(out / "last")
    data = meta["model"]["data"]
    assert data["state_keys"] == ["state.acceleration", "state.left_wheel"] and data["state_mode"] == "mean_std"
    assert data["action_keys"] is None and data["normalization"] == "official"
    assert meta["extra"]["sft"]["data_config"] == data
    policy = Gr00tPolicy.from_pretrained(out / "last")
    assert list(policy.processor.modality.state) == ["acceleration", "left_wheel"]
    assert policy.processor.modality.state_mode == "mean_std"
    assert set(policy.processor.stats["state"]) == {"acceleration", "left_wheel"}   # right_wheel never read
    obs = observation()                                                # left 1.0, right 2.0, acceleration 0.5
    state = policy.processor(obs)["state"].reshape(-1).double().numpy()
    st = policy.processor.stats["state"]
    want = [(0.5 - st["acceleration"]["mean"][0]) / st["acceleration"]["std"][0],
            (1.0 - st["left_wheel"]["mean"][0]) / st["left_wheel"]["std"][0]]
    np.testing.assert_allclose(state[:2], want, rtol=1e-4, atol=1e-5)
    assert not state[2:].any()                                         # padding up to max_state_dim


def test_sft_without_flags_keeps_every_key_in_file_order(sft_cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["train", "sft", "--data", str(sft_cache), "--out", str(out), *FAST]) == 0, capsys.readouterr().err
    assert read_meta(out / "last")["model"]["data"] == DataConfig().to_dict()
    policy = Gr00tPolicy.from_pretrained(out / "last")
    assert list(policy.processor.modality.state) == ["left_wheel", "right_wheel", "acceleration"]
    assert policy.processor.modality.state_mode == "min_max"


@pytest.mark.parametrize("flag, key", [("--state-keys", "state.elbow"), ("--action-keys", "action.gripper")])
def test_sft_unknown_key_is_a_one_line_error(sft_cache, tmp_path, capsys, flag, key):
    rc = cli_main(["train", "sft", "--data", str(sft_cache), "--out", str(tmp_path / "x"), *FAST, flag, key])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert key in err and "meta/modality.json" in err and err.startswith("error: train sft:"), err


# -- train reward -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_action_cache(tmp_path_factory):
    """The actions dataset's cache with its 2-wide ``wheel_commands`` split into ``left`` and ``right``."""
    root = tmp_path_factory.mktemp("dc_reward")
    write_action_dataset(root / "ds", episodes=6, frames=8)
    cache = build_cache(root / "ds", root / "cache", image_size=(32, 32), progress=False)
    meta = json.loads((cache / META_FILE).read_text())
    meta["modality"]["action"] = {"left": [0, 1], "right": [1, 2]}
    (cache / META_FILE).write_text(json.dumps(meta))
    return cache


def test_reward_training_reads_actions_in_the_data_config_order(two_action_cache, tmp_path, monkeypatch):
    made = []

    class Recording(stage.RewardClips):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(stage, "RewardClips", Recording)
    out = tmp_path / "run"
    cfg = RewardConfig(data=str(two_action_cache), out_dir=str(out), holdout="5", val_fraction=0.25, horizon=1,
                       action_horizon=K, loss="bce", tuning="frozen", head="mlp", head_hidden=16,
                       data_config={"action_keys": ["action.right", "action.left"]},
                       train=dict(steps=2, batch_size=8, warmup_steps=1, eval_every=0, save_every=0, num_workers=0))
    train_reward(cfg)
    clips = [c for c in made if c.action_horizon]
    assert len(clips) == 2 and all(c.action_spans == [(1, 2), (0, 1)] for c in clips)
    recorded = FrameCache(two_action_cache).episode(clips[0].episodes[0]).action
    np.testing.assert_array_equal(clips[0][0]["actions"], recorded[:K][:, [1, 0]])   # right first
    rm = RewardModel.from_pretrained(out / "last")
    assert list(rm.processor.modality.action) == ["right", "left"]
    assert read_meta(out / "last")["model"]["data"]["action_keys"] == ["action.right", "action.left"]


def test_reward_unknown_key_is_a_one_line_error(two_action_cache, tmp_path, capsys):
    want = r"^train reward: action_keys: action.wheel_commands is not in .*/meta/modality.json \(its action keys: " \
           r"action.left, action.right\)$"
    with pytest.raises(RewardConfigError, match=want):
        train_reward(RewardConfig(data=str(two_action_cache), out_dir=str(tmp_path / "x"), holdout="5",
                                  val_fraction=0.25, horizon=1, tuning="frozen", loss="bce",
                                  data_config=DataConfig(action_keys=["action.wheel_commands"]),
                                  train=dict(steps=1, warmup_steps=0, num_workers=0)))
    rc = cli_main(["train", "reward", str(two_action_cache), "--out", str(tmp_path / "y"), "--holdout", "5",
                   "--val-fraction", "0.25", "--horizon", "1", "--state-keys", "state.elbow", "--steps", "1",
                   "--warmup-steps", "0"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "state.elbow" in err and "modality.json" in err, err

