"""Stage 3 (train rl) on the tiny preset with a generated dataset, an SFT policy and a reward model made here (CPU)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.cli import main as cli_main
from gr00t_rlhf_train.data import DatasetWriter
from gr00t_rlhf_train.data.cache import FrameCache, build_cache
from gr00t_rlhf_train.data.samples import PolicySamples, RewardClips, collate, model_inputs
from gr00t_rlhf_train.model.checkpoint import read_meta
from gr00t_rlhf_train.model.policy import Gr00tPolicy, default_stats
from gr00t_rlhf_train.model.processor import ModalityConfig
from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
from gr00t_rlhf_train.model.reward_model import RewardModel
from gr00t_rlhf_train.stages import rl as rl_module
from gr00t_rlhf_train.stages import weighting as wt
from gr00t_rlhf_train.stages.loop import TrainConfig
from gr00t_rlhf_train.stages.sft import make_evaluate
from gr00t_rlhf_train.stages.rl import SCORES_FILE, RLConfig, RLConfigError, RLSamples, train_rl, weigh

EPISODES, FRAMES = 5, 20
VOCABULARY = {0: "Doing bad", 1: "Doing good"}
KEY = "action.wheel_commands"


def write_dataset(root) -> None:
    """Each episode drives one constant command (the state echoes it); pictures move; episodes alternate tasks."""
    w = DatasetWriter.create(root, fps=10.0, image_size=(40, 48), vocabulary=VOCABULARY)
    rng = np.random.default_rng(0)
    for e in range(EPISODES):
        ep = w.start_episode(["Find Blue cube", "Find Green sphere"][e % 2])
        a = np.array([(-1) ** e * (1 + e / 2), 2 - e], np.float32)
        for i in range(FRAMES):
            img = np.full((40, 48, 3), 30 * e, np.uint8)
            img[:, (2 * i) % 48] = 255
            state = np.array([a[0], a[1], 0.1 * i], np.float32) + rng.normal(0, 0.01, 3).astype(np.float32)
            ep.add_frame(img, state, a, 100.0 + i / 10, e % 2)
        ep.commit()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl") / "ds"
    write_dataset(root)
    return build_cache(root, tmp_path_factory.mktemp("rl_cache") / "c", image_size=48, progress=False)


def stats_of(cache) -> dict:
    c = FrameCache(cache)
    state = np.concatenate([c.episode(e).state for e in c.episodes]).astype(np.float64)
    action = np.concatenate([c.episode(e).action for e in c.episodes]).astype(np.float64)

    def entry(x):
        return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
                "std": x.std(0).tolist(), "q01": x.min(0).tolist(), "q99": x.max(0).tolist()}
    return {"state": {"left_wheel": entry(state[:, :1]), "right_wheel": entry(state[:, 1:2]),
                      "acceleration": entry(state[:, 2:3])}, "action": {"wheel_commands": entry(action)}}


@pytest.fixture(scope="module")
def checkpoints(cache, tmp_path_factory):
    """An "SFT" policy (tiny, random weights, the data's statistics) and an action-conditioned tiny reward model."""
    root = tmp_path_factory.mktemp("rl_ckpt")
    policy = Gr00tPolicy.from_config("tiny", stats=stats_of(cache), seed=0)
    policy.save_pretrained(root / "sft")
    torch.manual_seed(1)
    rm = RewardModel.from_policy(policy, RewardHeadConfig(kind="mlp", horizon=2, hidden_size=32, action_horizon=4),
                                 tuning="frozen")
    rm.save_pretrained(root / "rm", feedback_vocabulary=VOCABULARY)
    return {"sft": root / "sft", "rm": root / "rm", "root": root, "policy": policy, "rm_model": rm}


def config(cache, checkpoints, out, **kw) -> RLConfig:
    train = dict(out_dir=str(out), steps=30, batch_size=8, lr=1e-2, warmup_steps=0, schedule="constant",
                 eval_every=30, save_every=30, log_every=5, num_workers=0, seed=0)
    train.update(kw.pop("train", {}))
    base = dict(policy=str(checkpoints["sft"]), reward_model=str(checkpoints["rm"]), data=[str(cache)],
                train=TrainConfig(**train), holdout=[4], val_fraction=0.25, val_samples=8)
    return RLConfig(**(base | kw))


def observation() -> dict:
    rng = np.random.default_rng(3)
    return {"video.ego_view": rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), "state.left_wheel": [1.0],
            "state.right_wheel": [2.0], "state.acceleration": [0.5], "task": "Find Blue cube"}


