"""The policy's observation from the latest messages, keyed as the model wants it.

No rclpy: policy_node hands each message to :class:`ObservationBuilder` with its receive time
(``time.monotonic()``): when the middleware received it (:func:`arrival_time`), not when the
executor got round to the callback. Where every model key comes from is read from the contract's dataset
features (config/contract.yaml ``dataset.features``), the same table the recorder writes datasets
by, so a policy trained on recorded data gets its inputs from the same sources:

- ``video.<view>``  <- ``observation.images.<view>: {topic: camera}`` (the newest frame, as RGB)
- ``state.<name>``  <- ``observation.state: {names: [...], from: [...]}``: ``joint_states.<joint>``
  (that joint's velocity) or ``imu.acceleration`` (the norm of the linear acceleration)
- ``stamp``         <- the camera frame's receive time (what best-of-N spaces its reward clip by)
- the language key  <- the feature with that key (``annotation.human.action.task_description``:
  ``{topic: task}``), or the ``task`` parameter until a message arrives.

Messages are checked when they arrive with :mod:`gr00t_rlhf_ros.msgs` (image encoding, size, step
and data length; non-finite values; missing joints) and a bad one raises
:class:`~gr00t_rlhf_ros.msgs.BadMessage` before anything is stored: the previous good message
stays in force and simply ages. Images are converted to RGB only when a snapshot is taken.
Thread-safe: callbacks write, the inference worker reads :meth:`ObservationBuilder.snapshot`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from gr00t_rlhf_ros.contract import Contract
from gr00t_rlhf_ros.msgs import (BadMessage, check_image_msg, image_msg_to_rgb, imu_acceleration, stamp_to_sec,
                                 wheel_velocities)
from gr00t_rlhf_train.inference.api import STAMP_KEY

IMAGE_FEATURE = "observation.images."
STATE_FEATURE = "observation.state"
# the contract topics a policy observation can draw on
SOURCES = ("camera", "joint_states", "imu", "task")


def arrival_time(received_ns: int | None, now: float, now_ns: int) -> float:
    """When the middleware received a message, on the monotonic clock of ``now``.

    A callback runs when the node's single-threaded executor gets to it: on a loaded 2-core machine
    up to ~0.26 s after the message arrived (measured in policy_node during a drive). Ages
    counted from the callback grow the stale-input timeout by that much; counted from the arrival they
    do not. ``received_ns``: the rmw's reception stamp (rclpy ``MessageInfo["received_timestamp"]``,
    ns of this host's system clock); ``now`` and ``now_ns``: ``time.monotonic()`` and
    ``time.time_ns()`` read together in the callback. Without a stamp (0 or None: an rmw that does
    not set it) or with one in the future (the system clock stepped back), the callback time ``now``;
    a clock stepped forward makes one message look older (a stop, never a longer timeout).
    """
    if not received_ns or received_ns <= 0:
        return now
    waited = (now_ns - received_ns) / 1e9
    return now - waited if waited > 0 else now


class ObservationError(ValueError):
    """The model asks for an input the contract cannot provide; the message names it."""


@dataclass(frozen=True)
class InputMap:
    """Where each key of the model's observation comes from."""

    video_key: str                              # e.g. "video.ego_view" (one camera: the contract's)
    state: tuple[tuple[str, str, str], ...]     # (state key, topic key, field): ("state.left_wheel", "joint_states", "left_wheel_joint")
    language_key: str

    @property
    def required(self) -> tuple[str, ...]:
        """The contract topics whose messages the observation needs (task included)."""
        topics = ["camera"] + [t for _, t, _ in self.state]
        return tuple(dict.fromkeys(topics + ["task"]))

    @property
    def joints(self) -> tuple[str, ...]:
        return tuple(f for _, t, f in self.state if t == "joint_states")


def input_map(contract: Contract, video_keys, state_keys, language_key: str) -> InputMap:
    """The :class:`InputMap` for a model's keys; ObservationError naming what the contract lacks."""
    feats = contract.features
    where = f"{contract.path}: dataset.features"
    if len(video_keys) != 1:
        raise ObservationError(f"the policy wants {len(video_keys)} camera views {list(video_keys)}; "
                               "this robot has one camera (contract topic 'camera')")
    view = video_keys[0].removeprefix("video.")
    feat = feats.get(IMAGE_FEATURE + view)
    if not isinstance(feat, dict) or feat.get("topic") != "camera":
        raise ObservationError(f"the policy wants {video_keys[0]}: {where} has no '{IMAGE_FEATURE}{view}' "
                               "fed by topic 'camera'")
    st = feats.get(STATE_FEATURE, {})
    names, sources = list(st.get("names", [])), list(st.get("from", []))
    if len(names) != len(sources):
        raise ObservationError(f"{where}.{STATE_FEATURE}: {len(names)} names but {len(sources)} sources")
    state = []
    for key, dim in state_keys:
        name = key.removeprefix("state.")
        if name not in names:
            raise ObservationError(f"the policy wants {key}: {where}.{STATE_FEATURE}.names has no {name!r} "
                                   f"(names: {names})")
        if dim != 1:
            raise ObservationError(f"the policy wants {key} with {dim} values; the robot gives 1 ({name})")
        topic, _, fld = sources[names.index(name)].partition(".")
        if (topic, fld == "acceleration") not in (("joint_states", False), ("imu", True)) or not fld:
            raise ObservationError(f"{where}.{STATE_FEATURE}.from: {sources[names.index(name)]!r} for {name!r} is not "
                                   "joint_states.<joint> or imu.acceleration")
        state.append((key, topic, fld))
    lang = feats.get(language_key)
    if not isinstance(lang, dict) or lang.get("topic") != "task":
        raise ObservationError(f"the policy wants {language_key}: {where} has no '{language_key}' fed by topic 'task'")
    return InputMap(video_keys[0], tuple(state), language_key)


