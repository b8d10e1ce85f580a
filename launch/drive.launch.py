"""Bring up the robot graph: simulated robot (default) or a real one, and its driver.

    ros2 launch gr00t_rlhf_ros drive.launch.py                 # MuJoCo sim + scripted expert
    ros2 launch gr00t_rlhf_ros drive.launch.py namespace:=/robot1 seed:=3   # a second robot
    ros2 launch gr00t_rlhf_ros drive.launch.py sim:=false driver:=none record:=$HOME/datasets/run1
    ros2 launch gr00t_rlhf_ros drive.launch.py camera_width:=640 camera_height:=480 camera_rate:=15
    ros2 launch gr00t_rlhf_ros drive.launch.py --show-args     # every argument, with its choices

The node list and the arguments come from gr00t_rlhf_ros.graph (drive_graph, LAUNCH_ARGUMENTS),
the same description that `gr00t-rlhf drive` runs without a ROS install. Topic names are
relative: `namespace:=` (or a PushRosNamespace around an include of this file) moves them all.
Booleans take true/false/True/False/1/0. `sim:=false driver:=none` alone starts no node (there
is no policy node yet): the launch says so, names the arguments that would start one, and ends.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from gr00t_rlhf_ros.graph import drive_graph, launch_arguments, nothing_to_start_hint, options_from_launch
from gr00t_rlhf_ros.paths import config_path


def _nodes(context, recording: bool):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in launch_arguments(recording)}
    opts = options_from_launch(values, recording)   # LaunchArgumentError names the argument (sim:=...)
    specs = drive_graph(opts)
    if not specs:
        return [LogInfo(msg=nothing_to_start_hint("launch"))]
    actions = []
    for spec in specs:
        params = [str(config_path(spec.params_file))] if spec.params_file else []
        if spec.parameters:
            params.append(dict(spec.parameters))
        extra = {"namespace": spec.namespace} if spec.namespace else {}
        if spec.log_level:
            extra["ros_arguments"] = ["--log-level", spec.log_level]
        actions.append(Node(
            package="gr00t_rlhf_ros",
            executable=spec.executable,
            name=spec.executable,          # executable = node name = params-file node key
            parameters=params,
            output="screen",
            # a robot whose simulator or driver died must not keep going: stop the launch
            on_exit=Shutdown(reason=f"{spec.executable} exited") if spec.required else None,
            **extra,
        ))
    return actions


def launch_description(recording: bool = False) -> LaunchDescription:
    """drive.launch.py's description; record.launch.py calls it with ``recording=True``."""
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({"choices": list(a.choices)} if a.choices else {}))
                for a in launch_arguments(recording)]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes, args=[recording])])


def generate_launch_description():
    return launch_description(recording=False)
