"""policy_node with an advantage-conditioned policy (train rl --method acfm): the condition / guidance
parameters reach the model (shown in /diagnostics); a plain policy given a condition stops the node.
(The checkpoint's defaults and bad names are covered without ROS in tests/train/inference/test_conditioning.py.)"""
from __future__ import annotations

import pytest

from ros_harness import wait_until

rclpy = pytest.importorskip("rclpy")
torch = pytest.importorskip("torch")

from test_policy_node import FakeRobot, diagnostics, moving  # noqa: E402


@pytest.fixture(scope="module")
def acfm_dir(tmp_path_factory):
    from gr00t_rlhf_train.model.policy import Gr00tPolicy

    p = Gr00tPolicy.from_config("tiny", seed=0).enable_advantage_conditioning("good", 2.0)
    return p.save_pretrained(tmp_path_factory.mktemp("acfm") / "policy")


@pytest.mark.parametrize("params, condition, guidance", [
    (("condition:=bad", "guidance:=3"), "bad", 3.0),              # overrides (an integer guidance is accepted)
])
def test_condition_and_guidance_reach_the_model(start_node, ros_node, acfm_dir, params, condition, guidance):
    robot = FakeRobot(ros_node)
    args = ["--params-file", "config/policy.yaml", "-p", f"policy:={acfm_dir}", "-p", "seed:=0"]
    for p in params:
        args += ["-p", p]
    node = start_node("policy_node", *args)
    d = diagnostics(ros_node, lambda v: int(v["chunks"]) >= 1, timeout=60.0)
    assert (d["condition"], float(d["guidance"])) == (condition, guidance)
    wait_until(lambda: any(moving(c) for c in robot.since(0.0)), 10.0, "a non-zero command")
    assert f"condition {condition}, guidance {guidance:g}) drives" in node.log()


@pytest.mark.parametrize("params, message", [
    (("policy:=tiny", "condition:=good"), "this policy has no advantage conditioning"),
])
def test_a_plain_policy_given_a_condition_stops_the_node_with_one_line(start_node, params, message):
    args = ["--params-file", "config/policy.yaml"]
    for p in params:
        args += ["-p", p]
    node = start_node("policy_node", *args)
    wait_until(lambda: not node.alive(), 60.0, "policy_node to exit")
    assert node.stop() == 1
    lines = [ln for ln in node.log().splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], lines

