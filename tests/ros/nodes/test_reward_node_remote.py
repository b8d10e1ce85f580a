"""reward_node with a remote reward model over real DDS and ZeroMQ: an action-conditioned model gets the last
wheel commands; the server slow, then gone -> no reward, the diagnostics say so, the node stays up; the server
fast again, then back on the same port -> rewards again.

The server is the real ``InferenceServer`` (what ``gr00t-rlhf serve reward`` runs; its CLI is tested in
tests/train/inference) on a thread of this process, so it can be slowed down and restarted in place."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from ros_harness import wait_until

rclpy = pytest.importorskip("rclpy")
from std_msgs.msg import Float32, Float64MultiArray  # noqa: E402

from gr00t_rlhf_ros import diagnostics as diag  # noqa: E402
from gr00t_rlhf_ros.qos import profile  # noqa: E402
from test_reward_node import TASK, Robot, T, node_status  # noqa: E402

ACTIONS_K = 2


@pytest.fixture(scope="module")
def action_reward(tmp_path_factory):
    """The local runtime of a tiny reward model that reads H = 2 frames and the K = 2 last wheel commands."""
    import torch

    from gr00t_rlhf_train.inference import LocalReward
    from gr00t_rlhf_train.model.policy import Gr00tPolicy
    from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
    from gr00t_rlhf_train.model.reward_model import RewardModel

    torch.manual_seed(0)
    rm = RewardModel.from_policy(Gr00tPolicy.from_config("tiny", seed=0),
                                 RewardHeadConfig(kind="mlp", horizon=2, action_horizon=ACTIONS_K, hidden_size=64))
    path = rm.save_pretrained(tmp_path_factory.mktemp("reward_actions") / "ckpt",
                              extra={"reward_training": {"fps": 10.0, "image_size": [64, 64]}})
    return LocalReward.open(str(path), device="cpu")


class Server:
    """An InferenceServer serving in a thread; ``stop()`` closes its port."""

    def __init__(self, runtime, port: int):
        from gr00t_rlhf_train.inference.server import InferenceServer

        self.server = InferenceServer(runtime, f"tcp://127.0.0.1:{port}")
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_ms": 20}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.stop()
        self.thread.join(10)
        self.server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_remote_server_slow_gone_and_back_with_an_action_model(start_node, ros_node, action_reward):
    port = free_port()
    server = Server(action_reward, port)
    try:
        node = start_node("reward_node", "--params-file", "config/reward.yaml",
                          "-p", f"reward_model:=tcp://127.0.0.1:{port}", "-p", f"task:={TASK}", "-p", "timeout_s:=1.0")
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

        def out_then_back(phase: str, back) -> None:
            status = node_status(ros_node, lambda s: "reward not published" in s.message, timeout=30)
            assert status.level == diag.WARN and "reward server" in status.message, (phase, status.message)
            n = len(rewards)
            time.sleep(1.5)
            assert len(rewards) <= n + 1, phase                # at most one reply that was on its way
            assert node.alive(), phase
            back()
            n = len(rewards)
            wait_until(lambda: len(rewards) >= n + 3, 60, f"rewards again after the server was {phase}")

        server.server.debug_delay_s = 3.0                     # slow: every reply later than timeout_s
        out_then_back("slow", lambda: setattr(server.server, "debug_delay_s", 0.0))
        server.stop()                                         # gone
        replacement = {}
        out_then_back("gone", lambda: replacement.setdefault("server", Server(action_reward, port)))
        server = replacement["server"]                        # back on the same port
        node_status(ros_node, lambda s: s.message == "scoring", timeout=30)
        robot.stop()
        ros_node.node.destroy_timer(timer)
        assert node.stop() == 0
        assert node.log().count("reward server:") == 1        # logged once, then counted
    finally:
        server.stop()
