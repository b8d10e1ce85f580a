"""``eval reward`` / ``eval policy`` end to end: a tiny random model saved with save_pretrained, a tiny
dataset written in the test, the CLI on the dataset and on its frame cache."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gr00t_rlhf_train.cli import main
from gr00t_rlhf_train.data.cache import FrameCache, build_cache
from gr00t_rlhf_train.eval.common import EvalError
from gr00t_rlhf_train.eval.policy import evaluate_policy
from gr00t_rlhf_train.eval.reward import evaluate_reward
from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.processor import ModalityConfig, stats_from_lerobot
from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
from gr00t_rlhf_train.model.reward_model import RewardModel
from train.data.synth_dataset import make_dataset

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(dataset root, cache path, reward checkpoint, policy checkpoint): 4 episodes of 8..11 frames."""
    tmp = tmp_path_factory.mktemp("eval")
    root = tmp / "ds"
    make_dataset(root, episodes=4, frames=8, size=(32, 48))
    cache_dir = build_cache(root, tmp / "cache", image_size=32, progress=False)
    cache = FrameCache(cache_dir)
    modality = ModalityConfig(**cache.modality_dims())
    policy = Gr00tPolicy.from_config("tiny", modality=modality, stats=stats_from_lerobot(cache.stats, modality))
    pol_ckpt = policy.save_pretrained(tmp / "policy")
    head = RewardHeadConfig(kind="mlp", horizon=2, hidden_size=16)
    rm = RewardModel.from_policy(policy, head)
    rm_ckpt = rm.save_pretrained(tmp / "reward", feedback_vocabulary={0: "Doing bad", 1: "Doing good"})
    return root, cache_dir, rm_ckpt, pol_ckpt


def _png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


