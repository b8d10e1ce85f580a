"""The arena layout, the task parser and the MJCF world (plain Python, no ROS)."""
import itertools
import math

import pytest

from gr00t_rlhf_ros.sim.arena import (
    ArenaConfig, Layout, TaskError, instructions, make_layout, parse_task, world_xml,
)

import mujoco  # noqa: E402  (after gr00t_rlhf_ros.sim, which picks a headless GL backend)


def test_layout_holds_the_six_seed_objects_with_roles():
    layout = make_layout(0)
    roles = {(o.colour, o.shape): o.role for o in layout.objects}
    assert roles == {
        ("blue", "sphere"): "obstacle", ("red", "cube"): "obstacle", ("green", "cylinder"): "obstacle",
        ("blue", "cube"): "goal", ("green", "sphere"): "goal", ("red", "cylinder"): "goal",
    }


def test_same_seed_same_layout_other_seed_other_layout():
    assert make_layout(7) == make_layout(7)
    assert make_layout(7).objects != make_layout(8).objects


@pytest.mark.parametrize("seed", range(20))
def test_layout_keeps_clearances(seed):
    cfg = ArenaConfig()
    layout = make_layout(seed, cfg)
    lim = cfg.half_size - cfg.wall_margin
    for o in layout.objects:
        assert abs(o.position[0]) <= lim and abs(o.position[1]) <= lim
    for a, b in itertools.combinations(layout.objects, 2):
        assert math.dist(a.position, b.position) >= cfg.min_separation
    for o in layout.objects:
        assert math.dist(o.position, layout.robot_start[:2]) >= cfg.robot_clearance


def test_layout_round_trips_through_a_dict():
    layout = make_layout(3)
    assert Layout.from_dict(layout.to_dict()) == layout


def test_bad_seed_and_impossible_config_are_named():
    with pytest.raises(ValueError, match="seed"):
        make_layout(-1)
    with pytest.raises(ValueError, match="min_separation"):
        make_layout(0, ArenaConfig(half_size=1.5, wall_margin=0.8, min_separation=1.5))
    with pytest.raises(ValueError, match="ArenaConfig.half_size"):
        ArenaConfig(half_size=-1)


@pytest.mark.parametrize("text, goal, around", [
    ("Find Blue cube", "blue_cube", None),
    ("find the green sphere", "green_sphere", None),
    ("Position yourself next to Green sphere", "green_sphere", None),
    ("Go to the red cylinder", "red_cylinder", None),
    ("Drive to the red object", "red_cylinder", None),
    ("Move around the red object before proceeding to the goal", "DEFAULT", "red_cube"),
    ("Move around the blue object before proceeding to the goal", "DEFAULT", "blue_sphere"),
    ("Move around the green object before proceeding to the goal", "DEFAULT", "green_cylinder"),
    ("Move around the green cylinder, then find Blue cube", "blue_cube", "green_cylinder"),
])
def test_parse_task(text, goal, around):
    layout = make_layout(5)
    task = parse_task(text, layout)
    assert task.goal == (layout.default_goal if goal == "DEFAULT" else goal)
    assert task.around == around
    assert task.instruction == text


@pytest.mark.parametrize("text, why", [
    ("Find the purple pyramid", "names no known goal"),
    ("", "empty"),
    ("Find Red cube", "obstacle, not a goal"),
    ("Find Blue cube and Green sphere", "several destinations"),
])
def test_parse_task_errors_are_clear(text, why):
    with pytest.raises(TaskError, match=why):
        parse_task(text, make_layout(0))


def test_every_listed_instruction_parses():
    layout = make_layout(1)
    for text in instructions(layout):
        parse_task(text, layout)


def test_world_xml_compiles_with_wheels_actuators_camera_and_imu():
    layout = make_layout(2)
    model = mujoco.MjModel.from_xml_string(world_xml(layout, timestep=0.002))
    assert model.opt.timestep == pytest.approx(0.002)
    for joint in ("left_wheel_joint", "right_wheel_joint"):
        assert model.joint(joint).type == mujoco.mjtJoint.mjJNT_HINGE
    assert model.nu == 2 and model.camera("ego") is not None
    assert model.sensor("accel").type == mujoco.mjtSensor.mjSENS_ACCELEROMETER
    for o in layout.objects:
        assert tuple(model.body(o.name).pos[:2]) == pytest.approx(o.position)
