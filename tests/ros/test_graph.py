"""The bring-up description shared by drive.launch.py and `gr00t-rlhf drive`: graph, options,
launch-argument parsing and params-file lookup (pure Python: no launch install needed)."""
from pathlib import Path

import pytest
import yaml

from gr00t_rlhf_ros.graph import (BOOL_CHOICES, LAUNCH_ARGUMENTS, DriveOptionError, DriveOptions,
                                  LaunchArgumentError, drive_graph, launch_arguments, node_params,
                                  options_from_launch, params_for, parse_bool, with_demo_models)
from gr00t_rlhf_ros.launcher import default_environment, node_command
from gr00t_rlhf_ros.paths import config_path

REPO = Path(__file__).resolve().parents[2]


EXPERT = dict(driver="expert")


def names(nodes) -> list[str]:
    return [n.executable for n in nodes]


@pytest.fixture
def models(tmp_path):
    """Two checkpoint-like directories (the graph checks only that a path source exists)."""
    (tmp_path / "policy").mkdir()
    (tmp_path / "reward").mkdir()
    return str(tmp_path / "policy"), str(tmp_path / "reward")


def test_default_graph_is_sim_demo_policy_and_live_reward(models):
    opts = DriveOptions()
    assert opts.driver == "policy" and opts.policy == "demo" and opts.reward_source == "demo"
    assert opts.needs_demo_models
    with pytest.raises(ValueError, match="demo models are not resolved"):
        drive_graph(opts)
    nodes = drive_graph(with_demo_models(opts, *models))
    assert names(nodes) == ["sim_node", "policy_node", "reward_node"]
    sim, policy, reward = nodes
    assert policy.parameters == {"policy": models[0], "num_candidates": 1, "reward_model": "",
                                 "task": "Find Blue cube"}
    assert policy.params_file == "policy.yaml" and policy.required
    assert reward.parameters == {"reward_model": models[1], "task": "Find Blue cube"}
    assert reward.params_file == "reward.yaml" and not reward.required   # an opinion, not part of driving


def test_expert_graph_is_sim_and_expert():
    opts = DriveOptions(**EXPERT)
    assert not opts.needs_demo_models and opts.reward_source == ""       # auto: no demo reward for the expert
    assert names(drive_graph(opts)) == ["sim_node", "expert_node"]


def test_best_of_n_gives_the_policy_the_reward_model(models):
    nodes = drive_graph(DriveOptions(policy=models[0], reward_model=models[1], num_candidates=8, task="Find Red cylinder"))
    _, policy, reward = nodes
    assert policy.parameters == {"policy": models[0], "num_candidates": 8, "reward_model": models[1],
                                 "task": "Find Red cylinder"}
    assert reward.parameters["reward_model"] == models[1]
    cmd = node_command(policy, python="python")
    assert "num_candidates:=8" in cmd and f"reward_model:='{models[1]}'" in cmd


def test_a_real_robot_is_driven_by_the_policy_without_expert_or_sim(models):
    nodes = drive_graph(DriveOptions(sim=False, policy="tcp://gpu-box:5555", reward_model=models[1]))
    assert names(nodes) == ["policy_node", "reward_node"]
    assert nodes[0].parameters == {"policy": "tcp://gpu-box:5555", "num_candidates": 1, "reward_model": ""}
    assert "task" not in nodes[1].parameters                     # no sim: the task comes from task
    assert names(drive_graph(DriveOptions(sim=False, policy="tiny", reward_model="none"))) == ["policy_node"]
    assert names(drive_graph(DriveOptions(policy="tiny"))) == ["sim_node", "policy_node"]   # auto: none


def test_an_empty_string_parameter_reaches_the_node_as_a_string():
    policy = drive_graph(DriveOptions(policy="tiny"))[1]
    assert "reward_model:=''" in node_command(policy, python="python")


def test_the_expert_can_be_judged_by_a_reward_model(models):
    assert names(drive_graph(DriveOptions(driver="expert", reward_model=models[1]))) == [
        "sim_node", "expert_node", "reward_node"]


def test_seed_and_task_reach_the_sim_node_command():
    sim = drive_graph(DriveOptions(seed=7, task="Find Blue cube", **EXPERT))[0]
    cmd = node_command(sim, python="python")
    assert cmd[:3] == ["python", "-m", "gr00t_rlhf_ros.nodes.sim_node"]
    assert "seed:=7" in cmd and "task:='Find Blue cube'" in cmd
    assert str(config_path("sim.yaml")) in cmd


