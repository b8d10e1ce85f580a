"""``SimRobot``: the MuJoCo differential-drive robot in its arena, without ROS.

One object owns the MuJoCo model and data. Physics advances in fixed steps (``config.timestep``)
to whatever simulation time the caller asks for (``step_to``), so a ROS node can step it to wall
clock time while tests step it as fast as the CPU allows. Rendering (``render``) reads the state
under the same lock that stepping holds, so a camera thread never sees a half-updated state.

Conventions (see docs/sim.md):

- wheel commands are rad/s, clamped to +-``max_wheel_speed``; a command older than
  ``command_timeout`` (simulation seconds) is stale and the wheels are driven to zero;
- ``imu().linear_acceleration`` is the accelerometer in the robot frame (x forward, y left, z up)
  with gravity removed by default (``imu_gravity=False``): about 0 at rest, like the seed
  datasets' ``state.acceleration`` (0-2.6 m/s^2 while driving). With ``imu_gravity=True`` it is
  the raw specific force of a real accelerometer (REP 145): ``|a|`` is about 9.81 at rest;
- ``ground_truth()`` measures ``goal_distance`` between the robot centre and the goal centre;
  ``success`` is ``goal_distance <= success_radius`` (after circling the ``around`` object for
  "Move around ..." tasks); ``collision`` is a contact between the robot and any wall or object
  other than the instructed goal.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import mujoco
import numpy as np

from gr00t_rlhf_ros.sim.arena import ArenaConfig, Layout, RobotGeometry, Task, make_layout, parse_task, world_xml

GRAVITY = 9.81


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes the simulation. Times in seconds, distances in metres."""

    timestep: float = 0.002          # fixed physics step
    command_timeout: float = 0.5     # a command older than this stops the wheels
    max_wheel_speed: float = 5.0     # rad/s; commands are clamped to +-this
    success_radius: float = 0.5      # robot centre to goal centre
    around_radius: float = 0.9       # circling an object counts while this close to its centre
    around_angle: float = 2 * math.pi  # net angle to sweep around the object (one full circle)
    imu_gravity: bool = False        # True: raw accelerometer (|a| = 9.81 at rest)
    imu_filter_hz: float = 20.0      # first-order low-pass of the accelerometer (0 = off)
    camera_width: int = 320
    camera_height: int = 240
    arena: ArenaConfig = field(default_factory=ArenaConfig)
    robot: RobotGeometry = field(default_factory=RobotGeometry)

    def __post_init__(self):
        positive = ("timestep", "command_timeout", "max_wheel_speed", "success_radius", "around_radius", "around_angle")
        for f in positive:
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"SimConfig.{f}: {v!r} must be a positive number")
        if self.timestep > 0.02:
            raise ValueError(f"SimConfig.timestep: {self.timestep} s is too coarse for contact physics (max 0.02)")
        if not (math.isfinite(self.imu_filter_hz) and self.imu_filter_hz >= 0):
            raise ValueError(f"SimConfig.imu_filter_hz: {self.imu_filter_hz!r} must be >= 0 (0 disables the filter)")
        for f in ("camera_width", "camera_height"):
            v = getattr(self, f)
            if not (isinstance(v, int) and 16 <= v <= 1280):
                raise ValueError(f"SimConfig.{f}: {v!r} must be an integer between 16 and 1280 pixels")
        if self.camera_height > 960:
            raise ValueError(f"SimConfig.camera_height: {self.camera_height} must be at most 960 pixels")


