"""Messages in, dataset episodes out: the plain logic of recorder_node and bag_to_lerobot.

Both feed an :class:`EpisodeRecorder` the same decoded messages (stamp in seconds + value) and
advance its clock with :meth:`EpisodeRecorder.poll`; the recorder aligns them with the one
alignment of the project (:class:`gr00t_rlhf_train.data.align.Aligner`) and writes each kept
tick as a dataset frame. No rclpy here.

Semantics of a frame at tick ``t`` (the dataset fps grid, anchored at the episode start):
- image, wheel velocities, acceleration: the latest message at or before ``t``; if one of them is
  older than its ``max_age`` (or none arrived yet), the tick is dropped and counted;
- action: the latest wheel command, or zeros if it is older than ``command_timeout`` (the robot
  stops on stale commands, so zeros is what it did);
- task: the latest ``/task`` (latched), starting from the one in force at episode start;
- feedback: the latest ``/human_feedback`` key; each episode starts from the vocabulary's
  default key (``reset_feedback=True``) or carries the last key over.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gr00t_rlhf_ros.msgs import (image_msg_to_rgb, imu_acceleration, parse_wheel_command, stamp_to_sec,
                                 wheel_velocities)
from gr00t_rlhf_train.data.align import Aligner, AlignedFrame, SourceSpec
from gr00t_rlhf_train.feedback import FeedbackVocabulary

SENSORS = ("camera", "joint_states", "imu")
# the contract topics a recording consumes
INPUT_TOPICS = ("camera", "joint_states", "imu", "wheel_commands", "task", "human_feedback")


@dataclass(frozen=True)
class RecorderConfig:
    fps: float = 10.0
    max_age: dict = field(default_factory=lambda: {"camera": 0.35, "joint_states": 0.2, "imu": 0.2})
    command_timeout: float = 0.5
    lag: float = 0.15                    # how late a message may arrive and still count (s)
    reset_feedback: bool = True

    def __post_init__(self):
        if not self.fps > 0:
            raise ValueError(f"fps: {self.fps!r} must be > 0")
        for k in SENSORS:
            v = self.max_age.get(k)
            if not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"max_age.{k}: {v!r} must be a positive number of seconds")
        if not self.command_timeout > 0:
            raise ValueError(f"command_timeout: {self.command_timeout!r} must be > 0")
        if self.lag < 0:
            raise ValueError(f"lag: {self.lag!r} must be >= 0")


class RecorderError(RuntimeError):
    """A recorder request that cannot be done in the current state (message says why)."""


class EpisodeRecorder:
    """Aligns decoded messages and writes episodes through a dataset writer.

    ``writer`` is a :class:`gr00t_rlhf_train.data.writer.DatasetWriter` (or anything with
    ``start_episode(task) -> episode`` whose episode has ``add_frame(...)``, ``commit()``,
    ``discard()``).
    """

    def __init__(self, writer, vocabulary: FeedbackVocabulary, config: RecorderConfig = RecorderConfig(),
                 task: str = ""):
        self.writer = writer
        self.vocab = vocabulary
        self.cfg = config
        self._latest: dict[str, tuple[float, Any]] = {}   # newest message of each source, between episodes too
        self._task = task
        self._feedback = vocabulary.default if vocabulary.default is not None else vocabulary.keys[-1]
        self._aligner: Aligner | None = None
        self._episode = None
        self._t0 = 0.0
        self.frames_in_episode = 0
        self.images_in_episode: set[float] = set()   # stamps of the distinct images written
        self.received: dict[str, int] = {}            # messages per source since the episode start
        self.last_counts = None

    # ---- inputs (stamp: seconds; values already decoded) -------------------------------------
    def camera(self, stamp: float, image: np.ndarray | Callable[[], np.ndarray]) -> None:
        """``image``: uint8 [H, W, 3] RGB, or a callable returning it (decoded only if used)."""
        self._push("camera", stamp, image)

    def joint_states(self, stamp: float, left: float, right: float) -> None:
        self._push("joint_states", stamp, (float(left), float(right)))

    def imu(self, stamp: float, acceleration: float) -> None:
        self._push("imu", stamp, float(acceleration))

    def command(self, stamp: float, left: float, right: float) -> None:
        self._push("command", stamp, (float(left), float(right)))

    def task(self, stamp: float, text: str) -> None:
        self._task = text
        self._push("task", stamp, text)

    def feedback(self, stamp: float, key: int) -> None:
        self.vocab.check(key, "human_feedback")
        self._feedback = key
        self._push("feedback", stamp, key)

    def _push(self, source: str, stamp: float, value: Any) -> None:
        self._latest[source] = (stamp, value)
        if self._aligner is not None:
            self._aligner.push(source, stamp, value)
            self.received[source] = self.received.get(source, 0) + 1

    # ---- episode control -----------------------------------------------------------------------
    @property
    def current_task(self) -> str:
        return self._task

    def latest_image(self) -> np.ndarray | None:
        """The newest camera image received (decoded), or None."""
        if "camera" not in self._latest:
            return None
        image = self._latest["camera"][1]
        return image() if callable(image) else image

    @property
    def recording(self) -> bool:
        return self._episode is not None

    def silent_sensors(self, now: float, within: float = 1.0) -> list[str]:
        """Sensors with no message stamped in the last ``within`` seconds before ``now``."""
        return [s for s in SENSORS if s not in self._latest or now - self._latest[s][0] > within]

    def start(self, now: float) -> None:
        if self._episode is not None:
            raise RecorderError("an episode is already being recorded; stop or discard it first")
        if self.cfg.reset_feedback and self.vocab.default is not None:
            self._feedback = self.vocab.default
        sources = [SourceSpec(name, self.cfg.max_age[name]) for name in SENSORS]
        sources += [SourceSpec("command", None, default=None), SourceSpec("task", None, default=self._task),
                    SourceSpec("feedback", None, default=self._feedback)]
        self._aligner = Aligner(sources, self.cfg.fps, start=now, lag=self.cfg.lag)
        for name in SENSORS + ("command",):  # what was in force when the episode began
            if name in self._latest:
                self._aligner.push(name, *self._latest[name])
        self._episode = self.writer.start_episode(self._task)
        self._t0 = now
        self.frames_in_episode = 0
        self.images_in_episode = set()
        self.received = {}

    def poll(self, now: float) -> int:
        """Write every tick that is due at clock ``now``; returns the number of frames written."""
        if self._aligner is None:
            return 0
        return self._write(self._aligner.poll(now))

    def stop(self, now: float) -> int:
        """Write the remaining ticks up to ``now`` and commit; returns the episode index."""
        if self._episode is None:
            raise RecorderError("no episode is being recorded")
        self._write(self._aligner.flush(now))
        if self.frames_in_episode == 0:
            self.discard()
            raise RecorderError(f"episode had no complete frame ({self.last_counts.summary()}); discarded")
        episode, self._episode = self._episode, None
        self.last_counts, self._aligner = self._aligner.counts, None
        return episode.commit()

    def discard(self) -> None:
        if self._episode is None:
            raise RecorderError("no episode is being recorded")
        episode, self._episode = self._episode, None
        self.last_counts, self._aligner = self._aligner.counts, None
        episode.discard()

    @property
    def counts(self):
        return self._aligner.counts if self._aligner is not None else self.last_counts

    # ---- frames --------------------------------------------------------------------------------
    def _write(self, frames: list[AlignedFrame]) -> int:
        for f in frames:
            image = f["camera"]
            if callable(image):
                image = image()
            cmd = f["command"]
            cmd_stamp = f.stamps["command"]
            if cmd is None or cmd_stamp is None or f.t - cmd_stamp > self.cfg.command_timeout:
                cmd = (0.0, 0.0)
            left, right = f["joint_states"]
            self._episode.add_frame(
                image=image,
                state=np.array([left, right, f["imu"]], dtype=np.float32),
                action=np.array(cmd, dtype=np.float32),
                timestamp=f.t - self._t0,
                validity=int(f["feedback"]),
                task=f["task"],
            )
            self.frames_in_episode += 1
            self.images_in_episode.add(f.stamps["camera"])
        return len(frames)


def feed(recorder: EpisodeRecorder, key: str, msg, received: float, topic: str,
         wheel_joints: tuple[str, str]) -> None:
    """Give one message of contract topic ``key`` to ``recorder`` (live and offline alike).

    ``msg`` is an rclpy message or a rosbags one (same fields). Sensors are stamped by their
    header; headerless messages (commands, task, feedback) by ``received`` (the node's clock, or
    the bag's log time). Raises ValueError naming ``topic`` for a message that cannot be used.
    """
    if key == "camera":
        recorder.camera(stamp_to_sec(msg.header.stamp), lambda: image_msg_to_rgb(msg, topic))
    elif key == "joint_states":
        recorder.joint_states(stamp_to_sec(msg.header.stamp), *wheel_velocities(msg.name, msg.velocity, wheel_joints, topic))
    elif key == "imu":
        recorder.imu(stamp_to_sec(msg.header.stamp), imu_acceleration(msg.linear_acceleration))
    elif key == "wheel_commands":
        try:
            (left, right), _ = parse_wheel_command(msg.data, float("inf"))
        except ValueError as e:
            raise ValueError(f"{topic}: {e}") from None
        recorder.command(received, left, right)
    elif key == "task":
        recorder.task(received, str(msg.data))
    elif key == "human_feedback":
        try:
            recorder.feedback(received, int(msg.data))
        except ValueError as e:
            raise ValueError(f"{topic}: {e}") from None
    else:
        raise KeyError(f"feed: {key!r} is not one of {INPUT_TOPICS}")
