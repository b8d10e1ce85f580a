"""Plain-Python stand-ins for the few ROS message types the in-process rollouts pass around.

``sim.rollout`` runs the sim_node / policy_node / recorder_node logic without DDS (and without a
ROS install: rollouts also run on a GPU machine). The shared code it reuses —
:class:`gr00t_rlhf_ros.observation.ObservationBuilder` and :func:`gr00t_rlhf_ros.recording.feed` —
reads messages by their fields only, so these carry exactly the fields sim_node fills, with the
same values (``rgb8`` images, wheel joint velocities, the IMU's linear acceleration, the task).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Time:
    sec: int = 0
    nanosec: int = 0

    @classmethod
    def of(cls, t: float) -> "Time":
        sec = math.floor(t)
        return cls(int(sec), int(round((t - sec) * 1e9)) % 1_000_000_000)


@dataclass
class Header:
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class Image:
    """sensor_msgs/Image, rgb8; ``data`` is a flat uint8 array (a view of the rendered frame, no copy)."""

    header: Header
    height: int
    width: int
    data: np.ndarray
    encoding: str = "rgb8"
    is_bigendian: int = 0

    @property
    def step(self) -> int:
        return self.width * 3

    @classmethod
    def of(cls, rgb: np.ndarray, t: float, frame_id: str = "camera_link") -> "Image":
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        return cls(Header(Time.of(t), frame_id), h, w, np.ascontiguousarray(rgb).reshape(-1))


@dataclass
class JointState:
    header: Header
    name: list
    velocity: list
    position: list = field(default_factory=list)


@dataclass
class Vector3:
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@dataclass
class Imu:
    header: Header
    linear_acceleration: Vector3


@dataclass
class String:
    data: str


@dataclass
class Int32:
    data: int


@dataclass
class Float64MultiArray:
    data: list
