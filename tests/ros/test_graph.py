"""The bring-up description shared by drive.launch.py and `gr00t-rlhf drive`: graph, options,
launch-argument parsing and params-file lookup (pure Python: no launch install needed)."""
from pathlib import Path

import pytest
import yaml

from gr00t_rlhf_ros.graph import (BOOL_CHOICES, LAUNCH_ARGUMENTS, DriveOptionError, DriveOptions,
                                  LaunchArgumentError, drive_graph, launch_arguments, node_params,
                                  options_from_launch, params_for, parse_bool)
from gr00t_rlhf_ros.launcher import default_environment, node_command
from gr00t_rlhf_ros.paths import config_path

REPO = Path(__file__).resolve().parents[2]


def test_default_graph_is_sim_and_expert():
    assert [n.executable for n in drive_graph(DriveOptions())] == ["sim_node", "expert_node"]


def test_seed_and_task_reach_the_sim_node_command():
    sim = drive_graph(DriveOptions(seed=7, task="Find Blue cube"))[0]
    cmd = node_command(sim, python="python")
    assert cmd[:3] == ["python", "-m", "gr00t_rlhf_ros.nodes.sim_node"]
    assert "seed:=7" in cmd and "task:='Find Blue cube'" in cmd
    assert str(config_path("sim.yaml")) in cmd


def test_namespace_log_level_and_sim_time_reach_every_node():
    opts = DriveOptions(namespace="/robot1", log_level="debug", use_sim_time=True, record="/tmp/ds")
    for spec in drive_graph(opts):
        cmd = node_command(spec, python="python")
        assert "__ns:=/robot1" in cmd and cmd[cmd.index("--log-level") + 1] == "debug", cmd
        assert "use_sim_time:=true" in cmd
    relative = drive_graph(DriveOptions(namespace="robot2"))[0]
    assert "__ns:=/robot2" in node_command(relative)       # plain processes: relative means under /
    assert not any(a.startswith("__ns") for a in node_command(drive_graph(DriveOptions())[0]))


def test_camera_and_record_fps_reach_their_nodes():
    sim, _, rec = drive_graph(DriveOptions(camera_width=640, camera_height=480, camera_rate=15,
                                           record="/tmp/ds", record_fps=15))
    assert sim.parameters == {"camera_width": 640, "camera_height": 480, "camera_rate": 15.0}
    assert rec.parameters["fps"] == 15.0
    cmd = node_command(sim)
    assert "camera_width:=640" in cmd and "camera_rate:=15.0" in cmd   # a double, as sim_node declares it


def test_expert_without_sim_is_refused_naming_cli_flags_or_launch_arguments():
    with pytest.raises(DriveOptionError) as e:
        DriveOptions(sim=False, driver="expert")
    assert e.value.for_cli() == ("--driver expert: the expert needs the simulator's ground truth; "
                                 "use --sim or --driver none")
    assert e.value.for_launch() == ("driver:=expert: the expert needs the simulator's ground truth; "
                                    "use sim:=true or driver:=none")
    with pytest.raises(DriveOptionError, match="--driver joystick: not one of expert, none"):
        DriveOptions(driver="joystick")


def test_no_sim_no_driver_starts_nothing():
    assert drive_graph(DriveOptions(sim=False, driver="none")) == []
    rec = drive_graph(DriveOptions(sim=False, driver="none", record="/tmp/ds"))
    assert [n.executable for n in rec] == ["recorder_node"] and "task" not in rec[0].parameters


@pytest.mark.parametrize("kwargs, cli", [
    (dict(camera_width=8), "--camera-width 8: must be an integer from 16 to 1280 pixels"),
    (dict(camera_height=961), "--camera-height 961: must be an integer from 16 to 960 pixels"),
    (dict(camera_width=320.5), "--camera-width 320.5: must be an integer"),
    (dict(camera_rate=0.0), "--camera-rate 0.0: must be a rate above 0 and at most 60 Hz"),
    (dict(camera_rate=100.0), "--camera-rate 100.0: must be a rate above 0"),
    (dict(record_fps=10.0), "--record-fps 10.0: only applies when recording (--record DATASET)"),
    (dict(record="/tmp/ds", record_fps=20.0), "--record-fps 20.0: above the camera rate (10 Hz)"),
    (dict(record="/tmp/ds", camera_rate=5.0), "--record-fps 10.0: above the camera rate (5 Hz)"),
    (dict(sim=False, driver="none", camera_width=640), "--camera-width 640: sets the simulated camera"),
    (dict(namespace="/robot 1"), "--namespace /robot 1: not a ROS namespace"),
    (dict(namespace="/1robot"), "--namespace /1robot: not a ROS namespace"),
    (dict(log_level="verbose"), "--log-level verbose: not one of debug, info, warn, error, fatal"),
    (dict(seed=-1), "--seed -1: must be a non-negative integer"),
])
def test_bad_options_name_the_flag(kwargs, cli):
    with pytest.raises(DriveOptionError) as e:
        DriveOptions(**kwargs)
    assert e.value.for_cli().startswith(cli)


