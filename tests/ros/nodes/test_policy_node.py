"""policy_node over real DDS with the tiny policy: drives, clamps, stops on every unsafe condition.

The test process plays the robot: it publishes camera, IMU, joint states and the task from timers
of its probe node and records what the node commands. Each test starts the real node process.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ros_harness import wait_for, wait_until

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import Twist  # noqa: E402
from sensor_msgs.msg import Image, Imu, JointState  # noqa: E402
from std_msgs.msg import Bool, Float64MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from gr00t_rlhf_ros.contract import load_contract  # noqa: E402
from gr00t_rlhf_ros.diagnostics import QOS as DIAG_QOS, values_of  # noqa: E402
from gr00t_rlhf_ros.qos import profile  # noqa: E402

C = load_contract()
T = C.topic
ZERO = [0.0, 0.0]


class FakeRobot:
    """Sensor streams from the probe's timers (each can be stopped and restarted); commands recorded."""

    RATES = {"camera": 10.0, "imu": 50.0, "joint_states": 50.0}

    def __init__(self, probe, encoding: str = "rgb8", size: tuple[int, int] = (64, 48)):
        self.probe, self.node = probe, probe.node
        self.encoding, self.size = encoding, size
        self.lock = threading.Lock()
        self.commands: list[tuple[float, list[float]]] = []
        self.last_sent: dict[str, float] = {}
        self.pubs = {k: self.node.create_publisher(cls, T(k).name, profile(T(k)))
                     for k, cls in (("camera", Image), ("imu", Imu), ("joint_states", JointState),
                                    ("task", String), ("estop", Bool))}
        self.timers = {}
        self.node.create_subscription(Float64MultiArray, T("wheel_commands").name, self._on_cmd,
                                      profile(T("wheel_commands")))
        self.pubs["task"].publish(String(data="Find Blue cube"))
        for k in self.RATES:
            self.start(k)

    def _on_cmd(self, msg):
        with self.lock:
            self.commands.append((time.monotonic(), list(msg.data)))

    def _make(self, key):
        if key == "camera":
            w, h = self.size
            m = Image(height=h, width=w, encoding=self.encoding, step=w * 3)
            m.data = np.random.default_rng(0).integers(0, 255, h * w * 3, dtype=np.uint8).tobytes()
            m.header.stamp = self.node.get_clock().now().to_msg()
            return m
        if key == "imu":
            m = Imu()
            m.linear_acceleration.x = 0.1
            return m
        return JointState(name=list(C.wheel_joints), velocity=[0.5, 0.4])

    def _publish(self, key):
        self.pubs[key].publish(self._make(key))
        self.last_sent[key] = time.monotonic()

    def start(self, key):
        self.timers[key] = self.node.create_timer(1.0 / self.RATES[key], lambda: self._publish(key))

    def stop(self, key):
        self.node.destroy_timer(self.timers.pop(key))
        return self.last_sent.get(key)

    def since(self, t: float):
        with self.lock:
            return [c for ts, c in self.commands if ts >= t]

    def first_after(self, t: float, predicate):
        with self.lock:
            return next((ts for ts, c in self.commands if ts >= t and predicate(c)), None)


def diagnostics(probe, predicate=lambda v: True, timeout=10.0) -> dict:
    msg = wait_for(probe, "/diagnostics", DiagnosticArray, DIAG_QOS,
                   lambda m: any(s.name.endswith("policy_node") and predicate(values_of(s)) for s in m.status),
                   timeout=timeout)
    return values_of(next(s for s in msg.status if s.name.endswith("policy_node")))


def call_reset(probe) -> Trigger.Response:
    cli = probe.node.create_client(Trigger, "/policy_node/reset_estop")
    try:
        assert cli.wait_for_service(timeout_sec=10.0)
        fut = cli.call_async(Trigger.Request())
        wait_until(fut.done, 10.0, "the reset_estop reply")
        return fut.result()
    finally:
        probe.node.destroy_client(cli)


