"""The node graph description shared by drive.launch.py and `gr00t-rlhf drive`."""
import pytest

from gr00t_rlhf_ros.graph import DriveOptions, drive_graph
from gr00t_rlhf_ros.launcher import node_command
from gr00t_rlhf_ros.paths import config_path


def test_default_graph_is_sim_and_expert():
    assert [n.executable for n in drive_graph(DriveOptions())] == ["sim_node", "expert_node"]


def test_seed_and_task_reach_the_sim_node_command():
    sim = drive_graph(DriveOptions(seed=7, task="Find Blue cube"))[0]
    cmd = node_command(sim, python="python")
    assert cmd[:3] == ["python", "-m", "gr00t_rlhf_ros.nodes.sim_node"]
    assert "seed:=7" in cmd and "task:='Find Blue cube'" in cmd
    assert str(config_path("sim.yaml")) in cmd


def test_expert_without_sim_is_refused_naming_the_option():
    with pytest.raises(ValueError, match="driver: 'expert'"):
        DriveOptions(sim=False, driver="expert")
    with pytest.raises(ValueError, match="driver: 'joystick'"):
        DriveOptions(driver="joystick")
    assert drive_graph(DriveOptions(sim=False, driver="none")) == []


def test_record_adds_a_non_required_recorder_with_the_task():
    nodes = drive_graph(DriveOptions(record="/tmp/ds", task="Find Blue cube", vocabulary="score"))
    rec = nodes[-1]
    assert rec.executable == "recorder_node" and not rec.required
    assert rec.parameters == {"dataset": "/tmp/ds", "vocabulary": "score", "task": "Find Blue cube"}


def test_recording_the_sim_without_a_task_uses_the_sims_instruction():
    rec = drive_graph(DriveOptions(record="/tmp/ds"))[-1]
    assert rec.parameters["task"] == "Find Blue cube"   # config/sim.yaml's task
