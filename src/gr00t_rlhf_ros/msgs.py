"""ROS messages <-> numpy, for the message types of the contract.

Images: rgb8/bgr8/rgba8/bgra8/mono8 are converted here in numpy (no cv_bridge needed); other
encodings go through cv_bridge when it is importable, else raise ``UnsupportedEncoding`` naming
the encoding and the topic. :func:`check_image` does the cheap structural checks (encoding,
size, step, data length) when a message arrives, so a bad image is rejected before any use.

Every rejection is a :class:`BadMessage` (a ValueError): ``str(e)`` is the one-line detail,
``e.reason`` a short fixed label used to count repeats (e.g. "data too short").
"""
from __future__ import annotations

import importlib
import math

import numpy as np

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_F32_MAX = float(np.finfo(np.float32).max)


class BadMessage(ValueError):
    """A message that cannot be used. ``reason``: a short fixed label (to count repeats by)."""

    reason = "unusable message"

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class UnsupportedEncoding(BadMessage):
    """An image encoding we cannot convert to rgb8."""

    reason = "unsupported encoding"


def _cv_bridge_available() -> bool:
    try:
        importlib.import_module("cv_bridge")
    except ImportError:
        return False
    return True


def check_image(height: int, width: int, encoding: str, step: int, data_len: int, topic: str = "image",
                expected: tuple[int, int] | None = None) -> None:
    """Cheap checks of an Image's fields, without touching the pixels. Raises BadMessage.

    ``expected``: the (height, width) images must have (the open dataset's), or None.
    """
    enc = encoding.lower()
    if enc not in _CHANNELS and not _cv_bridge_available():
        raise UnsupportedEncoding(f"{topic}: image encoding {encoding!r} is not supported without cv_bridge "
                                  f"(supported: {', '.join(_CHANNELS)})", f"unsupported encoding {encoding!r}")
    if height <= 0 or width <= 0:
        raise BadMessage(f"{topic}: empty image ({width}x{height})", "empty image")
    if expected is not None and (height, width) != tuple(expected):
        raise BadMessage(f"{topic}: image is {width}x{height}, the dataset's images are {expected[1]}x{expected[0]}",
                         f"size {width}x{height}, dataset {expected[1]}x{expected[0]}")
    c = _CHANNELS.get(enc)
    if c is not None and step < width * c:
        raise BadMessage(f"{topic}: image step {step} is smaller than width x channels = {width}x{c} ({encoding})",
                         "step smaller than width x channels")
    if data_len < step * height:
        raise BadMessage(f"{topic}: image data too short: {data_len} bytes for {height}x{width} {encoding} "
                         f"with step {step} (needs {step * height})", "data too short")


def check_image_msg(msg, topic: str = "image", expected: tuple[int, int] | None = None) -> None:
    """:func:`check_image` on a sensor_msgs/Image (rclpy or rosbags)."""
    check_image(msg.height, msg.width, msg.encoding, msg.step, len(msg.data), topic, expected)


def message_class(type_name: str):
    """``"sensor_msgs/msg/Image"`` -> the rclpy message class."""
    try:
        pkg, kind, name = type_name.split("/")
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ValueError, ImportError, AttributeError) as e:
        raise ValueError(f"unknown ROS message type {type_name!r}: {e}") from None


def stamp_to_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(t: float, stamp) -> None:
    """Write seconds ``t`` into a builtin_interfaces/Time ``stamp`` in place."""
    sec = math.floor(t)
    stamp.sec = int(sec)
    stamp.nanosec = int(round((t - sec) * 1e9)) % 1_000_000_000