def test_camera_limits_match_the_simulator():
    from gr00t_rlhf_ros.graph import CAMERA_HEIGHT, CAMERA_WIDTH
    from gr00t_rlhf_ros.sim.robot import SimConfig

    SimConfig(camera_width=CAMERA_WIDTH[1], camera_height=CAMERA_HEIGHT[1])
    SimConfig(camera_width=CAMERA_WIDTH[0], camera_height=CAMERA_HEIGHT[0])
    for w, h in ((CAMERA_WIDTH[1] + 1, 240), (320, CAMERA_HEIGHT[1] + 1)):
        with pytest.raises(ValueError):
            SimConfig(camera_width=w, camera_height=h)


# ---------------------------------------------------------------- launch arguments

@pytest.mark.parametrize("text, value", [("true", True), ("True", True), ("TRUE", True), ("1", True),
                                         ("false", False), ("False", False), ("0", False), (" false ", False)])
def test_booleans_parse_the_ros_way(text, value):
    assert parse_bool(text, "sim") is value


@pytest.mark.parametrize("text", ["yes", "no", "on", "", "2", "truee"])
def test_other_booleans_are_refused_naming_the_argument(text):
    with pytest.raises(LaunchArgumentError, match=f"use_sim_time:={text}: not a boolean"):
        parse_bool(text, "use_sim_time")


def test_every_launch_argument_is_described_and_parsed():
    names = {a.name for a in LAUNCH_ARGUMENTS}
    assert names >= {"sim", "driver", "seed", "task", "record", "vocabulary", "namespace", "use_sim_time",
                     "log_level", "camera_width", "camera_height", "camera_rate", "record_fps"}
    assert all(a.description for a in LAUNCH_ARGUMENTS)
    for a in LAUNCH_ARGUMENTS:
        if a.choices:
            assert a.default in a.choices
    assert {a.name for a in LAUNCH_ARGUMENTS if a.choices == BOOL_CHOICES} == {"sim", "use_sim_time"}
    defaults = {a.name: a.default for a in LAUNCH_ARGUMENTS}
    assert options_from_launch(defaults) == DriveOptions(log_level="info")


def test_launch_values_become_options():
    opts = options_from_launch({"sim": "False", "driver": "none", "record": "/tmp/ds", "namespace": "/robot1",
                                "use_sim_time": "1", "record_fps": "5", "seed": ""})
    assert opts == DriveOptions(sim=False, driver="none", record="/tmp/ds", namespace="/robot1",
                                use_sim_time=True, record_fps=5.0)
    sim = drive_graph(options_from_launch({"camera_width": "640", "camera_height": "480", "camera_rate": "12.5"}))[0]
    assert sim.parameters == {"camera_width": 640, "camera_height": 480, "camera_rate": 12.5}


@pytest.mark.parametrize("values, message", [
    ({"sim": "false"}, "driver:=expert: the expert needs the simulator's ground truth; use sim:=true or driver:=none"),
    ({"sim": "off"}, "sim:=off: not a boolean (use true, false, 1 or 0)"),
    ({"seed": "three"}, "seed:=three: not an integer"),
    ({"camera_width": "640.5"}, "camera_width:=640.5: not an integer"),
    ({"camera_width": "4000"}, "camera_width:=4000: must be an integer from 16 to 1280 pixels"),
    ({"camera_rate": "fast"}, "camera_rate:=fast: not a number"),
    ({"record_fps": "10"}, "record_fps:=10.0: only applies when recording (record:=DATASET)"),
    ({"namespace": "robot-1"}, "namespace:=robot-1: not a ROS namespace"),
])
def test_bad_launch_values_name_the_launch_argument(values, message):
    with pytest.raises(LaunchArgumentError) as e:
        options_from_launch(values)
    assert str(e.value).startswith(message) and "--" not in str(e.value)


