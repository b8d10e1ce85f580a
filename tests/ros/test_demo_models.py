"""The demo models' recipe, labels, cache lookup and demonstrations (no training here: the end-to-end
suite, tests/ros/test_drive_policy.py, builds a small pair and drives with it)."""
import json

import numpy as np
import pytest

from gr00t_rlhf_ros import demo_models as dm
from gr00t_rlhf_ros.demo_models import BAD, GOOD, DemoRecipe


def test_the_recipe_hash_names_the_cache_and_changes_with_the_recipe(tmp_path, monkeypatch):
    a, b = DemoRecipe(), DemoRecipe(policy_steps=601)
    assert a.key() == DemoRecipe().key() and a.key() != b.key() and len(a.key()) == 12
    monkeypatch.delenv(dm.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dm.cache_root() == tmp_path / "xdg" / "gr00t-rlhf" / "demo-models"
    monkeypatch.setenv(dm.ENV_DIR, str(tmp_path / "env"))
    assert dm.cache_root() == tmp_path / "env"
    assert dm.cache_root(tmp_path / "flag") == tmp_path / "flag"          # --demo-models wins


def test_only_a_finished_entry_is_found(tmp_path):
    r = DemoRecipe()
    entry = tmp_path / r.key()
    assert dm.find(r, tmp_path) is None
    (entry / "policy").mkdir(parents=True)
    (entry / "reward").mkdir()
    assert dm.find(r, tmp_path) is None                                   # no report.json: unfinished
    (entry / "report.json").write_text("{}")
    found = dm.find(r, tmp_path)
    assert found.policy == entry / "policy" and found.reward == entry / "reward"
    assert dm.ensure(r, tmp_path).root == entry                           # cached: nothing is built


def test_an_unwritable_cache_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(dm.DemoModelError, match=r"cannot create the cache directory .*GR00T_RLHF_DEMO_MODELS"):
        dm.ensure(DemoRecipe(), blocker / "cache", log=lambda line: None)


@pytest.mark.parametrize("kwargs, message", [
    (dict(expert_episodes=0), "DemoRecipe.expert_episodes: 0 must be an integer >= 1"),
    (dict(wrong_goal_episodes=0, perturbed_episodes=0), "at least one imperfect episode"),
    (dict(image_size=(95, 128)), "DemoRecipe.image_size"),
    (dict(control_rate=0.0), "DemoRecipe.control_rate: 0.0 must be a positive number"),
    (dict(noise=-1.0), "DemoRecipe.noise: -1.0 must be a number >= 0"),
    (dict(tasks=()), "DemoRecipe.tasks"),
    (dict(reward_action_horizon=-1), "DemoRecipe.reward_action_horizon: -1 must be an integer >= 0"),
])
def test_bad_recipes_are_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DemoRecipe(**kwargs)


def test_episodes_are_written_in_the_recorders_format_with_both_labels(tmp_path):
    from gr00t_rlhf_train.data.reader import LeRobotDataset
    from gr00t_rlhf_train.data.validate import validate

    recipe = DemoRecipe(expert_episodes=1, noisy_expert_episodes=1, wrong_goal_episodes=1, perturbed_episodes=0,
                        max_seconds=6.0, image_size=(48, 64))
    episodes = dm.record_demonstrations(tmp_path / "ds", recipe, log=lambda line: None)
    assert [e.kind for e in episodes] == ["expert", "noisy_expert", "wrong_goal"]
    assert [e.seed for e in episodes] == [0, 0, 1]          # the noisy expert drives the expert's layouts again
    report = validate(tmp_path / "ds")
    assert report.ok, report.errors
    ds = LeRobotDataset(tmp_path / "ds", warn=False)
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert info["fps"] == 10.0 and info["features"]["observation.images.ego_view"]["shape"] == [48, 64, 3]
    expert, wrong = ds.episode(0), ds.episode(2)
    assert expert.task_texts[0] == "Find Blue cube" and len(wrong) == 61         # 6 s at 10 fps, never reached
    keys = np.concatenate([expert.feedback_keys, wrong.feedback_keys])
    noisy = ds.episode(1)
    assert not np.allclose(noisy.state[:20], expert.state[:20])   # the noise moved the robot differently
    assert set(keys.tolist()) == {BAD, GOOD}
    assert episodes[0].good > episodes[0].frames / 2 > 0                          # the expert mostly makes progress
    # recorded by the shared rollouts: the simulated human's truth per frame, the driver of each episode
    from gr00t_rlhf_ros.sim.rollout import read_sim_labels
    labels = read_sim_labels(tmp_path / "ds")
    assert [labels[e.index]["driver"] for e in episodes] == ["expert", "noisy_expert", "wrong_goal"]
    assert all(labels[e.index]["recorded"] == labels[e.index]["truth"] for e in episodes)   # a noiseless labeler
    assert [sum(k == GOOD for k in labels[e.index]["recorded"]) for e in episodes] == [e.good for e in episodes]


def test_the_check_drive_runs_the_policy_through_the_shared_rollouts():
    lines = []
    driving = dm.evaluate_policy("tiny", [0, 3], ("Find Blue cube", "Find Green sphere"), max_seconds=1.5,
                                 log=lines.append)
    assert driving["summary"]["episodes"] == 2 and driving["success"] in ("0/2", "1/2", "2/2")
    assert [e["seed"] for e in driving["episodes"]] == [0, 3]
    assert [e["task"] for e in driving["episodes"]] == ["Find Blue cube", "Find Green sphere"]
    assert set(driving["episodes"][0]) == {"seed", "task", "success", "seconds", "final_distance", "collisions"}
    assert len(lines) == 2 and lines[0].startswith("demo models: policy on layout 0 'Find Blue cube': ")
