"""Imperfect scripted drivers for rollouts: demonstrations that are not the expert's best.

Stage 2 needs "bad" stretches to learn from and stage 3 needs a policy that is clearly below the
expert, so the experiment makes imperfect demonstrations on purpose. Each driver here is the
scripted expert (:class:`~gr00t_rlhf_ros.sim.rollout.ExpertDriver`) spoiled in one seeded way; all
are deterministic per (driver ``seed``, layout seed) and plug into :func:`~gr00t_rlhf_ros.sim.rollout.rollout`
like the expert (``make(robot)`` -> an object with ``act(gt) -> (left, right)``):

- :class:`WrongGoalDriver` heads for another object than the instructed goal (and never stops there);
- :class:`PerturbedDriver` replaces the expert's command by bursts of random wheel speeds;
- :class:`NoisyExpertDriver` adds Gaussian noise to every command (a shaky operator).
"""
from __future__ import annotations

import math

import numpy as np

from gr00t_rlhf_ros.sim.rollout import ExpertDriver


def _check(name: str, value, low: float = 0.0, integer: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float)) and \
        math.isfinite(value) and value >= low
    if not ok:
        raise ValueError(f"{name}: {value!r} must be {'an integer' if integer else 'a number'} >= {low:g}")


class _Spoiled(ExpertDriver):
    kind = "expert"

    def __init__(self, seed: int = 0, **tuning):
        _check(f"{type(self).__name__}.seed", seed, integer=True)
        super().__init__(**tuning)
        self.seed = seed

    def rng(self, robot) -> np.random.Generator:
        return np.random.default_rng([self.seed, robot.layout.seed])


class WrongGoalDriver(_Spoiled):
    """The expert driving to a decoy object (drawn per layout) instead of the instructed goal."""

    name = "wrong_goal"

    def make(self, robot):
        expert = super().make(robot)
        others = [o for o in robot.layout.objects if o.name != robot.task.goal]
        decoy = others[int(self.rng(robot).integers(len(others)))]

        class Steer:
            def act(self, gt: dict) -> tuple[float, float]:
                return expert.act(gt | {"goal": decoy.name, "goal_position": list(decoy.position), "success": False,
                                        "around": None})
        return Steer()


class PerturbedDriver(_Spoiled):
    """The expert, but every ``gap`` s (uniform) a burst of ``burst`` s (uniform) of random wheel speeds."""

    name = "perturbed"

    def __init__(self, seed: int = 0, burst: tuple[float, float] = (0.8, 2.0), gap: tuple[float, float] = (2.5, 5.0),
                 **tuning):
        super().__init__(seed, **tuning)
        for name, (lo, hi) in (("burst", burst), ("gap", gap)):
            _check(f"PerturbedDriver.{name}[0]", lo, 0.01)
            _check(f"PerturbedDriver.{name}[1]", hi, lo)
        self.burst, self.gap = tuple(burst), tuple(gap)

    def make(self, robot):
        expert, rng, lim = super().make(robot), self.rng(robot), robot.config.max_wheel_speed
        burst, gap = self.burst, self.gap
        state = {"until": -1.0, "next": float(rng.uniform(1.0, 3.0)), "cmd": (0.0, 0.0)}

        class Perturb:
            def act(self, gt: dict) -> tuple[float, float]:
                t = float(gt["time"])
                if t >= state["next"]:
                    state["cmd"] = tuple(float(v) for v in rng.uniform(-lim, lim, 2))
                    state["until"] = t + float(rng.uniform(*burst))
                    state["next"] = t + float(rng.uniform(*gap))
                return state["cmd"] if t < state["until"] else expert.act(gt)
        return Perturb()


class NoisyExpertDriver(_Spoiled):
    """The expert's command plus Gaussian noise of ``std`` rad/s on each wheel (clamped by the robot).

    ``hold``: each noise draw is kept for this many seconds (0: a new draw every command), so the robot
    really drifts off the expert's path. ``dart``: the rollout records the expert's own command while the
    robot executes the noisy one (DART, Laskey et al. 2017): demonstrations of how to recover from being
    off the path, labelled with the expert's correction rather than the noise.
    """

    name = "noisy_expert"

    def __init__(self, seed: int = 0, std: float = 1.0, hold: float = 0.0, dart: bool = False, **tuning):
        super().__init__(seed, **tuning)
        _check("NoisyExpertDriver.std", std)
        _check("NoisyExpertDriver.hold", hold)
        self.std, self.hold, self.dart = float(std), float(hold), bool(dart)

    def make(self, robot):
        expert, rng, std, hold, dart = super().make(robot), self.rng(robot), self.std, self.hold, self.dart

        class Noisy:
            def __init__(self):
                self.noise, self.until, self.clean = (0.0, 0.0), -1.0, None

            def act(self, gt: dict) -> tuple[float, float]:
                left, right = expert.act(gt)
                t = float(gt["time"])
                if t >= self.until:
                    self.noise = tuple(float(v) for v in rng.normal(0.0, std, 2))
                    self.until = t + hold if hold > 0 else t
                self.clean = (left, right)
                return left + self.noise[0], right + self.noise[1]

            def recorded(self) -> tuple[float, float] | None:
                """The command the rollout records for the last ``act`` (None: the executed one)."""
                return self.clean if dart else None
        return Noisy()
