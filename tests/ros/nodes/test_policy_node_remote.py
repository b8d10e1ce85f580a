"""policy_node with a remote policy (`gr00t-rlhf serve` in a subprocess): the server killed mid-drive
stops the robot within the inference timeout; the robot drives again when the server is back."""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import pytest

from ros_harness import REPO, wait_until

pytest.importorskip("rclpy")
pytest.importorskip("zmq")

from test_policy_node import ZERO, FakeRobot, diagnostics, moving  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port: int, log) -> subprocess.Popen:
    """The real `gr00t-rlhf serve policy tiny` on ``port``; returns once it serves."""
    start = log.stat().st_size if log.exists() else 0
    out = open(log, "a")
    proc = subprocess.Popen([sys.executable, "-m", "gr00t_rlhf_train.cli", "serve", "policy", "tiny",
                             "--port", str(port), "--device", "cpu"], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    wait_until(lambda: re.search(r"serving policy .* on tcp://", log.read_text()[start:]) or proc.poll() is not None,
               120.0, "the policy server to start")
    assert proc.poll() is None, log.read_text()
    return proc


def test_remote_server_killed_mid_drive_then_back(start_node, ros_node, tmp_path):
    port, log = free_port(), tmp_path / "serve.log"
    server = serve(port, log)
    try:
        robot = FakeRobot(ros_node)
        start_node("policy_node", "--params-file", "config/policy.yaml", "-p", f"policy:=tcp://127.0.0.1:{port}",
                   "-p", "replan_every:=2", "-p", "inference_timeout:=1.0", "-p", "seed:=0")
        wait_until(lambda: any(moving(c) for c in robot.since(0)), 60.0, "policy_node to drive")
        time.sleep(0.5)
        server.kill()
        killed = time.monotonic()
        server.wait(10)
        # the request in flight (or the next, due within replan_every = 0.2 s) times out after 1.0 s
        zero_at = wait_until(lambda: robot.first_after(killed, lambda c: c == ZERO), 5.0, "a zero command")
        assert zero_at - killed <= 0.2 + 1.0 + 0.05 + 0.5, f"zero {zero_at - killed:.2f} s after the kill"
        time.sleep(1.0)
        assert all(c == ZERO for c in robot.since(zero_at))
        d = diagnostics(ros_node, lambda v: v["state"] == "fault")
        assert "Timeout" in d["reason"] or "inference failed" in d["reason"], d
        server = serve(port, log)                                  # back on the same address
        t = time.monotonic()
        wait_until(lambda: any(moving(c) for c in robot.since(t)), 60.0, "driving again")
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(10)