def metrics(out) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


# -- weights and labels ---------------------------------------------------------------------------
def test_weights_and_labels_follow_the_reward():
    scores = np.array([0.1, 0.5, 0.9, 0.2, 0.8, 0.3])
    episodes = np.array([0, 0, 0, 1, 1, 1])
    tasks = np.array(["a", "a", "a", "b", "b", "b"])
    adv = wt.advantages(scores, wt.baseline_groups(episodes, tasks, "task"))
    np.testing.assert_allclose(adv, [-0.4, 0.0, 0.4, -0.233333, 0.366667, -0.133333], atol=1e-6)
    w = wt.sample_weights(adv, temperature=0.2, clip=20.0, normalize="data")
    assert w.mean() == pytest.approx(1.0)
    for group in (slice(0, 3), slice(3, 6)):                     # higher score -> higher weight, within a task
        order = np.argsort(scores[group])
        assert np.all(np.diff(w[group][order]) > 0)
    assert wt.good_labels(adv, threshold=0.0).tolist() == [False, False, True, False, True, False]
    assert wt.good_labels(adv, quantile=0.5).sum() == 3
    assert wt.condition_indices(np.array([True, False])).tolist() == [wt.GOOD, wt.BAD]
    # equal scores -> equal weights (plain FM), and the cap
    assert np.all(wt.sample_weights(np.zeros(4), 0.1, 5.0) == 1.0)
    capped = wt.sample_weights(np.array([0.0, 10.0]), temperature=0.1, clip=5.0, normalize="batch")
    assert capped.tolist() == [1.0, pytest.approx(5.0)]
    # colder temperature -> more contrast; the per-episode baseline uses each episode's mean
    assert np.ptp(wt.sample_weights(adv, 0.1, 1e3)) > np.ptp(wt.sample_weights(adv, 1.0, 1e3))
    ep_adv = wt.advantages(scores, wt.baseline_groups(episodes, tasks, "episode"))
    assert ep_adv[:3].sum() == pytest.approx(0) and ep_adv[3:].sum() == pytest.approx(0)
    assert wt.effective_sample_size(np.ones(5)) == pytest.approx(1.0)


def test_condition_dropout():
    cond = torch.full((4000,), wt.GOOD)
    dropped = wt.drop_conditions(cond, 0.25, torch.Generator().manual_seed(0))
    assert dropped.shape == cond.shape and set(dropped.unique().tolist()) == {wt.GOOD, wt.UNCONDITIONED}
    assert (dropped == wt.UNCONDITIONED).float().mean().item() == pytest.approx(0.25, abs=0.03)
    again = wt.drop_conditions(cond, 0.25, torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again)                                        # seeded: reproducible
    assert torch.equal(wt.drop_conditions(cond, 0.0), cond)
    with pytest.raises(wt.WeightingError, match="cond_dropout = 1.0"):
        wt.drop_conditions(cond, 1.0)


