"""sim_human_node over real DDS: sim_node + expert_node + sim_human_node + recorder_node record a labeled
episode, and the in-process rollout with the same seed, task, driver and labeler makes the same dataset.

Timing tolerance: the DDS episode starts when the test calls ``recorder/start_episode`` right after
``sim/reset`` (up to a few frames later on a loaded machine), and the expert's 20 Hz timer and the
ground truth's 20 Hz publishing run on wall clock, not in lockstep with the physics. Labels are
therefore compared at the frame shift (at most 3 frames = 0.3 s) that aligns the two episodes best;
at that shift at least 90 % of the frames must carry the same key, and every differing frame must lie
within 3 frames (0.3 s) of a label change (a progress threshold crossed a little earlier or later).
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.qos import profile
from gr00t_rlhf_ros.sim.labeler import LabelerConfig
from gr00t_rlhf_ros.sim.rollout import ExpertDriver, RolloutConfig, rollout
from gr00t_rlhf_train.data.reader import LeRobotDataset
from ros_harness import wait_until

C = load_contract()
SEED, TASK = 3, "Find Blue cube"
WIDTH, HEIGHT = 128, 96
LABELER = dict(flip_prob=0.1, reaction_delay=0.2, seed=4)
TOLERANCE_FRAMES = 3


def _trigger(node, name: str):
    from std_srvs.srv import Trigger

    client = node.create_client(Trigger, name)
    assert client.wait_for_service(timeout_sec=30), f"{name} not available"
    for _ in range(3):
        fut = client.call_async(Trigger.Request())
        deadline = time.monotonic() + 10
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if fut.done():
            return fut.result()
        client.remove_pending_request(fut)
    raise AssertionError(f"no reply from {name}")


def best_shift(a: list[int], b: list[int], max_shift: int) -> tuple[int, float]:
    """The shift s (b[i + s] ~ a[i]) with the most equal frames over the overlap, and that fraction."""
    best = (0, -1.0)
    for s in range(-max_shift, max_shift + 1):
        pairs = [(a[i], b[i + s]) for i in range(len(a)) if 0 <= i + s < len(b)]
        frac = float(np.mean([x == y for x, y in pairs])) if pairs else 0.0
        if frac > best[1]:
            best = (s, frac)
    return best


def test_labeled_episode_over_dds_equals_the_in_process_one(start_node, ros_node, tmp_path):
    from std_msgs.msg import String

    dds_root, local_root = tmp_path / "dds", tmp_path / "local"
    labeler_args = [a for k, v in LABELER.items() for a in ("-p", f"{k}:={v}")]
    start_node("sim_node", "--params-file", "config/sim.yaml", "-p", f"seed:={SEED}", "-p", "reset_new_layout:=false",
               "-p", f"camera_width:={WIDTH}", "-p", f"camera_height:={HEIGHT}", "-p", f"task:={TASK}")
    start_node("expert_node", "--params-file", "config/expert.yaml")
    human = start_node("sim_human_node", "--params-file", "config/sim_human.yaml", *labeler_args)
    start_node("recorder_node", "--params-file", "config/recorder.yaml", "-p", f"dataset:={dds_root}",
               "-p", f"task:={TASK}")
    gts = []
    spec = C.topic("ground_truth")
    ros_node.node.create_subscription(String, spec.name, lambda m: gts.append(json.loads(m.data)), profile(spec))
    wait_until(lambda: gts and gts[-1]["time"] > 1.0, 60, "the simulator's ground truth")
    wait_until(lambda: "presses keys" in human.log(), 30, "sim_human_node to start")
    # the expert drives once it has the layout; the recorder needs camera frames before its first episode
    wait_until(lambda: any(abs(g["command"][0]) > 0 for g in gts[-5:]), 60, "the expert to drive")

    reset = _trigger(ros_node.node, C.service("sim_reset").name)
    started = _trigger(ros_node.node, C.service("start_episode").name)
    assert reset.success and started.success, (reset.message, started.message)
    n_before = len(gts)
    wait_until(lambda: any(g["success"] and g["time"] < 40 for g in gts[n_before:]), 60, "the expert to reach the goal")
    reached = next(g["time"] for g in gts[n_before:] if g["success"])
    wait_until(lambda: gts[-1]["time"] >= reached + 1.0, 10, "a second at the goal")
    stopped = _trigger(ros_node.node, C.service("stop_episode").name)
    assert stopped.success, stopped.message

    (local,) = rollout(ExpertDriver(), [(SEED, TASK)],
                       RolloutConfig(max_seconds=40, hold_after_success=1.0, camera_size=(HEIGHT, WIDTH)),
                       record=local_root, labeler=LabelerConfig(**LABELER))
    assert local.success
    assert abs(local.time_to_goal - reached) < 1.0, (local.time_to_goal, reached)

    dds, mine = LeRobotDataset(dds_root), LeRobotDataset(local_root)
    assert dds.num_episodes == mine.num_episodes == 1
    info = [json.loads((r / "meta" / "info.json").read_text()) for r in (dds_root, local_root)]
    assert info[0]["features"] == info[1]["features"]
    assert info[0]["fps"] == info[1]["fps"]
    for f in ("rewards.jsonl", "modality.json"):
        assert (dds_root / "meta" / f).read_text() == (local_root / "meta" / f).read_text()
    assert dds.vocabulary == mine.vocabulary
    a, b = dds.episode(0), mine.episode(0)
    assert set(a.task_texts) == set(b.task_texts) == {TASK}
    ka, kb = [int(k) for k in a.feedback_keys], [int(k) for k in b.feedback_keys]
    assert set(ka) == set(kb) == {0, 1}
    shift, agree = best_shift(kb, ka, TOLERANCE_FRAMES)
    changes = [i for i in range(1, len(kb)) if kb[i] != kb[i - 1]]
    bad = [i for i in range(len(kb)) if 0 <= i + shift < len(ka) and ka[i + shift] != kb[i]]
    far = [i for i in bad if not any(abs(i - c) <= TOLERANCE_FRAMES for c in changes)]
    report = f"shift {shift}, agreement {agree:.2f}, {len(bad)} differing frames, far from a change: {far}\n{ka}\n{kb}"
    print(report)
    assert agree >= 0.9 and not far, report
    assert abs(len(ka) - len(kb)) <= 10, (len(ka), len(kb))


@pytest.mark.parametrize("arg,line", [
    ("flip_prob:=2", "LabelerConfig.flip_prob: 2.0 must be a probability in [0, 1]"),
    ("vocabulary:=nope", "LabelerConfig.vocabulary: feedback vocabulary 'nope'"),
    ("seed:=1.5", "sim_human_node parameter seed: 1.5 must be an integer"),
])
def test_bad_parameter_stops_the_node_with_one_line(start_node, arg, line):
    node = start_node("sim_human_node", "-p", arg)
    wait_until(lambda: not node.alive(), 60, "sim_human_node to exit")
    assert node.proc.returncode == 1
    errors = [ln for ln in node.log().splitlines() if "error" in ln]
    assert len(errors) == 1 and line in errors[0], node.log()
