"""recorder_node over real DDS, fed by sim_node + expert_node: episodes, feedback, discard, SIGKILL."""
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.msgs import image_msg_to_rgb, stamp_to_sec
from gr00t_rlhf_ros.qos import profile
from gr00t_rlhf_train.data.reader import LeRobotDataset
from ros_harness import wait_until

C = load_contract()


class Operator:
    """Calls the recorder's services and sends feedback, like feedback_node."""

    def __init__(self, probe):
        from std_msgs.msg import Int32
        from std_srvs.srv import Trigger

        self.node = probe.node
        self.Trigger = Trigger
        self.clients = {k: self.node.create_client(Trigger, C.service(f"{k}_episode").name)
                        for k in ("start", "stop", "discard")}
        from std_msgs.msg import String

        spec = C.topic("human_feedback")
        self.fb = self.node.create_publisher(Int32, spec.name, profile(spec))
        self.Int32 = Int32
        task = C.topic("task")  # latched: the sim and the recorder both get it, whenever they start
        self.task = self.node.create_publisher(String, task.name, profile(task))
        self.task.publish(String(data="Position yourself next to Green sphere"))
        for c in self.clients.values():
            assert c.wait_for_service(timeout_sec=30), f"{c.srv_name} not available"

    def call(self, kind: str):
        # A reply can be lost while DDS is still matching the server's reply writer to a new
        # client (wait_for_service only sees the request side): ask again after a few seconds.
        # A repeated start then answers "already being recorded", which means it did start.
        for attempt in range(3):
            fut = self.clients[kind].call_async(self.Trigger.Request())
            deadline = time.monotonic() + 10
            while not fut.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            if fut.done():
                r = fut.result()
                if attempt and kind == "start" and "already being recorded" in r.message:
                    r.success = True
                return r
            self.clients[kind].remove_pending_request(fut)
        raise AssertionError(f"no reply from {kind}_episode after 3 tries")

    def feedback(self, key: int):
        self.fb.publish(self.Int32(data=key))


def _camera_log(probe):
    """Every published camera frame, by stamp."""
    from sensor_msgs.msg import Image

    frames, lock = {}, threading.Lock()

    def cb(msg):
        with lock:
            frames[stamp_to_sec(msg.header.stamp)] = image_msg_to_rgb(msg)

    spec = C.topic("camera")
    probe.node.create_subscription(Image, spec.name, cb, profile(spec))
    return frames


def _start_graph(start_node, dataset, seed=2):
    start_node("sim_node", "--params-file", "config/sim.yaml", "-p", f"seed:={seed}")
    start_node("expert_node", "--params-file", "config/expert.yaml")
    return start_node("recorder_node", "--params-file", "config/recorder.yaml", "-p", f"dataset:={dataset}")


def _ready(recorder, probe) -> "Operator":
    """Wait until the recorder has seen the robot (images flow), as an operator would."""
    op = Operator(probe)
    wait_until(lambda: op.call("start").success, 30, "the recorder to accept an episode start")
    return op


def test_records_episodes_with_feedback_and_discard(start_node, ros_node, tmp_path):
    dataset = tmp_path / "ds"
    recorder = _start_graph(start_node, dataset)
    frames = _camera_log(ros_node)
    wait_until(lambda: len(frames) > 5, 30, "camera frames at the probe")  # it sees every frame from here on
    op = _ready(recorder, ros_node)
    time.sleep(2.0)
    op.feedback(0)
    time.sleep(2.0)
    r = op.call("stop")
    assert r.success and "episode 0 saved" in r.message, r.message
    assert op.call("stop").success is False          # nothing open: a clear refusal, no crash

    assert op.call("start").success
    time.sleep(1.5)
    assert op.call("discard").success
    assert op.call("start").success
    time.sleep(2.0)
    r = op.call("stop")
    assert r.success and "episode 1 saved" in r.message, r.message + recorder.log()

    ds = LeRobotDataset(dataset, warn=False)
    assert ds.num_episodes == 2
    ep0, ep1 = ds.episode(0), ds.episode(1)
    # ~4 s and ~2 s at 10 fps; ticks dropped as stale under CPU load are counted, not written
    assert 25 <= len(ep0) <= 45 and 10 <= len(ep1) <= 25, (len(ep0), len(ep1))
    assert ep0.feedback_keys[0] == 1 and ep0.feedback_keys[-1] == 0      # feedback changed mid-episode
    assert set(ep1.feedback_keys) == {1}                                  # each episode starts from "good"
    assert ep0.task_texts[0] == "Position yourself next to Green sphere"  # the operator's, not the sim's
    assert np.abs(ep0.action).max() > 0.1                                 # the expert was driving
    assert np.abs(ep0.state[:, :2]).max() > 0.1                           # wheels turned
    # every recorded frame is one of the published images (within codec error)
    published = list(frames.values())
    for row in (0, len(ep0) // 2, len(ep0) - 1):
        got = ep0.frame(row).astype(np.float64)
        best = max(10 * np.log10(255 ** 2 / max(np.mean((got - p) ** 2), 1e-9)) for p in published)
        assert best > 30, best
    out = subprocess.run([sys.executable, "-m", "gr00t_rlhf_train.cli", "dataset", "validate", str(dataset)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sigkill_mid_episode_keeps_earlier_episodes(start_node, ros_node, tmp_path):
    dataset = tmp_path / "ds"
    recorder = _start_graph(start_node, dataset, seed=3)
    op = _ready(recorder, ros_node)
    time.sleep(2.0)
    assert op.call("stop").success
    assert op.call("start").success
    time.sleep(2.0)
    recorder.proc.send_signal(signal.SIGKILL)
    recorder.proc.wait(10)

    ds = LeRobotDataset(dataset, warn=False)     # loads: the committed episode is intact
    assert ds.num_episodes == 1 and len(ds.episode(0)) >= 15

    restarted = start_node("recorder_node", "--params-file", "config/recorder.yaml", "-p", f"dataset:={dataset}",
                           name="recorder_node_2")
    wait_until(lambda: "recovered episode 1" in restarted.log(), 30, "the restarted recorder to recover episode 1")
    _ready(restarted, ros_node)
    time.sleep(1.0)
    assert op.call("stop").success
    ds = LeRobotDataset(dataset, warn=False)
    # the killed episode was recovered as episode 1; the new one follows it
    assert ds.num_episodes == 3
    assert [ds.episode(i).index for i in range(ds.num_episodes)] == list(range(ds.num_episodes))


def test_shutdown_commits_the_open_episode(start_node, ros_node, tmp_path):
    dataset = tmp_path / "ds"
    recorder = _start_graph(start_node, dataset, seed=4)
    _ready(recorder, ros_node)
    time.sleep(2.0)
    assert recorder.stop() == 0, recorder.log()
    assert "shutdown: episode 0 saved" in recorder.log()
    assert LeRobotDataset(dataset, warn=False).num_episodes == 1