def test_weigh_and_demo_mix():
    scores = {"score": np.array([0.0, 1.0, 0.5, 0.5]), "episode": np.array([0, 0, 1, 1]), "source": np.zeros(4, int),
              "row": np.arange(4), "task": np.array(["t"] * 4)}
    cfg_kw = dict(policy="p", reward_model="r", data=["d"], train=TrainConfig(out_dir="x"))
    w = weigh(RLConfig(**cfg_kw, baseline="episode", method="acfm"), scores)
    assert w["good"].tolist() == [False, True, False, False] and w["weight"][1] > w["weight"][0]
    assert w["weight"][2] == w["weight"][3]
    base = [{"i": i} for i in range(6)]
    demos = [{"d": j} for j in range(10)]
    mix = RLSamples(base, np.ones(6), np.full(6, wt.BAD), demos, demo_fraction=0.25)
    assert len(mix) == 8 and mix.num_demos == 2
    assert mix[0]["rl_condition"] == wt.BAD and mix[0]["rl_demo"] == 0
    assert mix[6] == {"d": 0, "rl_weight": 1.0, "rl_condition": wt.GOOD, "rl_demo": 1} and mix[7]["d"] == 5


# -- the stage --------------------------------------------------------------------------------------
def test_rwfm_trains_scores_once_and_reloads(cache, checkpoints, tmp_path, monkeypatch):
    out = tmp_path / "rwfm"
    r = train_rl(config(cache, checkpoints, out, method="rwfm"), progress=False)
    assert r.steps == 30 and r.checkpoint == str(out / "last") and r.samples > 0
    # the flow-matching loss with fixed noise on the training samples: the SFT policy vs the trained one
    (key,) = r.train_episodes
    samples = PolicySamples(FrameCache(cache), r.train_episodes[key])
    fixed = make_evaluate(samples, r.policy.processor, batch_size=16, samples=48, seed=0)
    before = fixed(Gr00tPolicy.from_pretrained(checkpoints["sft"]).model.eval())["val_loss"]
    after = fixed(r.policy.model.eval())["val_loss"]
    assert after < 0.95 * before, (before, after)
    assert all("train/weight_mean" in m for m in metrics(out) if "train/loss" in m)
    assert r.val_reward is not None and np.isfinite(r.val_reward) and np.isfinite(r.val_reward_recorded)
    # the stored scores are the reward model's scores of each training sample (clip + recorded actions)
    with np.load(out / SCORES_FILE) as z:
        stored = {k: z[k] for k in z.files}
    assert len(stored["score"]) == r.samples and stored["weight"].mean() == pytest.approx(1.0)
    rm = RewardModel.from_pretrained(checkpoints["rm"])
    clips = RewardClips(FrameCache(cache), r.train_episodes[key], horizon=2, target=None, action_horizon=4)
    picks = [0, 7, len(clips) - 1]
    batch = collate([clips[i] for i in picks])
    np.testing.assert_allclose(rm.score(model_inputs(batch)), stored["score"][picks], rtol=1e-5, atol=1e-6)
    assert stored["episode"][picks].tolist() == list(batch["episode"]) and stored["row"][picks].tolist() == list(batch["row"])
    # reloads and samples identically; the checkpoint says what it is
    reloaded = Gr00tPolicy.from_pretrained(out / "last")
    np.testing.assert_array_equal(reloaded.get_action(observation(), seed=0)[KEY],
                                  r.policy.get_action(observation(), seed=0)[KEY])
    assert not reloaded.advantage_conditioned
    meta = read_meta(out / "last")
    assert meta["extra"]["rl"]["method"] == "rwfm" and meta["extra"]["rl"]["scores"]["weight_ess"] > 0
    # a second run in the same directory reuses the scores (resume) and continues
    def no_scoring(*a, **k):
        raise AssertionError("the scores were computed again")

    monkeypatch.setattr(rl_module, "score_clips", no_scoring)
    again = train_rl(config(cache, checkpoints, out, method="rwfm", train=dict(steps=32)), progress=False)
    assert again.steps == 32
    with np.load(out / SCORES_FILE) as z:
        np.testing.assert_array_equal(z["score"], stored["score"])