def image_to_rgb(height: int, width: int, encoding: str, step: int, data, topic: str = "image") -> np.ndarray:
    """Raw image fields -> uint8 array [H, W, 3] in RGB order (works for ROS msgs and rosbags msgs)."""
    enc = encoding.lower()
    if enc not in _CHANNELS:
        return _via_cv_bridge(height, width, encoding, step, data, topic)
    c = _CHANNELS[enc]
    # a view, no copy: works for bytes, rclpy's array('B') and rosbags' uint8 ndarray
    buf = data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    if height <= 0 or width <= 0:
        raise BadMessage(f"{topic}: empty image ({width}x{height})", "empty image")
    if step < width * c or buf.size < step * height:
        raise BadMessage(f"{topic}: image data too short: {buf.size} bytes for {height}x{width} {encoding} "
                         f"with step {step}", "data too short")
    img = buf[: step * height].reshape(height, step)[:, : width * c].reshape(height, width, c)
    if enc == "rgb8":
        return img
    if enc == "bgr8":
        return img[..., ::-1]
    if enc == "rgba8":
        return img[..., :3]
    if enc == "bgra8":
        return img[..., 2::-1]
    return np.repeat(img, 3, axis=2)  # mono8


def _via_cv_bridge(height, width, encoding, step, data, topic):
    try:
        from cv_bridge import CvBridge  # only on a full ROS install
        from sensor_msgs.msg import Image
    except ImportError:
        raise UnsupportedEncoding(
            f"{topic}: image encoding {encoding!r} is not supported without cv_bridge "
            f"(supported: {', '.join(_CHANNELS)})"
        ) from None
    msg = Image(height=height, width=width, encoding=encoding, step=step, data=bytes(data))
    return np.ascontiguousarray(CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8"))


def image_msg_to_rgb(msg, topic: str = "image") -> np.ndarray:
    return image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data, topic)


def rgb_to_image_msg(img: np.ndarray, msg) -> None:
    """Fill a sensor_msgs/Image ``msg`` in place from a uint8 [H, W, 3] RGB array."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3], got {img.dtype} {img.shape}")
    msg.height, msg.width = int(img.shape[0]), int(img.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(img).tobytes()


def imu_acceleration(linear_acceleration, topic: str = "imu") -> float:
    """The dataset's ``state.acceleration``: the norm of the IMU's linear acceleration.

    Raises BadMessage if a component is not finite or the norm overflows float32.
    """
    a = linear_acceleration
    values = (float(a.x), float(a.y), float(a.z))
    if not all(math.isfinite(v) for v in values):
        raise BadMessage(f"{topic}: non-finite linear_acceleration {list(values)}", "non-finite linear_acceleration")
    norm = math.hypot(*values)
    if not norm <= _F32_MAX:
        raise BadMessage(f"{topic}: linear_acceleration {list(values)} overflows float32",
                         "linear_acceleration overflows float32")
    return norm


def wheel_velocities(names, velocities, wheel_joints, topic: str = "joint_states") -> tuple[float, float]:
    """(left, right) wheel velocities from a JointState's names/velocities. Raises BadMessage."""
    names = list(names)
    out = []
    for joint in wheel_joints:
        try:
            i = names.index(joint)
        except ValueError:
            raise BadMessage(f"{topic}: joint {joint!r} not in message (joints: {names})", "wheel joint missing") from None
        if i >= len(velocities):
            raise BadMessage(f"{topic}: joint {joint!r} has no velocity ({len(velocities)} velocities)",
                             "wheel velocity missing")
        v = float(velocities[i])
        if not (math.isfinite(v) and abs(v) <= _F32_MAX):
            raise BadMessage(f"{topic}: velocity of {joint!r} is {v!r}: not a finite float32", "non-finite velocity")
        out.append(v)
    return out[0], out[1]


class BadCommand(BadMessage):
    """A wheel command that cannot be used (wrong length, not finite)."""

    reason = "bad command"


def parse_wheel_command(data, max_speed: float) -> tuple[tuple[float, float], bool]:
    """Validate ``[left, right]`` rad/s; returns (clamped command, was_clamped). Raises BadCommand."""
    values = [float(v) for v in data]
    if len(values) != 2:
        raise BadCommand(f"expected 2 values [left, right], got {len(values)}", "not 2 values")
    if not all(math.isfinite(v) for v in values):
        raise BadCommand(f"non-finite value in {values}", "non-finite command")
    clamped = tuple(max(-max_speed, min(max_speed, float(v))) for v in values)
    return clamped, clamped != tuple(values)
