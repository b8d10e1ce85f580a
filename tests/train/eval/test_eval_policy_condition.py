"""``eval policy --condition --guidance``: an advantage-conditioned policy measured under chosen sampling
settings (written to metrics.json); a plain policy given a condition is one line, before any work."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.cli import main
from gr00t_rlhf_train.data.cache import FrameCache, build_cache
from gr00t_rlhf_train.eval.common import EvalError
from gr00t_rlhf_train.eval.policy import evaluate_policy
from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.processor import ModalityConfig, stats_from_lerobot
from train.data.synth_dataset import make_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(cache, acfm checkpoint with defaults good / 2.0 and a random condition embedding, plain checkpoint)."""
    tmp = tmp_path_factory.mktemp("eval_cond")
    make_dataset(tmp / "ds", episodes=2, frames=6, size=(32, 48))
    cache = build_cache(tmp / "ds", tmp / "cache", image_size=32, progress=False)
    modality = ModalityConfig(**FrameCache(cache).modality_dims())
    stats = stats_from_lerobot(FrameCache(cache).stats, modality)
    plain = Gr00tPolicy.from_config("tiny", modality=modality, stats=stats)
    plain_dir = plain.save_pretrained(tmp / "plain")
    acfm = Gr00tPolicy.from_config("tiny", modality=modality, stats=stats).enable_advantage_conditioning("good", 2.0)
    with torch.no_grad():
        emb = acfm.model.action_head.model.timestep_encoder.condition_embedding.weight
        emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(1)))
    return cache, acfm.save_pretrained(tmp / "acfm"), plain_dir


def test_guidance_values_are_measured_and_recorded(setup, tmp_path):
    cache, acfm, _ = setup
    runs = {}
    for name, kw in (("default", {}), ("w2", dict(condition="good", guidance=2.0)), ("w0", dict(guidance=0.0)),
                     ("bad", dict(condition="bad"))):
        res = evaluate_policy(acfm, cache, episodes=[1], train_episodes=[0], out_dir=tmp_path / name, device="cpu",
                              **kw)
        runs[name] = np.load(tmp_path / name / "predictions.npz")["pred"]
        info = json.loads((tmp_path / name / "metrics.json").read_text())["info"]
        assert (info["condition"], info["guidance"]) == (res["metrics"]["condition"], res["metrics"]["guidance"])
        runs[name + ".sampling"] = (info["condition"], info["guidance"])
    assert runs["default.sampling"] == ("good", 2.0) and runs["w0.sampling"] == ("good", 0.0)
    assert runs["bad.sampling"] == ("bad", 2.0)
    np.testing.assert_array_equal(runs["default"], runs["w2"])             # the defaults are the checkpoint's
    assert not np.allclose(runs["default"], runs["w0"]) and not np.allclose(runs["default"], runs["bad"])


def test_cli_flags(setup, tmp_path, capsys):
    cache, acfm, _ = setup
    out = tmp_path / "cli"
    rc = main(["eval", "policy", str(acfm), str(cache), "--episodes", "1", "--train-episodes", "0", "--out", str(out),
               "--quiet", "--condition", "good", "--guidance", "1.5", "--device", "cpu"])
    assert rc == 0 and "sampled under condition good, guidance 1.5" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["metrics"]["guidance"] == 1.5


@pytest.mark.parametrize("which, extra, message", [
    ("plain", ["--condition", "good"], "this policy has no advantage conditioning (train it with `train rl"),
    ("plain", ["--guidance", "2"], "this policy has no advantage conditioning"),
    ("acfm", ["--guidance", "-1"], "guidance = -1.0: must be a finite number >= 0"),
])
def test_refusals_are_one_line_exit_1(setup, tmp_path, capsys, which, extra, message):
    cache, acfm, plain = setup
    ckpt = {"acfm": acfm, "plain": plain}[which]
    rc = main(["eval", "policy", str(ckpt), str(cache), "--episodes", "1", "--out", str(tmp_path / "o"), "--quiet",
               *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and message in err, err
    assert not (tmp_path / "o").exists()                                    # refused before any work


def test_plain_policy_metrics_have_no_condition(setup, tmp_path):
    cache, _, plain = setup
    m = evaluate_policy(plain, cache, episodes=[1], max_samples=2, out_dir=tmp_path, device="cpu")["metrics"]
    assert m["condition"] is None and m["guidance"] is None
    with pytest.raises(EvalError, match="condition = 'great': allowed unconditioned, good, bad"):
        evaluate_policy(plain, cache, episodes=[1], out_dir=tmp_path, condition="great")
