"""Two robots on one DDS domain: each graph under its own namespace stays apart.

Every contract name is relative, so `__ns:=/robot1` moves sim_node's and expert_node's topics and
services to /robot1/...; nothing is left on the root names, and each expert drives its own robot.
"""
from __future__ import annotations

import json
import math

import pytest

from ros_harness import wait_for, wait_until

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from gr00t_rlhf_ros.contract import load_contract  # noqa: E402
from gr00t_rlhf_ros.qos import profile  # noqa: E402

C = load_contract()
ROBOTS = {"/robot1": 31, "/robot2": 47}   # namespace -> arena seed (each checked in what we read)


def _start_robot(start_node, ns: str, seed: int):
    remap = ("-r", f"__ns:={ns}")
    start_node("sim_node", *remap, "--params-file", "config/sim.yaml", "-p", f"seed:={seed}",
               "-p", "camera_rate:=5.0", name=f"sim_node{ns.replace('/', '_')}")
    start_node("expert_node", *remap, "--params-file", "config/expert.yaml", name=f"expert_node{ns.replace('/', '_')}")


def _gt(ros_node, ns, predicate=lambda gt: True, timeout=30.0) -> dict:
    spec = C.topic("ground_truth")
    msg = wait_for(ros_node, spec.resolved(ns), String, profile(spec), timeout=timeout,
                   predicate=lambda m: predicate(json.loads(m.data)))
    return json.loads(msg.data)


def test_two_namespaced_robots_share_a_domain_and_stay_apart(start_node, ros_node):
    for ns, seed in ROBOTS.items():
        _start_robot(start_node, ns, seed)

    # each robot's ground truth, with its own seed, only under its namespace
    first = {ns: _gt(ros_node, ns) for ns in ROBOTS}
    for ns, seed in ROBOTS.items():
        assert first[ns]["seed"] == seed, (ns, first[ns]["seed"])

    # both experts drive their own robot: each robot moves away from where it started
    for ns, seed in ROBOTS.items():
        x0, y0 = first[ns]["x"], first[ns]["y"]
        _gt(ros_node, ns, lambda gt: gt["seed"] == seed and math.hypot(gt["x"] - x0, gt["y"] - y0) > 0.1, timeout=30)

    # camera frames under each namespace
    cam = C.topic("camera")
    for ns in ROBOTS:
        img = wait_for(ros_node, cam.resolved(ns), Image, profile(cam), timeout=20)
        assert (img.width, img.height) == (320, 240)

    node = ros_node.node
    graph = dict(node.get_topic_names_and_types())
    services = dict(node.get_service_names_and_types())
    # nothing on the root names of the contract
    for spec in list(C.topics.values()):
        assert spec.resolved() not in graph, f"{spec.resolved()} is published or subscribed in the root namespace"
    for spec in C.services.values():
        assert spec.resolved() not in services, f"{spec.resolved()} is served in the root namespace"
    assert not [t for t in graph if t.startswith("/sim/") or t.startswith("/camera/")]

    # wheel commands: each robot's expert publishes, and only its own sim_node listens
    cmd = C.topic("wheel_commands").name
    for ns in ROBOTS:
        topic = f"{ns}/{cmd}"
        pubs = wait_until(lambda: node.get_publishers_info_by_topic(topic), 10, f"a publisher on {topic}")
        subs = wait_until(lambda: node.get_subscriptions_info_by_topic(topic), 10, f"a subscriber on {topic}")
        assert [(p.node_namespace, p.node_name) for p in pubs] == [(ns, "expert_node")]
        assert [(s.node_namespace, s.node_name) for s in subs] == [(ns, "sim_node")]

    # each robot's sim/reset is its own: resetting robot1 moves it to seed 32, robot2 stays at 47
    reset = ros_node.node.create_client(Trigger, C.service("sim_reset").resolved("/robot1"))
    assert reset.wait_for_service(timeout_sec=20)
    fut = reset.call_async(Trigger.Request())
    wait_until(fut.done, 20, "/robot1/sim/reset reply")
    assert fut.result().success and "seed 32" in fut.result().message
    assert _gt(ros_node, "/robot1", lambda gt: gt["seed"] == 32)["seed"] == 32
    assert _gt(ros_node, "/robot2")["seed"] == 47