def test_namespace_log_level_and_sim_time_reach_every_node():
    opts = DriveOptions(namespace="/robot1", log_level="debug", use_sim_time=True, record="/tmp/ds", policy="tiny",
                        reward_model="tcp://gpu:5555")
    assert names(drive_graph(opts)) == ["sim_node", "policy_node", "reward_node", "recorder_node"]
    for spec in drive_graph(opts):
        cmd = node_command(spec, python="python")
        assert "__ns:=/robot1" in cmd and cmd[cmd.index("--log-level") + 1] == "debug", cmd
        assert "use_sim_time:=true" in cmd
    relative = drive_graph(DriveOptions(namespace="robot2", **EXPERT))[0]
    assert "__ns:=/robot2" in node_command(relative)       # plain processes: relative means under /
    assert not any(a.startswith("__ns") for a in node_command(drive_graph(DriveOptions(**EXPERT))[0]))


def test_camera_and_record_fps_reach_their_nodes():
    sim, _, rec = drive_graph(DriveOptions(camera_width=640, camera_height=480, camera_rate=15,
                                           record="/tmp/ds", record_fps=15, **EXPERT))
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
    with pytest.raises(DriveOptionError, match="--driver joystick: not one of policy, expert, none"):
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
    (dict(sim=False), "--policy demo: the demo policy is trained in the simulator and must not drive a real robot; "
                      "give a checkpoint --policy CHECKPOINT (or --driver none)"),
    (dict(policy=""), "--policy : empty: give a checkpoint directory, a preset"),
    (dict(policy="/no/such/dir"), "--policy /no/such/dir: no such checkpoint directory"),
    (dict(policy="tcp://host"), "--policy tcp://host: not a server address: use tcp://HOST:PORT"),
    (dict(policy="tcp://host:99999"), "--policy tcp://host:99999: not a server address"),
    (dict(policy="http://host:80"), "--policy http://host:80: not a server address"),
    (dict(reward_model="./nope"), "--reward-model ./nope: no such checkpoint directory"),
    (dict(driver="expert", policy="tiny"), "--policy tiny: only applies with --driver policy (the driver is expert)"),
    (dict(sim=False, policy="tiny", reward_model="demo"), "--reward-model demo: the demo reward model only knows "
                                                          "the simulator"),
    (dict(num_candidates=0), "--num-candidates 0: must be an integer from 1 to 64"),
    (dict(num_candidates=65), "--num-candidates 65: must be an integer from 1 to 64"),
    (dict(num_candidates=2.0), "--num-candidates 2.0: must be an integer"),
    (dict(num_candidates=4, policy="tiny"), "--num-candidates 4: best-of-N needs a reward model to pick the best "
                                            "chunk: add --reward-model CHECKPOINT (or --num-candidates 1)"),
    (dict(num_candidates=4, driver="expert", reward_model="tcp://gpu:5555"), "--num-candidates 4: best-of-N picks among "
                                                                   "policy chunks: it needs --driver policy"),
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
    assert names >= {"policy", "reward_model", "num_candidates", "demo_models"}
    assert {a.name for a in LAUNCH_ARGUMENTS if a.choices == BOOL_CHOICES} == {"sim", "use_sim_time"}
    defaults = {a.name: a.default for a in LAUNCH_ARGUMENTS}
    assert options_from_launch(defaults) == DriveOptions(log_level="info")
    assert options_from_launch(defaults).needs_demo_models      # the launch default is the demo, like the CLI


def test_launch_values_become_options():
    opts = options_from_launch({"sim": "False", "driver": "none", "record": "/tmp/ds", "namespace": "/robot1",
                                "use_sim_time": "1", "record_fps": "5", "seed": ""})
    assert opts == DriveOptions(sim=False, driver="none", record="/tmp/ds", namespace="/robot1",
                                use_sim_time=True, record_fps=5.0)
    sim = drive_graph(options_from_launch({"camera_width": "640", "camera_height": "480", "camera_rate": "12.5",
                                           "driver": "expert"}))[0]
    assert sim.parameters == {"camera_width": 640, "camera_height": 480, "camera_rate": 12.5}


def test_launch_model_arguments_become_options(models):
    opts = options_from_launch({"policy": f" {models[0]} ", "reward_model": models[1], "num_candidates": "4"})
    assert (opts.policy, opts.reward_source, opts.num_candidates) == (models[0], models[1], 4)
    assert options_from_launch({"policy": "tiny", "reward_model": ""}).reward_source == ""
    assert options_from_launch({"policy": "tiny", "reward_model": "none"}).reward_source == ""
    assert options_from_launch({"policy": "tiny", "num_candidates": ""}).num_candidates == 1


