"""Bring up the robot graph: simulated robot (default) or a real one, its driver, the live reward.

    ros2 launch gr00t_rlhf_ros drive.launch.py                 # MuJoCo sim + the demo GR00T policy + live reward
    ros2 launch gr00t_rlhf_ros drive.launch.py policy:=runs/sft/best reward_model:=runs/reward/best num_candidates:=4
    ros2 launch gr00t_rlhf_ros drive.launch.py driver:=expert  # the scripted expert instead
    ros2 launch gr00t_rlhf_ros drive.launch.py namespace:=/robot1 seed:=3   # a second robot
    ros2 launch gr00t_rlhf_ros drive.launch.py sim:=false policy:=/models/sft reward_model:=tcp://gpu:5555
    ros2 launch gr00t_rlhf_ros drive.launch.py sim:=false driver:=none record:=$HOME/datasets/run1
    ros2 launch gr00t_rlhf_ros drive.launch.py --show-args     # every argument, with its choices

The node list and the arguments come from gr00t_rlhf_ros.graph (drive_graph, LAUNCH_ARGUMENTS),
the same description that `gr00t-rlhf drive` runs without a ROS install. Topic names are
relative: `namespace:=` (or a PushRosNamespace around an include of this file) moves them all.
Booleans take true/false/True/False/1/0. `policy:=demo` (the default, simulator only) uses the
cached demo models, making them first if missing (a few minutes, once; see docs/drive.md).
`sim:=false driver:=none` alone starts no node: the launch says so, names the arguments that
would start one, and ends. The video and one-line summary are `gr00t-rlhf drive`'s (use rviz
with config/drive.rviz here).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from gr00t_rlhf_ros.graph import (drive_graph, launch_arguments, nothing_to_start_hint, options_from_launch,
                                  with_demo_models)
from gr00t_rlhf_ros.paths import config_path


def _nodes(context, recording: bool):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in launch_arguments(recording)}
    opts = options_from_launch(values, recording)   # LaunchArgumentError names the argument (sim:=...)
    if opts.needs_demo_models:  # policy:=demo (the default): the cached demo models, made on first use
        from gr00t_rlhf_ros.demo_models import ensure

        models = ensure(root=values.get("demo_models") or None)
        opts = with_demo_models(opts, str(models.policy), str(models.reward))
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
