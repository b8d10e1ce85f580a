"""`gr00t-rlhf drive --sim` end to end: real processes over real DDS."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from gr00t_rlhf_ros.contract import load_contract
from ros_harness import spawn, wait_for, wait_until


def _pids(log: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", log)}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone for our purposes only once reaped; check /proc state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _drive(ros_env, tmp_path, *args):
    """The graph's mechanics with the scripted expert (the policy's run: tests/ros/test_drive_policy.py);
    it keeps driving at the goal, and writes its run directory under tmp_path."""
    if "--driver" not in args:
        args = ("--driver", "expert", *args)
    argv = [sys.executable, "-m", "gr00t_rlhf_ros.cli", "drive", "--sim", "--seed", "1", "--no-stop-at-goal",
            "--runs-dir", str(tmp_path / "runs"), *args]
    return spawn(argv, ros_env, tmp_path, "drive")


def _robot_moves(ros_node):
    from std_msgs.msg import String

    from gr00t_rlhf_ros.qos import profile

    spec = load_contract().topic("ground_truth")
    first = json.loads(wait_for(ros_node, spec.name, String, profile(spec), timeout=30).data)
    moved = wait_for(ros_node, spec.name, String, profile(spec), timeout=20, predicate=lambda m: (
        (json.loads(m.data)["x"] - first["x"]) ** 2 + (json.loads(m.data)["y"] - first["y"]) ** 2 > 0.05 ** 2))
    return first, json.loads(moved.data)


def test_drive_starts_moves_and_stops_on_sigint(ros_env, tmp_path, ros_node):
    drive = _drive(ros_env, tmp_path)
    try:
        _robot_moves(ros_node)
        pids = _pids(drive.log())
        assert set(pids) == {"sim_node", "expert_node"}, drive.log()
        drive.proc.send_signal(signal.SIGINT)
        assert drive.proc.wait(30) == 0, drive.log()
        wait_until(lambda: all(_gone(p) for p in pids.values()), 5, "every node process to exit")
        log = drive.log()
        assert "[sim_node]" in log and "[expert_node]" in log  # prefixed output of each node
    finally:
        drive.stop()


def test_drive_sigterm_stops_everything(ros_env, tmp_path, ros_node):
    drive = _drive(ros_env, tmp_path)
    try:
        _robot_moves(ros_node)
        pids = _pids(drive.log())
        drive.proc.send_signal(signal.SIGTERM)
        assert drive.proc.wait(30) == 0, drive.log()
        wait_until(lambda: all(_gone(p) for p in pids.values()), 5, "every node process to exit")
    finally:
        drive.stop()


def test_a_crashed_node_stops_the_graph_with_failure(ros_env, tmp_path):
    drive = _drive(ros_env, tmp_path)
    try:
        pids = wait_until(lambda: len(_pids(drive.log())) == 2 and _pids(drive.log()), 30, "both nodes started")
        time.sleep(2.0)
        os.kill(pids["expert_node"], signal.SIGKILL)
        assert drive.proc.wait(30) == 1, drive.log()
        assert "expert_node exited with code -9" in drive.log()
        wait_until(lambda: _gone(pids["sim_node"]), 5, "sim_node to be stopped")
    finally:
        drive.stop()


@pytest.mark.parametrize("args, message", [
    (["--no-sim", "--driver", "expert"],
     "--driver expert: the expert needs the simulator's ground truth; use --sim or --driver none"),
    (["--no-sim"], "--policy demo: the demo policy is trained in the simulator and must not drive a real robot; "
                   "give a checkpoint --policy CHECKPOINT (or --driver none)"),
    (["--num-candidates", "4", "--policy", "tiny"], "--num-candidates 4: best-of-N needs a reward model to pick "
                                                    "the best chunk: add --reward-model CHECKPOINT"),
    (["--num-candidates", "0"], "--num-candidates 0: must be an integer from 1 to 64"),
    (["--driver", "expert", "--policy", "tiny"], "--policy tiny: only applies with --driver policy"),
    (["--policy", "/no/such/checkpoint"], "--policy /no/such/checkpoint: no such checkpoint directory"),
    (["--policy", "tcp://gpu-box"], "--policy tcp://gpu-box: not a server address: use tcp://HOST:PORT"),
    (["--reward-model", "demo", "--no-sim", "--policy", "tiny"], "--reward-model demo: the demo reward model only "
                                                                  "knows the simulator"),
    (["--camera-width", "5000"], "--camera-width 5000: must be an integer from 16 to 1280 pixels"),
    (["--camera-size", "640by480"], "--camera-size: '640by480' is not WIDTHxHEIGHT"),
    (["--camera-size", "640x480", "--camera-width", "320"], "--camera-size: give it or --camera-width"),
    (["--camera-rate", "-1"], "--camera-rate -1.0: must be a rate above 0"),
    (["--record", "/tmp/never", "--record-fps", "30"], "--record-fps 30.0: above the camera rate (10 Hz)"),
    (["--namespace", "robot one"], "--namespace robot one: not a ROS namespace"),
])
def test_bad_option_is_a_clear_error(args, message):
    r = subprocess.run([sys.executable, "-m", "gr00t_rlhf_ros.cli", "drive", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert ":=" not in r.stderr                     # CLI errors name flags, not launch arguments


def test_no_sim_no_driver_waits_for_ctrl_c_and_says_why(ros_env, tmp_path):
    argv = [sys.executable, "-m", "gr00t_rlhf_ros.cli", "drive", "--no-sim", "--driver", "none"]
    drive = spawn(argv, ros_env, tmp_path, "drive_idle")
    try:
        wait_until(lambda: "Waiting for Ctrl-C" in drive.log(), 30, "the no-node message")
        time.sleep(1.0)
        assert drive.alive(), drive.log()              # does not exit at once
        assert "add --record DATASET" in drive.log() and "--driver policy --policy CHECKPOINT" in drive.log()
        drive.proc.send_signal(signal.SIGINT)
        assert drive.proc.wait(15) == 0, drive.log()
    finally:
        drive.stop()


def test_camera_flags_reach_the_simulator(ros_env, tmp_path, ros_node):
    from sensor_msgs.msg import Image

    from gr00t_rlhf_ros.qos import profile

    spec = load_contract().topic("camera")
    drive = _drive(ros_env, tmp_path, "--camera-size", "160x120", "--camera-rate", "4", "--driver", "none")
    try:
        img = wait_for(ros_node, spec.name, Image, profile(spec), timeout=40)
        assert (img.width, img.height) == (160, 120)
        wait_until(lambda: "camera 160x120 at 4.0 Hz" in drive.log(), 10, "sim_node's startup line")
    finally:
        drive.stop()


_PARENT = """
import subprocess, sys, time
child = subprocess.Popen(sys.argv[1:])
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("executable, topic", [("sim_node", "joint_states"), ("expert_node", "wheel_commands")])
def test_a_node_exits_when_its_parent_is_killed(ros_env, tmp_path, ros_node, executable, topic):
    """Whoever starts a node (ros2 launch, a script): if it dies, even by SIGKILL, the node stops."""
    from ros_harness import node_argv

    params = ["--params-file", f"config/{executable.split('_')[0]}.yaml"]
    parent = spawn([sys.executable, "-c", _PARENT, *node_argv(executable, *params)], ros_env, tmp_path, "parent")
    child = None
    try:
        child = int(wait_until(lambda: parent.log().split("\n")[0].strip().isdigit() and parent.log().split()[0],
                               30, "the child's pid"))
        name = load_contract().topic(topic).name
        wait_until(lambda: ros_node.node.count_publishers(name) > 0, 60, f"{executable} on the graph")
        os.kill(parent.proc.pid, signal.SIGKILL)
        parent.proc.wait(10)
        wait_until(lambda: _gone(child), 30, f"{executable} (pid {child}) to exit after its parent died")
        assert "Traceback" not in parent.log(), parent.log()
    finally:
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)
        parent.stop()


