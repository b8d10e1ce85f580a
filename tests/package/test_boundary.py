"""gr00t_rlhf_train never imports ROS: it must run on a GPU workstation without ROS."""
import pkgutil
import subprocess
import sys

import gr00t_rlhf_train

ROS_MODULES = ("rclpy", "rosidl_runtime_py", "sensor_msgs", "std_msgs", "std_srvs", "geometry_msgs",
               "visualization_msgs", "launch", "launch_ros", "gr00t_rlhf_ros")


def test_train_package_imports_with_ros_absent():
    modules = [m.name for m in pkgutil.walk_packages(gr00t_rlhf_train.__path__, "gr00t_rlhf_train.")]
    code = (
        "import sys, importlib\n"
        f"for m in {ROS_MODULES!r}: sys.modules[m] = None  # any import of them raises ImportError\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {ROS_MODULES!r} and sys.modules[m] is not None]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