def test_acfm_with_demos_conditions_and_samples(cache, checkpoints, tmp_path):
    out = tmp_path / "acfm"
    r = train_rl(config(cache, checkpoints, out, method="acfm", guidance=2.0, cond_dropout=0.3, demos=[str(cache)],
                        demo_fraction=0.25, anchor_weight=0.1, train=dict(steps=10, eval_every=0, log_every=2)),
                 progress=False)
    assert r.demo_samples > 0 and r.steps == 10
    assert all("train/anchor" in m for m in metrics(out) if "train/loss" in m)
    assert 0 < r.scores["good_fraction"] < 1
    policy = Gr00tPolicy.from_pretrained(out / "last")
    head = policy.config.action_head
    assert policy.advantage_conditioned and head.default_condition == "good" and head.default_guidance == 2.0
    obs = observation()
    default = policy.get_action(obs, seed=0)[KEY]
    np.testing.assert_array_equal(default, r.policy.get_action(obs, seed=0)[KEY])
    np.testing.assert_array_equal(default, policy.get_action(obs, seed=0, condition="good", guidance=2.0)[KEY])
    assert not np.allclose(policy.get_action(obs, seed=0, condition="good", guidance=1.0)[KEY],
                           policy.get_action(obs, seed=0, condition="bad", guidance=1.0)[KEY])
    # the inference runtime of the policy node loads it with no flags: the checkpoint's condition and guidance
    from gr00t_rlhf_train.inference import open_policy
    runtime = open_policy(str(out / "last"), device="cpu")
    spec = runtime.spec
    served = runtime.act({spec.language_key: obs["task"]} | {k: v for k, v in obs.items() if k != "task"}, seed=0)
    np.testing.assert_allclose(served.actions, default, atol=1e-5)
    shares = [m["train/good_share"] for m in metrics(out) if "train/good_share" in m]
    assert shares and all(0 < s < 1 for s in shares)