@dataclass(frozen=True)
class Observation:
    """One snapshot for ``runtime.act``."""

    data: dict                  # the model's keys -> values
    t0: float                   # arrival time (monotonic) of its camera frame: the chunk's time origin
    frame: int                  # sequence number of that frame (1, 2, ...)
    camera_stamp: float         # that frame's header stamp, s (the sender's clock)


class ObservationBuilder:
    """The latest good message of each input; :meth:`snapshot` builds the model's observation."""

    def __init__(self, inputs: InputMap, topics: dict[str, str] | None = None,
                 image_size: tuple[int, int] | None = None, task: str = ""):
        self.inputs = inputs
        self.topics = {k: (topics or {}).get(k, k) for k in SOURCES}   # names for messages
        self.image_size = tuple(image_size) if image_size else None     # (height, width) required, or None
        self._lock = threading.Lock()
        self._image = None
        self._frame = 0
        self._camera_stamp = 0.0
        self._joint: dict[str, float] = {}
        self._accel: float | None = None
        self._task = task
        self._received: dict[str, float] = {}      # topic key -> receive time of the last good message
        if task:
            self._received["task"] = float("-inf")  # the parameter: in force, never ages

    # ---- messages in (BadMessage: rejected, nothing changes) --------------------------------------
    def on_camera(self, msg, now: float) -> int:
        """Store a sensor_msgs/Image; returns its frame number."""
        check_image_msg(msg, self.topics["camera"], self.image_size)
        with self._lock:
            self._image, self._frame = msg, self._frame + 1
            self._camera_stamp = stamp_to_sec(msg.header.stamp)
            self._received["camera"] = now
            return self._frame

    def on_joint_states(self, msg, now: float) -> None:
        topic = self.topics["joint_states"]
        values = {j: wheel_velocities(msg.name, msg.velocity, (j, j), topic)[0] for j in self.inputs.joints}
        with self._lock:
            self._joint = values
            self._received["joint_states"] = now

    def on_imu(self, msg, now: float) -> None:
        a = imu_acceleration(msg.linear_acceleration, self.topics["imu"])
        with self._lock:
            self._accel = a
            self._received["imu"] = now

    def on_task(self, msg, now: float) -> None:
        text = msg.data.strip()
        if not text:
            raise BadMessage(f"{self.topics['task']}: empty task instruction", "empty task")
        with self._lock:
            self._task = text
            self._received["task"] = now

    # ---- state -------------------------------------------------------------------------------------
    @property
    def frame(self) -> int:
        """Number of good camera frames so far (the newest frame's number)."""
        return self._frame

    @property
    def task(self) -> str:
        return self._task

    def ages(self, now: float) -> dict[str, float | None]:
        """Seconds since the last good message of each required input (None: never; the task: 0 once set)."""
        with self._lock:
            out = {}
            for k in self.inputs.required:
                t = self._received.get(k)
                out[k] = None if t is None else (0.0 if k == "task" else max(0.0, now - t))
            return out

    def stale(self, now: float, timeout: float) -> list[str]:
        """Required inputs never received or older than ``timeout`` (topic names)."""
        return [self.topics[k] for k, age in self.ages(now).items() if age is None or age > timeout]

    def snapshot(self) -> Observation | None:
        """The observation from the latest messages, or None while an input has never arrived."""
        with self._lock:
            if self._image is None or not self._task or any(t not in self._received for t in self.inputs.required):
                return None
            image, frame, stamp, t0 = self._image, self._frame, self._camera_stamp, self._received["camera"]
            joint, accel, task = dict(self._joint), self._accel, self._task
        rgb = np.ascontiguousarray(image_msg_to_rgb(image, self.topics["camera"]))  # [h, w, 3] uint8
        # STAMP_KEY: when the observation was taken (monotonic): spaces best-of-N's reward clip frames
        data = {self.inputs.video_key: rgb, self.inputs.language_key: task, STAMP_KEY: t0}
        for key, topic, fld in self.inputs.state:
            value = joint[fld] if topic == "joint_states" else accel
            data[key] = np.array([value], dtype=np.float32)
        return Observation(data, t0, frame, stamp)
