"""Test harness for real-DDS tests: nodes as subprocesses, an rclpy node in the test process.

No mocks: every message crosses Fast DDS between processes. Each test gets its own
ROS_DOMAIN_ID so parallel or leftover participants never cross-talk.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Domain ids 1..200 (Fast DDS ports stay valid up to 232); 0 is left to a developer's own graph.
# Each pytest process walks the range from a pid-derived start, so two runs on one machine
# rarely meet (tests that must be sure also check a seed in what they read).
_DOMAINS = itertools.count((os.getpid() * 37) % 200)


def next_domain_id() -> int:
    return 1 + next(_DOMAINS) % 200


def ros_environment(domain_id: int) -> dict[str, str]:
    """The children's environment: own domain, localhost discovery; Fast DDS transports as the
    user has them (the package sets none: a node started by hand must see the graph, docs/ros.md)."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        MUJOCO_GL=env.get("MUJOCO_GL", "osmesa"),
        PYTHONUNBUFFERED="1",
        RCUTILS_COLORIZED_OUTPUT="0",
    )
    return env


@dataclass
class NodeProcess:
    """A node running as a child process; its output goes to a log file."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    _log_file: object = field(repr=False, default=None)

    def log(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()
        return self.proc.returncode


def spawn(argv: list[str], env: dict[str, str], log_dir: Path, name: str) -> NodeProcess:
    log_path = log_dir / f"{name}.log"
    f = open(log_path, "w")
    proc = subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=REPO,
                            stdin=subprocess.DEVNULL)
    return NodeProcess(name, proc, log_path, f)


def node_argv(executable: str, *ros_args: str) -> list[str]:
    argv = [sys.executable, "-m", f"gr00t_rlhf_ros.nodes.{executable}"]
    if ros_args:
        argv += ["--ros-args", *ros_args]
    return argv


class RosTestNode:
    """An rclpy node in the test process on its own context/domain, spun in a thread."""

    def __init__(self, domain_id: int, name: str = "test_probe"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # context shut down while spinning
            pass

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(5)


def collect(probe: RosTestNode, topic: str, msg_type, qos, duration: float) -> list[tuple[float, object]]:
    """All messages on ``topic`` received during ``duration`` seconds, with receive times."""
    got: list[tuple[float, object]] = []
    lock = threading.Lock()

    def cb(msg):
        with lock:
            got.append((time.monotonic(), msg))

    sub = probe.node.create_subscription(msg_type, topic, cb, qos)
    try:
        time.sleep(duration)
    finally:
        probe.node.destroy_subscription(sub)
    with lock:
        return list(got)


def wait_for(probe: RosTestNode, topic: str, msg_type, qos, predicate=None, timeout: float = 15.0):
    """The first message on ``topic`` satisfying ``predicate``; AssertionError on the deadline."""
    event = threading.Event()
    box = []

    def cb(msg):
        if not event.is_set() and (predicate is None or predicate(msg)):
            box.append(msg)
            event.set()

    sub = probe.node.create_subscription(msg_type, topic, cb, qos)
    try:
        if not event.wait(timeout):
            what = "a message" if predicate is None else "a matching message"
            raise AssertionError(f"no {what} on {topic} within {timeout:.1f} s")
        return box[0]
    finally:
        probe.node.destroy_subscription(sub)


def publish_for(probe: RosTestNode, topic: str, msg_type, qos, make_msg, rate: float, duration: float) -> int:
    """Publish ``make_msg(i)`` at ``rate`` Hz for ``duration`` s; returns the number sent."""
    pub = probe.node.create_publisher(msg_type, topic, qos)
    n = 0
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < duration:
            pub.publish(make_msg(n))
            n += 1
            time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
    finally:
        probe.node.destroy_publisher(pub)
    return n


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until truthy; AssertionError naming ``what`` on the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
