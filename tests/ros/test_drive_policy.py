"""`gr00t-rlhf drive --sim` with a GR00T policy and reward model, end to end over real DDS.

A module fixture makes a small demo pair with the demo-model code (a few simulated episodes, a few
dozen training steps: the models drive badly, which is all these tests need), then ONE drive run
with the recorder is watched by a probe node: commands and rewards flow, the robot moves, overlay
images arrive, an episode is recorded on demand; then the simulator freezes (SIGSTOP: its process
lives on, so only policy_node's stale-input check can stop the wheels), and is then killed (SIGKILL):
the run must command zero, stop every node, finish the video and print its summary line. Each test
checks one of those behaviours on what the run left. When a command went out is its DDS source
timestamp (policy_node's clock, this host's): the probe's own receive time would add its executor's
lag (up to ~0.3 s on the loaded 2-core CI machine). Estop, NaN output, a slow model and a dead
inference server are tested at node level (tests/ros/nodes).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gr00t_rlhf_ros.contract import load_contract
from ros_harness import REPO, RosTestNode, next_domain_id, ros_environment, spawn, wait_until

pytest.importorskip("rclpy")

SEED = 1
FROZEN_S = 1.5        # the simulator is frozen this long before it is killed
SMALL = dict(expert_episodes=3, noisy_expert_episodes=1, wrong_goal_episodes=1, perturbed_episodes=1, max_seconds=8.0, image_size=(48, 64),
             policy_steps=30, reward_steps=30, batch_size=8, reward_horizon=2, eval_seeds=())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small demo policy and reward model, made by the same code as make drive's (about 30 s)."""
    from gr00t_rlhf_ros.demo_models import DemoRecipe, ensure

    root = tmp_path_factory.mktemp("demo_models")
    return ensure(DemoRecipe(**SMALL), root, log=lambda line: None)


class Watch:
    """Every message of the run's topics, with receive times (the probe's own thread appends); for
    wheel commands also the send time (``sent``: DDS source timestamp, ns of ``time.time_ns()``)."""

    def __init__(self, probe: RosTestNode):
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float32, Float64MultiArray, String

        from gr00t_rlhf_ros.qos import profile

        c = load_contract()
        self.lock = threading.Lock()
        self.got: dict[str, list] = {k: [] for k in ("wheel_commands", "reward", "reward_overlay", "ground_truth")}
        self.sent: list[tuple[int, list[float]]] = []
        for key, msg_type in (("wheel_commands", Float64MultiArray), ("reward", Float32), ("reward_overlay", Image),
                              ("ground_truth", String)):
            qos = profile(c.topic(key))
            if key == "wheel_commands":
                qos.depth = 1000    # every command that reaches the probe, even while its thread lags (contract: 1)
            probe.node.create_subscription(msg_type, c.topic(key).name, lambda m, info, k=key: self._add(k, m, info),
                                           qos)

    def _add(self, key, msg, info):
        with self.lock:
            self.got[key].append((time.monotonic(), msg))
            if key == "wheel_commands":
                self.sent.append((info["source_timestamp"], list(msg.data)))

    def driving(self) -> bool:
        """The last wheel command received is not zero."""
        with self.lock:
            return bool(self.sent) and any(abs(v) > 1e-3 for v in self.sent[-1][1])

    def sent_after(self, t_ns: int) -> list[tuple[float, list[float]]]:
        """Wheel commands sent after ``t_ns`` (time.time_ns()): (seconds after it, [left, right])."""
        with self.lock:
            return [((src - t_ns) / 1e9, data) for src, data in self.sent if src > t_ns]

    def __getitem__(self, key) -> list:
        with self.lock:
            return list(self.got[key])

    def count(self, key) -> int:
        with self.lock:
            return len(self.got[key])


def _trigger(probe, name: str):
    from std_srvs.srv import Trigger

    client = probe.node.create_client(Trigger, load_contract().service(name).name)
    assert client.wait_for_service(timeout_sec=60), f"{name} service"
    fut = client.call_async(Trigger.Request())
    wait_until(fut.done, 20, f"{name} reply")
    return fut.result()


@pytest.fixture(scope="module")
def run(models, tmp_path_factory):
    """One recorded drive with the models, ended by killing the simulator; -> what it left."""
    tmp = tmp_path_factory.mktemp("drive_policy")
    domain = next_domain_id()
    env = ros_environment(domain)
    saved = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = env["ROS_AUTOMATIC_DISCOVERY_RANGE"]
    probe = RosTestNode(domain)
    watch = Watch(probe)
    argv = [sys.executable, "-m", "gr00t_rlhf_ros.cli", "drive", "--sim", "--seed", str(SEED),
            "--policy", str(models.policy), "--reward-model", str(models.reward), "--record", str(tmp / "ds"),
            "--runs-dir", str(tmp / "runs"), "--no-stop-at-goal", "--duration", "120"]
    drive = spawn(argv, env, tmp, "drive")
    out = {"tmp": tmp, "watch": watch, "drive": drive}
    try:
        driving = lambda: any(abs(v) > 1e-3 for _, m in watch["wheel_commands"] for v in m.data)  # noqa: E731
        wait_until(lambda: watch.count("reward") >= 3 and driving(), 120, "rewards and non-zero policy commands",
                   interval=0.2)
        record_started = wait_until(lambda: _trigger(probe, "start_episode").success, 30, "an episode to start",
                                    interval=0.5)
        time.sleep(3.0)
        out["stop_reply"] = _trigger(probe, "stop_episode")
        assert record_started
        pids = {n: int(p) for n, p in re.findall(r"started (\w+) \(pid (\d+)\)", drive.log())}
        out["pids"] = pids
        # a slow (loaded) machine drives little in the few seconds above: let the robot cover 5 cm first
        wait_until(lambda: _moved(watch) > 0.05, 60, "the robot to move 5 cm", interval=0.2)
        # frozen while the policy drives, not dead: the launcher sees nothing, the policy's inputs just stop
        wait_until(watch.driving, 60, "a non-zero command to freeze the sim on", interval=0.01)
        out["frozen_ns"], out["frozen_at"] = time.time_ns(), time.monotonic()
        os.kill(pids["sim_node"], signal.SIGSTOP)
        time.sleep(FROZEN_S)
        out["killed_ns"] = time.time_ns()
        out["killed_at"] = time.monotonic()
        os.kill(pids["sim_node"], signal.SIGKILL)
        out["rc"] = drive.proc.wait(60)
        time.sleep(0.5)              # the last messages reach the probe
        out["log"] = drive.log()
        yield out
    finally:
        drive.stop()
        probe.close()
        if saved is None:
            os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
        else:
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = saved