def test_record_launch_lists_and_honours_dataset_not_record():
    drive_names = [a.name for a in launch_arguments(False)]
    record_names = [a.name for a in launch_arguments(True)]
    assert "record" in drive_names and "dataset" not in drive_names
    assert "dataset" in record_names and "record" not in record_names
    defaults = {a.name: a.default for a in launch_arguments(True)}
    assert options_from_launch(defaults, recording=True).record == "recordings/dataset"
    opts = options_from_launch(defaults | {"dataset": "/tmp/run1", "record_fps": "5"}, recording=True)
    assert (opts.record, opts.record_fps) == ("/tmp/run1", 5.0)
    with pytest.raises(LaunchArgumentError, match=r"^dataset:=: record\.launch\.py needs a dataset directory"):
        options_from_launch(defaults | {"dataset": ""}, recording=True)
    with pytest.raises(LaunchArgumentError, match=r"^record_fps:=20\.0: above the camera rate .*camera_rate:=HZ"):
        options_from_launch(defaults | {"record_fps": "20"}, recording=True)


def test_launch_files_use_the_shared_description():
    drive = (REPO / "launch" / "drive.launch.py").read_text()
    record = (REPO / "launch" / "record.launch.py").read_text()
    assert "options_from_launch" in drive and "launch_arguments(recording)" in drive and "choices" in drive
    assert "launch_description(recording=True)" in record
    compile(drive, "drive.launch.py", "exec")
    compile(record, "record.launch.py", "exec")


# ---------------------------------------------------------------- params files

@pytest.mark.parametrize("node, file", [("sim_node", "sim.yaml"), ("expert_node", "expert.yaml"),
                                        ("feedback_node", "feedback.yaml"), ("recorder_node", "recorder.yaml")])
def test_params_files_apply_in_any_namespace(node, file):
    doc = yaml.safe_load(config_path(file).read_text())
    assert list(doc) == [f"/**/{node}"]           # node key = node name = executable, any namespace
    root = node_params(file, node)
    assert root and node_params(file, node, "/robot1") == root == node_params(file, node, "/fleet/robot2")
    assert node_params(file, "other_node") == {}


def test_params_lookup_follows_rcl_wildcards():
    doc = {"/**": {"ros__parameters": {"a": 1, "b": 1}},
           "/robot1/sim_node": {"ros__parameters": {"b": 2}},
           "/*/sim_node": {"ros__parameters": {"c": 3}},
           "sim_node": {"ros__parameters": {"d": 4}}}
    # a key without a leading '/' is in the root namespace only (rcl): why the files use /**/<node>
    assert params_for(doc, "sim_node", "/robot1") == {"a": 1, "b": 2, "c": 3}
    assert params_for(doc, "sim_node") == {"a": 1, "b": 1, "d": 4}
    assert params_for(doc, "sim_node", "/a/b") == {"a": 1, "b": 1}


def test_recording_the_sim_without_a_task_uses_the_sims_instruction():
    rec = drive_graph(DriveOptions(record="/tmp/ds"))[-1]
    assert rec.parameters["task"] == "Find Blue cube"   # config/sim.yaml's task, read through /**/sim_node


def test_record_adds_a_non_required_recorder_with_the_task():
    nodes = drive_graph(DriveOptions(record="/tmp/ds", task="Find Blue cube", vocabulary="score"))
    rec = nodes[-1]
    assert rec.executable == "recorder_node" and not rec.required
    assert rec.parameters == {"dataset": "/tmp/ds", "vocabulary": "score", "task": "Find Blue cube"}


def test_drive_forces_no_fast_dds_transport(monkeypatch):
    """A node started by hand (no variable) must see drive's children: drive sets no transport."""
    monkeypatch.delenv("FASTDDS_BUILTIN_TRANSPORTS", raising=False)
    assert "FASTDDS_BUILTIN_TRANSPORTS" not in default_environment()
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")   # the user's own choice is kept
    assert default_environment()["FASTDDS_BUILTIN_TRANSPORTS"] == "LARGE_DATA"
