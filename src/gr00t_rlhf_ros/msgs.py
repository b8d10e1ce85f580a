"""ROS messages <-> numpy, for the message types of the contract.

Images: rgb8/bgr8/rgba8/bgra8/mono8 are converted here in numpy (no cv_bridge needed); other
encodings go through cv_bridge when it is importable, else raise ``UnsupportedEncoding`` naming
the encoding and the topic.
"""
from __future__ import annotations

import importlib
import math

import numpy as np

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


class UnsupportedEncoding(ValueError):
    """An image encoding we cannot convert to rgb8."""


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
    if step < width * c or buf.size < step * height:
        raise ValueError(
            f"{topic}: image data too short: {buf.size} bytes for {height}x{width} {encoding} with step {step}"
        )
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


def imu_acceleration(linear_acceleration) -> float:
    """The dataset's ``state.acceleration``: the norm of the IMU's linear acceleration."""
    a = linear_acceleration
    return float(math.sqrt(a.x * a.x + a.y * a.y + a.z * a.z))


def wheel_velocities(names, velocities, wheel_joints, topic: str = "joint_states") -> tuple[float, float]:
    """(left, right) wheel velocities from a JointState's names/velocities."""
    names = list(names)
    out = []
    for joint in wheel_joints:
        try:
            i = names.index(joint)
        except ValueError:
            raise ValueError(f"{topic}: joint {joint!r} not in message (joints: {names})") from None
        if i >= len(velocities):
            raise ValueError(f"{topic}: joint {joint!r} has no velocity ({len(velocities)} velocities)")
        out.append(float(velocities[i]))
    return out[0], out[1]


class BadCommand(ValueError):
    """A wheel command that cannot be used (wrong length, not finite)."""


def parse_wheel_command(data, max_speed: float) -> tuple[tuple[float, float], bool]:
    """Validate ``[left, right]`` rad/s; returns (clamped command, was_clamped). Raises BadCommand."""
    values = list(data)
    if len(values) != 2:
        raise BadCommand(f"expected 2 values [left, right], got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise BadCommand(f"non-finite value in {values}")
    clamped = tuple(max(-max_speed, min(max_speed, float(v))) for v in values)
    return clamped, clamped != tuple(values)