def _moved(watch) -> float:
    """The largest distance (m) of the robot from its first ground-truth pose so far."""
    poses = [json.loads(m.data) for _, m in watch["ground_truth"]]
    if not poses:
        return 0.0
    return max((p["x"] - poses[0]["x"]) ** 2 + (p["y"] - poses[0]["y"]) ** 2 for p in poses) ** 0.5


def _alive_window(run) -> list:
    return [(t, m) for t, m in run["watch"]["wheel_commands"] if t < run["frozen_at"]]


def test_the_graph_is_sim_policy_reward_and_recorder(run):
    assert set(run["pids"]) == {"sim_node", "policy_node", "reward_node", "recorder_node"}, run["log"][-3000:]


def test_policy_commands_flow_and_the_robot_moves(run):
    commands = _alive_window(run)
    assert len(commands) >= 20
    assert any(abs(v) > 1e-3 for _, m in commands for v in m.data), "the policy only commanded zeros"
    assert all(len(m.data) == 2 and all(abs(v) <= 5.0 for v in m.data) for _, m in commands)   # clamped
    moved = _moved(run["watch"])
    assert moved > 0.05, f"the robot moved {moved:.3f} m"


def test_rewards_and_overlay_images_arrive(run):
    rewards = [m.data for _, m in run["watch"]["reward"]]
    assert len(rewards) >= 3 and all(0.0 <= r <= 1.0 for r in rewards), rewards[:10]
    overlays = run["watch"]["reward_overlay"]
    assert len(overlays) >= 3
    img = overlays[-1][1]
    assert (img.width, img.height, img.encoding) == (320, 240, "rgb8")


def _policy_params() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "policy.yaml").read_text())["/**/policy_node"]["ros__parameters"]


def test_a_frozen_sim_stops_the_robot_within_the_input_timeout(run):
    # nothing but policy_node's stale-input check can stop the wheels here: the sim process lives on
    p = _policy_params()
    # + one control period + slack for the sim's last messages still in flight when it froze (measured up to
    # 0.21 s from send to arrival under load); counted from when each command was SENT
    bound = p["input_timeout"] + 1.0 / p["control_rate"] + 0.3
    sent = run["watch"].sent_after(run["frozen_ns"])
    late = [(round(dt, 3), data) for dt, data in sent if dt > bound and any(abs(v) > 0 for v in data)]
    assert not late, f"non-zero commands sent more than {bound:.2f} s after the sim froze: {late[:5]}"
    frozen = [data for dt, data in sent if dt < FROZEN_S]
    assert frozen and frozen[-1] == [0.0, 0.0], frozen[-5:]


def test_killing_the_sim_stops_the_robot_and_every_node(run):
    after = [data for _, data in run["watch"].sent_after(run["killed_ns"])]
    assert all(data == [0.0, 0.0] for data in after), after[-5:]
    assert run["rc"] == 1 and "sim_node exited with code -9" in run["log"]
    for name, pid in run["pids"].items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_video_is_written_and_decodes(run):
    import av

    (video,) = run["tmp"].glob("runs/*/drive.mp4")
    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) >= 5 and frames[0].shape == (240, 320, 3)
    summary = json.loads((video.parent / "summary.json").read_text())
    assert summary["video"] == str(video) and summary["task"] == "Find Blue cube" and summary["rewards"] >= 3


def test_the_run_ends_with_one_summary_line(run):
    last = run["log"].rstrip("\n").split("\n")[-1]
    assert re.fullmatch(r"drive: task 'Find Blue cube': (reached in [\d.]+ s|not reached \([\d.]+ m to go\) after [\d.]+ s); "
                        r"mean reward \d\.\d{3} "
                        r"\(\d+ values\); video .*drive\.mp4 \(\d+ frames.*\)", last), last


def test_recording_on_demand_gives_a_valid_dataset(run):
    assert run["stop_reply"].success and "episode 0 saved" in run["stop_reply"].message, run["stop_reply"].message
    r = subprocess.run([sys.executable, "-m", "gr00t_rlhf_ros.cli", "dataset", "validate", str(run["tmp"] / "ds")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_demo_models_report_how_they_were_made(models):
    report = models.report()
    assert report["recipe"]["policy_steps"] == 30 and report["frames"] > report["good_frames"] > 0
    assert Path(models.policy, "gr00t_rlhf.json").is_file() and Path(models.reward, "gr00t_rlhf.json").is_file()
