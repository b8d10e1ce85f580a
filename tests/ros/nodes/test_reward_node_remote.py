"""reward_node with a remote reward server (`gr00t-rlhf serve reward`, a real subprocess) over real DDS:
an action-conditioned model gets the last wheel commands; the server killed -> no reward, the diagnostics say
so, the node stays up; the server back on the same port -> rewards again."""
from __future__ import annotations

import re
import socket
import sys
import time

import pytest

from ros_harness import spawn, wait_until

rclpy = pytest.importorskip("rclpy")
from std_msgs.msg import Float32, Float64MultiArray  # noqa: E402

from gr00t_rlhf_ros import diagnostics as diag  # noqa: E402
from gr00t_rlhf_ros.qos import profile  # noqa: E402
from test_reward_node import TASK, Robot, T, node_status  # noqa: E402

ACTIONS_K = 2


@pytest.fixture(scope="module")
def action_checkpoint(tmp_path_factory):
    """A tiny reward model that reads H = 2 frames and the K = 2 last wheel commands."""
    import torch

    from gr00t_rlhf_train.model.policy import Gr00tPolicy
    from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
    from gr00t_rlhf_train.model.reward_model import RewardModel

    torch.manual_seed(0)
    rm = RewardModel.from_policy(Gr00tPolicy.from_config("tiny", seed=0),
                                 RewardHeadConfig(kind="dit", horizon=2, action_horizon=ACTIONS_K, num_layers=2,
                                                  num_heads=4, head_dim=16, hidden_size=64))
    return rm.save_pretrained(tmp_path_factory.mktemp("reward_actions") / "ckpt",
                              extra={"reward_training": {"fps": 10.0, "image_size": [64, 64]}})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(ckpt, port, env, log_dir, name):
    p = spawn([sys.executable, "-m", "gr00t_rlhf_train.cli", "serve", "reward", str(ckpt), "--port", str(port),
               "--device", "cpu"], env, log_dir, name)
    wait_until(lambda: re.search(r"serving reward .* on tcp://", p.log()) or not p.alive(), 120, f"{name} to serve")
    assert p.alive(), p.log()
    return p


def test_remote_server_gone_and_back_with_an_action_model(start_node, ros_node, ros_env, tmp_path, action_checkpoint):
    port = free_port()
    server = serve(action_checkpoint, port, ros_env, tmp_path, "server1")
    try:
        node = start_node("reward_node", "--params-file", "config/reward.yaml",
                          "-p", f"reward_model:=tcp://127.0.0.1:{port}", "-p", f"task:={TASK}", "-p", "timeout_s:=2.0")
        robot = Robot(ros_node)
        robot.wait_subscribed()
        commands = ros_node.node.create_publisher(Float64MultiArray, T("wheel_commands").name, profile(T("wheel_commands")))
        wait_until(lambda: commands.get_subscription_count() >= 1, 30,
                   "reward_node to subscribe wheel_commands (the model takes actions)")
        timer = ros_node.node.create_timer(0.05, lambda: commands.publish(Float64MultiArray(data=[1.0, 0.5])))
        rewards = []
        ros_node.node.create_subscription(Float32, T("reward").name, lambda m: rewards.append(time.monotonic()),
                                          profile(T("reward")))
        robot.start()
        wait_until(lambda: len(rewards) >= 3, 60, "rewards from the remote reward model")
        assert "last 2 wheel commands as actions" in node.log()

        server.proc.kill()                                    # the server is gone
        server.proc.wait(10)
        status = node_status(ros_node, lambda s: "reward not published" in s.message, timeout=30)
        assert status.level in (diag.WARN, diag.ERROR) and "reward server" in status.message, status.message
        n = len(rewards)
        time.sleep(3.0)
        assert len(rewards) <= n + 1                          # at most one reply that was on its way
        assert node.alive()

        server = serve(action_checkpoint, port, ros_env, tmp_path, "server2")    # back on the same port
        n = len(rewards)
        wait_until(lambda: len(rewards) >= n + 3, 60, "rewards again after the server came back")
        node_status(ros_node, lambda s: s.message == "scoring", timeout=30)
        robot.stop()
        ros_node.node.destroy_timer(timer)
        assert node.stop() == 0
        log = node.log()
        assert log.count("reward server:") == 1                # logged once, then counted
    finally:
        server.stop()
