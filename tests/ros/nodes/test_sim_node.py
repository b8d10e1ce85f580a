"""sim_node over real DDS: rates, motion, the watchdog, bad commands, task, reset, shutdown."""
from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest

from ros_harness import RosTestNode, publish_for, wait_for, wait_until

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image, Imu, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from gr00t_rlhf_ros.contract import load_contract  # noqa: E402
from gr00t_rlhf_ros.msgs import image_msg_to_rgb, imu_acceleration  # noqa: E402
from gr00t_rlhf_ros.qos import profile  # noqa: E402

C = load_contract()
T = C.topic
PARAMS = "config/sim.yaml"
# An unusual seed, checked in every ground truth we read: another test run that happens to share
# the ROS domain would publish another layout.
SEED = 31
SIM = ("sim_node", "--params-file", PARAMS, "-p", f"seed:={SEED}")



class Recorder:
    """Subscribes at once and keeps (receive time, msg) pairs until closed."""

    def __init__(self, probe, key: str, msg_type):
        self.items: list[tuple[float, object]] = []
        self._lock = threading.Lock()
        self._probe = probe
        self._sub = probe.node.create_subscription(msg_type, T(key).name, self._cb, profile(T(key)))

    def _cb(self, msg):
        with self._lock:
            self.items.append((time.monotonic(), msg))

    def msgs(self) -> list:
        with self._lock:
            return [m for _, m in self.items]

    def rate(self) -> float:
        with self._lock:
            times = [t for t, _ in self.items]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 2 else 0.0

    def close(self):
        self._probe.node.destroy_subscription(self._sub)


def ground_truth(probe, predicate=lambda gt: True, timeout=15.0, seed=SEED) -> dict:
    msg = wait_for(probe, T("ground_truth").name, String, profile(T("ground_truth")),
                   lambda m: json.loads(m.data)["seed"] == seed and predicate(json.loads(m.data)), timeout=timeout)
    return json.loads(msg.data)


def command(values):
    return lambda i: Float64MultiArray(data=[float(v) for v in values])


def send(probe, values, seconds, rate=20.0):
    publish_for(probe, T("wheel_commands").name, Float64MultiArray, profile(T("wheel_commands")),
                command(values), rate, seconds)


def test_publishes_camera_imu_and_joint_states_at_the_configured_rates(start_node, ros_node):
    start_node(*SIM, "-p", "camera_rate:=8.0")
    wait_for(ros_node, T("camera").name, Image, profile(T("camera")), timeout=20.0)
    recs = {"camera": Recorder(ros_node, "camera", Image), "imu": Recorder(ros_node, "imu", Imu),
            "joint_states": Recorder(ros_node, "joint_states", JointState)}
    time.sleep(3.0)
    for r in recs.values():
        r.close()
    expected = {"camera": 8.0, "imu": T("imu").rate_hz, "joint_states": T("joint_states").rate_hz}
    for key, want in expected.items():
        assert recs[key].rate() == pytest.approx(want, rel=0.2), f"{key}: {recs[key].rate():.1f} Hz, want {want}"
    img = recs["camera"].msgs()[-1]
    assert (img.encoding, img.width, img.height) == ("rgb8", 320, 240)
    js = recs["joint_states"].msgs()[-1]
    assert list(js.name) == list(C.wheel_joints) and len(js.velocity) == 2
    assert imu_acceleration(recs["imu"].msgs()[-1].linear_acceleration) < 0.5  # at rest, gravity removed