def start_policy(start_node, *params: str):
    args = ["--params-file", "config/policy.yaml", "-p", "policy:=tiny", "-p", "seed:=0", "-p", "replan_every:=4"]
    for p in params:
        args += ["-p", p]
    return start_node("policy_node", *args)


def moving(c):
    return c != ZERO


def test_drives_clamps_and_stops_on_stale_input_estop_and_exit(start_node, ros_node):
    twists = []
    ros_node.node.create_subscription(Twist, T("cmd_vel").name, lambda m: twists.append((m.linear.x, m.angular.z)),
                                      profile(T("cmd_vel")))
    robot = FakeRobot(ros_node)
    # scale:1000: the random tiny policy's actions far beyond the wheel limit -> clamped to +-5
    node = start_policy(start_node, "fault:=scale:1000", "publish_cmd_vel:=true", "control_rate:=20.0")
    wait_until(lambda: any(moving(c) for c in robot.since(0)), 60.0, "policy_node to drive")
    t = time.monotonic()
    time.sleep(1.0)
    driving = [c for c in robot.since(t) if moving(c)]
    assert driving and all(abs(v) <= 5.0 for c in driving for v in c)
    assert any(abs(v) == 5.0 for c in driving for v in c)                    # clamped
    assert twists and any(v != 0.0 for v, _ in twists)
    d = diagnostics(ros_node, lambda v: v["state"] == "driving")
    assert int(d["clamped commands"]) > 0 and d["candidates"] == "1" and d["inference ms p50"] != "n/a"

    # the IMU goes silent: zero within input_timeout (0.5 s) + one control period (0.05 s)
    last_imu = robot.stop("imu")
    zero_at = wait_until(lambda: robot.first_after(last_imu + 0.3, lambda c: c == ZERO), 5.0, "a zero command")
    assert zero_at - last_imu <= 0.5 + 0.05 + 0.05, f"zero {zero_at - last_imu:.3f} s after the last IMU message"
    assert all(c == ZERO for c in robot.since(zero_at))
    assert "imu" in diagnostics(ros_node, lambda v: v["state"] == "stale")["reason"]
    robot.start("imu")
    t = time.monotonic()
    wait_until(lambda: any(moving(c) for c in robot.since(t)), 20.0, "driving again")

    # e-stop: zero at once, latched, the reset refused while still true
    robot.pubs["estop"].publish(Bool(data=True))
    t = time.monotonic()
    wait_until(lambda: robot.first_after(t, lambda c: c == ZERO), 2.0, "a zero command after the e-stop")
    assert not call_reset(ros_node).success
    robot.pubs["estop"].publish(Bool(data=False))
    time.sleep(1.0)
    t_stop = robot.first_after(t, lambda c: c == ZERO)
    assert all(c == ZERO for c in robot.since(t_stop + 0.1))                 # still latched after release
    reply = call_reset(ros_node)
    assert reply.success, reply.message
    t = time.monotonic()
    wait_until(lambda: any(moving(c) for c in robot.since(t)), 20.0, "driving after the reset")

    # Ctrl-C: the last command is zero
    assert node.stop() == 0, node.log()
    wait_until(lambda: robot.since(0)[-1] == ZERO, 3.0, "a final zero command")
    log = node.log()
    assert "e-stop" in log and "reset_estop: e-stop is still true" in log


def test_bad_images_are_dropped_and_logged_once(start_node, ros_node):
    robot = FakeRobot(ros_node, size=(64, 48))
    node = start_policy(start_node, "image_width:=80", "image_height:=60")    # this camera must be 80x60
    d = diagnostics(ros_node, lambda v: "dropped inputs" in v, timeout=60.0)
    assert "size 64x48, dataset 80x60" in d["dropped inputs"] and d["state"] == "stale"
    robot.size, robot.encoding = (80, 60), "32FC1"
    diagnostics(ros_node, lambda v: "unsupported encoding" in v.get("dropped inputs", ""))
    time.sleep(1.0)
    assert all(c == ZERO for c in robot.since(0)) and node.alive()
    log = node.log()
    assert log.count("image encoding '32FC1' is not supported") == 1 and log.count("image is 64x48") == 1, log
    robot.encoding = "rgb8"
    wait_until(lambda: any(moving(c) for c in robot.since(0)), 30.0, "driving on good images")