def test_cli_runs_and_prints_a_summary(cache, checkpoints, tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli_main(["train", "rl", "--policy", str(checkpoints["sft"]), "--reward-model", str(checkpoints["rm"]),
                     "--data", str(cache), "--method", "both", "--out", str(out), "--steps", "3", "--batch-size", "8",
                     "--warmup-steps", "0", "--num-workers", "0", "--holdout", "4", "--val-fraction", "0.25",
                     "--val-samples", "4", "--eval-every", "0", "--label-quantile", "0.5"])
    assert code == 0
    text = capsys.readouterr().out
    assert "steps         3 (both)" in text and "val reward" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "both" and summary["scores"]["good_fraction"] == pytest.approx(0.5, abs=0.1)


# -- one-line errors ----------------------------------------------------------------------------------
def cli_error(capsys, *args) -> str:
    assert cli_main(["train", "rl", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: train rl: "), err
    return err


def test_errors(cache, checkpoints, tmp_path, capsys):
    root = checkpoints["root"]
    common = ["--data", str(cache), "--out", str(tmp_path / "x"), "--steps", "2", "--num-workers", "0"]
    # a policy checkpoint that is a reward model
    err = cli_error(capsys, "--policy", str(checkpoints["rm"]), "--reward-model", str(checkpoints["rm"]), *common)
    assert "kind is 'reward_model', expected 'policy'" in err
    # a preset name instead of a checkpoint
    err = cli_error(capsys, "--policy", "tiny", "--reward-model", str(checkpoints["rm"]), *common)
    assert "--policy tiny: not a checkpoint directory" in err
    # a reward model without a feedback vocabulary
    rm = checkpoints["rm_model"]
    rm.save_pretrained(root / "rm_novoc")
    err = cli_error(capsys, "--policy", str(checkpoints["sft"]), "--reward-model", str(root / "rm_novoc"), *common)
    assert "no feedback vocabulary" in err
    # a reward model for another embodiment
    other = Gr00tPolicy.from_config("tiny", modality=ModalityConfig(embodiment_tag="gr1", embodiment_id=24),
                                    stats=stats_of(cache), seed=0)
    RewardModel.from_policy(other, RewardHeadConfig(kind="mlp", hidden_size=16)).save_pretrained(
        root / "rm_gr1", feedback_vocabulary=VOCABULARY)
    err = cli_error(capsys, "--policy", str(checkpoints["sft"]), "--reward-model", str(root / "rm_gr1"), *common)
    assert "reward model for embodiment 'gr1' (id 24), the policy is 'new_embodiment' (id 31)" in err
    # the reward model given as the policy's reward... a policy as the reward model
    err = cli_error(capsys, "--policy", str(checkpoints["sft"]), "--reward-model", str(checkpoints["sft"]), *common)
    assert "kind is 'policy', expected 'reward_model'" in err
    # a dataset without the policy's modality keys
    modality = ModalityConfig(state={"left_wheel": 1, "right_wheel": 1, "acceleration": 1, "battery": 1})
    Gr00tPolicy.from_config("tiny", modality=modality, stats=default_stats(modality), seed=0).save_pretrained(
        root / "sft_battery")
    err = cli_error(capsys, "--policy", str(root / "sft_battery"), "--reward-model", str(checkpoints["rm"]), *common)
    assert "lacks the policy's modality keys ['state.battery']" in err
    # settings
    err = cli_error(capsys, "--policy", str(checkpoints["sft"]), "--reward-model", str(checkpoints["rm"]), *common,
                    "--temperature", "0")
    assert "--temperature 0.0: must be a finite number > 0" in err
    err = cli_error(capsys, "--policy", str(checkpoints["sft"]), "--reward-model", str(checkpoints["rm"]), *common,
                    "--demo-fraction", "0.2")
    assert "needs --demos" in err
    err = cli_error(capsys, "--policy", str(checkpoints["sft"]), "--reward-model", str(checkpoints["rm"]), *common,
                    "--guidance", "3")
    assert "only for --method acfm or both" in err
    with pytest.raises(RLConfigError, match="--method 'ppo'"):
        RLConfig(policy="p", reward_model="r", data=["d"], train=TrainConfig(out_dir="x"), method="ppo")


def test_rl_loss_weights_conditions_and_anchor():
    from gr00t_rlhf_train.stages.rl import RLLoss

    rng = np.random.default_rng(0)
    policy = Gr00tPolicy.from_config("tiny", seed=0).enable_advantage_conditioning()
    obs = {"video.ego_view": rng.integers(0, 255, (4, 48, 48, 3), dtype=np.uint8),
           "observation.state": rng.normal(size=(4, 3)), "task": ["Find Blue cube"] * 4,
           KEY: rng.uniform(-5, 5, (4, 16, 2))}
    batch = policy.processor(obs) | {"rl_weight": torch.tensor([1.0, 3.0, 2.0, 5.0]),
                                     "rl_condition": torch.tensor([1, 2, 1, 1]),
                                     "rl_demo": torch.tensor([False, False, False, True])}
    plain = {k: v for k, v in batch.items() if not k.startswith("rl_")}
    cfg = dict(policy="p", reward_model="r", data=["d"], train=TrainConfig(out_dir="x"))
    # batch normalisation: the RL samples' weights to mean 1, the demonstration keeps 1
    loss_fn = RLLoss(RLConfig(**cfg, method="both", normalize="batch", cond_dropout=0.0))
    torch.manual_seed(0)
    loss, logs = loss_fn(policy.model, batch)
    torch.manual_seed(0)
    expected = policy.model.loss(plain, weights=torch.tensor([0.5, 1.5, 1.0, 5.0]),
                                 condition=torch.tensor([1, 2, 1, 1]))
    torch.testing.assert_close(loss, expected)
    assert logs["good_share"] == 0.75
    # the anchor against an identical frozen copy is 0; against another policy it is positive
    same = Gr00tPolicy.from_config("tiny", seed=0).model.eval()
    anchored = RLLoss(RLConfig(**cfg, method="acfm", anchor_weight=1.0), same)
    torch.manual_seed(1)
    _, logs = anchored(policy.model, batch)
    assert logs["anchor"] < 1e-10
    other = RLLoss(RLConfig(**cfg, method="acfm", anchor_weight=1.0), Gr00tPolicy.from_config("tiny", seed=1).model.eval())
    torch.manual_seed(1)
    _, logs = other(policy.model, batch)
    assert logs["anchor"] > 1e-4