def test_eval_reward_on_a_cache_writes_npz_metrics_and_plots(setup, tmp_path, capsys):
    root, cache, rm_ckpt, _ = setup
    out = tmp_path / "out"
    rc = main(["eval", "reward", str(rm_ckpt), str(cache), "--episodes", "2-3", "--out", str(out), "--quiet",
               "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0 and "episode means" in printed and "time baseline" in printed
    data = np.load(out / "predictions.npz")
    assert set(data.files) >= {"pred", "target", "episode", "row", "feedback"}
    assert sorted(set(data["episode"].tolist())) == [2, 3] and data["pred"].size == 10 + 11
    assert np.isfinite(data["pred"]).all() and set(data["target"].tolist()) <= {0.0, 1.0}
    doc = json.loads((out / "metrics.json").read_text())
    m = doc["metrics"]
    for key in ("frame.mse", "frame.mae", "frame.pearson", "frame.spearman", "frame.accuracy",
                "frame.balanced_accuracy", "frame.auroc", "episode.accuracy", "third1.auroc", "third3.count",
                "baseline_time.frame.pearson"):
        assert key in m, key
    assert doc["info"]["horizon"] == 2 and doc["info"]["episodes"] == [2, 3]
    for name in ("scatter", "timeline", "roc"):
        assert _png(out / f"{name}.png"), name


def test_eval_reward_from_a_dataset_with_max_samples(setup, tmp_path, capsys):
    root, _, rm_ckpt, _ = setup
    out = tmp_path / "out"
    rc = main(["eval", "reward", str(rm_ckpt), str(root), "--episodes", "0,3", "--max-samples", "5",
               "--out", str(out), "--quiet", "--cache", str(tmp_path / "c")])
    assert rc == 0, capsys.readouterr().err
    data = np.load(out / "predictions.npz")
    assert data["pred"].size == 5 and sorted(set(data["episode"].tolist())) == [0, 3]
    assert FrameCache(tmp_path / "c").episodes == [0, 3]          # --cache keeps what it built


def test_prediction_only_writes_predictions_only(setup, tmp_path):
    _, cache, rm_ckpt, _ = setup
    res = evaluate_reward(rm_ckpt, cache, episodes=[1], prediction_only=True, out_dir=tmp_path, device="cpu")
    assert res["metrics"] == {} and sorted(p.name for p in tmp_path.iterdir()) == ["predictions.npz"]


def test_predictions_match_the_model_score(setup, tmp_path):
    """The batched evaluation gives what RewardModel.score gives clip by clip."""
    from gr00t_rlhf_train.data.samples import RewardClips

    _, cache, rm_ckpt, _ = setup
    res = evaluate_reward(rm_ckpt, cache, episodes=[0], batch_size=3, out_dir=tmp_path, device="cpu")
    pred = np.load(res["files"]["predictions"])["pred"]
    rm = RewardModel.from_pretrained(rm_ckpt)
    clips = RewardClips(FrameCache(cache), [0], horizon=2)
    inputs = {k: v for k, v in clips[4].items() if k.startswith(("video.", "state.", "annotation.human.action"))}
    assert rm.score(inputs) == pytest.approx(pred[4], abs=1e-5)


def test_eval_policy_against_the_mean_action(setup, tmp_path, capsys):
    _, cache, _, pol_ckpt = setup
    out = tmp_path / "p"
    rc = main(["eval", "policy", str(pol_ckpt), str(cache), "--episodes", "3", "--train-episodes", "0-2",
               "--out", str(out), "--quiet", "--batch-size", "4"])
    printed = capsys.readouterr().out
    assert rc == 0 and "mean-action baseline" in printed
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    acts = np.concatenate([FrameCache(cache).episode(e).action for e in range(3)])
    rec = np.load(out / "predictions.npz")["recorded"]
    assert rec.shape == (11, 16, 2)
    assert m["baseline_mean.first_mse"] == pytest.approx(float(np.mean((rec[:, 0] - acts.mean(0)) ** 2)))
    assert m["action.first_mse"] > 0 and m["action.chunk_mse"] > 0 and "improvement" in m
    assert _png(out / "actions.png")


def test_policy_baseline_from_checkpoint_stats(setup, tmp_path):
    _, cache, _, pol_ckpt = setup
    res = evaluate_policy(pol_ckpt, cache, episodes=[0], max_samples=3, out_dir=tmp_path, device="cpu")
    assert res["samples"] == 3 and "statistics" in res["metrics"]["baseline_mean.source"]


@pytest.mark.parametrize("command, ckpt, extra, message", [
    ("reward", "policy", [], "checkpoint kind is 'policy', `eval reward` needs a 'reward_model'"),
    ("policy", "reward", [], "checkpoint kind is 'reward_model', `eval policy` needs a 'policy'"),
    ("reward", "missing", [], "does not exist"),
    ("reward", "reward", ["--episodes", "7"], "episodes: 7 not in the cache"),
    ("reward", "reward", ["--max-samples", "0"], "max_samples = 0"),
])
def test_bad_input_is_one_line_exit_1(setup, tmp_path, capsys, command, ckpt, extra, message):
    _, cache, rm_ckpt, pol_ckpt = setup
    path = {"policy": pol_ckpt, "reward": rm_ckpt, "missing": tmp_path / "nope"}[ckpt]
    args = ["eval", command, str(path), str(cache), "--episodes", "0", "--out", str(tmp_path / "o"), "--quiet"]
    rc = main(args + extra)
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0 and message in err, err


def test_bad_arguments_exit_2(setup, capsys):
    _, cache, rm_ckpt, _ = setup
    with pytest.raises(SystemExit) as e:
        main(["eval", "reward", str(rm_ckpt), str(cache), "--episodes", "3-1"])
    assert e.value.code == 2 and "not an index or a range" in capsys.readouterr().err


def test_data_that_is_neither_cache_nor_dataset(setup, tmp_path, capsys):
    _, _, rm_ckpt, _ = setup
    assert main(["eval", "reward", str(rm_ckpt), str(tmp_path), "--episodes", "0"]) == 1
    assert "neither a frame cache" in capsys.readouterr().err


def test_unknown_episodes_raise_eval_error(setup):
    _, cache, _, pol_ckpt = setup
    with pytest.raises(EvalError, match="train episodes"):
        evaluate_policy(pol_ckpt, cache, episodes=[0], train_episodes=[9])


def test_a_wrong_checkpoint_fails_before_caching_a_dataset(setup, tmp_path, capsys):
    root, _, _, pol_ckpt = setup
    rc = main(["eval", "reward", str(pol_ckpt), str(root), "--episodes", "0", "--cache", str(tmp_path / "c")])
    assert rc == 1 and "needs a 'reward_model'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_eval_baselines(setup, tmp_path, capsys):
    root, _, _, _ = setup
    out = tmp_path / "b.json"
    rc = main(["eval", "baselines", str(root), "--episodes", "3", "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and "time since start" in printed and "mean action" in printed
    m = json.loads(out.read_text())
    assert m["train_episodes"] == [0, 1, 2] and m["rows"] == 11
    assert "baseline_time.frame.pearson" in m and m["baseline_mean.first_mse"] > 0
    assert main(["eval", "baselines", str(root), "--episodes", "3", "--train-episodes", "3"]) == 1
    assert "outside --episodes" in capsys.readouterr().err


def test_time_alone_on_the_505_held_out_episodes(datasets_dir):
    """The issue's warning, reproduced: time since episode start alone correlates 0.67 with the held-out scores."""
    from gr00t_rlhf_train.eval.baselines import dataset_baselines

    m = dataset_baselines(datasets_dir / "Reward_Results_with_505_Reward", list(range(90, 100)), list(range(10)))
    assert m["baseline_time.best_sign_pearson"] == pytest.approx(0.671, abs=0.005)
    assert m["baseline_time.frame.auroc"] is None                # every held-out score is <= 0


def test_unlabeled_clips_are_scored_with_nan_targets(setup, tmp_path):
    """RewardClips(target=None) reads no label: what --prediction-only scores on unlabeled data."""
    from gr00t_rlhf_train.data.samples import RewardClips
    from gr00t_rlhf_train.eval.reward import score_clips
    from gr00t_rlhf_train.model.reward_model import RewardModel

    _, cache, rm_ckpt, _ = setup
    rm = RewardModel.from_pretrained(rm_ckpt)
    clips = RewardClips(cache, episodes=[1], horizon=rm.head_config.horizon, target=None)
    assert "target" not in clips[0] and "target" not in clips.labels()
    cols = score_clips(rm, clips, np.arange(len(clips)), 4, False)
    assert np.all(np.isfinite(cols["pred"])) and np.all(np.isnan(cols["target"]))
