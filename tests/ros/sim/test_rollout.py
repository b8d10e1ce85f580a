"""In-process rollouts: lockstep batches, the expert and a policy as drivers, recording with the simulated human."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gr00t_rlhf_ros.recording import RecorderError
from gr00t_rlhf_ros.sim.labeler import LabelerConfig
from gr00t_rlhf_ros.sim.rollout import (ExpertDriver, PolicyDriver, RolloutConfig, read_sim_labels, rollout,
                                        summarize)

SMALL = (48, 64)   # camera (height, width): recording tests render every frame


@pytest.fixture(scope="module")
def tiny_policy():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    driver = PolicyDriver("tiny", device="cpu")
    yield driver
    driver.close()
    torch.set_num_threads(threads)


def test_expert_reaches_the_goal_and_metrics_make_sense():
    res = rollout(ExpertDriver(), [(0, "Find Blue cube"), (1, "Find Green sphere")], RolloutConfig(max_seconds=20),
                  batch_size=2)
    for r in res:
        assert r.success and r.end == "success"
        assert 0 < r.time_to_goal == r.duration <= 20
        assert r.final_distance <= 0.5
        assert r.path_length > 0 and r.collisions == 0
    s = summarize(res)
    assert s["success_rate"] == 1.0 and s["episodes"] == 2


def test_lockstep_batch_gives_the_same_episodes_as_one_by_one():
    episodes = [(0, "Find Blue cube"), (3, "Find Red cylinder"), (5, "Find Green sphere")]
    one = rollout(ExpertDriver(), episodes, RolloutConfig(max_seconds=15), batch_size=1)
    three = rollout(ExpertDriver(), episodes, RolloutConfig(max_seconds=15), batch_size=3)
    for a, b in zip(one, three):
        assert (a.seed, a.task, a.success, a.time_to_goal, a.final_pose) == (b.seed, b.task, b.success, b.time_to_goal,
                                                                             b.final_pose)


def test_timeout_ends_an_episode():
    (r,) = rollout(ExpertDriver(), [(0, "Find Blue cube")], RolloutConfig(max_seconds=1.0))
    assert not r.success and r.end == "timeout" and r.duration == 1.0 and r.time_to_goal is None


class StraightAhead:
    """A driver that only drives straight at full speed (into whatever is in front)."""

    kind = "expert"

    def make(self, robot):
        return self

    def act(self, gt):
        return 5.0, 5.0

    def close(self):
        pass


def test_a_collision_can_end_an_episode():
    (r,) = rollout(StraightAhead(), [(0, "Find Blue cube")], RolloutConfig(max_seconds=30, stop_on_collision=True))
    assert r.end == "collision" and r.collisions == 1 and r.duration < 30 and not r.success
    (r,) = rollout(StraightAhead(), [(0, "Find Blue cube")], RolloutConfig(max_seconds=r.duration + 2))
    assert r.end == "timeout" and r.collisions >= 1


def test_policy_batch_is_one_model_call_per_replan(tiny_policy):
    calls = tiny_policy.calls
    res = rollout(tiny_policy, [(0, "Find Blue cube"), (1, "Find Red cylinder"), (2, "Find Blue cube")],
                  RolloutConfig(max_seconds=2.0), batch_size=3)
    made = tiny_policy.calls - calls
    assert [r.inference_calls for r in res] == [made] * 3   # every replan: all three environments in one call
    assert made == 3                                         # at 0, 0.75 and 1.5 s (replan_every 8, half-action slack)
    assert all(r.late_renders == 0 for r in res)


def test_a_chunk_does_not_depend_on_the_batch_it_is_in(tiny_policy):
    """Exact for prompts of one length. (Prompts of unequal length are left-padded and, as in the official
    GR00T N1, neither the LLM's positions nor the DiT's cross-attention account for the padding: such a
    batch moves actions by ~1e-3 rad/s, docs/model.md.)"""
    rng = np.random.default_rng(0)
    obs = [{"video.ego_view": rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
            "state.left_wheel": rng.normal(size=1).astype(np.float32), "state.right_wheel": np.zeros(1, np.float32),
            "state.acceleration": np.zeros(1, np.float32), tiny_policy.spec.language_key: task}
           for task in ("Find Blue cube",) * 3]
    batched = tiny_policy.act(obs, [5, 6, 7])
    for o, s, b in zip(obs, [5, 6, 7], batched):
        (alone,) = tiny_policy.act([o], [s])
        np.testing.assert_allclose(b, alone, atol=1e-4)
    assert not np.allclose(batched[0], tiny_policy.act([obs[0]], [6])[0], atol=1e-3)   # the seed matters
    mixed = [o | {tiny_policy.spec.language_key: task}                # unequal prompt lengths: close, not exact
             for o, task in zip(obs, ("Find Blue cube", "Find Red cylinder", "Position yourself next to Green sphere"))]
    for o, s, b in zip(mixed, [5, 6, 7], tiny_policy.act(mixed, [5, 6, 7])):
        np.testing.assert_allclose(b, tiny_policy.act([o], [s])[0], atol=2e-2)


def test_policy_chunks_run_through_policy_nodes_controller(tiny_policy):
    """Commands are the first chunk, interpolated at the 20 Hz control ticks, until the next chunk arrives."""
    (r,) = rollout(tiny_policy, [(4, "Find Blue cube")], RolloutConfig(max_seconds=0.6, camera_size=SMALL), trace=True)
    from gr00t_rlhf_ros.sim.robot import SimConfig, SimRobot
    from gr00t_rlhf_ros.sim import messages as M

    robot = SimRobot(seed=4, config=SimConfig(camera_width=SMALL[1], camera_height=SMALL[0]))
    try:
        frame = robot.render()
    finally:
        robot.close()
    obs = {"video.ego_view": frame, "state.left_wheel": np.zeros(1, np.float32),
           "state.right_wheel": np.zeros(1, np.float32), "state.acceleration": np.zeros(1, np.float32),
           tiny_policy.spec.language_key: "Find Blue cube"}
    assert M.Image.of(frame, 0.0).step == SMALL[1] * 3
    (chunk,) = tiny_policy.act([obs], [0])
    cmds = np.array(r.trace["commands"])
    expected = [np.clip((chunk[i // 2] + chunk[i // 2 + 1]) / 2 if i % 2 else chunk[i // 2], -5, 5) for i in range(len(cmds))]
    np.testing.assert_allclose(cmds[:, 1:], np.array(expected), atol=1e-3)   # float noise of two model calls


def test_recorded_episode_with_a_noiseless_human_holds_the_truth(tmp_path):
    from gr00t_rlhf_train.data.reader import LeRobotDataset

    root = tmp_path / "ds"
    res = rollout(ExpertDriver(), [(0, "Find Blue cube"), (2, "Find Red cylinder")],
                  RolloutConfig(max_seconds=20, hold_after_success=1.0, camera_size=SMALL), batch_size=2, record=root,
                  labeler=LabelerConfig())
    assert [r.episode_index for r in res] == [0, 1]
    ds = LeRobotDataset(root)
    labels = read_sim_labels(root)
    for r in res:
        assert r.success and r.label_agreement == 1.0
        row = labels[r.episode_index]
        assert row["recorded"] == row["truth"]
        assert abs(r.frames - (r.duration * 10 + 1)) <= 1
        assert len(row["truth"]) == r.frames == ds.episodes[r.episode_index].length
    assert set(labels[0]["truth"]) == {0, 1}                       # the expert turns on the spot first: "bad"
    assert [t for t in json.loads((root / "meta" / "info.json").read_text())["features"]] == \
        list(json.loads((root / "meta" / "info.json").read_text())["features"])
    assert ds.vocabulary.texts == {0: "Doing bad", 1: "Doing good"}


def test_noisy_scores_are_recorded_and_appending_needs_the_same_vocabulary(tmp_path):
    root = tmp_path / "ds"
    (r,) = rollout(ExpertDriver(), [(1, "Find Green sphere")], RolloutConfig(max_seconds=8, camera_size=SMALL),
                   record=root, labeler=LabelerConfig(vocabulary="score", flip_prob=0.25, reaction_delay=0.3, seed=1))
    row = read_sim_labels(root)[0]
    assert set(row["recorded"]) <= set(range(-5, 6)) and r.label_agreement < 1.0
    with pytest.raises(RecorderError, match="feedback vocabulary"):
        rollout(ExpertDriver(), [(1, "Find Green sphere")], RolloutConfig(max_seconds=1, camera_size=SMALL),
                record=root, labeler=LabelerConfig(vocabulary="binary"))


@pytest.mark.parametrize("kwargs,match", [
    ({"batch_size": 0}, "batch_size 0 must be an integer >= 1"),
    ({"episodes": [(-1, "Find Blue cube")]}, "episode seed -1"),
    ({"episodes": [(0, " ")]}, "episode task"),
    ({"episodes": [(0, "Find Purple unicorn")]}, "Purple unicorn"),
])
def test_bad_arguments_are_one_line(kwargs, match):
    args = {"episodes": [(0, "Find Blue cube")], "batch_size": 1} | kwargs
    with pytest.raises(ValueError, match=match) as e:
        rollout(ExpertDriver(), args["episodes"], RolloutConfig(max_seconds=1), batch_size=args["batch_size"])
    assert "\n" not in str(e.value)


def test_bad_config_is_one_line():
    with pytest.raises(ValueError, match="RolloutConfig.max_seconds: 0"):
        RolloutConfig(max_seconds=0)
    with pytest.raises(ValueError, match="RolloutConfig.policy_seed"):
        RolloutConfig(policy_seed=-1)


def test_rollouts_and_the_labeler_need_no_ros():
    """They run on a GPU machine without ROS: importing them must not import rclpy or any message package."""
    import subprocess
    import sys

    code = ("import sys\n"
            "for m in ('rclpy', 'sensor_msgs', 'std_msgs', 'std_srvs', 'rosidl_runtime_py'):\n"
            "    sys.modules[m] = None\n"
            "import gr00t_rlhf_ros.sim.labeler, gr00t_rlhf_ros.sim.rollout\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_imperfect_drivers_are_seeded_and_worse_than_the_expert(tmp_path):
    from gr00t_rlhf_ros.sim.drivers import NoisyExpertDriver, PerturbedDriver, WrongGoalDriver
    from gr00t_rlhf_ros.sim.robot import SimRobot

    ep = [(0, "Find Blue cube")]
    cfg = RolloutConfig(max_seconds=12)
    (expert,) = rollout(ExpertDriver(), ep, cfg)
    (wrong,) = rollout(WrongGoalDriver(seed=1), ep, cfg, record=tmp_path / "ds", labeler=LabelerConfig(),
                       trace=True)
    assert expert.success and not wrong.success and wrong.end == "timeout"
    with SimRobot(seed=0, task="Find Blue cube") as robot:
        x, y, _ = wrong.final_pose
        near = min((o for o in robot.layout.objects if o.name != robot.task.goal),
                   key=lambda o: (o.position[0] - x) ** 2 + (o.position[1] - y) ** 2)
        assert ((near.position[0] - x) ** 2 + (near.position[1] - y) ** 2) ** 0.5 < 0.6   # parked at the decoy
    row = read_sim_labels(tmp_path / "ds")[0]
    assert row["driver"] == "wrong_goal" and row["truth"].count(0) > len(row["truth"]) // 2
    for make in (lambda: PerturbedDriver(seed=2), lambda: NoisyExpertDriver(seed=2, std=2.0)):
        a, b = (rollout(make(), ep, cfg)[0] for _ in range(2))
        assert a.final_pose == b.final_pose                        # seeded
        assert a.final_pose != expert.final_pose and a.path_length != expert.path_length
    with pytest.raises(ValueError, match="NoisyExpertDriver.std: -1"):
        NoisyExpertDriver(std=-1)
    with pytest.raises(ValueError, match=r"PerturbedDriver.burst\[1\]"):
        PerturbedDriver(burst=(2.0, 1.0))


def test_a_dart_noisy_expert_records_the_experts_command_while_executing_the_noisy_one(tmp_path):
    from gr00t_rlhf_ros.sim.drivers import NoisyExpertDriver
    from gr00t_rlhf_ros.sim.robot import SimRobot
    robot = SimRobot(seed=3)
    try:
        driver = NoisyExpertDriver(seed=1, std=2.0, hold=0.5, dart=True).make(robot)
        gt = robot.ground_truth()
        executed = driver.act(gt)
        clean = driver.recorded()
        assert clean is not None and executed != clean                  # noise on the executed command only
        assert driver.act(gt | {"time": gt["time"] + 0.1})[0] - driver.recorded()[0] == executed[0] - clean[0]  # held
        plain = NoisyExpertDriver(seed=1, std=2.0).make(robot)
        plain.act(gt)
        assert plain.recorded() is None                                 # records what it executes
    finally:
        robot.close()


def test_a_runtimes_condition_and_guidance_reach_the_batched_rollout_path(tmp_path):
    """An advantage-conditioned policy opened with overrides samples with them in rollouts (batched or not)."""
    import torch
    from gr00t_rlhf_train.inference import open_policy
    from gr00t_rlhf_train.model.policy import Gr00tPolicy

    p = Gr00tPolicy.from_config("tiny", seed=0).enable_advantage_conditioning("good", 2.0)
    with torch.no_grad():
        emb = p.model.action_head.model.timestep_encoder.condition_embedding.weight
        emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(1)))
    ckpt = p.save_pretrained(tmp_path / "acfm")
    frame = np.full((*SMALL, 3), 90, np.uint8)
    zero = np.zeros(1, np.float32)
    obs = [{"video.ego_view": frame, "state.left_wheel": zero, "state.right_wheel": zero, "state.acceleration": zero,
            "annotation.human.action.task_description": t} for t in ("Find Blue cube", "Find Red cylinder")]
    bad = PolicyDriver(open_policy(str(ckpt), device="cpu", condition="bad", guidance=1.0))
    default = PolicyDriver(open_policy(str(ckpt), device="cpu"))
    for n in (1, 2):                                   # one observation: get_action; two: the batched sampler
        got, base = bad.act(obs[:n], list(range(n))), default.act(obs[:n], list(range(n)))
        want = [p.get_action(o, seed=i, condition="bad", guidance=1.0)["action.wheel_commands"] for i, o in enumerate(obs[:n])]
        np.testing.assert_allclose(np.stack(got), np.stack(want), atol=1e-5)
        assert not np.allclose(np.stack(got), np.stack(base))