@pytest.mark.parametrize("values, message", [
    ({"sim": "false", "driver": "expert"},
     "driver:=expert: the expert needs the simulator's ground truth; use sim:=true or driver:=none"),
    ({"sim": "false"}, "policy:=demo: the demo policy is trained in the simulator and must not drive a real robot; "
                       "give a checkpoint policy:=CHECKPOINT (or driver:=none)"),
    ({"num_candidates": "many"}, "num_candidates:=many: not an integer"),
    ({"num_candidates": "3", "policy": "tiny"}, "num_candidates:=3: best-of-N needs a reward model"),
    ({"policy": "tcp://:80"}, "policy:=tcp://:80: not a server address"),
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
    defaults = {a.name: a.default for a in launch_arguments(True)} | {"driver": "expert"}
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
                                        ("feedback_node", "feedback.yaml"), ("recorder_node", "recorder.yaml"),
                                        ("policy_node", "policy.yaml"), ("reward_node", "reward.yaml")])
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
    rec = drive_graph(DriveOptions(record="/tmp/ds", **EXPERT))[-1]
    assert rec.parameters["task"] == "Find Blue cube"   # config/sim.yaml's task, read through /**/sim_node


def test_record_adds_a_non_required_recorder_with_the_task():
    nodes = drive_graph(DriveOptions(record="/tmp/ds", task="Find Blue cube", vocabulary="score", **EXPERT))
    rec = nodes[-1]
    assert rec.executable == "recorder_node" and not rec.required
    assert rec.parameters == {"dataset": "/tmp/ds", "vocabulary": "score", "task": "Find Blue cube"}


def test_drive_forces_no_fast_dds_transport(monkeypatch):
    """A node started by hand (no variable) must see drive's children: drive sets no transport."""
    monkeypatch.delenv("FASTDDS_BUILTIN_TRANSPORTS", raising=False)
    assert "FASTDDS_BUILTIN_TRANSPORTS" not in default_environment()
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")   # the user's own choice is kept
    assert default_environment()["FASTDDS_BUILTIN_TRANSPORTS"] == "LARGE_DATA"


def test_a_reward_model_preset_is_refused_and_the_preset_list_matches_the_model_package():
    from gr00t_rlhf_ros.graph import MODEL_PRESETS, DriveOptionError, DriveOptions
    from gr00t_rlhf_train.model.configuration import PRESETS
    assert set(MODEL_PRESETS) == set(PRESETS)
    with pytest.raises(DriveOptionError, match="a reward model has no preset"):
        DriveOptions(reward_model="tiny")
    DriveOptions(policy="tiny", reward_model="none")          # a policy preset still drives (random weights)


def test_condition_and_guidance_reach_the_policy_node_and_bad_values_name_the_option():
    from gr00t_rlhf_ros.graph import CONDITIONS, DriveOptionError, DriveOptions, drive_graph, options_from_launch
    from gr00t_rlhf_train.model.configuration import ADVANTAGE_CONDITIONS
    assert tuple(CONDITIONS) == tuple(ADVANTAGE_CONDITIONS)
    opts = DriveOptions(policy="tiny", reward_model="none", condition="good", guidance=2.0)
    (policy,) = [n for n in drive_graph(opts) if n.executable == "policy_node"]
    assert policy.parameters["condition"] == "good" and policy.parameters["guidance"] == 2.0
    plain = [n for n in drive_graph(DriveOptions(policy="tiny", reward_model="none")) if n.executable == "policy_node"]
    assert "condition" not in plain[0].parameters and "guidance" not in plain[0].parameters
    launched = options_from_launch({"policy": "tiny", "reward_model": "none", "condition": "bad", "guidance": "1.5"})
    assert (launched.condition, launched.guidance) == ("bad", 1.5)
    for kwargs, message in ((dict(condition="great"), "--condition great: not one of unconditioned, good, bad"),
                            (dict(guidance=-1.0), "--guidance -1.0: must be a finite number >= 0"),
                            (dict(driver="expert", policy="demo", condition="good"), "--condition good: only applies")):
        with pytest.raises(DriveOptionError) as e:
            DriveOptions(reward_model="none", **kwargs)
        assert str(e.value).startswith(message), str(e.value)
