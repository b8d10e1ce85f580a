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

Bad input never stops an episode: :func:`feed` rejects an unusable message with a
:class:`~gr00t_rlhf_ros.msgs.BadMessage` before it is stored (cheap checks: non-finite values,
image encoding/size/step/data length, an image of another size than the dataset's, empty task);
commands are clamped to ``max_wheel_speed`` as the robot applies them; a tick whose image cannot
be decoded or whose values do not fit float32 is dropped and counted at write time
(:attr:`EpisodeRecorder.write_drops`). :class:`ProblemLog` counts all of it per (topic, reason)
so a caller logs each kind once.
"""
from __future__ import annotations

import math
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gr00t_rlhf_ros.msgs import (BadMessage, check_image_msg, image_msg_to_rgb, imu_acceleration,
                                 parse_wheel_command, stamp_to_sec, wheel_velocities)
from gr00t_rlhf_train.data import features as F
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
    max_wheel_speed: float = math.inf    # rad/s: commands are clamped to +-this (the robot's limit)

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
        if not (isinstance(self.max_wheel_speed, (int, float)) and self.max_wheel_speed > 0):
            raise ValueError(f"max_wheel_speed: {self.max_wheel_speed!r} must be > 0 rad/s")


class RecorderError(RuntimeError):
    """A recorder request that cannot be done in the current state (message says why)."""


_F32_MAX = float(np.finfo(np.float32).max)


class ProblemLog:
    """Counts what happened to bad inputs, per (what, where, reason); the first of each is logged.

    ``what``: "dropped", "clamped", "error", ...; ``where``: a topic or callback name; ``reason``:
    a short fixed label (``BadMessage.reason``). ``total`` counts since the start, ``episode``
    since the last :meth:`start_episode`.
    """

    def __init__(self):
        self.total: Counter = Counter()
        self.episode: Counter = Counter()

    def add(self, what: str, where: str, reason: str) -> bool:
        """Count one; True if it is the first of its kind (the caller logs it)."""
        key = (what, where, reason)
        self.total[key] += 1
        self.episode[key] += 1
        return self.total[key] == 1

    def start_episode(self) -> None:
        self.episode = Counter()

    @staticmethod
    def summary(counts: Counter) -> str:
        """"3 dropped on /imu (non-finite linear_acceleration); ..." or "" if nothing happened."""
        return "; ".join(f"{n} {what} on {where} ({reason})" for (what, where, reason), n in sorted(counts.items()))


def error_summary(err: BaseException) -> str:
    """``Type: message (at file:line in function)`` — an unexpected error in one line."""
    tb = traceback.extract_tb(err.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    return f"{type(err).__name__}: {err}{where}"


def guarded(where: str, fn: Callable, problems: ProblemLog, report: Callable[[str], None],
            on_error: Callable | None = None) -> Callable:
    """``fn`` wrapped for a callback boundary: an exception never escapes.

    It is counted in ``problems`` as ("errors", where, type name); the first of each kind goes to
    ``report`` (one line with where it happened); then ``on_error(*args, exc)`` gives the result
    (None without it).
    """
    def call(*args):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - the boundary: whatever it was, the node and the episode go on
            if problems.add("errors", where, type(e).__name__):
                report(f"unexpected error in {where}: {error_summary(e)}; the node goes on "
                       "(further ones like it are counted, not logged)")
            return on_error(*args, e) if on_error is not None else None
    return call


def check_dataset_matches(writer, fps: float, image_size: tuple[int, int] | None, camera_topic: str) -> None:
    """RecorderError unless the open dataset (``writer``) takes what this recorder writes.

    Compares fps, image size (height, width) of the camera and the state/action/video features.
    """
    problems = []
    if abs(float(writer.fps) - float(fps)) > 1e-6:
        problems.append(f"it was recorded at {writer.fps:g} fps, this recorder runs at {fps:g} fps")
    h, w = writer.image_size
    if image_size is not None and tuple(image_size) != (h, w):
        problems.append(f"its images are {w}x{h}, {camera_topic} sends {image_size[1]}x{image_size[0]}")
    feats = writer.info.get("features", {})
    expected = {F.STATE: list(F.STATE_NAMES), F.ACTION: list(F.ACTION_NAMES)}
    for key, names in expected.items():
        got = feats.get(key, {}).get("names") if isinstance(feats.get(key), dict) else None
        if got != names:
            problems.append(f"its feature {key} is {got!r}, this recorder writes {names}")
    if F.EGO_VIEW not in feats:
        problems.append(f"it has no {F.EGO_VIEW} video")
    if problems:
        raise RecorderError(f"cannot append to dataset {writer.root}: {'; '.join(problems)}: "
                            "choose another dataset directory, or record with its fps and image size")


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
        self.camera_size: tuple[int, int] | None = None   # (height, width) of the newest well-formed image
        self.write_drops: Counter = Counter()         # (reason, source) -> ticks dropped at write time
        self.write_drop_details: dict[tuple[str, str], str] = {}  # the first detail of each (never reset)

    # ---- inputs (stamp: seconds; values already decoded) -------------------------------------
    def camera(self, stamp: float, image: np.ndarray | Callable[[], np.ndarray],
               size: tuple[int, int] | None = None, topic: str = "camera") -> None:
        """``image``: uint8 [H, W, 3] RGB, or a callable returning it (decoded only if used).

        ``size`` (height, width) is required with a callable. An image of another size than the
        open dataset's is rejected (BadMessage) and does not become the latest image.
        """
        if size is None:
            if callable(image):
                raise ValueError("camera: size is required with a lazily decoded image")
            size = tuple(image.shape[:2])
        size = (int(size[0]), int(size[1]))
        self.camera_size = size
        expected = self.image_size
        if expected is not None and size != expected:
            raise BadMessage(f"{topic}: image is {size[1]}x{size[0]}, the dataset's images are "
                             f"{expected[1]}x{expected[0]}", f"size {size[1]}x{size[0]}, dataset {expected[1]}x{expected[0]}")
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

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(height, width) of the open dataset's images, or None without a dataset."""
        size = getattr(self.writer, "image_size", None)
        return (int(size[0]), int(size[1])) if size is not None else None

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
        self.write_drops = Counter()

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

    def salvage(self) -> int | None:
        """After an unexpected error: commit the frames already written, without aligning more.

        Returns the episode index, or None if there was nothing to keep (the episode is discarded).
        The recorder is left without an episode either way.
        """
        if self._episode is None:
            return None
        episode, self._episode = self._episode, None
        if self._aligner is not None:
            self.last_counts, self._aligner = self._aligner.counts, None
        if self.frames_in_episode == 0:
            episode.discard()
            return None
        return episode.commit()

    @property
    def counts(self):
        return self._aligner.counts if self._aligner is not None else self.last_counts

    def summary(self) -> str:
        """The alignment counts of the (last) episode and the ticks dropped at write time."""
        parts = [self.counts.summary()] if self.counts is not None else []
        parts += [f"{n} dropped ({reason} {src})" for (reason, src), n in sorted(self.write_drops.items())]
        return ", ".join(parts)

    # ---- frames --------------------------------------------------------------------------------
    def _write(self, frames: list[AlignedFrame]) -> int:
        """Write the frames; a frame that cannot be written is dropped and counted, never raised.

        Only the writer's own failures (DatasetError/OSError: disk full, ...) propagate.
        """
        written = 0
        for f in frames:
            image = self._decode(f["camera"])
            if image is None:
                continue
            cmd = f["command"]
            cmd_stamp = f.stamps["command"]
            if cmd is None or cmd_stamp is None or f.t - cmd_stamp > self.cfg.command_timeout:
                cmd = (0.0, 0.0)
            left, right = f["joint_states"]
            state, action = np.array([left, right, f["imu"]], dtype=np.float64), np.array(cmd, dtype=np.float64)
            if not (np.all(np.abs(state) <= _F32_MAX) and np.all(np.abs(action) <= _F32_MAX)):
                self._drop("not finite in float32", "state" if not np.all(np.abs(state) <= _F32_MAX) else "action",
                           f"state {state.tolist()}, action {action.tolist()}")
                continue
            try:
                self._episode.add_frame(image=image, state=state.astype(np.float32), action=action.astype(np.float32),
                                        timestamp=f.t - self._t0, validity=int(f["feedback"]), task=f["task"])
            except ValueError as e:  # the writer refused this frame's values; the episode goes on
                self._drop("refused by the writer", "frame", str(e))
                continue
            self.frames_in_episode += 1
            self.images_in_episode.add(f.stamps["camera"])
            written += 1
        return written

    def _decode(self, image) -> np.ndarray | None:
        """The frame's image as uint8 [H, W, 3] of the dataset's size, or None (dropped and counted)."""
        if callable(image):
            try:
                image = image()
            except Exception as e:  # noqa: BLE001 - any decoder failure (cv_bridge's too) only costs this tick
                self._drop("undecodable image", "camera", error_summary(e))
                return None
        expected = self.image_size
        if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3
                or (expected is not None and tuple(image.shape[:2]) != expected)):
            got = f"{image.dtype} {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
            self._drop("wrong image shape", "camera", f"got {got}, the dataset takes uint8 {list(expected or ())} x 3")
            return None
        return image

    def _drop(self, reason: str, source: str, detail: str) -> None:
        self.write_drops[(reason, source)] += 1
        self.write_drop_details.setdefault((reason, source), detail)


