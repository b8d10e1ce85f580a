"""recorder_node under load over real DDS: a 30 Hz 640x480 camera, 100 Hz IMU and 50 Hz joint
states for N minutes, recorded at 30 fps. Reports images delivered vs frames written, the
recorder's average CPU (goal < 1 core) and its memory over time (goal: flat).

    .venv/bin/python bench/bench_recorder.py --seconds 300
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from ros_harness import RosTestNode, node_argv, ros_environment, spawn, wait_until  # noqa: E402

PUBLISHER = r'''
import math, sys, numpy as np, rclpy
from rclpy.executors import ExternalShutdownException
from sensor_msgs.msg import Image, Imu, JointState
from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.qos import profile
c = load_contract(); rclpy.init(); node = rclpy.create_node("bench_robot")
pub = {k: node.create_publisher(t, c.topic(k).name, profile(c.topic(k)))
       for k, t in (("camera", Image), ("imu", Imu), ("joint_states", JointState))}
rng = np.random.default_rng(0)
base = (rng.random((60, 80, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
frames = [np.roll(base, 8 * k, axis=1).tobytes() for k in range(30)]
n = {"camera": 0}
def camera():
    m = Image(height=480, width=640, encoding="rgb8", step=1920, data=frames[n["camera"] % 30])
    m.header.stamp = node.get_clock().now().to_msg(); pub["camera"].publish(m); n["camera"] += 1
def imu():
    m = Imu(); m.header.stamp = node.get_clock().now().to_msg(); m.linear_acceleration.z = 9.81
    pub["imu"].publish(m)
def joints():
    m = JointState(name=list(c.wheel_joints), velocity=[1.0, 1.2]); m.header.stamp = node.get_clock().now().to_msg()
    pub["joint_states"].publish(m)
node.create_timer(1 / 30, camera); node.create_timer(1 / 100, imu); node.create_timer(1 / 50, joints)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
print(f"published {n['camera']} images", flush=True)
'''


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--domain", type=int, default=77)
    args = ap.parse_args()
    env = ros_environment(args.domain)
    tmp = Path(tempfile.mkdtemp())
    (tmp / "publisher.py").write_text(PUBLISHER)
    robot = spawn([sys.executable, str(tmp / "publisher.py")], env, tmp, "publisher")
    rec = spawn(node_argv("recorder_node", "--params-file", str(REPO / "config/recorder.yaml"), "-p", f"dataset:={tmp}/ds",
                          "-p", "fps:=30.0", "-p", "max_age_camera:=0.1", "-p", "task:='bench'"), env, tmp, "recorder")
    try:
        return run(args, tmp, rec)
    finally:
        rec.stop()
        robot.stop()
        print(f"publisher: {robot.log().strip()}")
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path, rec) -> int:
    probe = RosTestNode(args.domain, "bench_operator")
    from std_srvs.srv import Trigger

    from gr00t_rlhf_ros.contract import load_contract
    c = load_contract()
    start = probe.node.create_client(Trigger, c.service("start_episode").name)
    stop = probe.node.create_client(Trigger, c.service("stop_episode").name)
    start.wait_for_service(timeout_sec=30)

    def call(client, timeout=60):
        fut = client.call_async(Trigger.Request())
        wait_until(fut.done, timeout, client.srv_name)
        return fut.result()

    wait_until(lambda: call(start).success, 60, "the recorder to start an episode")
    cpu0, t0 = proc_cpu_seconds(rec.proc.pid), time.monotonic()
    samples = []
    while time.monotonic() - t0 < args.seconds:
        time.sleep(min(10.0, args.seconds / 10))
        samples.append((time.monotonic() - t0, proc_rss_mb(rec.proc.pid)))
        print(f"{samples[-1][0]:.0f} s: recorder RSS {samples[-1][1]:.0f} MB", flush=True)
    cpu = (proc_cpu_seconds(rec.proc.pid) - cpu0) / (time.monotonic() - t0)
    t_stop = time.monotonic()
    try:
        reply = call(stop, timeout=300)
    finally:
        print(rec.log()[-3000:])
    print(f"stop (flush + commit) took {time.monotonic() - t_stop:.1f} s")
    probe.close()
    print(f"recorded {args.seconds:g} s at 30 fps: {reply.message}")
    print(f"recorder CPU: {cpu:.2f} cores on average")
    print("recorder RSS (MB) over the episode: " + ", ".join(f"{t:.0f}s {m:.0f}" for t, m in samples))
    size = sum(f.stat().st_size for f in (tmp / "ds").rglob("*") if f.is_file())
    print(f"dataset size: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