class ImuReading(NamedTuple):
    linear_acceleration: np.ndarray  # [3] m/s^2, robot frame
    angular_velocity: np.ndarray     # [3] rad/s, robot frame
    orientation: np.ndarray          # [4] quaternion (w, x, y, z), world frame


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class SimRobot:
    """The simulated robot. Thread-safe: stepping, commands, reset and rendering share one lock."""

    DEFAULT_TASK = "Find Blue cube"

    def __init__(self, seed: int = 0, task: str | None = None, config: SimConfig | None = None):
        self.config = cfg = config or SimConfig()
        self._lock = threading.RLock()
        self.layout: Layout = make_layout(seed, cfg.arena)
        self.model = mujoco.MjModel.from_xml_string(world_xml(self.layout, cfg.robot, cfg.timestep))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._wheel_dofs = [m.jnt_dofadr[m.joint(j).id] for j in ("left_wheel_joint", "right_wheel_joint")]
        self._root_qpos = m.jnt_qposadr[m.joint("robot_root").id]
        self._root_dof = m.jnt_dofadr[m.joint("robot_root").id]
        self._robot_body = m.body("robot").id
        self._imu_site = m.site("imu").id
        self._sensor = {n: (m.sensor_adr[m.sensor(n).id], m.sensor_dim[m.sensor(n).id])
                        for n in ("accel", "gyro", "orientation")}
        robot_bodies = {i for i in range(m.nbody) if m.body_rootid[i] == self._robot_body}
        self._robot_geom_set = {g for g in range(m.ngeom) if m.geom_bodyid[g] in robot_bodies}
        self._object_geom = {o.name: m.geom(o.name).id for o in self.layout.objects}
        self._object_body = {o.name: m.body(o.name).id for o in self.layout.objects}
        self._geom_name = {g: m.geom(g).name for g in range(m.ngeom)}
        self._ignore_geoms = {m.geom("floor").id}
        self._renderer: mujoco.Renderer | None = None
        self._task_text = task or self.DEFAULT_TASK
        self.task: Task = parse_task(self._task_text, self.layout)
        self._reset_state()

    # ------------------------------------------------------------ episode

    def reset(self, seed: int | None = None) -> Layout:
        """Restart the episode; a new ``seed`` draws a new layout (the task is re-read for it)."""
        with self._lock:
            if seed is not None and seed != self.layout.seed:
                layout = make_layout(seed, self.config.arena)
                task = parse_task(self._task_text, layout)
                self.layout, self.task = layout, task
                for o in layout.objects:
                    self.model.body_pos[self._object_body[o.name], :2] = o.position
            self._reset_state()
            return self.layout

    def _reset_state(self):
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        x, y, yaw = self.layout.robot_start
        q = self._root_qpos
        d.qpos[q:q + 3] = (x, y, self.config.robot.wheel_radius)
        d.qpos[q + 3:q + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        mujoco.mj_forward(m, d)
        self._cmd = (0.0, 0.0)
        self._cmd_time = -math.inf
        self._acc = self._raw_acceleration()
        self._collision = False
        self._collisions = 0
        self._touching: list[str] = []
        self._swept = 0.0
        self._around_done = self.task.around is None
        self._bearing = self._around_bearing()

    def set_task(self, instruction: str) -> Task:
        """Set the instruction (raises ``TaskError`` for one naming no known goal); progress restarts."""
        with self._lock:
            task = parse_task(instruction, self.layout)
            self._task_text, self.task = instruction, task
            self._swept = 0.0
            self._around_done = task.around is None
            self._bearing = self._around_bearing()
            return task

    # ------------------------------------------------------------ commands and physics

    @property
    def time(self) -> float:
        return float(self.data.time)

    def set_command(self, left: float, right: float, t: float | None = None) -> bool:
        """Command wheel speeds (rad/s) received at simulation time ``t`` (default: now).

        Values beyond +-max_wheel_speed are clamped (returns True when clamped). Non-finite values
        raise ValueError and leave the previous command in place.
        """
        left, right = float(left), float(right)
        if not (math.isfinite(left) and math.isfinite(right)):
            raise ValueError(f"wheel command [{left}, {right}] is not finite")
        lim = self.config.max_wheel_speed
        cl, cr = max(-lim, min(lim, left)), max(-lim, min(lim, right))
        with self._lock:
            self._cmd = (cl, cr)
            self._cmd_time = self.time if t is None else float(t)
        return (cl, cr) != (left, right)

    def command(self) -> tuple[float, float]:
        """The wheel speeds being applied now (zero when the command is stale)."""
        if self.time - self._cmd_time > self.config.command_timeout:
            return (0.0, 0.0)
        return self._cmd

    def step_to(self, sim_time: float, max_steps: int | None = None) -> int:
        """Advance physics in fixed steps until ``sim_time``; returns the number of steps taken."""
        dt = self.model.opt.timestep
        n = 0
        while True:
            with self._lock:
                for _ in range(50):  # release the lock now and then so a renderer can get in
                    if self.data.time + 0.5 * dt > sim_time or (max_steps is not None and n >= max_steps):
                        return n
                    self._step()
                    n += 1

    def step(self, n: int = 1) -> None:
        """Advance ``n`` physics steps."""
        with self._lock:
            for _ in range(n):
                self._step()

    def _step(self):
        d = self.data
        d.ctrl[:] = self.command()
        mujoco.mj_step(self.model, d)
        self._update_imu()
        self._update_contacts()
        self._update_around()

    # ------------------------------------------------------------ sensors

    def _raw_acceleration(self) -> np.ndarray:
        a, n = self._sensor["accel"]
        acc = self.data.sensordata[a:a + n].copy()  # specific force, site frame
        if not self.config.imu_gravity:
            # R^T (0, 0, -g) = -g * (third row of R): gravity in the site frame
            acc -= GRAVITY * self.data.site_xmat[self._imu_site][6:9]
        return acc

    def _update_imu(self):
        raw = self._raw_acceleration()
        fc = self.config.imu_filter_hz
        if fc <= 0:
            self._acc = raw
        else:
            dt = self.model.opt.timestep
            alpha = dt / (dt + 1.0 / (2 * math.pi * fc))
            self._acc = self._acc + alpha * (raw - self._acc)

    def imu(self) -> ImuReading:
        with self._lock:
            g, gn = self._sensor["gyro"]
            o, on = self._sensor["orientation"]
            return ImuReading(self._acc.copy(), self.data.sensordata[g:g + gn].copy(),
                              self.data.sensordata[o:o + on].copy())

    def joint_velocities(self) -> tuple[float, float]:
        """(left, right) wheel joint velocities in rad/s."""
        with self._lock:
            return float(self.data.qvel[self._wheel_dofs[0]]), float(self.data.qvel[self._wheel_dofs[1]])

    def joint_positions(self) -> tuple[float, float]:
        with self._lock:
            m = self.model
            return tuple(float(self.data.qpos[m.jnt_qposadr[m.joint(j).id]])
                         for j in ("left_wheel_joint", "right_wheel_joint"))

    def pose(self) -> tuple[float, float, float]:
        """(x, y, yaw) of the robot on the floor."""
        q = self._root_qpos
        x, y = self.data.qpos[q:q + 2]
        w, qx, qy, qz = self.data.qpos[q + 3:q + 7]
        yaw = math.atan2(2 * (w * qz + qx * qy), 1 - 2 * (qy * qy + qz * qz))
        return float(x), float(y), float(yaw)

    # ------------------------------------------------------------ ground truth

    def _update_contacts(self):
        ncon = self.data.ncon
        touching = set()
        if ncon:
            robot, ignore = self._robot_geom_set, self._ignore_geoms
            goal = self._object_geom.get(self.task.goal)
            for g1, g2 in self.data.contact.geom[:ncon].tolist():
                r1, r2 = g1 in robot, g2 in robot
                if r1 != r2:
                    other = g2 if r1 else g1
                    if other not in ignore and other != goal:
                        touching.add(other)
        hit = bool(touching)
        if hit and not self._collision:
            self._collisions += 1
        self._collision = hit
        if touching or self._touching:
            self._touching = sorted(self._geom_name[g] for g in touching)

    def _around_bearing(self) -> float | None:
        if self.task.around is None:
            return None
        ox, oy = self.layout.object(self.task.around).position
        x, y, _ = self.pose()
        if math.hypot(x - ox, y - oy) > self.config.around_radius:
            return None
        return math.atan2(y - oy, x - ox)

    def _update_around(self):
        if self._around_done:
            return
        b = self._around_bearing()
        if b is not None and self._bearing is not None:
            self._swept += _wrap(b - self._bearing)
            if abs(self._swept) >= self.config.around_angle:
                self._around_done = True
        self._bearing = b

    def ground_truth(self) -> dict:
        """Pose, goal, progress, collision and success as plain JSON-able values."""
        with self._lock:
            x, y, yaw = self.pose()
            goal = self.layout.object(self.task.goal)
            dist = math.hypot(goal.position[0] - x, goal.position[1] - y)
            vel = self.data.qvel[self._root_dof:self._root_dof + 6]
            v = float(vel[0] * math.cos(yaw) + vel[1] * math.sin(yaw))
            return {
                "time": round(self.time, 6),
                "seed": self.layout.seed,
                "x": x, "y": y, "yaw": yaw,
                "v": v, "omega": float(vel[5]),
                "task": self.task.instruction,
                "goal": goal.name,
                "goal_position": list(goal.position),
                "goal_distance": dist,
                "around": self.task.around,
                "around_progress": abs(self._swept),
                "around_done": self._around_done,
                "collision": self._collision,
                "touching": list(self._touching),
                "collisions": self._collisions,
                "success": bool(dist <= self.config.success_radius and self._around_done),
                "command": list(self.command()),
            }

    # ------------------------------------------------------------ camera

    def render(self) -> np.ndarray:
        """The ego camera image, uint8 [H, W, 3] RGB.

        The renderer's GL context belongs to the thread that first calls this: call ``render``
        and ``close`` from one thread.
        """
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.config.camera_height, self.config.camera_width)
        with self._lock:
            self._renderer.update_scene(self.data, camera="ego")
        return self._renderer.render()  # [H, W, 3] uint8

    def close(self) -> None:
        """Free the renderer (and its GL context). Safe to call twice."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