def feed(recorder: EpisodeRecorder, key: str, msg, received: float, topic: str,
         wheel_joints: tuple[str, str]) -> None:
    """Give one message of contract topic ``key`` to ``recorder`` (live and offline alike).

    ``msg`` is an rclpy message or a rosbags one (same fields). Sensors are stamped by their
    header; headerless messages (commands, task, feedback) by ``received`` (the node's clock, or
    the bag's log time). Raises :class:`~gr00t_rlhf_ros.msgs.BadMessage` (a ValueError) naming
    ``topic`` for a message that cannot be used: nothing of it is stored. Returns a short label if
    the message was used but altered ("clamped to +-5 rad/s"), else None.
    """
    if key == "camera":
        check_image_msg(msg, topic)
        recorder.camera(stamp_to_sec(msg.header.stamp), lambda: image_msg_to_rgb(msg, topic),
                        size=(msg.height, msg.width), topic=topic)
    elif key == "joint_states":
        recorder.joint_states(stamp_to_sec(msg.header.stamp), *wheel_velocities(msg.name, msg.velocity, wheel_joints, topic))
    elif key == "imu":
        recorder.imu(stamp_to_sec(msg.header.stamp), imu_acceleration(msg.linear_acceleration, topic))
    elif key == "wheel_commands":
        limit = recorder.cfg.max_wheel_speed
        try:
            (left, right), clamped = parse_wheel_command(msg.data, limit)
        except BadMessage as e:
            raise BadMessage(f"{topic}: {e}", e.reason) from None
        recorder.command(received, left, right)
        if clamped:
            return f"clamped to +-{limit:g} rad/s"
    elif key == "task":
        text = str(msg.data)
        if not text.strip():
            raise BadMessage(f"{topic}: empty task ignored; keeping {recorder.current_task!r}", "empty task")
        recorder.task(received, text)
    elif key == "human_feedback":
        try:
            recorder.feedback(received, int(msg.data))
        except ValueError as e:
            raise BadMessage(f"{topic}: {e}", "not a feedback key") from None
    else:
        raise KeyError(f"feed: {key!r} is not one of {INPUT_TOPICS}")
    return None
