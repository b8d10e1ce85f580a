"""launch_testing test of launch/drive.launch.py (runs where ROS 2 launch is installed and sourced).

It needs a sourced workspace holding this package (`colcon build && source install/setup.bash`):
`ros2 launch` finds the executables and the launch file through the ament index. Without one
(AMENT_PREFIX_PATH unset, or the package not in it) or without launch_testing (no ROS distro, as
on the development machine) it skips with the reason; the same node graph is tested end to end
through `gr00t-rlhf drive` in tests/ros/test_drive.py. It runs the graph in a namespace on its own
ROS_DOMAIN_ID, so a developer's own graph on the machine is neither seen nor disturbed.
"""
import os
import time
import unittest
from pathlib import Path

import pytest

PACKAGE = "gr00t_rlhf_ros"
NAMESPACE = "/launch_test"


def _installed_share() -> Path:
    """The package's share directory in the sourced workspace; skips the module with the reason."""
    prefixes = os.environ.get("AMENT_PREFIX_PATH", "")
    if not prefixes:
        pytest.skip("no sourced ROS 2 workspace (AMENT_PREFIX_PATH is unset): colcon build, "
                    "source install/setup.bash, then run this test", allow_module_level=True)
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        pytest.skip("ament_index_python is not importable", allow_module_level=True)
    try:
        return Path(get_package_share_directory(PACKAGE))
    except PackageNotFoundError:
        pytest.skip(f"{PACKAGE} is not in the sourced workspace (AMENT_PREFIX_PATH={prefixes}): "
                    "colcon build it and source install/setup.bash", allow_module_level=True)


SHARE = _installed_share()
launch_testing = pytest.importorskip("launch_testing", reason="launch_testing is not installed (no ROS 2 distro)")
pytest.importorskip("launch_ros", reason="launch_ros is not installed (no ROS 2 distro)")

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from ros_harness import next_domain_id  # noqa: E402

# Our own domain for the launched nodes (they inherit the environment) and for the probe below.
DOMAIN_ID = str(next_domain_id())
os.environ["ROS_DOMAIN_ID"] = DOMAIN_ID
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("MUJOCO_GL", "osmesa")


# The policy node with the tiny preset (random weights: it drives, badly, with no model to train or
# download), no reward node (a reward model needs a checkpoint), one candidate: the new arguments
# reach the graph. The demo models (policy:=demo, the default) are tested through gr00t-rlhf drive.
LAUNCH_ARGS = {"seed": "1", "namespace": NAMESPACE, "driver": "policy", "policy": "tiny", "reward_model": "none",
               "num_candidates": "1"}


@pytest.mark.launch_test
def generate_test_description():
    drive = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(SHARE / "launch" / "drive.launch.py")),
                                     launch_arguments=LAUNCH_ARGS.items())
    return LaunchDescription([drive, launch_testing.actions.ReadyToTest()])


class TestDriveLaunch(unittest.TestCase):
    def test_sim_publishes_and_the_policy_commands_in_the_namespace(self):
        import rclpy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        from gr00t_rlhf_ros.contract import load_contract
        from gr00t_rlhf_ros.qos import profile

        c = load_contract()
        self.assertEqual(os.environ["ROS_DOMAIN_ID"], DOMAIN_ID)
        rclpy.init()
        node = rclpy.create_node("drive_launch_probe")
        got = {"joint_states": 0, "wheel_commands": 0}
        for key, msg_type in (("joint_states", JointState), ("wheel_commands", Float64MultiArray)):
            node.create_subscription(msg_type, c.topic(key).resolved(NAMESPACE),
                                     lambda m, key=key: got.__setitem__(key, got[key] + 1), profile(c.topic(key)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and min(got.values()) < 10:
            rclpy.spin_once(node, timeout_sec=0.1)
        root_topics = {name for name, _ in node.get_topic_names_and_types()}
        node.destroy_node()
        rclpy.shutdown()
        self.assertGreaterEqual(got["joint_states"], 10)
        self.assertGreaterEqual(got["wheel_commands"], 10)
        self.assertNotIn(c.topic("joint_states").resolved(), root_topics)   # nothing on the root names
        self.assertNotIn(c.topic("reward").resolved(NAMESPACE), {n for n in root_topics})   # reward_model:=none


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15, 130])
