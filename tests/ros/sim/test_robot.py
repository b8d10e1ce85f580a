"""SimRobot: physics, commands, the stale-command watchdog, sensors, ground truth, rendering."""
import math

import numpy as np
import pytest

from gr00t_rlhf_ros.sim.arena import TaskError
from gr00t_rlhf_ros.sim.robot import SimConfig, SimRobot


@pytest.fixture
def robot():
    r = SimRobot(seed=3)
    r.step_to(0.3)  # settle on the floor
    yield r
    r.close()


def drive(r, left, right, seconds, rate=20.0):
    """Send a fresh command at ``rate`` Hz for ``seconds`` of simulation time."""
    end = r.time + seconds
    while r.time < end - 1e-9:
        r.set_command(left, right)
        r.step_to(min(end, r.time + 1.0 / rate))


def test_physics_steps_at_the_fixed_timestep(robot):
    t0 = robot.time
    n = robot.step_to(t0 + 0.1)
    assert n == 50 and robot.time == pytest.approx(t0 + 0.1)
    assert robot.step_to(t0 + 0.1) == 0  # already there


def test_at_rest_the_robot_stays_put_and_the_imu_reads_zero(robot):
    gt0 = robot.ground_truth()
    robot.step_to(robot.time + 1.0)
    gt1 = robot.ground_truth()
    assert math.dist((gt0["x"], gt0["y"]), (gt1["x"], gt1["y"])) < 1e-3
    assert np.linalg.norm(robot.imu().linear_acceleration) < 0.05


def test_imu_with_gravity_reads_g_at_rest():
    r = SimRobot(seed=3, config=SimConfig(imu_gravity=True))
    r.step_to(0.5)
    assert np.linalg.norm(r.imu().linear_acceleration) == pytest.approx(9.81, abs=0.05)


def test_forward_command_moves_the_robot_forward_and_the_imu_sees_it(robot):
    x0, y0, yaw0 = robot.pose()
    robot.set_command(5.0, 5.0)
    peak = 0.0
    for _ in range(10):  # the first 0.1 s: accelerating
        robot.step(5)
        peak = max(peak, float(np.linalg.norm(robot.imu().linear_acceleration)))
    assert peak > 0.5
    drive(robot, 5.0, 5.0, 1.0)
    x1, y1, _ = robot.pose()
    forward = (x1 - x0) * math.cos(yaw0) + (y1 - y0) * math.sin(yaw0)
    assert forward > 0.25  # wheel radius 0.07 m * 5 rad/s = 0.35 m/s
    left, right = robot.joint_velocities()
    assert left == pytest.approx(5.0, abs=0.3) and right == pytest.approx(5.0, abs=0.3)
    assert robot.ground_truth()["v"] > 0.3


def test_opposite_wheels_turn_in_place(robot):
    x0, y0, yaw0 = robot.pose()
    drive(robot, -3.0, 3.0, 0.5)
    x1, y1, yaw1 = robot.pose()
    assert math.dist((x0, y0), (x1, y1)) < 0.05
    assert (yaw1 - yaw0) % (2 * math.pi) > 0.3  # counter-clockwise


def test_stale_command_stops_the_wheels(robot):
    robot.set_command(5.0, 5.0)
    robot.step_to(robot.time + 0.3)
    assert robot.command() == (5.0, 5.0)
    robot.step_to(robot.time + robot.config.command_timeout + 0.5)  # no new command
    assert robot.command() == (0.0, 0.0)
    left, right = robot.joint_velocities()
    assert abs(left) < 0.2 and abs(right) < 0.2
    assert abs(robot.ground_truth()["v"]) < 0.02


def test_out_of_range_commands_are_clamped(robot):
    assert robot.set_command(12.0, -7.5) is True
    assert robot.command() == (5.0, -5.0)
    assert robot.set_command(1.0, -1.0) is False


@pytest.mark.parametrize("bad", [(math.nan, 1.0), (1.0, math.inf), (-math.inf, 0.0)])
def test_non_finite_commands_are_rejected_and_the_previous_one_kept(robot, bad):
    robot.set_command(2.0, 2.0)
    with pytest.raises(ValueError, match="not finite"):
        robot.set_command(*bad)
    assert robot.command() == (2.0, 2.0)


def test_successive_images_differ_while_driving(robot):
    a = robot.render()
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    drive(robot, 5.0, 5.0, 0.5)
    b = robot.render()
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0


def test_camera_size_follows_the_config():
    with SimRobot(seed=0, config=SimConfig(camera_width=224, camera_height=224)) as r:
        assert r.render().shape == (224, 224, 3)


def test_ground_truth_fields(robot):
    gt = robot.ground_truth()
    for key in ("time", "x", "y", "yaw", "goal", "goal_position", "goal_distance", "collision", "success"):
        assert key in gt
    gx, gy = gt["goal_position"]
    assert gt["goal"] == "blue_cube"
    assert gt["goal_distance"] == pytest.approx(math.hypot(gx - gt["x"], gy - gt["y"]))


def test_driving_into_an_obstacle_is_a_collision():
    r = SimRobot(seed=3, task="Find Green sphere")
    target = r.layout.object("red_cube").position
    for _ in range(400):  # steer straight at the red cube for up to 20 s
        x, y, yaw = r.pose()
        err = (math.atan2(target[1] - y, target[0] - x) - yaw + math.pi) % (2 * math.pi) - math.pi
        r.set_command(3.0 - 2.0 * err, 3.0 + 2.0 * err)
        r.step_to(r.time + 0.05)
        if r.ground_truth()["collision"]:
            break
    gt = r.ground_truth()
    assert gt["collision"] and "red_cube" in gt["touching"] and gt["collisions"] == 1


def test_reset_with_a_new_seed_moves_the_objects_and_the_robot(robot):
    drive(robot, 5.0, 5.0, 0.5)
    old = robot.layout
    new = robot.reset(seed=4)
    assert new.seed == 4 and new.objects != old.objects
    assert robot.time == 0.0
    x, y, yaw = robot.pose()
    assert (x, y) == pytest.approx(new.robot_start[:2], abs=1e-6)
    assert tuple(robot.model.body("red_cube").pos[:2]) == pytest.approx(new.object("red_cube").position)
    assert robot.command() == (0.0, 0.0)


def test_set_task_changes_the_goal_and_rejects_unknown_objects(robot):
    robot.set_task("Position yourself next to Green sphere")
    assert robot.ground_truth()["goal"] == "green_sphere"
    with pytest.raises(TaskError):
        robot.set_task("Find the unicorn")
    assert robot.ground_truth()["goal"] == "green_sphere"


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="SimConfig.timestep"):
        SimConfig(timestep=0.0)
    with pytest.raises(ValueError, match="SimConfig.camera_width"):
        SimConfig(camera_width=5000)
