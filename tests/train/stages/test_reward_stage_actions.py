"""``train reward --action-horizon K`` on a tiny dataset whose label depends on the actions only (good iff the
left wheel command is positive; frames and states are noise): samples, training, reload, eval, negatives."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.data import DatasetWriter
from gr00t_rlhf_train.data.cache import FrameCache, build_cache
from gr00t_rlhf_train.data.samples import RewardClips, collate, model_inputs
from gr00t_rlhf_train.eval.reward import evaluate_reward
from gr00t_rlhf_train.model.reward_model import RewardModel
from gr00t_rlhf_train.stages import reward as stage
from gr00t_rlhf_train.stages.reward import RewardConfig, RewardConfigError, action_negatives, train_reward

SIZE = (32, 32)
K = 4
FAST = dict(batch_size=16, lr=5e-3, warmup_steps=3, log_every=5, num_workers=0, save_every=0)


def write_action_dataset(root: Path, episodes: int = 10, frames: int = 16) -> Path:
    """Every row: a random wheel command; the label is 1 (good) iff its left wheel command is positive."""
    rng = np.random.default_rng(0)
    w = DatasetWriter.create(root, fps=10.0, image_size=SIZE, vocabulary={0: "Doing bad", 1: "Doing good"})
    for e in range(episodes):
        ep = w.start_episode("Find Blue cube")
        for i in range(frames):
            left = rng.uniform(0.5, 5.0) * rng.choice([-1.0, 1.0])
            img = np.clip(rng.normal(128, 20, (*SIZE, 3)), 0, 255).astype(np.uint8)
            ep.add_frame(img, rng.normal(size=3), [left, rng.uniform(-5, 5)], 100.0 + i / 10.0, int(left > 0))
        ep.commit()
    w.close()
    return root


@pytest.fixture(scope="module")
def action_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("action_data")
    write_action_dataset(root / "ds")
    return build_cache(root / "ds", root / "cache", image_size=SIZE, progress=False)


@pytest.fixture(scope="module")
def trained(action_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("action_run") / "run"
    cfg = RewardConfig(data=str(action_cache), out_dir=str(out), holdout="8-9", val_fraction=0.25, horizon=1,
                       action_horizon=K, loss="bce", tuning="frozen", head="mlp", head_hidden=64,
                       train=FAST | dict(steps=40, eval_every=20))
    return cfg, train_reward(cfg)


def test_clips_carry_the_recorded_actions_from_the_labelled_row(action_cache):
    cache = FrameCache(action_cache)
    clips = RewardClips(cache, [0], horizon=2, action_horizon=K)
    actions = cache.episode(0).action                                          # [16, 2]
    first, last = clips[0], clips[len(clips) - 1]
    np.testing.assert_array_equal(first["actions"], actions[0:K])             # a_t .. a_{t+K-1}
    np.testing.assert_array_equal(last["actions"], np.repeat(actions[-1:], K, 0))   # the last one repeated
    np.testing.assert_array_equal(clips[13]["actions"], actions[[13, 14, 15, 15]])
    assert "actions" in model_inputs(collate([first, last]))                   # an input, not a label
    assert "actions" not in RewardClips(cache, [0], horizon=2)[0]              # K = 0: as before
    with pytest.raises(ValueError, match="action_horizon=-1"):
        RewardClips(cache, [0], action_horizon=-1)


def test_training_with_actions_learns_what_the_label_depends_on(trained):
    cfg, result = trained
    records = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2]), losses
    assert result.train.best_metric > 0.8, result.train.eval_metrics          # validation AUROC


def test_checkpoint_reloads_and_scores_identically_with_actions(trained, action_cache):
    _, result = trained
    rm = RewardModel.from_pretrained(result.last_checkpoint)                   # no flags
    assert rm.head_config.action_horizon == K
    meta = json.loads((Path(result.last_checkpoint) / "gr00t_rlhf.json").read_text())
    assert meta["extra"]["reward_training"]["config"]["action_horizon"] == K
    val = RewardClips(FrameCache(action_cache), result.splits["val"], horizon=1, action_horizon=K)
    loss = RewardConfig(data="x", out_dir="y", loss="bce").loss_fn(0.5)
    again = stage.evaluator(val, loss, 0.5, 16, 2000)(rm.eval())
    for k in ("auroc", "loss"):
        assert again[k] == pytest.approx(result.train.eval_metrics[k], abs=1e-6), k
    clip = {k: v[0] for k, v in model_inputs(collate([val[0]])).items()}
    assert rm.score(clip) == RewardModel.from_pretrained(result.last_checkpoint).score(clip)
    # same observation, two chunks: driving the left wheel forward is what the labels rewarded
    forward, backward = np.tile([[3.0, 0.0]], (K, 1)), np.tile([[-3.0, 0.0]], (K, 1))
    scores = rm.score(clip | {"actions": np.stack([forward, backward])})
    assert scores[0] > scores[1] + 0.3, scores


def test_eval_reward_feeds_the_recorded_actions(trained, action_cache, tmp_path):
    _, result = trained
    out = evaluate_reward(result.last_checkpoint, str(action_cache), episodes=[8, 9], out_dir=tmp_path / "eval")
    assert out["metrics"]["frame.auroc"] > 0.8, out["metrics"]
    info = json.loads((tmp_path / "eval" / "metrics.json").read_text())["info"]
    assert info["action_horizon"] == K


def test_action_negatives_swap_actions_and_lower_the_target():
    rng = np.random.default_rng(0)
    inputs = {"actions": rng.normal(size=(64, K, 2)), "task": ["x"] * 64}
    target = np.ones(64)
    g = torch.Generator().manual_seed(0)
    new, t = action_negatives(inputs, target, 0.5, -1.0, g)
    swapped = t == -1.0
    assert 16 < swapped.sum() < 48 and np.all(t[~swapped] == 1.0) and np.all(target == 1.0)   # input untouched
    np.testing.assert_array_equal(new["actions"][~swapped], inputs["actions"][~swapped])
    for i in np.flatnonzero(swapped):                                          # another sample's actions
        matches = [j for j in range(64) if np.array_equal(new["actions"][i], inputs["actions"][j])]
        assert matches and i not in matches
    again, t2 = action_negatives(inputs, target, 0.5, -1.0, torch.Generator().manual_seed(0))
    assert np.array_equal(t2, t) and np.array_equal(again["actions"], new["actions"])           # deterministic


def test_a_run_with_action_negatives(action_cache, tmp_path):
    cfg = RewardConfig(data=str(action_cache), out_dir=str(tmp_path / "run"), holdout="8-9", val_fraction=0.25,
                       action_horizon=2, action_negatives=0.3, loss="bce", tuning="frozen", head="dit",
                       head_layers=2, head_heads=2, head_dim=16, head_hidden=32,
                       train=FAST | dict(steps=2, warmup_steps=1, eval_every=0))
    result = train_reward(cfg)
    assert RewardModel.from_pretrained(result.last_checkpoint).head_config.action_horizon == 2


@pytest.mark.parametrize("kw,match", [
    (dict(action_horizon=-1), "action_horizon = -1: must be an integer >= 0"),
    (dict(action_horizon=True), "action_horizon = True"),
    (dict(action_negatives=0.5), "action_negatives = 0.5: needs --action-horizon"),
    (dict(action_horizon=2, action_negatives=1.0), "action_negatives = 1.0: must be a probability in [0, 1)"),
])
def test_bad_action_settings_are_one_line_errors(action_cache, tmp_path, kw, match):
    with pytest.raises(RewardConfigError) as e:
        RewardConfig(data=str(action_cache), out_dir=str(tmp_path / "run"), **kw)
    assert match in str(e.value) and "\n" not in str(e.value)


def test_cli_flags(action_cache, tmp_path):
    parser = argparse.ArgumentParser()
    stage.add_parser(parser.add_subparsers())
    args = parser.parse_args(["reward", str(action_cache), "--out", str(tmp_path / "run"), "--action-horizon", "4",
                              "--action-negatives", "0.25"])
    cfg = stage.config_from_args(args)
    assert (cfg.action_horizon, cfg.action_negatives) == (4, 0.25)
    assert cfg.head_config().action_horizon == 4


def test_actions_are_the_policy_chunk_rows_on_a_seed_dataset(datasets_dir, tmp_path):
    """The seed data has ~5 rows per picture: the K actions are the first K of the policy's chunk at the clip's
    labelled row, stepping through rows at the frame rate."""
    from gr00t_rlhf_train.data.samples import PolicySamples

    cache = FrameCache(build_cache(datasets_dir / "Reward_New_Data_WithBadEp", tmp_path / "cache", image_size=32,
                                   episodes=[0], progress=False))
    clips = RewardClips(cache, [0], horizon=2, action_horizon=8, decode=False)
    chunks = PolicySamples(cache, [0], action_horizon=16, decode=False)
    assert len(clips) == len(chunks) and len(cache.episode(0).grid_rows(cache.fps)) < cache.rows(0)
    for i in (0, len(clips) // 2, len(clips) - 3, len(clips) - 1):
        want = np.concatenate([chunks[i][f"action.{n}"] for n in cache.modality["action"]], axis=-1)[:8]
        assert clips[i]["row"] == chunks[i]["row"]
        np.testing.assert_array_equal(clips[i]["actions"], want)
