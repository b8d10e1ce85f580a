"""The plain logic of policy_node's control loop: chunks in, one safe wheel command per tick out.

No rclpy, no model: the node feeds a :class:`Controller` the chunks its inference worker produces
(:meth:`Controller.on_chunk`), the worker's errors, the e-stop and the inputs' ages, and calls
:meth:`Controller.tick` at the control rate. Every time argument is a ``time.monotonic()`` value.

**Chunks are trajectories in time.** A chunk of T actions at the dataset rate (``action_rate``,
10 Hz: 16 actions = 1.6 s) computed from an observation taken at ``t0`` says what to command at
``t0 + i / action_rate``. It is indexed by the time elapsed since ``t0`` when it arrives, so a
model that took 300 ms starts 3 actions in (latency compensation); a chunk whose end is already
past when it arrives is dropped. Between two actions the command is interpolated linearly
(``interpolation="linear"``, the default: the recorded actions are samples of a command that
changed continuously, and a 20-50 Hz loop that steps every 100 ms jerks the wheels) or held
(``"hold"``, the dataset's own zero-order view). After the last action the chunk has run out.

**Replanning.** A new chunk is due once ``replan_every`` actions of the newest one have elapsed
(:meth:`Controller.replan_due`, less half an action for camera-frame jitter). **Blending:** when it arrives, the command cross-fades linearly
from the old plan to the new one over ``blend_steps`` actions (both evaluated at the same wall
time), so the command is continuous at every switch — no jump back to where the new chunk
starts. A chunk arriving during a cross-fade fades out the cross-fade itself. Cross-fading costs at
most ``blend_steps / action_rate`` seconds of partial lag, and nothing once it is over (an
exponential temporal ensemble, as in ACT, lags for as long as chunks overlap).

**Safety** (:meth:`tick`, in priority order): e-stop (latched until :meth:`reset_estop`, which is
refused while the e-stop is still true) → zero; any required input older than ``input_timeout``
(or never received) → zero and the plan is dropped (the robot re-plans from fresh inputs);
a model fault (non-finite or malformed chunk, an inference error or timeout) → zero until a good
chunk arrives; no plan or the plan ran out → zero ("stale"). Otherwise "driving", the command
clamped to ``±max_wheel_speed``. :meth:`Controller.tick_checked` (what policy_node calls) looks at
the inputs' ages once more right before a driving command is returned to be published: the tick
may have waited for the lock or the CPU, and the inputs may have gone stale meanwhile.

Thread safety: every public method takes the controller's lock; the worker thread calls
:meth:`on_chunk` / :meth:`on_error` / :meth:`replan_due`, the node's executor :meth:`tick` and the
e-stop methods.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

DRIVING, STALE, ESTOP, FAULT = "driving", "stale", "estop", "fault"
STATES = (DRIVING, STALE, ESTOP, FAULT)
INTERPOLATIONS = ("linear", "hold")
_EPS = 1e-9  # float slack in time -> action index (0.3 s / 0.1 s is 2.9999999999999996)


@dataclass(frozen=True)
class ControlConfig:
    control_rate: float = 20.0         # Hz: wheel commands published
    action_rate: float = 10.0          # Hz: the chunk's actions (the dataset fps)
    replan_every: int = 8              # actions of the newest chunk before the next is due
    blend_steps: int = 4               # actions over which the old plan fades into the new (0: switch at once)
    interpolation: str = "linear"      # "linear" or "hold" between actions
    input_timeout: float = 0.5         # s: an older required input stops the robot
    max_wheel_speed: float = 5.0       # rad/s: commands clamped to +-this

    def __post_init__(self):
        for name in ("control_rate", "action_rate", "input_timeout", "max_wheel_speed"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name}: {v!r} must be a positive number")
        if not (isinstance(self.replan_every, int) and not isinstance(self.replan_every, bool) and self.replan_every >= 1):
            raise ValueError(f"replan_every: {self.replan_every!r} must be an integer >= 1 (actions)")
        if not (isinstance(self.blend_steps, int) and not isinstance(self.blend_steps, bool) and self.blend_steps >= 0):
            raise ValueError(f"blend_steps: {self.blend_steps!r} must be an integer >= 0 (actions)")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation: {self.interpolation!r} is not one of {INTERPOLATIONS}")

    @property
    def dt(self) -> float:
        """Seconds between two actions of a chunk."""
        return 1.0 / self.action_rate

    def check_horizon(self, horizon: int) -> None:
        """ValueError unless a chunk of ``horizon`` actions leaves room to replan every ``replan_every``."""
        if self.replan_every > horizon:
            raise ValueError(f"replan_every: {self.replan_every} is more than the model's {horizon} actions per chunk")


class Trajectory:
    """A chunk [T, A] in time: action i is due at ``t0 + i * dt``; valid until ``t0 + T * dt``."""

    def __init__(self, actions: np.ndarray, t0: float, dt: float, interpolation: str = "linear"):
        self.actions = np.asarray(actions, dtype=np.float64)  # [T, A]
        self.t0, self.dt, self.interpolation = float(t0), float(dt), interpolation
        self.end = self.t0 + len(self.actions) * self.dt

    def index(self, t: float) -> int:
        """The action in force at ``t`` (0 before ``t0``)."""
        return max(0, int(math.floor((t - self.t0) / self.dt + _EPS)))

    def at(self, t: float) -> np.ndarray | None:
        """The command at time ``t``, or None once the chunk has run out."""
        if t >= self.end:
            return None
        s = max(0.0, (t - self.t0) / self.dt)
        i = int(s + _EPS)
        if self.interpolation == "hold" or i + 1 >= len(self.actions):
            return self.actions[i]
        f = max(0.0, s - i)
        return (1.0 - f) * self.actions[i] + f * self.actions[i + 1]


class Blend:
    """The cross-fade from ``old`` to ``new`` between ``start`` and ``start + duration``."""

    def __init__(self, old, new: Trajectory, start: float, duration: float):
        self.old, self.new, self.start, self.duration = old, new, start, duration
        self.end = new.end

    def done(self, t: float) -> bool:
        return t >= self.start + self.duration

    def at(self, t: float) -> np.ndarray | None:
        new = self.new.at(t)
        if new is None or self.done(t):
            return new
        old = self.old.at(t)
        if old is None:  # the old plan ran out first: the new one alone
            return new
        w = (t - self.start) / self.duration
        return (1.0 - w) * old + w * new


@dataclass
class Command:
    """What one control tick decided."""

    wheels: tuple[float, float]        # rad/s, clamped; (0, 0) unless driving
    state: str                         # driving / stale / estop / fault
    reason: str                        # why not driving ("" when driving)
    chunk_index: int | None            # action index of the newest chunk in force
    clamped: bool = False
    first_of_chunk: Any = None         # the newest chunk's ``meta`` on the first command it shaped, else None


@dataclass
class ControlCounts:
    chunks: int = 0                    # accepted
    late: int = 0                      # arrived after their end: dropped
    faults: int = 0                    # non-finite / malformed chunks, inference errors
    clamped: int = 0                   # ticks whose command was clamped
    ticks: dict = field(default_factory=lambda: {s: 0 for s in STATES})


class Controller:
    """Chunk scheduling, blending, clamping and the safety state machine (see the module docstring)."""

    def __init__(self, config: ControlConfig, action_dim: int = 2):
        self.cfg = config
        self.action_dim = action_dim
        self.counts = ControlCounts()
        self._lock = threading.Lock()
        self._plan: Trajectory | Blend | None = None
        self._newest: Trajectory | None = None     # the newest accepted chunk (replan timing, chunk index)
        self._newest_meta: Any = None
        self._first_pending = False
        self._fault: str | None = None
        self._estop_latched = False
        self._estop_active = False
        self._not_before = -math.inf        # chunks observed before this (an e-stop release) are dropped
        self._state, self._reason = STALE, "waiting for the first chunk"

    # ---- from the worker thread ----------------------------------------------------------------
    def replan_due(self, now: float) -> bool:
        """True when a new chunk is wanted: no plan, a fault, or ``replan_every`` actions have elapsed.

        Half an action of slack: the worker replans on camera frames, and a frame arriving a few ms
        before the exact due time (frame jitter) should not wait a whole frame period for the next one.
        """
        with self._lock:
            if self._estop_latched:
                return False
            n = self._newest
            return n is None or self._plan is None or now >= n.t0 + (self.cfg.replan_every - 0.5) * self.cfg.dt

    def on_chunk(self, actions, t0: float, now: float, meta: Any = None) -> str | None:
        """A chunk computed from an observation taken at ``t0`` arrived at ``now``.

        Returns None when accepted or dropped as late, else the error (non-finite, wrong shape):
        the plan is dropped and the controller is in fault until a good chunk arrives.
        """
        a = np.asarray(actions, dtype=np.float64)
        with self._lock:
            if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != self.action_dim:
                return self._set_fault(f"policy output has shape {list(a.shape)}, expected [T, {self.action_dim}]")
            if not np.isfinite(a).all():
                bad = int((~np.isfinite(a)).sum())
                return self._set_fault(f"policy output is not finite ({bad} of {a.size} values NaN or inf)")
            if self._estop_latched or t0 < self._not_before:
                return None  # observed before the e-stop was released: never executed
            traj = Trajectory(a, t0, self.cfg.dt, self.cfg.interpolation)
            if traj.at(now) is None:
                self.counts.late += 1
                return None
            self.counts.chunks += 1
            self._fault = None
            old = self._plan
            if old is not None and self.cfg.blend_steps > 0 and old.at(now) is not None:
                self._plan = Blend(old, traj, now, self.cfg.blend_steps * self.cfg.dt)
            else:
                self._plan = traj
            self._newest, self._newest_meta, self._first_pending = traj, meta, True
            return None

    def on_error(self, message: str) -> str:
        """The model failed (inference error, timeout, crash): zero until a good chunk arrives."""
        with self._lock:
            return self._set_fault(message)

    def _set_fault(self, message: str) -> str:
        self.counts.faults += 1
        self._fault = message
        self._drop_plan()
        return message

    def _drop_plan(self) -> None:
        self._plan, self._newest, self._newest_meta, self._first_pending = None, None, None, False

    # ---- e-stop ----------------------------------------------------------------------------------
    def estop(self, active: bool) -> bool:
        """The e-stop topic's value; True latches. Returns True if this latched it (it was not latched)."""
        with self._lock:
            self._estop_active = bool(active)
            if active and not self._estop_latched:
                self._estop_latched = True
                self._drop_plan()
                return True
            return False

    def reset_estop(self, now: float) -> tuple[bool, str]:
        """Release a latched e-stop; refused while the e-stop is still true. Only chunks observed from
        ``now`` on are executed (none computed from an observation before the release)."""
        with self._lock:
            if self._estop_active:
                return False, "e-stop is still true: release it (publish false) before resetting"
            if not self._estop_latched:
                return True, "e-stop was not latched"
            self._estop_latched = False
            self._not_before = now
            return True, "e-stop released: driving resumes with the next chunk"

    def chunk_index(self, now: float) -> int | None:
        """The action of the newest chunk in force at ``now`` (None without a chunk)."""
        with self._lock:
            return self._newest.index(now) if self._newest is not None else None

    @property
    def estop_latched(self) -> bool:
        return self._estop_latched

    # ---- the control tick ------------------------------------------------------------------------
    def tick(self, now: float, stale_inputs: list[str]) -> Command:
        """The command for this tick. ``stale_inputs``: required inputs older than the timeout (or missing)."""
        with self._lock:
            return self._record(now, self._decide(now, stale_inputs))

    def tick_checked(self, clock: Callable[[], float], stale_inputs: Callable[[float], list[str]]) -> Command:
        """:meth:`tick` at ``clock()``, publish-ready: ``stale_inputs(t)`` lists the inputs stale at ``t``.

        A driving command is checked against the inputs' ages once more after it was decided (with
        the lock held, right before it is returned): the tick may have waited for the lock or for
        the CPU (tens of ms on a loaded machine). Inputs stale by then: the stale zero instead, and
        the plan is dropped, as in any stale tick.
        """
        now = clock()
        stale = stale_inputs(now)
        with self._lock:
            decided = self._decide(now, stale)
            if decided[0] == DRIVING:
                t = clock()
                late = stale_inputs(t)
                if late:
                    now, decided = t, self._decide(t, late)
            return self._record(now, decided)

    def _record(self, now: float, decided) -> Command:
        state, reason, wheels, clamped, first = decided
        self._state, self._reason = state, reason
        self.counts.ticks[state] += 1
        self.counts.clamped += clamped
        index = self._newest.index(now) if self._newest is not None else None
        return Command(wheels, state, reason, index, clamped, first)

    def _decide(self, now: float, stale_inputs: list[str]):
        zero = (0.0, 0.0)
        if self._estop_latched:
            why = "e-stop is true" if self._estop_active else "e-stop latched: call reset_estop"
            return ESTOP, why, zero, False, None
        if stale_inputs:
            self._drop_plan()
            return STALE, f"no recent {', '.join(stale_inputs)}", zero, False, None
        if self._fault is not None:
            return FAULT, self._fault, zero, False, None
        plan = self._plan
        cmd = plan.at(now) if plan is not None else None
        if cmd is None:
            if plan is not None:
                why = "chunk ran out (model too slow?)"
                self._drop_plan()
            else:
                why = "waiting for the first chunk" if self.counts.chunks == 0 else "waiting for a chunk"
            return STALE, why, zero, False, None
        if isinstance(plan, Blend) and plan.done(now):
            self._plan = plan.new
        m = self.cfg.max_wheel_speed
        left, right = (float(v) for v in cmd[:2])
        cl, cr = max(-m, min(m, left)), max(-m, min(m, right))
        first = self._newest_meta if self._first_pending else None
        self._first_pending = False
        return DRIVING, "", (cl, cr), (cl, cr) != (left, right), first

    @property
    def state(self) -> tuple[str, str]:
        """(state, reason) of the last tick."""
        return self._state, self._reason


def wheels_to_twist(left: float, right: float, wheel_radius: float, wheel_separation: float) -> tuple[float, float]:
    """Differential drive, REP-103: wheel speeds (rad/s) -> (linear x m/s, angular z rad/s, counter-clockwise)."""
    return wheel_radius * (left + right) / 2.0, wheel_radius * (right - left) / wheel_separation
