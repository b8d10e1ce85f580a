"""rclpy QoS profiles built from the contract's named profiles (see config/contract.yaml)."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from gr00t_rlhf_ros.contract import QosSpec, TopicSpec

_RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
_DURABILITY = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL}
_HISTORY = {"keep_last": HistoryPolicy.KEEP_LAST, "keep_all": HistoryPolicy.KEEP_ALL}


def profile(spec: QosSpec | TopicSpec) -> QoSProfile:
    """The QoSProfile for a contract QoS spec (or for a topic's spec)."""
    q = spec.qos if isinstance(spec, TopicSpec) else spec
    return QoSProfile(
        reliability=_RELIABILITY[q.reliability],
        durability=_DURABILITY[q.durability],
        history=_HISTORY[q.history],
        depth=q.depth,
    )