def test_forward_command_moves_the_robot_and_a_stale_one_stops_it(start_node, ros_node):
    start_node(*SIM)
    gt0 = ground_truth(ros_node, timeout=20.0)
    img0 = image_msg_to_rgb(wait_for(ros_node, T("camera").name, Image, profile(T("camera"))))
    imu = Recorder(ros_node, "imu", Imu)
    send(ros_node, [4.0, 4.0], seconds=1.5)
    gt1 = ground_truth(ros_node)
    img1 = image_msg_to_rgb(wait_for(ros_node, T("camera").name, Image, profile(T("camera"))))
    imu.close()
    assert math.dist((gt0["x"], gt0["y"]), (gt1["x"], gt1["y"])) > 0.2
    assert np.abs(img0.astype(int) - img1.astype(int)).mean() > 1.0
    assert max(imu_acceleration(m.linear_acceleration) for m in imu.msgs()) > 0.5
    # no further commands: the watchdog stops the wheels after command_timeout
    time.sleep(C.command_timeout + 0.7)
    gt2 = ground_truth(ros_node)
    assert gt2["command"] == [0.0, 0.0] and abs(gt2["v"]) < 0.02
    joints = wait_for(ros_node, T("joint_states").name, JointState, profile(T("joint_states")))
    assert max(abs(v) for v in joints.velocity) < 0.3


def test_bad_commands_are_rejected_or_clamped_with_one_warning_each(start_node, ros_node, domain_id):
    sim = start_node(*SIM)
    gt0 = ground_truth(ros_node, timeout=20.0)
    for bad in ([1.0, 2.0, 3.0], [], [math.nan, 1.0], [math.inf, 0.0], [-math.inf, 1.0], [9.0, -9.0]):
        send(ros_node, bad, seconds=0.25)
    # a publisher of another type on the topic (its own participant: Fast DDS refuses two types
    # for one topic in one participant): DDS never matches it with the sim; the sim must not care
    other = RosTestNode(domain_id, name="wrong_type_publisher")
    try:
        publish_for(other, T("wheel_commands").name, String, profile(T("wheel_commands")),
                    lambda i: String(data="forward"), 20.0, 0.5)
    finally:
        other.close()
    send(ros_node, [4.0, 4.0], seconds=1.0)  # valid commands are still obeyed
    gt1 = ground_truth(ros_node)
    assert sim.alive()
    assert math.dist((gt0["x"], gt0["y"]), (gt1["x"], gt1["y"])) > 0.1
    counts = gt1["rejected_commands"]
    assert counts["wrong_length"] >= 2 and counts["non_finite"] >= 2 and counts["out_of_range"] >= 1
    log = sim.log()
    for kind in ("wrong length", "non finite", "out of range"):
        assert log.count(f"Further {kind} commands are counted") == 1, log


def test_task_topic_sets_the_goal_and_unknown_tasks_are_refused(start_node, ros_node):
    sim = start_node(*SIM)
    ground_truth(ros_node, timeout=20.0)
    pub = ros_node.node.create_publisher(String, T("task").name, profile(T("task")))
    pub.publish(String(data="Position yourself next to Green sphere"))
    ground_truth(ros_node, lambda gt: gt["goal"] == "green_sphere")
    pub.publish(String(data="Find the purple unicorn"))
    wait_until(lambda: "names no known goal" in sim.log(), 10.0, "a warning about the unknown task")
    assert ground_truth(ros_node)["goal"] == "green_sphere"
    ros_node.node.destroy_publisher(pub)


def test_reset_service_draws_the_next_layout(start_node, ros_node):
    start_node(*SIM)
    ground_truth(ros_node, lambda gt: gt["time"] > 1.0, timeout=20.0)
    client = ros_node.node.create_client(Trigger, C.service("sim_reset").name)
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(Trigger.Request())
    wait_until(future.done, 10.0, "the /sim/reset reply")
    assert future.result().success and f"seed {SEED + 1}" in future.result().message
    gt = ground_truth(ros_node, seed=SEED + 1)
    assert gt["time"] < 1.0
    layout = wait_for(ros_node, T("sim_layout").name, String, profile(T("sim_layout")),
                      lambda m: json.loads(m.data)["seed"] == SEED + 1)
    assert {o["name"] for o in json.loads(layout.data)["objects"]} >= {"blue_cube", "red_cube"}
    ros_node.node.destroy_client(client)


def test_sigint_stops_the_node_cleanly(start_node, ros_node):
    sim = start_node(*SIM)
    ground_truth(ros_node, timeout=20.0)
    assert sim.stop(timeout=10.0) == 0, sim.log()
