"""launch_testing test of launch/drive.launch.py (runs where ROS 2 launch is installed).

Here (no ROS distro) launch/launch_ros/launch_testing are not installable and this module skips;
the same node graph is tested end to end through `gr00t-rlhf drive` in tests/ros/test_drive.py.
"""
import os
import time
import unittest
from pathlib import Path

import pytest

launch_testing = pytest.importorskip("launch_testing")
launch_ros = pytest.importorskip("launch_ros")

from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "launch" / "drive.launch.py"


@pytest.mark.launch_test
def generate_test_description():
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    drive = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
                                     launch_arguments={"seed": "1"}.items())
    return LaunchDescription([drive, launch_testing.actions.ReadyToTest()])


class TestDriveLaunch(unittest.TestCase):
    def test_sim_publishes_and_expert_commands(self):
        import rclpy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        from gr00t_rlhf_ros.contract import load_contract
        from gr00t_rlhf_ros.qos import profile

        c = load_contract()
        rclpy.init()
        node = rclpy.create_node("drive_launch_probe")
        got = {"joint_states": 0, "wheel_commands": 0}
        node.create_subscription(JointState, c.topic("joint_states").name,
                                 lambda m: got.__setitem__("joint_states", got["joint_states"] + 1),
                                 profile(c.topic("joint_states")))
        node.create_subscription(Float64MultiArray, c.topic("wheel_commands").name,
                                 lambda m: got.__setitem__("wheel_commands", got["wheel_commands"] + 1),
                                 profile(c.topic("wheel_commands")))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and min(got.values()) < 10:
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
        rclpy.shutdown()
        self.assertGreaterEqual(got["joint_states"], 10)
        self.assertGreaterEqual(got["wheel_commands"], 10)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, 130])