def test_drive_with_record_writes_an_episode(ros_env, tmp_path, ros_node):
    """The whole loop of the README: drive the sim, record an episode with feedback, validate it."""
    from std_msgs.msg import Int32
    from std_srvs.srv import Trigger

    from gr00t_rlhf_ros.qos import profile
    from gr00t_rlhf_train.data.reader import LeRobotDataset

    c = load_contract()
    drive = _drive(ros_env, tmp_path, "--record", str(tmp_path / "ds"))
    try:
        _robot_moves(ros_node)
        clients = {k: ros_node.node.create_client(Trigger, c.service(f"{k}_episode").name) for k in ("start", "stop")}
        fb = ros_node.node.create_publisher(Int32, c.topic("human_feedback").name, profile(c.topic("human_feedback")))

        def call(kind):
            fut = clients[kind].call_async(Trigger.Request())
            wait_until(fut.done, 20, f"{kind}_episode reply")
            return fut.result()

        assert clients["start"].wait_for_service(timeout_sec=30)
        wait_until(lambda: call("start").success, 30, "an episode to start")
        time.sleep(1.5)
        fb.publish(Int32(data=0))
        time.sleep(1.5)
        r = call("stop")
        assert r.success and "episode 0 saved" in r.message, r.message
        drive.proc.send_signal(signal.SIGINT)
        assert drive.proc.wait(30) == 0, drive.log()
    finally:
        drive.stop()
    ep = LeRobotDataset(tmp_path / "ds", warn=False).episode(0)
    assert len(ep) >= 20 and ep.task_texts[0] == "Find Blue cube" and ep.feedback_keys[-1] == 0


def test_a_recorder_whose_parent_is_killed_commits_its_episode(ros_env, tmp_path, ros_node, start_node):
    """The recorder gets the same SIGTERM on its parent's death, and SIGTERM commits the open episode."""
    from std_srvs.srv import Trigger

    from gr00t_rlhf_train.data.reader import LeRobotDataset
    from ros_harness import node_argv

    start_node("sim_node", "--params-file", "config/sim.yaml", "-p", "seed:=1")
    recorder = node_argv("recorder_node", "--params-file", "config/recorder.yaml", "-p", f"dataset:={tmp_path / 'ds'}",
                         "-p", "task:='Find Blue cube'")
    parent = spawn([sys.executable, "-c", _PARENT, *recorder], ros_env, tmp_path, "parent")
    child = None
    try:
        child = int(wait_until(lambda: parent.log().split("\n")[0].strip().isdigit() and parent.log().split()[0],
                               30, "the recorder's pid"))
        start = ros_node.node.create_client(Trigger, load_contract().service("start_episode").name)
        assert start.wait_for_service(timeout_sec=60)

        def started():
            fut = start.call_async(Trigger.Request())
            wait_until(fut.done, 20, "start_episode reply")
            return fut.result().success

        wait_until(started, 60, "an episode to start", interval=1.0)
        time.sleep(3.0)
        os.kill(parent.proc.pid, signal.SIGKILL)
        parent.proc.wait(10)
        wait_until(lambda: _gone(child), 30, "recorder_node to exit after its parent died")
        log = parent.log()
        assert "episode 0 saved" in log, log
    finally:
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)
        parent.stop()
    ep = LeRobotDataset(tmp_path / "ds", warn=False).episode(0)
    assert len(ep) >= 10
