"""Stage 1 (train sft) on the tiny preset with a tiny dataset written in the test (CPU)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.cli import main as cli_main
from gr00t_rlhf_train.data import DatasetWriter
from gr00t_rlhf_train.data.cache import FrameCache, build_cache
from gr00t_rlhf_train.data.samples import PolicySamples
from gr00t_rlhf_train.model.checkpoint import read_meta
from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.stages import sft as sft_module
from gr00t_rlhf_train.stages.loop import TrainConfig, TrainConfigError, lr_factor
from gr00t_rlhf_train.stages.sft import SFTConfig, SFTConfigError, make_evaluate, run_sft

EPISODES, FRAMES = 5, 24
HOLDOUT = 4          # its actions are the largest: training statistics must not see them


def episode_action(e: int) -> np.ndarray:
    return np.array([4.5, 4.9] if e == HOLDOUT else [(-1) ** e * (1 + e / 2), 2 - e], np.float32)


def write_dataset(root) -> None:
    """Each episode drives one constant command; the state echoes it (learnable), pictures move."""
    w = DatasetWriter.create(root, fps=10.0, image_size=(40, 48), vocabulary={0: "Doing bad", 1: "Doing good"})
    rng = np.random.default_rng(0)
    for e in range(EPISODES):
        ep = w.start_episode(["Find Blue cube", "Find Green sphere"][e % 2])
        a = episode_action(e)
        for i in range(FRAMES):
            img = np.full((40, 48, 3), 30 * e, np.uint8)
            img[:, (2 * i) % 48] = 255
            state = np.array([a[0], a[1], 0.1 * i], np.float32) + rng.normal(0, 0.01, 3).astype(np.float32)
            ep.add_frame(img, state, a, 100.0 + i / 10, e % 2)
        ep.commit()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft") / "ds"
    write_dataset(root)
    return root


@pytest.fixture(scope="module")
def cache(dataset, tmp_path_factory):
    return build_cache(dataset, tmp_path_factory.mktemp("sft_cache") / "c", image_size=48, progress=False)


def config(data, out, **kw) -> SFTConfig:
    train = dict(out_dir=str(out), steps=40, batch_size=8, lr=2e-3, warmup_steps=2, eval_every=20, save_every=20,
                 log_every=5, num_workers=0, seed=0)
    train.update(kw.pop("train", {}))
    base = dict(data=[str(data)], train=TrainConfig(**train), preset="tiny", holdout=[HOLDOUT], val_fraction=0.25,
                val_samples=16)
    return SFTConfig(**(base | kw))


def metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def observation() -> dict:
    rng = np.random.default_rng(3)
    return {"video.ego_view": rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), "state.left_wheel": [1.0],
            "state.right_wheel": [2.0], "state.acceleration": [0.5], "task": "Find Blue cube"}


def test_sft_from_a_dataset_learns_and_reloads(dataset, tmp_path):
    out = tmp_path / "run"
    # 80 steps at 3e-3: with the official N(0, 0.02) position embedding the tiny policy starts learning later
    s = run_sft(config(dataset, out, train=dict(lr=3e-3, schedule="constant", steps=80, eval_every=40,
                                                save_every=40)), progress=False)
    assert s.steps == 80 and s.checkpoint == str(out / "last") and s.best_checkpoint == str(out / "best")
    assert (out / "cache").is_dir()                       # the dataset was cached under <out>/cache
    (key,) = s.train_episodes
    assert s.holdout[key] == [HOLDOUT] and HOLDOUT not in s.train_episodes[key] + s.val_episodes[key]
    assert len(s.val_episodes[key]) == 1
    losses = [r["train/loss"] for r in metrics(out) if "train/loss" in r]
    assert np.mean(losses[-2:]) < 0.85 * np.mean(losses[:2]), losses
    # the flow-matching loss with fixed noise on the training episodes: the starting model vs the trained one
    fresh = Gr00tPolicy.from_config("tiny", modality=s.policy.processor.modality, stats=s.policy.processor.stats, seed=0)
    samples = PolicySamples(FrameCache(out / "cache" / "ds-96px"), s.train_episodes[key])
    fixed = make_evaluate(samples, s.policy.processor, batch_size=16, samples=64, seed=0)
    before, after = fixed(fresh.model.eval()), fixed(s.policy.model.eval())
    assert after["val_loss"] < 0.85 * before["val_loss"] and after["val_action_mse"] < before["val_action_mse"]
    val = [r["eval/val_loss"] for r in metrics(out) if "eval/val_loss" in r]
    assert len(val) == 2 and np.isfinite(val).all()

    reloaded = Gr00tPolicy.from_pretrained(out / "last")
    a = s.policy.get_action(observation(), seed=0)["action.wheel_commands"]
    b = reloaded.get_action(observation(), seed=0)["action.wheel_commands"]
    np.testing.assert_array_equal(a, b)
    meta = read_meta(out / "last")
    assert meta["modality"]["embodiment_tag"] == "new_embodiment" and meta["modality"]["action"] == {"wheel_commands": 2}
    # statistics from the training episodes only: the held-out episode's 4.9 is not the max
    assert meta["stats"]["action"]["wheel_commands"]["max"][1] < 4.0
    assert meta["extra"]["sft"]["episodes"][key]["holdout"] == [HOLDOUT]
    assert json.loads((out / "last" / "train_config.json").read_text())["steps"] == 80


def test_resume_continues_step_count_and_schedule(cache, tmp_path, monkeypatch):
    steps = dict(steps=8, eval_every=0, save_every=4, log_every=1, warmup_steps=2)
    run_sft(config(cache, tmp_path / "a", train=steps), progress=False)

    real = sft_module.PolicyCollator.__call__
    calls = {"n": 0}

    def crash(self, samples):
        calls["n"] += 1
        if calls["n"] > 6:
            raise KeyboardInterrupt
        return real(self, samples)

    monkeypatch.setattr(sft_module.PolicyCollator, "__call__", crash)
    with pytest.raises(KeyboardInterrupt):          # Ctrl-C in step 7: the 6 finished steps are saved
        run_sft(config(cache, tmp_path / "b", train=steps), progress=False)
    monkeypatch.setattr(sft_module.PolicyCollator, "__call__", real)
    assert json.loads((tmp_path / "b" / "last" / "trainer_state.json").read_text())["step"] == 6
    resumed = run_sft(config(cache, tmp_path / "b", train=steps), progress=False)
    assert resumed.steps == 8

    a, b = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    cfg = TrainConfig(out_dir="x", **steps, lr=2e-3)
    lr_a = {r["step"]: r["train/lr"] for r in a if "train/lr" in r}
    lr_b = {r["step"]: r["train/lr"] for r in b if "train/lr" in r}
    assert lr_a == lr_b == {k: pytest.approx(2e-3 * lr_factor(cfg, k - 1)) for k in range(1, 9)}
    # the same batches, noise and updates (CPU kernels may round differently from run to run: ~1e-7)
    loss_a = [r["train/loss"] for r in a if "train/loss" in r]
    assert [r["train/loss"] for r in b if "train/loss" in r] == pytest.approx(loss_a, rel=1e-4)
    wa = Gr00tPolicy.from_pretrained(tmp_path / "a" / "last").model.state_dict()
    wb = Gr00tPolicy.from_pretrained(tmp_path / "b" / "last").model.state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)


def test_lora_and_tuning_flags(cache, tmp_path):
    cfg = config(cache, tmp_path / "lora", tune_llm=True, tune_diffusion_model=False, lora_rank=4,
                 train=dict(steps=4, eval_every=0, save_every=0, warmup_steps=1))
    s = run_sft(cfg, progress=False)
    trainable = {n for n, p in s.policy.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("action_head.state_encoder", "action_head.action_encoder",
                                           "action_head.action_decoder", "action_head.position_embedding",
                                           "backbone.linear")) or ".lora_" in n for n in trainable)
    assert any(".lora_" in n for n in trainable)
    assert not any(n.startswith("action_head.model.") for n in trainable)
    reloaded = Gr00tPolicy.from_pretrained(tmp_path / "lora" / "last")    # LoRA merged: a plain policy
    a = s.policy.get_action(observation(), seed=0)["action.wheel_commands"]
    b = reloaded.get_action(observation(), seed=0)["action.wheel_commands"]
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_bad_configs_are_one_line_errors(cache, tmp_path, capsys):
    with pytest.raises(SFTConfigError, match="--preset 'huge'"):
        config(cache, tmp_path, preset="huge")
    with pytest.raises(TrainConfigError, match="TrainConfig.steps = 0"):
        config(cache, tmp_path, train=dict(steps=0))
    with pytest.raises(SFTConfigError, match=r"--holdout: episodes \[7, 8\]"):
        run_sft(config(cache, tmp_path / "h", holdout=[7, 8]), progress=False)
    with pytest.raises(SFTConfigError, match="--lora-rank"):
        config(cache, tmp_path, lora_rank=4)

    from gr00t_rlhf_train.model import RewardModel
    rm_dir = tmp_path / "rm"
    RewardModel.from_policy(Gr00tPolicy.from_config("tiny")).save_pretrained(rm_dir)
    with pytest.raises(SFTConfigError, match="kind is 'reward_model', expected 'policy'"):
        run_sft(config(cache, tmp_path / "k", checkpoint=str(rm_dir)), progress=False)

    capsys.readouterr()
    rc = cli_main(["train", "sft", "--data", str(cache), "--out", str(tmp_path / "cli"), "--checkpoint", str(rm_dir)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and err.startswith("error: train sft: --checkpoint") and "reward_model" in err
    rc = cli_main(["train", "sft", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "cli2")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "neither a frame cache" in err


def test_cli_runs_a_few_steps(cache, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(["train", "sft", "--data", str(cache), "--out", str(out), "--steps", "3", "--batch-size", "4",
                   "--warmup-steps", "1", "--holdout", "4", "--val-fraction", "0.25", "--val-samples", "4",
                   "--num-workers", "0", "--grad-accum", "2"])
    printed = capsys.readouterr().out
    assert rc == 0 and "steps         3" in printed and str(out / "last") in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["val_loss"] is not None
    assert Gr00tPolicy.from_pretrained(out / "best").processor.modality.embodiment_id == 31


def test_sft_on_a_slice_of_a_seed_dataset(datasets_dir, tmp_path):
    """Four episodes of Policy_Data_results_0001 (3 state values, 2 wheel commands, ~50 Hz rows, 10 fps video):
    cached, one held out, a few steps; the checkpoint carries the dataset's modality and reloads."""
    src = datasets_dir / "Policy_Data_results_0001"
    if not src.is_dir():
        pytest.skip(f"{src} is absent")
    cache = build_cache(src, tmp_path / "cache", image_size=56, episodes=range(4), progress=False)
    s = run_sft(config(cache, tmp_path / "run", holdout=[3], val_fraction=0.34,
                       train=dict(steps=6, warmup_steps=1, eval_every=0, save_every=0, log_every=2)), progress=False)
    (key,) = s.train_episodes
    assert s.holdout[key] == [3] and len(s.val_episodes[key]) == 1 and s.val_loss is not None
    assert all(np.isfinite(r["train/loss"]) for r in metrics(tmp_path / "run") if "train/loss" in r)
    policy = Gr00tPolicy.from_pretrained(tmp_path / "run" / "last")
    assert policy.processor.modality.state == {"left_wheel": 1, "right_wheel": 1, "acceleration": 1}
    chunk = policy.get_action(observation(), seed=0)["action.wheel_commands"]
    assert chunk.shape == (16, 2) and np.isfinite(chunk).all()


def test_bf16_autocast_trains(cache, tmp_path):
    """bf16 (what a GPU run uses): image tokens and prompt embeddings meet in one dtype in the backbone."""
    out = tmp_path / "bf16"
    s = run_sft(config(cache, out, train=dict(steps=2, eval_every=0, save_every=2, precision="bf16")), progress=False)
    assert s.steps == 2
    assert all(np.isfinite(r["train/loss"]) for r in metrics(out) if "train/loss" in r)
