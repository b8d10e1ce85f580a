"""Record episodes into a LeRobot dataset while the robot drives.

    ros2 launch gr00t_rlhf_ros record.launch.py dataset:=$HOME/datasets/run1
    ros2 launch gr00t_rlhf_ros record.launch.py sim:=false driver:=none vocabulary:=score

drive.launch.py with its recorder on. Give feedback and start/stop episodes from another
terminal with `ros2 run gr00t_rlhf_ros feedback_node` (it needs a keyboard, so it is not
started here).
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def generate_launch_description():
    drive = os.path.join(os.path.dirname(os.path.abspath(__file__)), "drive.launch.py")
    args = {k: LaunchConfiguration(k) for k in ("sim", "driver", "seed", "task", "vocabulary")}
    args["record"] = LaunchConfiguration("dataset")
    return LaunchDescription([
        DeclareLaunchArgument("dataset", default_value="recordings/dataset",
                              description="dataset directory (created, or appended to)"),
        DeclareLaunchArgument("vocabulary", default_value="binary",
                              description="feedback vocabulary: binary, score or a rewards.jsonl path"),
        DeclareLaunchArgument("sim", default_value="true", description="start the MuJoCo simulated robot"),
        DeclareLaunchArgument("driver", default_value="expert", description="expert (sim only) or none"),
        DeclareLaunchArgument("seed", default_value="", description="arena layout seed"),
        DeclareLaunchArgument("task", default_value="", description="instruction"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(drive), launch_arguments=args.items()),
    ])
