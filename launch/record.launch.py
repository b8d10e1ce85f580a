"""Record episodes into a LeRobot dataset while the robot drives.

    ros2 launch gr00t_rlhf_ros record.launch.py dataset:=$HOME/datasets/run1
    ros2 launch gr00t_rlhf_ros record.launch.py sim:=false driver:=none vocabulary:=score record_fps:=10

drive.launch.py with its recorder always on: the same arguments, except that `dataset:=` (default
recordings/dataset) replaces drive's `record:=`, so `--show-args` lists exactly what it honours.
Give feedback and start/stop episodes from another terminal with `ros2 run gr00t_rlhf_ros
feedback_node` (it needs a keyboard, so it is not started here; under a namespace, add
`--ros-args -r __ns:=/robot1`).
"""
import importlib.util
import os

_DRIVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "drive.launch.py")


def generate_launch_description():
    spec = importlib.util.spec_from_file_location("gr00t_rlhf_ros_drive_launch", _DRIVE)
    drive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drive)
    return drive.launch_description(recording=True)
