"""Bring up the robot graph: simulated robot (default) or a real one, and its driver.

    ros2 launch gr00t_rlhf_ros drive.launch.py                 # MuJoCo sim + scripted expert
    ros2 launch gr00t_rlhf_ros drive.launch.py sim:=false driver:=none
    ros2 launch gr00t_rlhf_ros drive.launch.py seed:=3 task:="Find Blue cube"
    ros2 launch gr00t_rlhf_ros drive.launch.py record:=$HOME/datasets/run1   # + recorder_node

The node list comes from gr00t_rlhf_ros.graph.drive_graph, the same description that
`gr00t-rlhf drive` runs without a ROS install.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from gr00t_rlhf_ros.graph import DriveOptions, drive_graph
from gr00t_rlhf_ros.paths import config_path

ARGUMENTS = [
    DeclareLaunchArgument("sim", default_value="true", description="start the MuJoCo simulated robot"),
    DeclareLaunchArgument("driver", default_value="expert",
                          description="who publishes /wheel_commands: expert (sim only) or none"),
    DeclareLaunchArgument("seed", default_value="", description="arena layout seed (empty: sim.yaml)"),
    DeclareLaunchArgument("task", default_value="", description='instruction, e.g. "Find Blue cube"'),
    DeclareLaunchArgument("record", default_value="",
                          description="dataset directory: also start recorder_node (empty: no recorder)"),
    DeclareLaunchArgument("vocabulary", default_value="binary",
                          description="the recorder's feedback vocabulary: binary, score or a rewards.jsonl"),
]


def _nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    opts = DriveOptions(
        sim=arg("sim").lower() in ("true", "1", "yes"),
        driver=arg("driver"),
        seed=int(arg("seed")) if arg("seed") else None,
        task=arg("task") or None,
        record=arg("record") or None,
        vocabulary=arg("vocabulary"),
    )
    actions = []
    for spec in drive_graph(opts):
        params = []
        if spec.params_file:
            params.append(str(config_path(spec.params_file)))
        if spec.parameters:
            params.append(dict(spec.parameters))
        actions.append(Node(
            package="gr00t_rlhf_ros",
            executable=spec.executable,
            name=spec.executable,
            parameters=params,
            output="screen",
            # a robot whose simulator or driver died must not keep going: stop the launch
            on_exit=Shutdown(reason=f"{spec.executable} exited") if spec.required else None,
        ))
    return actions


def generate_launch_description():
    return LaunchDescription(ARGUMENTS + [OpaqueFunction(function=_nodes)])
