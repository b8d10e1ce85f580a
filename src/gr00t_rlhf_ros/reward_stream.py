"""The live clip buffer of reward_node: recent frames, states and commands in, one clip to score out.

Plain Python (numpy, no rclpy). The node's callbacks feed :class:`RewardStream` with decoded
messages (stamp in seconds + value); its scoring thread calls :meth:`RewardStream.take`, which
waits for the newest frame not yet scored and builds the clip that ends at it.

**The clip is built like training's** (``gr00t_rlhf_train.data.samples.RewardClips`` on a dataset the
recorder wrote): ``H`` frames spaced ``1 / frame_rate`` seconds apart (the training dataset's fps, not
the camera's), ending at the scored frame ``t0``: ticks ``t0 - (H-1-j) / frame_rate``, j = 0..H-1.
At each tick, as the recorder's alignment does (``gr00t_rlhf_train.data.align``): the latest frame,
wheel velocities and acceleration stamped at or before it. Ticks before the first message repeat
the first one (training repeats the episode's first row before its start).

**Drop when behind, never queue:** only the newest unscored frame waits. A frame arriving while
another one waits replaces it; the replaced one is counted in :attr:`RewardStream.dropped` (it stays in
the history, so later clips still use it). The scorer therefore always scores the freshest frame,
at up to the camera rate, and a slow model lowers the rate instead of building a backlog.

**Actions** (a reward model with ``action_horizon = K > 0``): the wheel commands in force at the K
ticks ending at ``t0`` (``t0 - (K-1-j) / frame_rate``), zeros where the newest command is older than
``command_timeout`` (the robot stops on stale commands, as the recorder records them). Training pairs
a frame with the K actions *from* it on (``a_t .. a_{t+K-1}``); live, the future commands are not
known yet, so the reward node scores the last K commands up to the frame: a shift of K-1 ticks
that the model sees only when K > 1.

Time: sensor messages are stamped by their header, commands and the task by the node's clock on
arrival (the recorder's rule). A stream whose stamps go back in time (a sim reset with sim time,
a replayed bag) restarts that stream's history. A camera whose image size changes restarts the
frame history (frames of one clip must have one size).

Thread-safe: every method takes the stream's lock; :meth:`take` waits on a condition without it.
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

VIDEO_KEY = "video.ego_view"
STATE_KEYS = ("state.left_wheel", "state.right_wheel", "state.acceleration")
LANGUAGE_KEY = "annotation.human.action.task_description"
ACTIONS_KEY = "actions"
_EPS = 1e-6  # a message stamped within this of a tick counts as at the tick
_SLACK = 1.0  # s of extra state/command history kept, for frames that arrive late
_MAX_FRAMES = 512
_MAX_SAMPLES = 4096


class ClipUnavailable(RuntimeError):
    """No clip can be built for the frame taken (no task yet, no state, stale state...).

    ``str(e)`` is one line naming what is missing; ``reason`` a short fixed label to count repeats by."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class StreamConfig:
    """How clips are built. ``horizon`` and ``frame_rate`` come from the reward model (its training data)."""

    horizon: int                  # H: frames per clip
    frame_rate: float             # Hz the clip's frames are spaced at
    action_horizon: int = 0       # K: commands passed as ``actions`` (0: the model takes none)
    max_state_age: float = 0.5    # s: the scored frame is skipped if its wheels/IMU state is older
    command_timeout: float = 0.5  # s: an older command counts as zero (the robot stopped)

    def __post_init__(self):
        for name in ("horizon", "action_horizon"):
            v = getattr(self, name)
            low = 1 if name == "horizon" else 0
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"StreamConfig.{name}: {v!r} must be an integer >= {low}")
        for name in ("frame_rate", "max_state_age", "command_timeout"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"StreamConfig.{name}: {v!r} must be a positive number")

    @property
    def span(self) -> float:
        """Seconds from the clip's first tick to its last."""
        return (self.horizon - 1) / self.frame_rate

    @property
    def action_span(self) -> float:
        return max(self.action_horizon - 1, 0) / self.frame_rate


