"""feedback_node over real DDS: typed keys become /human_feedback messages; bad input is named."""
import subprocess
import threading
import time

from std_msgs.msg import Int32

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.qos import profile
from ros_harness import node_argv, wait_until


def test_keys_send_feedback_and_quit(ros_env, ros_node, tmp_path):
    spec = load_contract().topic("human_feedback")
    got, lock = [], threading.Lock()

    def cb(msg):
        with lock:
            got.append(msg.data)

    sub = ros_node.node.create_subscription(Int32, spec.name, cb, profile(spec))
    log = open(tmp_path / "feedback.log", "w+")
    proc = subprocess.Popen(node_argv("feedback_node"), env=ros_env, stdin=subprocess.PIPE, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: sub.get_publisher_count() > 0, 30, "feedback_node's publisher to match")

        def press(keys: str):
            proc.stdin.write(keys)
            proc.stdin.flush()

        # /human_feedback is volatile: until the writer has matched our reader too, a key press is
        # not delivered. Press "b" until one arrives, then the rest.
        wait_until(lambda: press("b\n") or got, 30, "the first feedback message", interval=0.5)
        press("g\n7\nstart\n")
        wait_until(lambda: got[-1] == 1, 15, "the 'good' feedback")
        proc.stdin.write("q\n")
        proc.stdin.flush()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log.seek(0)
    text = log.read()
    assert set(got[:-1]) == {0} and got[-1] == 1, text
    assert "g  ->  1  Doing good" in text                         # the help shows the keymap
    assert "ignored input '7'" in text                            # not a key of the vocabulary
    assert "/recorder/start_episode is not available" in text     # no recorder running: said, not crashed


def test_bad_vocabulary_parameter_is_one_clear_line(ros_env):
    r = subprocess.run(node_argv("feedback_node", "-p", "vocabulary:=ternary"), env=ros_env, capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert "feedback vocabulary 'ternary': not a preset" in r.stderr and "Traceback" not in r.stderr


_PLAIN_PROBE = """
import json, sys, time
import rclpy
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger
from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.qos import profile
c = load_contract()
rclpy.init()
node = rclpy.create_node("plain_probe")
frames = []
node.create_subscription(Image, c.topic("camera").name, lambda m: frames.append(m), profile(c.topic("camera")))
reset = node.create_client(Trigger, c.service("sim_reset").name)
ok = reset.wait_for_service(timeout_sec=30.0)
reply = None
if ok:
    fut = reset.call_async(Trigger.Request())
    rclpy.spin_until_future_complete(node, fut, timeout_sec=20.0)
    reply = fut.result().message if fut.result() else None
deadline = time.monotonic() + 30
while len(frames) < 10 and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
print(json.dumps({"service": ok, "reply": reply, "frames": len(frames)}), flush=True)
"""


def _plain_environment(ros_env: dict) -> dict:
    """What a user's second terminal has: no Fast DDS transport variable, default discovery range."""
    env = dict(ros_env)
    for key in ("FASTDDS_BUILTIN_TRANSPORTS", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        env.pop(key, None)
    return env


def test_nodes_started_by_hand_talk_to_a_drive_graph_with_no_variable(ros_env, tmp_path):
    """`gr00t-rlhf drive --record` in one terminal; feedback_node and a plain rclpy script in another,
    none with FASTDDS_BUILTIN_TRANSPORTS: services and camera frames work (docs/ros.md, Transports)."""
    import json
    import signal
    import sys

    from ros_harness import spawn

    env = _plain_environment(ros_env)
    drive = spawn([sys.executable, "-m", "gr00t_rlhf_ros.cli", "drive", "--sim", "--seed", "1", "--driver", "none",
                   "--record", str(tmp_path / "ds"), "--no-video"], env, tmp_path, "drive")
    try:
        wait_until(lambda: "recording into" in drive.log(), 60, "recorder_node to start")
        r = subprocess.run([sys.executable, "-c", _PLAIN_PROBE], env=env, capture_output=True, text=True, timeout=120)
        probe = json.loads(r.stdout.strip().splitlines()[-1])
        assert probe["service"] and "reset: layout seed 2" in probe["reply"], (probe, r.stderr[-2000:])
        assert probe["frames"] >= 10, probe

        fb = subprocess.Popen(node_argv("feedback_node"), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        lines = []
        threading.Thread(target=lambda: lines.extend(iter(fb.stdout.readline, "")), daemon=True).start()
        fb.stdin.write("start\n")
        fb.stdin.flush()
        wait_until(lambda: any("start episode:" in line for line in lines), 60, "the start_episode reply")
        time.sleep(2.0)
        fb.stdin.write("stop\nq\n")
        fb.stdin.flush()
        fb.stdin.close()
        assert fb.wait(60) == 0
        time.sleep(0.2)
        out = "".join(lines)
        assert "start episode:" in out and "episode 0 saved" in out and "not available" not in out, out
        drive.proc.send_signal(signal.SIGINT)
        assert drive.proc.wait(30) == 0, drive.log()
    finally:
        drive.stop()
