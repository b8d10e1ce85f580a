"""reward_node over real DDS with a tiny reward checkpoint made here: rewards, marker and overlay flow;
bad input is dropped and logged once; a NaN model publishes nothing and says so; a bad checkpoint stops
the node at start with one line."""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from ros_harness import wait_for, wait_until

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image, Imu, JointState  # noqa: E402
from std_msgs.msg import Float32, String  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from gr00t_rlhf_ros import diagnostics as diag  # noqa: E402
from gr00t_rlhf_ros.contract import load_contract  # noqa: E402
from gr00t_rlhf_ros.msgs import sec_to_stamp, stamp_to_sec  # noqa: E402
from gr00t_rlhf_ros.overlay import reward_colour  # noqa: E402
from gr00t_rlhf_ros.qos import profile  # noqa: E402

C = load_contract()
T = C.topic
TASK = "Find Blue cube"


def make_checkpoint(path, nan: bool = False):
    """A tiny reward model (DiT head, H = 2) saved as a checkpoint; ``nan``: its output bias is NaN."""
    import torch

    from gr00t_rlhf_train.model.policy import Gr00tPolicy
    from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
    from gr00t_rlhf_train.model.reward_model import RewardModel

    torch.manual_seed(0)
    rm = RewardModel.from_policy(Gr00tPolicy.from_config("tiny", seed=0),
                                 RewardHeadConfig(kind="dit", horizon=2, num_layers=2, num_heads=4, head_dim=16,
                                                  hidden_size=64, reward_range=(-1.0, 1.0)))
    if nan:
        with torch.no_grad():
            rm.head.reward_decoder[-1].bias.fill_(math.nan)
    rm.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward_ckpt")
    return {"good": make_checkpoint(root / "good"), "nan": make_checkpoint(root / "nan", nan=True)}


