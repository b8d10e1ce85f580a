"""Shared pytest fixtures: real DDS node processes, a probe node, the seed datasets."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# triton (installed with torch) segfaults when imported after Mesa's LLVM is loaded (MuJoCo's
# OSMesa/EGL backend loads it on `import mujoco`); importing it first lets one pytest process
# hold the simulator tests and the torch tests, in any order.
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

import pytest

from ros_harness import RosTestNode, next_domain_id, node_argv, ros_environment, spawn

REPO = Path(__file__).resolve().parents[1]


def shared_datasets() -> Path:
    return Path(os.environ.get("GR00T_RLHF_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture
def datasets_dir() -> Path:
    d = shared_datasets()
    if not d.is_dir():
        pytest.skip(f"seed datasets not found at {d} (set GR00T_RLHF_DATASETS)")
    return d


def _rclpy_available() -> bool:
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def domain_id() -> int:
    return next_domain_id()


@pytest.fixture
def ros_env(domain_id) -> dict[str, str]:
    if not _rclpy_available():
        pytest.skip("rclpy is not installed")
    return ros_environment(domain_id)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def start_node(request, ros_env, tmp_path):
    """start_node(executable, *ros_args, name=None) -> NodeProcess; all stopped at teardown."""
    procs = []

    def _start(executable: str, *ros_args: str, name: str | None = None, argv: list[str] | None = None):
        p = spawn(argv or node_argv(executable, *ros_args), ros_env, tmp_path, name or executable)
        procs.append(p)
        return p

    yield _start
    for p in procs:
        p.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for p in procs:
            print(f"----- log of {p.name} (exit {p.proc.returncode}) -----\n{p.log()[-6000:]}")


@pytest.fixture
def ros_node(ros_env, domain_id, monkeypatch):
    # the probe discovers like the children (localhost only); transports: the same defaults
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", ros_env["ROS_AUTOMATIC_DISCOVERY_RANGE"])
    probe = RosTestNode(domain_id)
    yield probe
    probe.close()
