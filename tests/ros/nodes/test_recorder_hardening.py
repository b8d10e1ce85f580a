"""recorder_node over real DDS under bad input: it stays up, the episode goes on, drops are counted."""
import re
import time

import numpy as np

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.msgs import sec_to_stamp
from gr00t_rlhf_ros.qos import profile
from gr00t_rlhf_train.data.reader import LeRobotDataset
from gr00t_rlhf_train.data.writer import DatasetWriter
from gr00t_rlhf_train.feedback import BINARY
from ros_harness import wait_until
from test_recorder_node import Operator

C = load_contract()


def _abs(key: str) -> str:
    """The contract name as resolved in the root namespace (names may be relative)."""
    return "/" + C.topic(key).name.lstrip("/")


def _start(start_node, dataset, *extra):
    start_node("sim_node", "--params-file", "config/sim.yaml", "-p", "seed:=5")
    return start_node("recorder_node", "--params-file", "config/recorder.yaml", "-p", f"dataset:={dataset}", *extra)


class BadPublisher:
    """Publishes each kind of bad message on the recorder's topics, stamped now."""

    def __init__(self, probe):
        from sensor_msgs.msg import Image, Imu, JointState
        from std_msgs.msg import Float64MultiArray

        self.node = probe.node
        self.types = {"camera": Image, "imu": Imu, "joint_states": JointState, "wheel_commands": Float64MultiArray}
        self.pubs = {k: self.node.create_publisher(t, C.topic(k).name, profile(C.topic(k))) for k, t in self.types.items()}
        wait_until(lambda: all(p.get_subscription_count() >= 1 for p in self.pubs.values()), 20,
                   "the recorder to subscribe the probe's publishers")

    def _stamped(self, key, **fields):
        msg = self.types[key](**fields)
        sec_to_stamp(self.node.get_clock().now().nanoseconds * 1e-9, msg.header.stamp)
        return msg

    def image(self, h, w, encoding="rgb8", step=None, size=None):
        c = {"rgb8": 3, "16UC1": 2}[encoding]
        step = w * c if step is None else step
        data = bytes(step * h if size is None else size)
        self.pubs["camera"].publish(self._stamped("camera", height=h, width=w, encoding=encoding, step=step, data=data))
        time.sleep(0.05)  # the camera QoS keeps 2 frames: a burst would overwrite frames not yet delivered

    def every_kind(self):
        from geometry_msgs.msg import Vector3

        h, w = 240, 320
        self.image(h, w, "16UC1")
        self.image(h, w, size=w * 3 * h - 1)     # data shorter than step x height
        self.image(h, w, step=w * 3 - 1)         # step smaller than width x channels
        self.image(0, 0)
        self.image(480, 640)                     # not the dataset's size
        self.pubs["imu"].publish(self._stamped("imu", linear_acceleration=Vector3(x=float("nan"), y=0.0, z=9.8)))
        self.pubs["joint_states"].publish(self._stamped("joint_states", name=list(C.wheel_joints),
                                                        velocity=[float("inf"), 0.0]))
        self.pubs["wheel_commands"].publish(self.types["wheel_commands"](data=[1e40, -1e6]))