@dataclass(frozen=True)
class Clip:
    """One clip to score. Arrays oldest first."""

    stamp: float                  # t0: the scored frame's stamp, s
    frames: np.ndarray            # [H, h, w, 3] uint8 RGB
    wheels: np.ndarray            # [H, 2] float32 (left, right) rad/s
    acceleration: np.ndarray      # [H, 1] float32, |linear acceleration|
    task: str
    actions: np.ndarray | None    # [K, 2] float32 wheel commands, rad/s (None when K = 0)
    meta: Any = None              # what came with the scored frame (the node keeps its header)

    @property
    def image(self) -> np.ndarray:
        """The scored (newest) frame, [h, w, 3]."""
        return self.frames[-1]

    def model_input(self) -> dict:
        """The reward model's clip: ``video.ego_view`` [H, h, w, 3], ``state.*`` [H, 1], the instruction,
        and ``actions`` [K, 2] when the model takes actions."""
        out = {VIDEO_KEY: self.frames, STATE_KEYS[0]: self.wheels[:, :1], STATE_KEYS[1]: self.wheels[:, 1:],
               STATE_KEYS[2]: self.acceleration, LANGUAGE_KEY: self.task}
        if self.actions is not None:
            out[ACTIONS_KEY] = self.actions
        return out


class _Series:
    """Stamped values, sorted by stamp; pruned to what clips can still use."""

    def __init__(self, maxlen: int):
        self.stamps: deque[float] = deque(maxlen=maxlen)
        self.values: deque[Any] = deque(maxlen=maxlen)

    def __len__(self) -> int:
        return len(self.stamps)

    def clear(self) -> None:
        self.stamps.clear()
        self.values.clear()

    def push(self, stamp: float, value: Any) -> bool:
        """Append; a stamp before the newest one restarts the series (returns True then)."""
        restarted = bool(self.stamps) and stamp < self.stamps[-1] - _EPS
        if restarted:
            self.clear()
        self.stamps.append(stamp)
        self.values.append(value)
        return restarted

    def prune(self, keep_from: float) -> None:
        """Drop entries that no tick at or after ``keep_from`` can use (keeps the last one at or before it)."""
        while len(self.stamps) >= 2 and self.stamps[1] <= keep_from + _EPS:
            self.stamps.popleft()
            self.values.popleft()

    def at(self, t: float) -> tuple[float, Any] | None:
        """The latest entry stamped at or before ``t``; the first entry if all are later; None if empty."""
        if not self.stamps:
            return None
        i = bisect.bisect_right(self.stamps, t + _EPS) - 1
        i = max(i, 0)
        return self.stamps[i], self.values[i]

    def latest_at_or_before(self, t: float) -> tuple[float, Any] | None:
        if not self.stamps:
            return None
        i = bisect.bisect_right(self.stamps, t + _EPS) - 1
        return (self.stamps[i], self.values[i]) if i >= 0 else None


