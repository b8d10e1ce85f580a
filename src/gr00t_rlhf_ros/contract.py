"""The ROS interface contract (config/contract.yaml) as validated, typed Python objects.

Plain Python, no rclpy: the simulator, the nodes, the recorder, the bag converter and the tests
all read topics, types, QoS, rates and dataset feature keys from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import re

import yaml

from gr00t_rlhf_ros.paths import config_path

_RELIABILITY = ("reliable", "best_effort")
_DURABILITY = ("volatile", "transient_local")
_HISTORY = ("keep_last", "keep_all")
# a relative ROS name: tokens of [A-Za-z_][A-Za-z0-9_]* separated by single '/' (no leading '/' or '~')
_RELATIVE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")
_NAMESPACE = re.compile(r"/|(/[A-Za-z_][A-Za-z0-9_]*)+")


class ContractError(ValueError):
    """The contract file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class QosSpec:
    name: str
    reliability: str = "reliable"
    durability: str = "volatile"
    history: str = "keep_last"
    depth: int = 10


def resolve_name(name: str, namespace: str = "/") -> str:
    """The absolute name a relative contract ``name`` gets in ``namespace`` (``/robot1`` -> ``/robot1/imu``).

    This is what rclpy does for a node in that namespace; use it where a name is matched as
    text, e.g. against the topics stored in a rosbag (recorded in the root namespace:
    ``/camera/image_raw``).
    """
    if not _NAMESPACE.fullmatch(namespace):
        raise ContractError(f"namespace {namespace!r}: must be '/' or an absolute name like '/robot1'")
    return ("" if namespace == "/" else namespace) + "/" + name


@dataclass(frozen=True)
class TopicSpec:
    key: str                 # contract key, e.g. "camera"
    name: str                # relative ROS name, e.g. "camera/image_raw" (resolved in the node's namespace)
    type: str                # e.g. "sensor_msgs/msg/Image"
    qos: QosSpec
    rate_hz: float | None = None

    def resolved(self, namespace: str = "/") -> str:
        """The absolute topic name in ``namespace``: ``/camera/image_raw`` in the root namespace."""
        return resolve_name(self.name, namespace)


@dataclass(frozen=True)
class ServiceSpec:
    key: str
    name: str                # relative, e.g. "recorder/start_episode"
    type: str

    def resolved(self, namespace: str = "/") -> str:
        """The absolute service name in ``namespace``: ``/recorder/start_episode`` in the root namespace."""
        return resolve_name(self.name, namespace)


@dataclass(frozen=True)
class Contract:
    path: Path
    qos: dict[str, QosSpec]
    topics: dict[str, TopicSpec]
    services: dict[str, ServiceSpec]
    wheel_joints: tuple[str, str]
    max_wheel_speed: float
    command_timeout: float
    dataset_fps: float
    robot_type: str
    embodiment_tag: str
    features: dict[str, dict] = field(default_factory=dict)

    def topic(self, key: str) -> TopicSpec:
        try:
            return self.topics[key]
        except KeyError:
            raise ContractError(f"{self.path}: no topic '{key}' (known: {sorted(self.topics)})") from None

    def service(self, key: str) -> ServiceSpec:
        try:
            return self.services[key]
        except KeyError:
            raise ContractError(f"{self.path}: no service '{key}' (known: {sorted(self.services)})") from None


def _require(d: dict, key: str, where: str):
    if not isinstance(d, dict) or key not in d:
        raise ContractError(f"{where}: missing field '{key}'")
    return d[key]


def _choice(value, allowed, where):
    if value not in allowed:
        raise ContractError(f"{where}: {value!r} is not one of {allowed}")
    return value


def _relative_name(name, where: str) -> str:
    if not isinstance(name, str) or not _RELATIVE_NAME.fullmatch(name):
        raise ContractError(f"{where}: {name!r} must be a relative ROS name like 'camera/image_raw' "
                            "(no leading '/' or '~': it must move with the node's namespace)")
    return name


def parse_contract(doc: dict, path: Path) -> Contract:
    """Validate a contract document (already parsed YAML)."""
    qos = {}
    for name, q in _require(doc, "qos", str(path)).items():
        w = f"{path}: qos.{name}"
        depth = q.get("depth", 10)
        if not isinstance(depth, int) or depth < 1:
            raise ContractError(f"{w}.depth: {depth!r} must be a positive integer")
        qos[name] = QosSpec(
            name=name,
            reliability=_choice(q.get("reliability", "reliable"), _RELIABILITY, f"{w}.reliability"),
            durability=_choice(q.get("durability", "volatile"), _DURABILITY, f"{w}.durability"),
            history=_choice(q.get("history", "keep_last"), _HISTORY, f"{w}.history"),
            depth=depth,
        )
    topics = {}
    for key, t in _require(doc, "topics", str(path)).items():
        w = f"{path}: topics.{key}"
        qname = _require(t, "qos", w)
        if qname not in qos:
            raise ContractError(f"{w}.qos: unknown profile {qname!r} (known: {sorted(qos)})")
        name = _relative_name(_require(t, "name", w), f"{w}.name")
        rate = t.get("rate_hz")
        if rate is not None and (not isinstance(rate, (int, float)) or rate <= 0):
            raise ContractError(f"{w}.rate_hz: {rate!r} must be a positive number")
        topics[key] = TopicSpec(key, name, _require(t, "type", w), qos[qname], float(rate) if rate else None)
    services = {
        key: ServiceSpec(key, _relative_name(_require(s, "name", f"{path}: services.{key}"), f"{path}: services.{key}.name"),
                         _require(s, "type", f"{path}: services.{key}"))
        for key, s in doc.get("services", {}).items()
    }
    robot = _require(doc, "robot", str(path))
    joints = _require(robot, "wheel_joints", f"{path}: robot")
    if not (isinstance(joints, list) and len(joints) == 2):
        raise ContractError(f"{path}: robot.wheel_joints: {joints!r} must list the left and right wheel joints")
    ds = _require(doc, "dataset", str(path))
    return Contract(
        path=path,
        qos=qos,
        topics=topics,
        services=services,
        wheel_joints=(joints[0], joints[1]),
        max_wheel_speed=float(_require(robot, "max_wheel_speed", f"{path}: robot")),
        command_timeout=float(_require(robot, "command_timeout", f"{path}: robot")),
        dataset_fps=float(_require(ds, "fps", f"{path}: dataset")),
        robot_type=str(ds.get("robot_type", "two_wheel")),
        embodiment_tag=str(ds.get("embodiment_tag", "new_embodiment")),
        features=dict(ds.get("features", {})),
    )


def load_contract(path: str | Path | None = None) -> Contract:
    """Load and validate the contract (default: the installed ``config/contract.yaml``)."""
    return _load(str(Path(path).resolve()) if path else str(config_path("contract.yaml")))


@lru_cache(maxsize=8)
def _load(path: str) -> Contract:
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ContractError(f"contract file not found: {p}") from None
    except yaml.YAMLError as e:
        raise ContractError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ContractError(f"{p}: expected a mapping at the top level")
    return parse_contract(doc, p)