class Robot:
    """Publishes what a robot does (camera 10 Hz rgb8 320x240, joint_states and imu 50 Hz, stamped now) from a
    thread; ``bad_images`` first sends images the node must drop."""

    def __init__(self, probe, namespace: str = "/"):
        self.node = probe.node
        self.pubs = {key: self.node.create_publisher(kind, T(key).resolved(namespace), profile(T(key)))
                     for key, kind in (("camera", Image), ("joint_states", JointState), ("imu", Imu))}
        self.stamps: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        rng = np.random.default_rng(0)
        self.images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8).tobytes() for _ in range(4)]

    def wait_subscribed(self):
        wait_until(lambda: all(p.get_subscription_count() >= 1 for p in self.pubs.values()), 60,
                   "reward_node to subscribe the camera, joint_states and imu")

    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def image(self, encoding="rgb8", step=960, size=None, h=240, w=320, data=None):
        msg = Image(height=h, width=w, encoding=encoding, step=step, data=data or bytes(step * h if size is None else size))
        msg.header.frame_id = "camera_link"
        t = self._now()
        sec_to_stamp(t, msg.header.stamp)
        self.pubs["camera"].publish(msg)
        return t

    def bad_images(self):
        for _ in range(3):
            self.image(encoding="16UC1", step=640)      # unsupported without cv_bridge
            time.sleep(0.05)
            self.image(size=960 * 240 - 1)              # data shorter than step x height
            time.sleep(0.05)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        k = 0
        while not self._stop.is_set():
            t = self._now()
            js = JointState(name=list(C.wheel_joints), velocity=[1.0, -1.0], position=[0.0, 0.0])
            sec_to_stamp(t, js.header.stamp)
            self.pubs["joint_states"].publish(js)
            imu = Imu()
            sec_to_stamp(t, imu.header.stamp)
            imu.linear_acceleration.z = 9.81
            self.pubs["imu"].publish(imu)
            if k % 5 == 0:
                self.stamps.append(self.image(data=self.images[(k // 5) % 4]))
            k += 1
            self._stop.wait(0.02)

    def stop(self):
        self._stop.set()
        self._thread.join(5)


def publish_task(probe, text=TASK):
    pub = probe.node.create_publisher(String, T("task").name, profile(T("task")))  # latched
    pub.publish(String(data=text))
    return pub


def node_status(probe, predicate, timeout=30.0, name="/reward_node"):
    msg = wait_for(probe, diag.TOPIC, DiagnosticArray, diag.QOS,
                   lambda m: any(s.name == name and predicate(s) for s in m.status), timeout=timeout)
    return next(s for s in msg.status if s.name == name)


def test_rewards_marker_and_overlay_flow_and_bad_input_is_dropped(start_node, ros_node, checkpoints):
    node = start_node("reward_node", "--params-file", "config/reward.yaml", "-p", f"reward_model:={checkpoints['good']}")
    robot = Robot(ros_node)
    robot.wait_subscribed()
    status = node_status(ros_node, lambda s: s.message.startswith("no camera frames"))
    assert status.level == diag.WARN and status.message == "no camera frames on /camera/image_raw"
    robot.bad_images()
    robot.start()
    try:
        # no task yet: frames arrive but nothing is scored, and the diagnostics say why
        status = node_status(ros_node, lambda s: "no task" in s.message)
        assert status.level == diag.WARN
        task_pub = publish_task(ros_node)
        rewards = []
        sub = ros_node.node.create_subscription(Float32, T("reward").name, lambda m: rewards.append(m.data),
                                                profile(T("reward")))
        overlay = wait_for(ros_node, T("reward_overlay").name, Image, profile(T("reward_overlay")), timeout=30)
        marker = wait_for(ros_node, T("reward_marker").name, Marker, profile(T("reward_marker")), timeout=10)
        wait_until(lambda: len(rewards) >= 5, 20, "5 rewards")
        ros_node.node.destroy_subscription(sub)
        status = node_status(ros_node, lambda s: s.message == "scoring")
    finally:
        robot.stop()
    assert all(math.isfinite(r) for r in rewards)
    # overlay: the scored camera frame (same header), rgb8, drawn on
    assert overlay.encoding == "rgb8" and (overlay.height, overlay.width) == (240, 320)
    assert overlay.header.frame_id == "camera_link"
    assert any(abs(stamp_to_sec(overlay.header.stamp) - s) < 1e-6 for s in robot.stamps)
    pixels = np.frombuffer(bytes(overlay.data), np.uint8).reshape(240, 320, 3)
    assert not any(np.array_equal(pixels, np.frombuffer(im, np.uint8).reshape(240, 320, 3)) for im in robot.images)
    # marker: text above the robot, coloured over the model's reward range (-1..1)
    assert marker.type == Marker.TEXT_VIEW_FACING and marker.header.frame_id == "base_link"
    assert marker.pose.position.z > 0 and marker.text.startswith("reward ")
    value = float(marker.text.split()[-1])
    r, g, b = reward_colour(value, -1.0, 1.0)
    assert (marker.color.r, marker.color.g) == pytest.approx((r, g), abs=0.02) and marker.color.a == 1.0
    values = diag.values_of(status)
    assert float(values["rewards per s"]) > 0 and int(values["frames received"]) > 0
    assert int(values["bad input messages"]) == 6
    assert values["clip"] == "2 frames at 10 Hz"
    ros_node.node.destroy_publisher(task_pub)
    assert node.stop() == 0
    log = node.log()
    # each kind of bad image logged once, then counted (the shutdown line sums them up)
    assert log.count("is not supported without cv_bridge") == 1 and log.count("image data too short") == 1
    assert "3 dropped on /camera/image_raw (data too short)" in log
    assert "3 dropped on /camera/image_raw (unsupported encoding '16UC1')" in log


def test_a_nan_model_publishes_nothing_and_says_why(start_node, ros_node, checkpoints):
    # in a robot's namespace: the node reads /robot1/..., its status is named /robot1/reward_node
    node = start_node("reward_node", "--params-file", "config/reward.yaml", "-p", f"reward_model:={checkpoints['nan']}",
                      "-p", f"task:={TASK}", "-r", "__ns:=/robot1")
    robot = Robot(ros_node, "/robot1")
    robot.wait_subscribed()
    rewards = []
    sub = ros_node.node.create_subscription(Float32, T("reward").resolved("/robot1"), lambda m: rewards.append(m.data),
                                            profile(T("reward")))
    robot.start()
    try:
        status = node_status(ros_node, lambda s: "not published" in s.message, name="/robot1/reward_node")
    finally:
        robot.stop()
    ros_node.node.destroy_subscription(sub)
    assert status.level == diag.ERROR and "non-finite" in status.message
    assert rewards == [] and int(diag.values_of(status)["rewards not published"]) > 0
    assert node.stop() == 0
    assert node.log().count("non-finite score nan") == 1


def test_refuses_to_start_on_a_bad_checkpoint_with_one_line(start_node, tmp_path):
    (tmp_path / "empty").mkdir()
    procs = {"empty": start_node("reward_node", "-p", f"reward_model:={tmp_path / 'empty'}", name="empty"),
             "unset": start_node("reward_node", name="unset"),
             "threads": start_node("reward_node", "-p", f"reward_model:={tmp_path / 'empty'}", "-p", "torch_threads:=-1",
                                   name="threads")}
    for name, p in procs.items():
        wait_until(lambda: not p.alive(), 60, f"reward_node ({name}) to exit")
        assert p.proc.returncode == 1, p.log()
        errors = [line for line in p.log().splitlines() if "error" in line]
        assert len(errors) == 1 and errors[0].startswith("[reward_node] error: "), p.log()
    assert str(tmp_path / "empty") in procs["empty"].log() and "Traceback" not in procs["empty"].log()
    assert "parameter reward_model: empty" in procs["unset"].log()
    assert "parameter torch_threads: -1 must be >= 0" in procs["threads"].log()


def test_ctrl_c_while_the_model_loads_stops_at_once(start_node, checkpoints):
    node = start_node("reward_node", "-p", f"reward_model:={checkpoints['good']}")
    wait_until(lambda: "loading reward model" in node.log() or not node.alive(), 60, "the model to start loading")
    t0 = time.monotonic()
    assert node.stop() == 0, node.log()
    assert time.monotonic() - t0 < 5.0
    assert "SIGINT while loading the reward model: stopped" in node.log()
