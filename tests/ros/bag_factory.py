"""Synthetic robot recordings as rosbags messages: the same stream can go into a bag or be fed
to the recorder logic directly (what recorder_node does live)."""
from __future__ import annotations

import math

import numpy as np

from gr00t_rlhf_ros.bag import REQUEST_RECEIVED, TRIGGER_EVENT, BagWriter, typestore
from gr00t_rlhf_ros.bag_to_lerobot import resolve_name
from gr00t_rlhf_ros.contract import load_contract

T = typestore().types
SIZE = (96, 128)  # camera height, width (small frames code worse: PSNR ~29 dB at 48x64)


def _stamp(t: float):
    sec = math.floor(t)
    return T["builtin_interfaces/msg/Time"](sec=int(sec), nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def _header(t: float):
    return T["std_msgs/msg/Header"](stamp=_stamp(t), frame_id="base_link")


def image(t: float, k: int, encoding: str = "rgb8"):
    h, w = SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack([127 + 100 * np.sin((xx + 3 * k) / 9), 127 + 100 * np.cos((yy - 2 * k) / 7),
                    np.full_like(xx, (k * 11) % 256)], -1)
    cy, cx = (h // 2 + k) % h, (w // 3 + 2 * k) % w  # a moving block: each frame differs
    rgb[max(cy - 4, 0):cy + 4, max(cx - 4, 0):cx + 4] = (250, 20, 20)
    rgb = rgb.clip(0, 255).astype(np.uint8)
    return T["sensor_msgs/msg/Image"](header=_header(t), height=h, width=w, encoding=encoding, is_bigendian=0,
                                      step=w * 3, data=rgb.reshape(-1))


def imu(t: float, a: float):
    V, Q = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Quaternion"]
    cov = np.zeros(9, np.float64)
    return T["sensor_msgs/msg/Imu"](header=_header(t), orientation=Q(x=0.0, y=0.0, z=0.0, w=1.0), orientation_covariance=cov,
                                    angular_velocity=V(x=0.0, y=0.0, z=0.0), angular_velocity_covariance=cov,
                                    linear_acceleration=V(x=a, y=0.0, z=9.81), linear_acceleration_covariance=cov)


def joints(t: float, left: float, right: float):
    names = list(load_contract().wheel_joints)
    return T["sensor_msgs/msg/JointState"](header=_header(t), name=names, position=np.zeros(2),
                                           velocity=np.array([left, right]), effort=np.zeros(0))


def command(left: float, right: float):
    layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    return T["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.array([left, right], np.float64))


def string(text: str):
    return T["std_msgs/msg/String"](data=text)


def int32(v: int):
    return T["std_msgs/msg/Int32"](data=v)


def service_event(t: float):
    info = T["service_msgs/msg/ServiceEventInfo"](event_type=REQUEST_RECEIVED, stamp=_stamp(t),
                                                  client_gid=np.zeros(16, np.uint8), sequence_number=1)
    return T[TRIGGER_EVENT](info=info, request=[], response=[])


def topic_name(key: str, namespace: str = "/") -> str:
    """The absolute name a bag records for contract topic ``key`` of a robot in ``namespace``."""
    return resolve_name(load_contract().topic(key).name, namespace)


def service_event_topic(key: str, namespace: str = "/") -> str:
    return resolve_name(load_contract().service(key).name, namespace) + "/_service_event"


def recording(episodes=((1.0, 4.0), (5.0, 8.0)), discarded=((9.0, 10.0),), jitter: float = 0.004,
              encoding: str = "rgb8", with_camera: bool = True, seed: int = 0, namespace: str = "/"):
    """[(log_time, topic, msgtype, msg)] of a drive with episodes recorded through the services;
    topic names are absolute, as in a bag of a robot run in ``namespace``."""
    c = load_contract()
    rng = np.random.default_rng(seed)
    out = []
    end = max(e for _, e in list(episodes) + list(discarded)) + 0.5

    def add(t, key, msg, delay=True):
        spec = c.topic(key)
        out.append((t + (abs(rng.normal(0, jitter)) if delay else 0.0), topic_name(key, namespace), spec.type, msg))

    add(0.05, "task", string("Find Blue cube"))
    for k in range(int(end * 10)):
        t = k / 10 + 0.013
        if with_camera:
            add(t, "camera", image(t, k, encoding))
    for k in range(int(end * 100)):
        t = k / 100 + 0.002
        add(t, "imu", imu(t, math.sin(t)))
    for k in range(int(end * 50)):
        t = k / 50 + 0.007
        add(t, "joint_states", joints(t, 2 * math.sin(t), 2 * math.cos(t)))
    for k in range(int(end * 20)):
        t = k / 20 + 0.031
        add(t, "wheel_commands", command(round(math.sin(t), 3), round(math.cos(t), 3)))
    for t, key in ((2.5, 0), (3.2, 1), (6.0, 0)):
        add(t, "human_feedback", int32(key))
    start, stop, discard = (service_event_topic(f"{k}_episode", namespace) for k in ("start", "stop", "discard"))
    for a, b in episodes:
        out.append((a, start, TRIGGER_EVENT, service_event(a)))
        out.append((b, stop, TRIGGER_EVENT, service_event(b)))
    for a, b in discarded:
        out.append((a, start, TRIGGER_EVENT, service_event(a)))
        out.append((b, discard, TRIGGER_EVENT, service_event(b)))
    return sorted(out, key=lambda m: m[0])


def write_bag(path, messages, storage: str = "mcap", skip_topics=()):
    with BagWriter(path, storage) as w:
        for t, topic, msgtype, msg in messages:
            if topic not in skip_topics:
                w.write(topic, msgtype, t, msg)
    return path