def test_a_nan_policy_commands_zero_and_logs_an_error(start_node, ros_node):
    robot = FakeRobot(ros_node)
    node = start_policy(start_node, "fault:=nan")
    d = diagnostics(ros_node, lambda v: v["state"] == "fault", timeout=60.0)
    assert "not finite" in d["reason"] and int(d["faults"]) >= 1
    time.sleep(1.0)
    assert robot.since(0) and all(c == ZERO for c in robot.since(0))
    assert "ERROR" in node.log() and "not finite" in node.log()


def test_a_model_slower_than_the_control_period(start_node, ros_node):
    # each chunk takes 1 s more: the 20 Hz commands keep flowing from the current chunk, which runs
    # out 1.6 s after its observation; the next arrives 2 s after: a stale gap, then driving again
    robot = FakeRobot(ros_node)
    start_policy(start_node, "fault:=delay:1.0", "replan_every:=8", "control_rate:=20")  # an integer is fine
    wait_until(lambda: any(moving(c) for c in robot.since(0)), 60.0, "policy_node to drive")
    t = time.monotonic()
    time.sleep(4.0)
    with robot.lock:
        seen = [(ts, c) for ts, c in robot.commands if ts >= t]
    periods = np.diff([ts for ts, _ in seen])
    assert len(seen) >= 4.0 * 20 * 0.9 and np.percentile(periods, 99) < 0.1, periods.max()
    states = [moving(c) for _, c in seen]
    assert any(states) and not all(states)                                     # driving and stale gaps
    d = diagnostics(ros_node, lambda v: float(v["inference call ms p50"]) > 1000)
    assert int(d["chunks"]) >= 2


def test_a_model_that_cannot_be_loaded_stops_the_node_with_one_line(start_node):
    node = start_node("policy_node", "--params-file", "config/policy.yaml", "-p", "policy:=/no/such/checkpoint")
    wait_until(lambda: not node.alive(), 60.0, "policy_node to exit")
    assert node.stop() == 1
    lines = [ln for ln in node.log().splitlines() if ln.strip()]
    assert len(lines) == 1 and "/no/such/checkpoint" in lines[0], lines


def test_best_of_n_reports_the_candidates_scores(start_node, ros_node, tmp_path):
    torch = pytest.importorskip("torch")
    from gr00t_rlhf_train.model.policy import Gr00tPolicy
    from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
    from gr00t_rlhf_train.model.reward_model import RewardModel

    policy = Gr00tPolicy.from_config("tiny", seed=0)
    torch.manual_seed(1)
    head = RewardHeadConfig(kind="dit", horizon=2, action_horizon=4, num_layers=2, num_heads=2, head_dim=16,
                            hidden_size=32)
    policy_dir = policy.save_pretrained(tmp_path / "policy")
    reward_dir = RewardModel.from_policy(policy, head).save_pretrained(tmp_path / "reward")
    FakeRobot(ros_node)
    start_node("policy_node", "--params-file", "config/policy.yaml", "-p", f"policy:={policy_dir}",
               "-p", f"reward_model:={reward_dir}", "-p", "num_candidates:=4")
    d = diagnostics(ros_node, lambda v: "candidate scores" in v, timeout=60.0)
    scores = [float(s) for s in d["candidate scores"].split(", ")]
    assert d["candidates"] == "4" and len(scores) == 4
    assert scores[int(d["chosen candidate"])] == max(scores)