class RewardStream:
    """Frames, states, commands and the task in; the clip of the newest unscored frame out."""

    def __init__(self, config: StreamConfig, task: str = ""):
        self.cfg = config
        self._frames = _Series(_MAX_FRAMES)       # value: (image [h, w, 3], meta)
        self._wheels = _Series(_MAX_SAMPLES)      # value: (left, right)
        self._accel = _Series(_MAX_SAMPLES)       # value: float
        self._commands = _Series(_MAX_SAMPLES)    # value: (left, right)
        self._task = task
        self._pending: tuple[float, np.ndarray, Any] | None = None
        self._cond = threading.Condition()
        self.received = 0          # frames added
        self.dropped = 0           # frames replaced before they were scored
        self.taken = 0             # frames taken for scoring
        self.restarts: Counter = Counter()   # series -> times its history restarted

    # ---- inputs (callbacks) ----------------------------------------------------------------------
    def add_frame(self, stamp: float, image: np.ndarray, meta: Any = None) -> str | None:
        """A camera frame (uint8 [h, w, 3] RGB). Returns a one-line note if the history restarted."""
        note = None
        with self._cond:
            if self._frames and self._frames.values[-1][0].shape != image.shape:
                old = self._frames.values[-1][0].shape
                self._frames.clear()
                self.restarts["camera size"] += 1
                note = (f"camera image size changed from {old[1]}x{old[0]} to {image.shape[1]}x{image.shape[0]}: "
                        "clip history restarted")
            if self._frames.push(stamp, (image, meta)):
                self.restarts["camera time"] += 1
                note = "camera stamps went back in time: clip history restarted"
            self._frames.prune(stamp - self.cfg.span)
            self.received += 1
            if self._pending is not None:
                self.dropped += 1
            self._pending = (stamp, image, meta)
            self._cond.notify_all()
        return note

    def add_wheels(self, stamp: float, left: float, right: float) -> None:
        with self._cond:
            self._push(self._wheels, "joint_states", stamp, (float(left), float(right)), self.cfg.span)

    def add_acceleration(self, stamp: float, value: float) -> None:
        with self._cond:
            self._push(self._accel, "imu", stamp, float(value), self.cfg.span)

    def add_command(self, stamp: float, left: float, right: float) -> None:
        with self._cond:
            self._push(self._commands, "wheel_commands", stamp, (float(left), float(right)),
                       self.cfg.action_span + self.cfg.command_timeout)

    def set_task(self, text: str) -> None:
        with self._cond:
            self._task = text

    @property
    def task(self) -> str:
        with self._cond:
            return self._task

    def _push(self, series: _Series, name: str, stamp: float, value: Any, span: float) -> None:
        if series.push(stamp, value):
            self.restarts[f"{name} time"] += 1
        # keep what the clip of a frame up to max_state_age (+ slack) older than this sample still needs
        series.prune(stamp - span - self.cfg.max_state_age - _SLACK)

    # ---- output (the scoring thread) -------------------------------------------------------------
    def take(self, timeout: float | None = None) -> Clip | None:
        """Wait up to ``timeout`` s for an unscored frame; its clip, or None if none came.

        Raises :class:`ClipUnavailable` if the frame cannot be scored (it is consumed either way)."""
        with self._cond:
            if self._pending is None and not self._cond.wait_for(lambda: self._pending is not None, timeout):
                return None
            stamp, image, meta = self._pending
            self._pending = None
            self.taken += 1
            return self._build(stamp, image, meta)

    def _build(self, t0: float, image: np.ndarray, meta: Any) -> Clip:
        cfg = self.cfg
        if not self._task.strip():
            raise ClipUnavailable("no task instruction yet: nothing to score against (publish one on the task topic, "
                                  "e.g. 'Find Blue cube', or start the node with -p task:=...)", "no task")
        for series, name in ((self._wheels, "joint_states"), (self._accel, "imu")):
            got = series.latest_at_or_before(t0)
            if got is None:
                raise ClipUnavailable(f"no {name} message stamped at or before the frame ({t0:.3f} s)",
                                      f"no {name}")
            if t0 - got[0] > cfg.max_state_age:
                raise ClipUnavailable(f"{name} is {t0 - got[0]:.2f} s older than the frame "
                                      f"(max_state_age {cfg.max_state_age:g} s)", f"stale {name}")
        ticks = t0 - (cfg.horizon - 1 - np.arange(cfg.horizon)) / cfg.frame_rate          # [H]
        frames = [self._frames.at(t)[1][0] for t in ticks[:-1]] + [image]
        wheels = np.array([self._wheels.at(t)[1] for t in ticks], dtype=np.float32)       # [H, 2]
        accel = np.array([[self._accel.at(t)[1]] for t in ticks], dtype=np.float32)       # [H, 1]
        actions = None
        if cfg.action_horizon > 0:
            aticks = t0 - (cfg.action_horizon - 1 - np.arange(cfg.action_horizon)) / cfg.frame_rate   # [K]
            rows = []
            for t in aticks:
                got = self._commands.latest_at_or_before(t)
                rows.append(got[1] if got is not None and t - got[0] <= cfg.command_timeout else (0.0, 0.0))
            actions = np.array(rows, dtype=np.float32)                                      # [K, 2]
        return Clip(stamp=t0, frames=np.stack(frames), wheels=wheels, acceleration=accel, task=self._task,
                    actions=actions, meta=meta)
