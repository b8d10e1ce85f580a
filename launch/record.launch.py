"""Record episodes into a LeRobot dataset while the robot drives.

    ros2 launch gr00t_rlhf_ros record.launch.py dataset:=~/datasets/run1
    ros2 launch gr00t_rlhf_ros record.launch.py sim:=false driver:=none vocabulary:=score

Brings up the drive graph (drive.launch.py) plus recorder_node. Give feedback and start/stop
episodes from another terminal with `ros2 run gr00t_rlhf_ros feedback_node` (it needs a
keyboard, so it is not started here).
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from gr00t_rlhf_ros.paths import config_path


def generate_launch_description():
    here = os.path.dirname(os.path.abspath(__file__))
    drive = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(here, "drive.launch.py")),
        launch_arguments={k: LaunchConfiguration(k) for k in ("sim", "driver", "seed", "task")}.items(),
    )
    recorder = Node(
        package="gr00t_rlhf_ros",
        executable="recorder_node",
        name="recorder_node",
        parameters=[str(config_path("recorder.yaml")),
                    {"dataset": LaunchConfiguration("dataset"), "vocabulary": LaunchConfiguration("vocabulary")}],
        output="screen",
    )
    return LaunchDescription([
        DeclareLaunchArgument("dataset", default_value="recordings/dataset",
                              description="dataset directory (created, or appended to)"),
        DeclareLaunchArgument("vocabulary", default_value="binary",
                              description="feedback vocabulary: binary, score or a rewards.jsonl path"),
        DeclareLaunchArgument("sim", default_value="true", description="start the MuJoCo simulated robot"),
        DeclareLaunchArgument("driver", default_value="expert", description="expert (sim only) or none"),
        DeclareLaunchArgument("seed", default_value="", description="arena layout seed"),
        DeclareLaunchArgument("task", default_value="", description="instruction"),
        drive,
        recorder,
    ])
