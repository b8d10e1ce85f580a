"""``gr00t-rlhf experiment rlhf --size tiny`` end to end (a real subprocess: the CLI as a user runs it):
every artifact exists, a rerun skips finished steps, a changed setting redoes what depends on it, and
bad options are one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gr00t_rlhf_ros.experiment.rlhf import POLICIES, ExperimentConfig, ExperimentError

pytest.importorskip("mujoco")

# the tiny size made smaller still: the loop and every artifact, not the method's gain
FAST = ["--size", "tiny", "--flips", "0,0.25", "--max-seconds", "5", "--sft-steps", "8", "--rm-steps", "6",
        "--rl-steps", "3", "--demos", "3", "--feedback-episodes", "3", "--round-episodes", "2",
        "--eval-episodes", "2", "--best-of-n", "2"]


def _cli(*args, timeout=400):
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "osmesa"))
    return subprocess.run([sys.executable, "-m", "gr00t_rlhf_ros.cli", "experiment", "rlhf", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_tiny_loop_produces_every_artifact_and_reruns_from_cache(tmp_path):
    import av

    out, report = tmp_path / "exp", tmp_path / "docs" / "rlhf_sim.md"
    p = _cli("--out", str(out), "--report", str(report), *FAST)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    seed = results["seeds"]["0"]
    assert set(POLICIES) - {"expert"} <= set(seed["eval"])
    for name in POLICIES[1:]:
        s = seed["eval"][name]["summary"]
        assert s["episodes"] == 2 and 0 <= s["success_rate"] <= 1 and s["collisions_per_episode"] >= 0
    assert results["expert"]["summary"]["episodes"] == 2
    for f in ("flip00", "flip25"):
        assert 0 <= seed["rm"][f]["truth_accuracy"] <= 1               # against the labeller's noiseless truth
    assert seed["feedback"]["flip00"]["label_agreement"] == 1.0
    assert seed["feedback"]["flip25"]["label_agreement"] < 1.0         # the noisy labeller flipped some
    assert {"rwfm_flip00", "acfm_flip00", "both_flip00", "both_flip25"} == set(seed["rl"])
    table = json.loads((out / "table.json").read_text())
    assert [r["policy"] for r in table["rows"]] == list(POLICIES)
    assert [r["flip"] for r in table["noise"]] == [0.0, 0.25]
    text = report.read_text()
    for label in ("scripted expert", "SFT only", "best-of-N (N = 2)", "reward-weighted FM", "advantage-conditioned FM",
                  "best combination", "gain over SFT", "gr00t-rlhf experiment rlhf --out"):
        assert label in text
    for img in ("rlhf_success_vs_round.png", "rlhf_rm_accuracy_vs_noise.png"):
        assert (report.parent / "img" / img).stat().st_size > 1000 and f"img/{img}" in text
    video = Path(results["video"]["path"])
    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == results["video"]["frames"] >= 5
    assert frames[0].shape[1] == 2 * 128 + 4 and frames[0].shape[0] == 96   # two ego cameras side by side
    assert (report.parent / "img" / "rlhf_side_by_side.mp4").stat().st_size > 1000
    assert "img/rlhf_side_by_side.mp4" in text

    again = _cli("--out", str(out), "--report", str(report), *FAST)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 steps run" in again.stdout
    assert json.loads((out / "results.json").read_text())["seeds"]["0"]["eval"]["sft"] == seed["eval"]["sft"]

    changed = _cli("--out", str(out), "--report", str(report), *FAST[:-2], "--best-of-n", "3", "--no-video")
    assert changed.returncode == 0, changed.stderr[-3000:]
    ran = json.loads((out / "results.json").read_text())["steps_ran"]
    assert sorted(ran) == ["seed0/eval/best", "seed0/eval/sft_bon"]    # only what depends on N


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0,0"], "--seeds (0, 0): must be distinct integers"),
    (["--flips", "0,0.6"], "--flips (0.0, 0.6): must be distinct shares of flipped labels in [0, 0.5)"),
    (["--demos", "0"], "--demos 0: must be an integer >= 1"),
    (["--rounds", "0"], "--rounds 0: must be an integer >= 1"),
    (["--max-seconds", "-1"], "--max-seconds -1.0: must be a positive number"),
])
def test_bad_options_are_one_line(tmp_path, args, message):
    p = _cli("--out", str(tmp_path / "x"), *args, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip() == f"gr00t-rlhf experiment rlhf: {message}" or message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_config_validates_on_construction():
    with pytest.raises(ExperimentError, match=r"^--size 'huge': allowed"):
        ExperimentConfig.for_size("o", "huge")
    with pytest.raises(ExperimentError, match=r"^--camera-size \(95, 128\): must be even"):
        ExperimentConfig(out="o", camera_size=(95, 128))
    small = ExperimentConfig.for_size("o", "small")
    full = ExperimentConfig.for_size("o", "full")
    assert full.eval_episodes == 50 and len(full.seeds) >= 3 and full.best_of_n == 8 and full.flips == (0.0, 0.1, 0.25)
    assert full.preset == "small" and full.device == "cuda" and small.device == "cpu" and full.jobs > 1
    with pytest.raises(ExperimentError, match=r"^--stop-after 'rm': allowed: sft"):
        ExperimentConfig(out="o", stop_after="rm")
    with pytest.raises(ExperimentError, match=r"^--expert-search 4: must be a half angle in \[0, pi\)"):
        ExperimentConfig(out="o", expert_search=4)
    with pytest.raises(ExperimentError, match=r"^--dart-demos -1: must be an integer >= 0"):
        ExperimentConfig(out="o", dart_demos=-1)
    assert ExperimentConfig(out="o").expert_tuning() == {"search_half_angle": 0.6}
    assert ExperimentConfig(out="o", expert_search=0).expert_tuning() == {}
    assert ExperimentConfig.for_size("o", "full", device="cpu", preset="tiny").device == "cpu"
    assert set(small.eval_seeds()).isdisjoint(range(0, 100000))        # held-out layouts: no training step saw them
    assert np.all(np.diff(full.eval_seeds()) == 1)


def test_steps_cache_by_key_and_a_failing_step_is_one_line(tmp_path):
    from gr00t_rlhf_ros.experiment.rlhf import Steps, StepError

    calls = []
    steps = Steps(tmp_path, log=lambda line: None)

    def work(d):
        calls.append(d)
        (d / "made").write_text("x")
        return {"value": len(calls)}
    assert steps.run("a", {"k": 1}, work)["value"] == 1
    assert steps.run("a", {"k": 1}, work)["value"] == 1 and len(calls) == 1     # cached
    assert steps.run("a", {"k": 2}, work)["value"] == 2                          # changed key: redone

    def broken(d):
        raise ValueError("TrainConfig.steps = 0:\n must be >= 1")
    with pytest.raises(StepError, match=r"^step b failed: ValueError: TrainConfig.steps = 0: must be >= 1$"):
        steps.run("b", {}, broken)
    assert not (tmp_path / "b" / "step.json").exists()                          # not finished: redone next time
    assert steps.run("b", {}, work)["value"] == 3


def test_the_experiment_imports_no_rclpy():
    code = ("import sys, gr00t_rlhf_ros.experiment.rlhf, gr00t_rlhf_ros.experiment.report, "
            "gr00t_rlhf_ros.experiment.cli, gr00t_rlhf_ros.sim.rollout; "
            "bad = [m for m in sys.modules if m.startswith(('rclpy', 'std_msgs', 'sensor_msgs'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
