"""Stage 2 ``train reward`` on a tiny dataset written here (bright = good, dark = bad frames), tiny preset, CPU."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gr00t_rlhf_train.data import DatasetWriter
from gr00t_rlhf_train.data.cache import FrameCache, build_cache
from gr00t_rlhf_train.data.samples import RewardClips, collate
from gr00t_rlhf_train.model.configuration import ConfigError
from gr00t_rlhf_train.model.reward_model import RewardInputs, RewardModel
from gr00t_rlhf_train.stages import reward as stage
from gr00t_rlhf_train.stages.losses import LossConfigError
from gr00t_rlhf_train.stages.reward import RewardConfig, RewardConfigError, train_reward

BINARY = {0: "Doing bad", 1: "Doing good"}
SCORES = {k: f"score {k}" for k in range(-5, 6)}
SIZE = (32, 32)
SMALL_HEAD = dict(head="dit", head_layers=2, head_heads=4, head_dim=16, head_hidden=64)
FAST = dict(batch_size=8, lr=1e-3, warmup_steps=5, log_every=5, num_workers=0, save_every=0)


def write_dataset(root: Path, episodes: int = 10, frames: int = 16, vocabulary=BINARY) -> Path:
    """Labels alternate every 4 frames within each episode; a good frame is bright, a bad one dark."""
    rng = np.random.default_rng(0)
    keys = sorted(vocabulary)
    w = DatasetWriter.create(root, fps=10.0, image_size=SIZE, vocabulary=vocabulary)
    for e in range(episodes):
        ep = w.start_episode("Find Blue cube")
        for i in range(frames):
            good = (i // 4 + e) % 2 == 0
            key = keys[-1] if good else keys[0]
            if len(keys) > 2:                                        # scores: a spread of keys on each side
                key = int(rng.integers(1, 6)) if good else -int(rng.integers(1, 6))
            level = 200 if good else 50
            img = np.clip(rng.normal(level, 20, (*SIZE, 3)), 0, 255).astype(np.uint8)
            ep.add_frame(img, rng.normal(size=3), rng.uniform(-5, 5, 2), 100.0 + i / 10.0, key)
        ep.commit()
    w.close()
    return root


@pytest.fixture(scope="module")
def binary_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reward_data")
    write_dataset(root / "ds")
    return build_cache(root / "ds", root / "cache", image_size=SIZE, progress=False)


@pytest.fixture(scope="module")
def trained(binary_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("reward_run") / "run"
    cfg = RewardConfig(data=str(binary_cache), out_dir=str(out), holdout="8-9", val_fraction=0.25, horizon=2,
                       loss="bce+0.5*bt", pairs_per_batch=16, class_balance="weights", tuning="frozen",
                       head="mlp", head_hidden=64, train=FAST | dict(steps=24, eval_every=12, log_every=6, lr=5e-3))
    return cfg, train_reward(cfg)


def _records(out: str) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_loss_falls_and_validation_auroc_beats_chance(trained):
    cfg, result = trained
    train_losses = [r["train/loss"] for r in _records(cfg.out_dir) if "train/loss" in r]
    assert np.mean(train_losses[-2:]) < 0.7 * np.mean(train_losses[:2]), train_losses
    assert result.best_metric == "auroc" and result.target_kind == "binary" and result.threshold == 0.5
    assert result.train.best_metric > 0.8, result.train.eval_metrics
    assert set(result.train.eval_metrics) == set(stage.EVAL_METRICS)
    assert result.splits["test"] == [8, 9]
    assert not set(result.splits["val"]) & set(result.splits["train"]) and not set(result.splits["test"]) & (
        set(result.splits["val"]) | set(result.splits["train"]))
    assert "train/pairs" in _records(cfg.out_dir)[0] or any("train/pairs" in r for r in _records(cfg.out_dir))
    assert result.summary().startswith("train reward: 24 steps")


def test_checkpoint_is_self_describing_and_scores_identically(trained, binary_cache):
    cfg, result = trained
    rm = RewardModel.from_pretrained(result.last_checkpoint)                         # no flags
    assert rm.head_config.horizon == 2 and rm.head_config.output == "logit" and rm.tuning == "frozen"
    assert rm.head_config.reward_range == (0.0, 1.0)
    meta = json.loads((Path(result.last_checkpoint) / "gr00t_rlhf.json").read_text())
    info = meta["extra"]["reward_training"]
    assert info["loss"]["spec"] == "bce+0.5*bt" and info["threshold"] == 0.5 and info["splits"]["test"] == [8, 9]
    assert meta["feedback_vocabulary"] == {"0": "Doing bad", "1": "Doing good"}
    # normalisation statistics are the TRAIN episodes' ones
    cache = FrameCache(binary_cache)
    state = np.concatenate([cache.episode(e).state for e in result.splits["train"]])
    assert np.allclose(meta["stats"]["state"]["left_wheel"]["min"], state[:, :1].min(0), atol=1e-6)
    # the reloaded model gives exactly the metrics the run logged at its last evaluation
    val = RewardClips(cache, result.splits["val"], horizon=2)
    loss = RewardConfig(data="x", out_dir="y", loss="bce+0.5*bt", pairs_per_batch=16).loss_fn(0.5)
    again = stage.evaluator(val, loss, 0.5, 8, 2000)(rm.eval())
    for k in ("auroc", "pearson", "loss", "accuracy"):
        assert again[k] == pytest.approx(result.train.eval_metrics[k], abs=1e-6), k
    best = RewardModel.from_pretrained(result.best_checkpoint)
    again = stage.evaluator(val, loss, 0.5, 8, 2000)(best.eval())
    assert again["auroc"] == pytest.approx(result.train.best_metric, abs=1e-6)
    clip = {k: v[0] for k, v in stage.model_inputs(collate([val[0]])).items()}
    p = best.score(clip)
    assert 0.0 <= p <= 1.0 and p == RewardModel.from_pretrained(result.best_checkpoint).score(clip)


def test_the_model_never_sees_labels_or_feedback_text(binary_cache, tmp_path, monkeypatch):
    seen: list[dict] = []
    original = RewardInputs.__call__             # the host half of RewardModel.prepare: training and evaluation

    def spy(self, clip, generator=None, fast=None):
        batch = original(self, clip, generator, fast)
        seen.append({"keys": set(clip), "text": self.processor.tokenizer.batch_decode(batch["input_ids"])})
        return batch

    monkeypatch.setattr(RewardInputs, "__call__", spy)
    cfg = RewardConfig(data=str(binary_cache), out_dir=str(tmp_path / "run"), holdout="8-9", val_fraction=0.25,
                       loss="mse", train=FAST | dict(steps=2, eval_every=0, warmup_steps=1), **SMALL_HEAD)
    train_reward(cfg)
    assert seen
    for s in seen:
        assert s["keys"] <= {"video.ego_view", "state.left_wheel", "state.right_wheel", "state.acceleration",
                             "annotation.human.action.task_description"}, s["keys"]
        assert all("Find Blue cube" in t and "Doing" not in t for t in s["text"])


def test_scores_regression_uses_pearson(tmp_path):
    write_dataset(tmp_path / "ds", episodes=6, frames=12, vocabulary=SCORES)
    cfg = RewardConfig(data=str(tmp_path / "ds"), out_dir=str(tmp_path / "run"), holdout="5", val_fraction=0.25,
                       loss="mse+0.5*bt", class_balance="sampler", head="mlp", head_hidden=32, tuning="frozen",
                       train=dict(steps=6, eval_every=0, **FAST))
    result = train_reward(cfg)                                           # caches the dataset under run/cache
    assert result.best_metric == "pearson" and result.target_kind == "score" and result.threshold == 0.0
    assert Path(result.cache) == tmp_path / "run" / "cache"
    rm = RewardModel.from_pretrained(result.best_checkpoint)
    assert rm.head_config.output == "value" and rm.head_config.kind == "mlp" and rm.tuning == "frozen"
    assert math.isfinite(result.train.eval_metrics["pearson"])


@pytest.mark.parametrize("kw,match", [
    (dict(loss="mse+hinge"), "unknown; known losses: mse, focal_mse, bce, focal, bt"),
    (dict(horizon=40), "horizon = 40: longer than episode"),
    (dict(holdout="3-1"), "holdout"),
    (dict(holdout="0-20"), "do not exist"),
    (dict(class_balance="often"), "class_balance"),
    (dict(best_metric="f1"), "best_metric = 'f1': allowed"),
    (dict(head_layers=0), "RewardHeadConfig.num_layers = 0"),
    (dict(train=dict(steps=0)), "steps"),
    (dict(init="/nonexistent/ckpt"), "does not exist"),
])
def test_bad_configs_are_one_line_errors(binary_cache, tmp_path, kw, match):
    with pytest.raises((RewardConfigError, LossConfigError, ValueError, ConfigError)) as e:
        train_reward(RewardConfig(data=str(binary_cache), out_dir=str(tmp_path / "run"), **kw))
    assert match in str(e.value) and "\n" not in str(e.value)


def test_a_checkpoint_of_the_wrong_kind_is_refused(trained, binary_cache, tmp_path):
    _, result = trained
    with pytest.raises(RewardConfigError, match="kind is 'reward_model', expected 'policy'") as e:
        train_reward(RewardConfig(data=str(binary_cache), out_dir=str(tmp_path / "run"), init=result.last_checkpoint))
    assert "\n" not in str(e.value)


def test_a_dataset_without_labels_is_refused(binary_cache, tmp_path):
    copy = tmp_path / "unlabelled"
    copy.mkdir()
    meta = json.loads((binary_cache / "cache.json").read_text())
    for f in binary_cache.iterdir():
        if f.suffix == ".parquet":                                  # drop the labels: reward and feedback null
            t = pq.read_table(f)
            for col in ("reward", "feedback"):
                t = t.set_column(t.schema.get_field_index(col), col, pa.nulls(t.num_rows, t.schema.field(col).type))
            pq.write_table(t, copy / f.name)
            meta["episodes"][str(int(f.stem.split("_")[1]))]["bytes"] = (copy / f.name).stat().st_size
    (copy / "cache.json").write_text(json.dumps(meta))
    for target in ("reward", "feedback"):
        with pytest.raises(RewardConfigError, match="no next.reward labels|no feedback keys") as e:
            train_reward(RewardConfig(data=str(copy), out_dir=str(tmp_path / "run"), target=target))
        assert "\n" not in str(e.value)


def test_cli_flags_build_the_config(binary_cache, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    stage.add_parser(parser.add_subparsers())
    args = parser.parse_args(["reward", str(binary_cache), "--out", str(tmp_path / "run"), "--horizon", "4",
                              "--loss", "focal+0.5*bt", "--pairs-per-batch", "32", "--class-balance", "weights",
                              "--tuning", "lora", "--lora-rank", "4", "--head", "mlp", "--steps", "7", "--warmup-steps", "2",
                              "--holdout", "8-9", "--no-resume"])
    cfg = stage.config_from_args(args)
    assert (cfg.horizon, cfg.loss, cfg.pairs_per_batch, cfg.class_balance, cfg.tuning, cfg.lora_rank, cfg.head) == (
        4, "focal+0.5*bt", 32, "weights", "lora", 4, "mlp")
    assert cfg.train["steps"] == 7 and cfg.train["resume"] is False
    bad = parser.parse_args(["reward", str(binary_cache), "--out", str(tmp_path / "run"), "--loss", "hinge"])
    assert bad.func(bad) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: loss 'hinge': unknown") and "\n" not in err


def test_a_slice_of_a_seed_dataset(datasets_dir, tmp_path):
    """Four episodes of Reward_New_Data_WithBadEp (two good, two bad), cached at 32 px: a few steps run end
    to end, validation holds one good and one bad episode, the checkpoint reloads."""
    cache = build_cache(datasets_dir / "Reward_New_Data_WithBadEp", tmp_path / "cache", image_size=32,
                        episodes=[0, 1, 50, 51], progress=False)
    cfg = RewardConfig(data=str(cache), out_dir=str(tmp_path / "run"), val_fraction=0.5, horizon=4, stride=5,
                       loss="bce+bt", head="mlp", head_hidden=32, tuning="frozen", val_max_samples=32,
                       train=FAST | dict(steps=3, warmup_steps=1, eval_every=0))
    result = train_reward(cfg)
    assert len(result.splits["val"]) == 2 and {e // 50 for e in result.splits["val"]} == {0, 1}
    assert math.isfinite(result.train.eval_metrics["auroc"])
    rm = RewardModel.from_pretrained(result.best_checkpoint)
    assert rm.head_config.horizon == 4 and set(rm.processor.modality.state) == {"left_wheel", "right_wheel",
                                                                              "acceleration"}


def test_lora_run_resumes_where_it_stopped(binary_cache, tmp_path):
    kw = dict(data=str(binary_cache), out_dir=str(tmp_path / "run"), holdout="8-9", val_fraction=0.25, horizon=2,
              loss="focal+bt", tuning="lora", lora_rank=2, **SMALL_HEAD)
    first = train_reward(RewardConfig(**kw, train=FAST | dict(steps=2, warmup_steps=1, eval_every=0)))
    assert first.train.steps == 2 and first.train.start_step == 0
    again = train_reward(RewardConfig(**kw, train=FAST | dict(steps=3, warmup_steps=1, eval_every=0)))
    assert again.train.start_step == 2 and again.train.steps == 3
    rm = RewardModel.from_pretrained(again.last_checkpoint)
    assert rm.tuning == "lora" and rm.lora_rank == 2 and rm.head_config.output == "logit"
    assert any("lora_" in n for n, _ in rm.backbone.named_parameters())


def test_the_default_loss_follows_the_targets_and_the_study():
    from gr00t_rlhf_train.stages.reward import AUTO_LOSS, RewardConfig
    cfg = RewardConfig(data="x", out_dir="y")
    assert (cfg.loss, cfg.horizon, cfg.head) == ("auto", 4, "mlp")
    assert cfg.loss_fn(0.5, binary=True).output_kind == "logit"            # bce
    assert cfg.loss_spec(False) == AUTO_LOSS["score"] == "mse+0.5*bt"
    assert RewardConfig(data="x", out_dir="y", loss="focal").loss_spec(False) == "focal"
