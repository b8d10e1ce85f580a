"""The scripted expert: ground truth in, wheel speeds out. Plain Python, no ROS.

It drives a differential-drive robot to the instructed goal around the arena's objects:

1. **Where to go.** For a "Move around X" task it first follows a circle of ``orbit_radius``
   around X (a guidance vector field: the circle's tangent plus a pull towards the circle) until
   the simulator's ground truth says the object was circled (``around_done``); then it heads for
   the goal's centre.
2. **Around obstacles** (tangent steering). If the straight line to the target passes through an
   object's keep-out circle (object footprint + robot footprint + ``margin``), it steers towards the
   tangent of that circle on the side needing the smaller turn; the side sticks while that
   object blocks, so the robot does not dither when the target is straight behind it. The tangent
   heading is re-checked against the other objects (a few rounds), and walls push it back inside.
3. **Searching like a camera would** (``search_half_angle`` > 0, off by default). The expert knows
   where the goal is; a policy that sees only the ego camera does not, and cannot imitate "turn the
   short way towards a goal behind you". With this set, while the goal's bearing is more than
   ``search_half_angle`` off the heading (outside the camera's view), the expert turns in place to
   the left at ``search_turn_rate`` instead, and drives to the goal once it is in view: every choice it
   makes can be read from the camera. It searches only until it first sees the goal (so steering
   around an obstacle, which may take the goal out of view, does not restart the search). The RLHF experiment's demonstrations use it.
4. **Unicycle to wheels.** Heading error -> turn rate ``omega = heading_gain * error``; forward
   speed ``v = cruise_speed * cos(error)`` (zero when facing away by more than 70 degrees, slower
   near the goal). Wheel speeds ``(v -+ omega * track / 2) / wheel_radius``, scaled together to
   stay within ``max_wheel_speed``. It stops (0, 0) once within ``stop_distance`` of the goal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from gr00t_rlhf_ros.sim.arena import Layout


@dataclass(frozen=True)
class ExpertConfig:
    """Tuning of the scripted expert (metres, seconds, radians)."""

    wheel_radius: float = 0.07
    track: float = 0.30
    max_wheel_speed: float = 5.0      # rad/s
    cruise_speed: float = 0.3         # m/s
    heading_gain: float = 3.0         # rad/s of turn per rad of heading error
    max_turn_rate: float = 2.5        # rad/s
    stop_distance: float = 0.42       # to the goal centre (the simulator's success radius is 0.5)
    slow_distance: float = 0.5        # start slowing this far before stop_distance
    robot_radius: float = 0.19        # robot footprint
    margin: float = 0.12              # extra clearance kept from objects
    orbit_radius: float = 0.6         # circle "around" objects at this centre distance
    wall_clearance: float = 0.35      # steer away from walls closer than this (robot centre)
    search_half_angle: float = 0.0    # rad; > 0: search by turning left while the goal is further off-heading
    search_turn_rate: float = 1.2     # rad/s of that search turn

    def __post_init__(self):
        for f in self.__dataclass_fields__:
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    and (v > 0 or (f == "search_half_angle" and v == 0))):
                raise ValueError(f"ExpertConfig.{f}: {v!r} must be a positive number"
                                 + (" (or 0: off)" if f == "search_half_angle" else ""))
        if self.search_half_angle >= math.pi:
            raise ValueError(f"ExpertConfig.search_half_angle: {self.search_half_angle!r} must be < pi rad")
        if self.cruise_speed > self.max_wheel_speed * self.wheel_radius:
            raise ValueError(
                f"ExpertConfig.cruise_speed: {self.cruise_speed} m/s exceeds what the wheels allow "
                f"({self.max_wheel_speed} rad/s * {self.wheel_radius} m)"
            )


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class ScriptedExpert:
    """Stateful (obstacle sides, orbit direction) expert for one layout; ``act(gt)`` -> (left, right)."""

    def __init__(self, layout: Layout, config: ExpertConfig | None = None):
        self.config = config or ExpertConfig()
        self.layout = layout
        self._side: dict[str, float] = {}
        self._orbit_sign: float | None = None
        self._found = False

    def reset(self, layout: Layout | None = None) -> None:
        if layout is not None:
            self.layout = layout
        self._side.clear()
        self._orbit_sign = None
        self._found = False

    # ------------------------------------------------------------ steering

    def act(self, gt: dict) -> tuple[float, float]:
        """Wheel speeds (rad/s) for a ground-truth dict of ``SimRobot.ground_truth()``."""
        cfg = self.config
        x, y, yaw = gt["x"], gt["y"], gt["yaw"]
        gx, gy = gt["goal_position"]
        orbiting = gt.get("around") is not None and not gt.get("around_done", True)
        if not orbiting and (gt.get("success") or math.hypot(gx - x, gy - y) <= cfg.stop_distance):
            return 0.0, 0.0
        if orbiting:
            heading, target_dist = self._orbit_heading(x, y, yaw, gt["around"]), math.inf
            ignore = {gt["around"]}
        else:
            heading, target_dist = math.atan2(gy - y, gx - x), math.hypot(gx - x, gy - y)
            ignore = {gt["goal"]}
            if cfg.search_half_angle > 0 and not self._found:
                if abs(_wrap(heading - yaw)) > cfg.search_half_angle:
                    return self._wheels(0.0, min(cfg.search_turn_rate, cfg.max_turn_rate))   # not in view yet
                self._found = True
        heading = self._avoid(x, y, heading, target_dist, ignore)
        heading = self._walls(x, y, heading)
        err = _wrap(heading - yaw)
        omega = max(-cfg.max_turn_rate, min(cfg.max_turn_rate, cfg.heading_gain * err))
        v = cfg.cruise_speed * max(0.0, math.cos(err)) if abs(err) < math.radians(70) else 0.0
        if not orbiting:
            v *= min(1.0, max(0.3, (target_dist - cfg.stop_distance) / cfg.slow_distance))
        return self._wheels(v, omega)

    def _wheels(self, v: float, omega: float) -> tuple[float, float]:
        cfg = self.config
        left = (v - omega * cfg.track / 2) / cfg.wheel_radius
        right = (v + omega * cfg.track / 2) / cfg.wheel_radius
        scale = max(1.0, abs(left) / cfg.max_wheel_speed, abs(right) / cfg.max_wheel_speed)
        return left / scale, right / scale

    def _orbit_heading(self, x: float, y: float, yaw: float, name: str) -> float:
        """Guidance field of the circle of ``orbit_radius`` around object ``name``."""
        ox, oy = self.layout.object(name).position
        d = max(math.hypot(x - ox, y - oy), 1e-6)
        ux, uy = (x - ox) / d, (y - oy) / d                       # outward radial unit vector
        if self._orbit_sign is None:  # circle in the direction needing the smaller turn
            self._orbit_sign = 1.0 if (-uy * math.cos(yaw) + ux * math.sin(yaw)) >= 0 else -1.0
        s = self._orbit_sign
        tx, ty = -uy * s, ux * s                                  # tangent, counter-clockwise if s > 0
        pull = max(-2.0, min(2.0, 2.5 * (d - self.config.orbit_radius) / self.config.orbit_radius))
        return math.atan2(ty - pull * uy, tx - pull * ux)

    def _keep_out(self, name: str) -> float:
        return self.layout.object(name).size + self.config.robot_radius + self.config.margin

    def _avoid(self, x: float, y: float, heading: float, reach: float, ignore: set[str]) -> float:
        """Bend ``heading`` around every object whose keep-out circle the path would cross."""
        blocked_now = set()
        for _round in range(4):
            hx, hy = math.cos(heading), math.sin(heading)
            hit, hit_along = None, math.inf
            for o in self.layout.objects:
                if o.name in ignore:
                    continue
                rx, ry = o.position[0] - x, o.position[1] - y
                along = rx * hx + ry * hy                       # distance along the path
                across = abs(-rx * hy + ry * hx)                # distance from the path
                rho = self._keep_out(o.name)
                dist = math.hypot(rx, ry)
                if dist < rho:  # already inside the keep-out circle: head away from its centre side
                    if along > 0 and along < hit_along:
                        hit, hit_along = o, along
                    continue
                if 0 < along < reach + rho and across < rho and along < hit_along:
                    hit, hit_along = o, along
            if hit is None:
                break
            blocked_now.add(hit.name)
            rx, ry = hit.position[0] - x, hit.position[1] - y
            dist = math.hypot(rx, ry)
            rho = self._keep_out(hit.name)
            bearing = math.atan2(ry, rx)
            offset = math.asin(min(1.0, rho / dist)) if dist > rho else math.pi / 2 + 0.3 * (rho - dist) / rho
            side = self._side.get(hit.name)
            if side is None:
                side = 1.0 if _wrap(heading - bearing) >= 0 else -1.0
                self._side[hit.name] = side
            heading = bearing + side * offset
        for name in list(self._side):
            if name not in blocked_now:
                del self._side[name]
        return heading

    def _walls(self, x: float, y: float, heading: float) -> float:
        """Turn the heading back inside when the robot is near a wall and heading at it."""
        h, c = self.layout.half_size, self.config.wall_clearance
        hx, hy = math.cos(heading), math.sin(heading)
        for dist, nx, ny in ((h - x, -1, 0), (x + h, 1, 0), (h - y, 0, -1), (y + h, 0, 1)):
            if dist < c and hx * nx + hy * ny < 0:  # heading into this wall
                push = (c - dist) / c
                # drop the component into the wall, more so the closer the wall
                into = hx * nx + hy * ny
                hx, hy = hx - (1 + push) * into * nx, hy - (1 + push) * into * ny
        return math.atan2(hy, hx)
