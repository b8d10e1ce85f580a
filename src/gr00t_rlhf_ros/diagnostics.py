"""Node health on ``/diagnostics`` (diagnostic_msgs/DiagnosticArray), shared by policy_node and reward_node.

    diag = Diagnostics(node)                              # publisher on /diagnostics
    diag.publish(OK, "driving", {"inference p50 ms": 12.3, "chunk index": 4})

``/diagnostics`` is absolute on purpose: by ROS convention the diagnostic aggregator (and
``rqt_robot_monitor``) listen there, whatever the robot's namespace. Robots are told apart by the
status name, which is the node's fully qualified name (``/robot1/policy_node``), optionally with
a suffix (``/robot1/policy_node: inference``).

:class:`RollingStats` keeps the last N samples of a latency (or any number) for the last / p50 /
p99 values that both nodes report. Values are formatted here (floats with 4 significant digits,
None as "n/a"), so every node's diagnostics read the same. Not thread-safe: call from one thread
(a node's executor), or guard it with the caller's lock.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Mapping

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR
STALE = DiagnosticStatus.STALE

TOPIC = "/diagnostics"
# what diagnostic_updater uses: reliable, volatile, a short queue
QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                 history=HistoryPolicy.KEEP_LAST, depth=10)


class RollingStats:
    """The last ``window`` samples of a quantity: ``last``, ``p50``, ``p99``, ``count`` (all samples ever)."""

    def __init__(self, window: int = 200):
        if not (isinstance(window, int) and window > 0):
            raise ValueError(f"RollingStats window: {window!r} must be a positive integer")
        self._values: deque[float] = deque(maxlen=window)
        self.count = 0

    def add(self, value: float) -> None:
        self._values.append(float(value))
        self.count += 1

    @property
    def last(self) -> float | None:
        return self._values[-1] if self._values else None

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(np.fromiter(self._values, float), q)) if self._values else None

    @property
    def p50(self) -> float | None:
        return self.percentile(50)

    @property
    def p99(self) -> float | None:
        return self.percentile(99)


def format_value(value: Any) -> str:
    """A diagnostic value as text: floats to 4 significant digits, None as 'n/a', lists joined by ', '."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def make_status(name: str, level: bytes, message: str, values: Mapping[str, Any],
                hardware_id: str = "") -> DiagnosticStatus:
    """One DiagnosticStatus; ``level`` is OK / WARN / ERROR / STALE (bytes, as in the message)."""
    if level not in (OK, WARN, ERROR, STALE):
        raise ValueError(f"diagnostic level {level!r}: must be OK, WARN, ERROR or STALE")
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=str(k), value=format_value(v)) for k, v in values.items()])


class Diagnostics:
    """Publishes a node's DiagnosticArray on ``/diagnostics``; the status is named after the node.

    ``suffix``: appended as ``"<fqn>: <suffix>"`` to tell several statuses of one node apart.
    ``hardware_id``: e.g. the robot's name or the model's device.
    """

    def __init__(self, node, hardware_id: str = ""):
        self.node = node
        self.name = node.get_fully_qualified_name()
        self.hardware_id = hardware_id
        self.publisher = node.create_publisher(DiagnosticArray, TOPIC, QOS)

    def status(self, level: bytes, message: str, values: Mapping[str, Any], suffix: str = "") -> DiagnosticStatus:
        return make_status(f"{self.name}: {suffix}" if suffix else self.name, level, message, values, self.hardware_id)

    def publish(self, level: bytes, message: str, values: Mapping[str, Any], suffix: str = "") -> DiagnosticArray:
        """Publish one status now (stamped with the node's clock); returns the message sent."""
        return self.publish_all([self.status(level, message, values, suffix)])

    def publish_all(self, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
        msg = DiagnosticArray(status=statuses)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.publisher.publish(msg)
        return msg


def values_of(status: DiagnosticStatus) -> dict[str, str]:
    """A received status's key/values as a dict (for tests and tools)."""
    return {kv.key: kv.value for kv in status.values}