def test_bad_messages_are_dropped_counted_and_the_episode_goes_on(start_node, ros_node, tmp_path):
    dataset = tmp_path / "ds"
    recorder = _start(start_node, dataset)
    op = Operator(ros_node)
    wait_until(lambda: op.call("start").success, 30, "the recorder to accept an episode start")
    bad = BadPublisher(ros_node)
    time.sleep(0.5)
    for _ in range(3):                           # each kind three times: logged once, counted three times
        bad.every_kind()
        time.sleep(0.15)
    time.sleep(0.5)
    r = op.call("stop")
    assert recorder.alive(), recorder.log()
    assert r.success and "episode 0 saved" in r.message, r.message
    expected = [("dropped", "camera", reason) for reason in (
        "unsupported encoding '16UC1'", "data too short", "step smaller than width x channels", "empty image",
        "size 640x480, dataset 320x240")]
    expected += [("dropped", "imu", "non-finite linear_acceleration"), ("dropped", "joint_states", "non-finite velocity"),
                 ("clamped", "wheel_commands", f"clamped to +-{C.max_wheel_speed:g} rad/s")]
    for what, key, reason in expected:   # counted (3 each unless DDS lost one under load)
        assert re.search(rf"[123] {what} on {re.escape(_abs(key))} \({re.escape(reason)}\)", r.message), r.message

    warnings = [line for line in recorder.log().splitlines() if "[WARN]" in line]
    for needle in ("'16UC1'", "data too short", "step 959 is smaller", "empty image", "image is 640x480",
                   "non-finite linear_acceleration", "is inf: not a finite float32", "clamped to +-"):
        assert sum(needle in line for line in warnings) == 1, (needle, warnings)   # once per kind

    ep = LeRobotDataset(dataset, warn=False).episode(0)
    assert len(ep) >= 10
    assert np.all(np.isfinite(ep.state)) and np.all(np.isfinite(ep.action))
    assert np.abs(ep.action).max() <= C.max_wheel_speed
    assert np.isclose(np.abs(ep.action).max(), C.max_wheel_speed)   # the 1e40 command, as the robot applied it

    assert op.call("start").success                                  # and it records on
    time.sleep(1.0)
    r = op.call("stop")
    assert r.success and "episode 1 saved" in r.message and "bad input" not in r.message, r.message
    recorder.stop()
    assert "bad input since start: " in recorder.log()


def test_appending_with_another_fps_or_image_size_is_refused(start_node, ros_node, tmp_path):
    dataset = tmp_path / "ds"
    DatasetWriter.create(dataset, 5.0, (120, 160), BINARY)
    before = sorted(p.relative_to(dataset) for p in dataset.rglob("*"))
    recorder = _start(start_node, dataset)
    op = Operator(ros_node)
    # the fps is refused at once; the image size once a camera frame has arrived
    r = wait_until(lambda: (lambda r: r if "sends" in r.message else None)(op.call("start")), 30,
                   "the recorder to refuse the start naming the camera's image size")
    assert not r.success
    assert f"recorded at 5 fps, this recorder runs at {C.dataset_fps:g} fps" in r.message, r.message
    assert f"its images are 160x120, {_abs('camera')} sends 320x240" in r.message, r.message
    assert "choose another dataset directory" in r.message
    assert recorder.alive()
    assert sorted(p.relative_to(dataset) for p in dataset.rglob("*") if ".staging" not in p.parts) == \
        [p for p in before if ".staging" not in p.parts]


def test_failed_first_start_leaves_no_dataset_directory(start_node, ros_node, tmp_path):
    from std_msgs.msg import String

    dataset = tmp_path / "new" / "ds"
    recorder = _start(start_node, dataset)
    spec = C.topic("task")
    ros_node.node.create_publisher(String, spec.name, profile(spec)).publish(String(data="   "))
    from std_srvs.srv import Trigger
    client = ros_node.node.create_client(Trigger, C.service("start_episode").name)
    assert client.wait_for_service(timeout_sec=30)

    def start():
        fut = client.call_async(Trigger.Request())
        wait_until(fut.done, 10, "a start reply")
        return fut.result()
    r = wait_until(lambda: (lambda r: r if "no task" in r.message else None)(start()), 30,
                   "the recorder to refuse the start for want of a task")
    assert not r.success and f"publish one on {_abs('task')}" in r.message, r.message
    assert not (tmp_path / "new").exists()
    wait_until(lambda: "empty task ignored" in recorder.log(), 10, "the empty task warning")
    assert recorder.alive()


def test_what_a_first_start_may_remove(tmp_path):
    """Only what DatasetWriter.create makes: the highest missing directory, or an empty one's contents."""
    from gr00t_rlhf_ros.nodes.recorder_node import _created_by_create

    assert _created_by_create(tmp_path / "a" / "b" / "ds") == (tmp_path / "a").absolute()
    (tmp_path / "empty").mkdir()
    assert _created_by_create(tmp_path / "empty") == (tmp_path / "empty").absolute()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert _created_by_create(tmp_path / "full") is None           # create refuses it; nothing is removed
