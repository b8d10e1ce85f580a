"""The simulated arena: objects, a seeded random layout, task instructions and the MJCF world.

Plain Python (numpy only), no MuJoCo and no rclpy: the layout and the task parser are used by the
simulator, the scripted expert and the tests alike.

The arena is a square walled floor holding the seed datasets' six objects:

- obstacles: blue sphere, red cube, green cylinder (touching them is a collision);
- goals: blue cube, green sphere, red cylinder (the robot is asked to drive next to one).

``make_layout(seed)`` places the objects and the robot's start pose at random (reproducibly from
the seed) with a minimum clearance between everything. ``parse_task(text, layout)`` maps an
instruction such as "Find Blue cube", "Position yourself next to Green sphere" or "Move around the
red object before proceeding to the goal" to a ``Task`` (the goal object and, optionally, the
object to circle first). ``world_xml(layout, robot)`` writes the MJCF document of the world.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import numpy as np

COLOURS = {"red": (0.85, 0.12, 0.12), "green": (0.12, 0.7, 0.2), "blue": (0.15, 0.3, 0.9)}
SHAPES = ("sphere", "cube", "cylinder")
OBSTACLES = (("blue", "sphere"), ("red", "cube"), ("green", "cylinder"))
GOALS = (("blue", "cube"), ("green", "sphere"), ("red", "cylinder"))
# Footprint radius (m) of each shape; cubes use the half side, spheres sit on the floor.
SIZES = {"sphere": 0.15, "cube": 0.15, "cylinder": 0.13}
CYLINDER_HALF_HEIGHT = 0.2

TASK_EXAMPLES = (
    "Find Blue cube",
    "Position yourself next to Green sphere",
    "Move around the red object before proceeding to the goal",
)


class TaskError(ValueError):
    """An instruction the arena cannot turn into a task (names no known object, or is ambiguous)."""


@dataclass(frozen=True)
class ArenaObject:
    name: str            # "blue_sphere"
    colour: str          # "blue"
    shape: str           # "sphere" | "cube" | "cylinder"
    role: str            # "obstacle" | "goal"
    position: tuple[float, float]  # (x, y) of the centre on the floor, m
    size: float          # footprint radius (m): sphere radius, cube half side, cylinder radius

    @property
    def label(self) -> str:
        """Human name as in instructions: "Blue sphere"."""
        return f"{self.colour.capitalize()} {self.shape}"


@dataclass(frozen=True)
class Layout:
    seed: int
    half_size: float                      # the floor spans [-half_size, half_size]^2 inside the walls
    objects: tuple[ArenaObject, ...]
    robot_start: tuple[float, float, float]  # x, y, yaw
    default_goal: str                     # goal for instructions saying only "the goal"

    def object(self, name: str) -> ArenaObject:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(f"no object {name!r} in the arena (objects: {[o.name for o in self.objects]})")

    def by_role(self, role: str) -> list[ArenaObject]:
        return [o for o in self.objects if o.role == role]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["objects"] = [asdict(o) | {"label": o.label} for o in self.objects]
        return d

    @staticmethod
    def from_dict(d: dict) -> "Layout":
        objs = tuple(
            ArenaObject(o["name"], o["colour"], o["shape"], o["role"], tuple(o["position"]), float(o["size"]))
            for o in d["objects"]
        )
        return Layout(int(d["seed"]), float(d["half_size"]), objs, tuple(d["robot_start"]), str(d["default_goal"]))


@dataclass(frozen=True)
class ArenaConfig:
    """How layouts are drawn. Distances in metres."""

    half_size: float = 2.5         # floor is 5 m x 5 m inside the walls
    wall_margin: float = 0.8       # object centres keep at least this far from the walls (room to circle)
    min_separation: float = 1.1    # between object centres (room to drive around any object)
    robot_clearance: float = 0.8   # between the robot start and any object centre

    def __post_init__(self):
        for f in ("half_size", "wall_margin", "min_separation", "robot_clearance"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"ArenaConfig.{f}: {v!r} must be a positive number of metres")
        if self.wall_margin >= self.half_size:
            raise ValueError(
                f"ArenaConfig.wall_margin: {self.wall_margin} must be smaller than half_size {self.half_size}"
            )


def make_layout(seed: int, config: ArenaConfig | None = None) -> Layout:
    """A random layout drawn reproducibly from ``seed`` (same seed -> same layout)."""
    cfg = config or ArenaConfig()
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"layout seed: {seed!r} must be a non-negative integer")
    rng = np.random.default_rng(int(seed))
    lim = cfg.half_size - cfg.wall_margin
    specs = [(c, s, "obstacle") for c, s in OBSTACLES] + [(c, s, "goal") for c, s in GOALS]
    for _attempt in range(200):
        points: list[np.ndarray] = []
        for _ in specs:
            for _try in range(500):
                p = rng.uniform(-lim, lim, size=2)
                if all(np.linalg.norm(p - q) >= cfg.min_separation for q in points):
                    points.append(p)
                    break
            else:
                break
        if len(points) < len(specs):
            continue
        for _try in range(500):
            r = rng.uniform(-lim, lim, size=2)
            if all(np.linalg.norm(r - q) >= cfg.robot_clearance for q in points):
                break
        else:
            continue
        objects = tuple(
            ArenaObject(f"{c}_{s}", c, s, role, (round(float(p[0]), 4), round(float(p[1]), 4)), SIZES[s])
            for (c, s, role), p in zip(specs, points)
        )
        yaw = float(rng.uniform(-math.pi, math.pi))
        default_goal = "_".join(GOALS[int(rng.integers(len(GOALS)))])
        return Layout(int(seed), cfg.half_size, objects, (round(float(r[0]), 4), round(float(r[1]), 4), round(yaw, 4)),
                      default_goal)
    raise ValueError(
        f"cannot place {len(specs)} objects {cfg.min_separation} m apart in a {2 * lim:.2f} m square; "
        "lower ArenaConfig.min_separation or raise half_size"
    )


# ---------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    instruction: str
    goal: str                 # object name of the goal, e.g. "blue_cube"
    around: str | None = None  # object to circle before the goal, e.g. "red_cube"

    def to_dict(self) -> dict:
        return {"instruction": self.instruction, "goal": self.goal, "around": self.around}


_COLOUR_RE = "|".join(COLOURS)
_SHAPE_RE = "|".join(SHAPES)
_NAMED_RE = re.compile(rf"\b({_COLOUR_RE})\s+({_SHAPE_RE})s?\b")
_AROUND_RE = re.compile(rf"\baround\s+(?:the\s+)?({_COLOUR_RE})\s+({_SHAPE_RE}|object|one|thing)\b")
_COLOUR_OBJ_RE = re.compile(rf"\b({_COLOUR_RE})\s+(?:object|one|thing|goal)\b")
_THE_GOAL_RE = re.compile(r"\bthe\s+goal\b")


def _by_colour(layout: Layout, colour: str, role: str) -> ArenaObject:
    return next(o for o in layout.objects if o.colour == colour and o.role == role)


def parse_task(instruction: str, layout: Layout) -> Task:
    """Map an instruction to its goal object (and the object to go around first, if any).

    Recognised: a full object name ("Blue cube"), "the <colour> object" (for going around: the
    obstacle of that colour; as a destination: the goal of that colour) and "the goal" (the
    layout's ``default_goal``). Case does not matter. Raises ``TaskError`` for an instruction
    naming no known object or a destination that is an obstacle.
    """
    if not isinstance(instruction, str) or not instruction.strip():
        raise TaskError(f"task instruction {instruction!r} is empty; examples: {list(TASK_EXAMPLES)}")
    text = instruction.strip().lower()
    around = None
    rest = text
    m = _AROUND_RE.search(text)
    if m:
        colour, what = m.group(1), m.group(2)
        around = f"{colour}_{what}" if what in SHAPES else _by_colour(layout, colour, "obstacle").name
        rest = text[: m.start()] + " " + text[m.end():]
    names = {f"{c}_{s}" for c, s in _NAMED_RE.findall(rest)}
    names |= {_by_colour(layout, c, "goal").name for c in _COLOUR_OBJ_RE.findall(rest)}
    if len(names) > 1:
        raise TaskError(f"task {instruction!r} names several destinations {sorted(names)}; name one goal")
    if names:
        goal = names.pop()
    elif _THE_GOAL_RE.search(rest):
        goal = layout.default_goal
    else:
        goals = ", ".join(o.label for o in layout.by_role("goal"))
        raise TaskError(
            f"task {instruction!r} names no known goal (goals: {goals}; or say 'the goal'); "
            f"examples: {list(TASK_EXAMPLES)}"
        )
    if layout.object(goal).role != "goal":
        raise TaskError(
            f"task {instruction!r}: {layout.object(goal).label} is an obstacle, not a goal "
            f"(goals: {', '.join(o.label for o in layout.by_role('goal'))})"
        )
    if around is not None and around == goal:
        raise TaskError(f"task {instruction!r}: cannot go around the goal itself ({goal})")
    return Task(instruction.strip(), goal, around)


def instructions(layout: Layout) -> list[str]:
    """Every instruction template the arena understands, filled in for this layout."""
    out = []
    for g in layout.by_role("goal"):
        out += [f"Find {g.label}", f"Position yourself next to {g.label}"]
    for c, _s in OBSTACLES:
        out.append(f"Move around the {c} object before proceeding to the goal")
    return out


# ---------------------------------------------------------------- MJCF


@dataclass(frozen=True)
class RobotGeometry:
    """The differential-drive robot's dimensions (m, kg)."""

    wheel_radius: float = 0.07
    track: float = 0.30            # distance between the wheel centres
    body_radius: float = 0.12
    body_half_height: float = 0.04
    body_mass: float = 3.0
    wheel_mass: float = 0.3
    caster_radius: float = 0.025
    camera_fovy: float = 70.0      # degrees

    def __post_init__(self):
        for f in ("wheel_radius", "track", "body_radius", "body_half_height", "body_mass", "wheel_mass",
                  "caster_radius", "camera_fovy"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"RobotGeometry.{f}: {v!r} must be a positive number")

    @property
    def footprint(self) -> float:
        """Radius of the circle that contains the robot seen from above."""
        return math.hypot(self.track / 2 + 0.02, self.wheel_radius) + 0.01


def _rgba(colour: str) -> str:
    r, g, b = COLOURS[colour]
    return f"{r} {g} {b} 1"


def _object_xml(o: ArenaObject) -> str:
    x, y = o.position
    s = o.size
    if o.shape == "sphere":
        geom, z = f'type="sphere" size="{s}"', s
    elif o.shape == "cube":
        geom, z = f'type="box" size="{s} {s} {s}"', s
    else:
        geom, z = f'type="cylinder" size="{s} {CYLINDER_HALF_HEIGHT}"', CYLINDER_HALF_HEIGHT
    return (f'    <body name="{o.name}" pos="{x} {y} {z}">\n'
            f'      <geom name="{o.name}" {geom} rgba="{_rgba(o.colour)}" class="object"/>\n'
            f'    </body>\n')


def _wheel_xml(side: str, y: float, radius: float, mass: float) -> str:
    """One drive wheel: collides as a sphere (one smooth rolling contact); a thin cylinder shows it."""
    return f"""      <body name="{side}_wheel" pos="0 {y} 0">
        <joint name="{side}_wheel_joint" type="hinge" axis="0 1 0" damping="0.01" armature="0.005"/>
        <geom name="{side}_wheel" type="sphere" size="{radius}" mass="{mass}" friction="1.2 0.01 0.001"
              rgba="0.08 0.08 0.08 1" contype="2" conaffinity="1" group="3"/>
        <geom name="{side}_wheel_visual" type="cylinder" size="{radius} 0.015" euler="1.5707963 0 0" mass="0"
              rgba="0.08 0.08 0.08 1" contype="0" conaffinity="0"/>
      </body>
"""


def world_xml(layout: Layout, robot: RobotGeometry | None = None, timestep: float = 0.002) -> str:
    """The MJCF document of the arena with the robot at its start pose."""
    rb = robot or RobotGeometry()
    h = layout.half_size
    wr, hw = rb.wheel_radius, rb.track / 2
    z0 = wr  # axle height: the wheels touch the floor
    # casters touch the floor: their centre sits caster_radius above it
    cz = rb.caster_radius - z0
    # The rear caster carries the load with the wheels (a determinate tripod, the chassis mass sits
    # behind the axle); the front caster hangs 5 mm above the floor and only catches forward pitch.
    cx = rb.body_radius - rb.caster_radius - 0.01
    x0, y0, yaw = layout.robot_start
    wall = 0.05
    walls = "".join(
        f'    <geom name="wall_{n}" type="box" pos="{px} {py} 0.15" size="{sx} {sy} 0.15" class="wall"/>\n'
        for n, px, py, sx, sy in (
            ("north", 0, h + wall, h + 2 * wall, wall), ("south", 0, -h - wall, h + 2 * wall, wall),
            ("east", h + wall, 0, wall, h + 2 * wall), ("west", -h - wall, 0, wall, h + 2 * wall),
        )
    )
    objects = "".join(_object_xml(o) for o in layout.objects)
    wheels = "".join(_wheel_xml(side, y, wr, rb.wheel_mass) for side, y in (("left", hw), ("right", -hw)))
    return f"""<mujoco model="gr00t_rlhf_arena">
  <option timestep="{timestep}" integrator="implicitfast"/>
  <visual>
    <global offwidth="1280" offheight="960"/>
    <!-- no shadows, no multisampling: 5-10x faster software (OSMesa) rendering -->
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5"/>
  </visual>
  <asset>
    <texture name="floor" type="2d" builtin="checker" rgb1="0.55 0.55 0.5" rgb2="0.42 0.42 0.4" width="256" height="256"/>
    <material name="floor" texture="floor" texrepeat="9 9"/>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.75 0.8 0.9" rgb2="0.95 0.95 0.95" width="64" height="64"/>
  </asset>
  <default>
    <default class="object"><geom contype="1" conaffinity="1" friction="0.8"/></default>
    <default class="wall"><geom contype="1" conaffinity="1" rgba="0.85 0.82 0.75 1"/></default>
  </default>
  <worldbody>
    <light name="sun" directional="true" pos="0 0 4" dir="0.3 0.2 -1" diffuse="0.6 0.6 0.6"/>
    <geom name="floor" type="plane" size="{h + 1} {h + 1} 0.1" material="floor" contype="1" conaffinity="1"/>
{walls}{objects}    <body name="robot" pos="{x0} {y0} {z0}" euler="0 0 {yaw}">
      <freejoint name="robot_root"/>
      <geom name="chassis" type="cylinder" size="{rb.body_radius} {rb.body_half_height}" pos="-0.03 0 {rb.body_half_height - 0.01}"
            mass="{rb.body_mass}" rgba="0.25 0.25 0.28 1" contype="2" conaffinity="1"/>
      <geom name="front_caster" type="sphere" size="{rb.caster_radius}" pos="{cx} 0 {cz + 0.005}" mass="0.05"
            condim="1" priority="1" friction="0 0 0" rgba="0.1 0.1 0.1 1" contype="2" conaffinity="1"/>
      <geom name="rear_caster" type="sphere" size="{rb.caster_radius}" pos="{-cx} 0 {cz}" mass="0.05"
            condim="1" priority="1" friction="0 0 0" rgba="0.1 0.1 0.1 1" contype="2" conaffinity="1"/>
      <site name="imu" pos="0 0 0.02"/>
      <camera name="ego" pos="{rb.body_radius - 0.01} 0 {rb.body_half_height * 2 + 0.02}" xyaxes="0 -1 0 0.1 0 1" fovy="{rb.camera_fovy}"/>
{wheels}    </body>
  </worldbody>
  <actuator>
    <velocity name="left_wheel" joint="left_wheel_joint" kv="1.0" forcerange="-2 2"/>
    <velocity name="right_wheel" joint="right_wheel_joint" kv="1.0" forcerange="-2 2"/>
  </actuator>
  <sensor>
    <accelerometer name="accel" site="imu"/>
    <gyro name="gyro" site="imu"/>
    <framequat name="orientation" objtype="site" objname="imu"/>
  </sensor>
</mujoco>
"""
