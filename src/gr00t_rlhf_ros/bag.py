"""rosbag2 files (sqlite3 and mcap) through the ``rosbags`` library: no ROS install needed.

Reads messages of chosen topics in log-time order and deserializes them with the ROS 2 Kilted
typestore; topics of other types in the bag are never parsed, so a bag full of custom types
still converts. The recorder's Trigger service events (``<service>/_service_event``, recorded
when the bag was made with service introspection) are read for their event type only, which is
the first byte of the CDR payload. Also writes bags (tests, benchmarks, tools).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

TRIGGER_EVENT = "std_srvs/srv/Trigger_Event"
# service_msgs/ServiceEventInfo.event_type
REQUEST_SENT, REQUEST_RECEIVED, RESPONSE_SENT, RESPONSE_RECEIVED = 0, 1, 2, 3
_CDR_HEADER = 4  # encapsulation header before the payload
# message definition of Trigger_Event (ros2msg text with its nested types), for writing bags
_TRIGGER_EVENT_DEF = "\n".join([
    "service_msgs/ServiceEventInfo info", "Trigger_Request[<=1] request", "Trigger_Response[<=1] response",
    "=" * 80, "MSG: service_msgs/ServiceEventInfo",
    "uint8 REQUEST_SENT = 0", "uint8 REQUEST_RECEIVED = 1", "uint8 RESPONSE_SENT = 2", "uint8 RESPONSE_RECEIVED = 3",
    "uint8 event_type", "builtin_interfaces/Time stamp", "char[16] client_gid", "int64 sequence_number",
    "=" * 80, "MSG: builtin_interfaces/Time", "int32 sec", "uint32 nanosec",
    "=" * 80, "MSG: std_srvs/Trigger_Request", "uint8 structure_needs_at_least_one_member",
    "=" * 80, "MSG: std_srvs/Trigger_Response", "bool success", "string message",
])


class BagError(ValueError):
    """A bag that cannot be converted; the message names the bag and the topic."""


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Kilted message types, plus Trigger_Event for writing service events."""
    store = get_typestore(Stores.ROS2_KILTED)
    texts = {
        "std_srvs/srv/Trigger_Request": "uint8 structure_needs_at_least_one_member",
        "std_srvs/srv/Trigger_Response": "bool success\nstring message",
        TRIGGER_EVENT: "service_msgs/ServiceEventInfo info\nstd_srvs/srv/Trigger_Request[<=1] request\n"
                       "std_srvs/srv/Trigger_Response[<=1] response",
    }
    for name, text in texts.items():
        # rosbags files a parsed pkg/srv/X under pkg/srv/msg/X; ROS names it pkg/srv/X
        parsed = get_types_from_msg(text, name)
        store.register({k.replace("/srv/msg/", "/srv/"): _srv_names(v) for k, v in parsed.items()})
    return store


def _srv_names(obj):
    if isinstance(obj, str):
        return obj.replace("/srv/msg/", "/srv/")
    if isinstance(obj, (tuple, list)):
        return type(obj)(_srv_names(o) for o in obj)
    return obj


@dataclass(frozen=True)
class BagMessage:
    topic: str
    log_time: float      # seconds: when the recorder (ros2 bag) received it
    msg: object          # deserialized message (same fields as the rclpy message)


class BagReader:
    """A rosbag2 bag directory (metadata.yaml + .db3 or .mcap files) opened for reading."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise BagError(f"{self.path}: no such rosbag2 directory (give the folder holding metadata.yaml)")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as e:  # rosbags raises its own hierarchy for unreadable bags
            raise BagError(f"{self.path}: cannot open as a rosbag2 bag: {e}") from None

    def close(self) -> None:
        self._reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def topics(self) -> dict[str, str]:
        """topic name -> message type."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    def count(self, topics: list[str]) -> int:
        return sum(c.msgcount for c in self._reader.connections if c.topic in topics)

    def require(self, topic: str, msgtype: str, what: str) -> None:
        have = self.topics
        if topic not in have:
            raise BagError(f"{self.path}: no {what} topic {topic!r} in the bag (its topics: "
                           f"{', '.join(sorted(have)) or 'none'}); pass the right name with --topic {what}=NAME")
        if have[topic] != msgtype:
            raise BagError(f"{self.path}: topic {topic!r} has type {have[topic]}, expected {msgtype}")

    def _raw(self, topics: list[str]):
        conns = [c for c in self._reader.connections if c.topic in topics]
        if conns:
            yield from self._reader.messages(connections=conns)

    def messages(self, topics: list[str]) -> Iterator[BagMessage]:
        """Messages of ``topics`` in log-time order, deserialized."""
        store = typestore()
        for conn, t_ns, raw in self._raw(topics):
            try:
                msg = store.deserialize_cdr(raw, conn.msgtype)
            except Exception as e:
                raise BagError(f"{self.path}: cannot deserialize a {conn.msgtype} on {conn.topic} at "
                               f"{t_ns * 1e-9:.3f} s: {e}") from None
            yield BagMessage(conn.topic, t_ns * 1e-9, msg)

    def log_times(self, topic: str) -> list[float]:
        """Log times (s) of the messages on ``topic``, without deserializing them."""
        return [t_ns * 1e-9 for _, t_ns, _ in self._raw([topic])]

    @property
    def span(self) -> tuple[float, float]:
        """(first, last) log time in the bag, seconds."""
        return self._reader.start_time * 1e-9, self._reader.end_time * 1e-9

    def service_events(self, topics: list[str]) -> Iterator[tuple[str, float, int]]:
        """(topic, log time, event_type) of service-event messages on ``topics``."""
        for conn, t_ns, raw in self._raw(topics):
            if len(raw) <= _CDR_HEADER:
                raise BagError(f"{self.path}: empty service event on {conn.topic} at {t_ns * 1e-9:.3f} s")
            yield conn.topic, t_ns * 1e-9, raw[_CDR_HEADER]


class BagWriter:
    """Write messages into a new rosbag2 bag (``storage``: "sqlite3" or "mcap")."""

    def __init__(self, path: str | Path, storage: str = "mcap"):
        plugins = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
        if storage not in plugins:
            raise ValueError(f"storage: {storage!r} must be one of {sorted(plugins)}")
        self._writer = Writer(Path(path), version=9, storage_plugin=plugins[storage])
        self._writer.open()
        self._conns: dict[str, object] = {}

    def write(self, topic: str, msgtype: str, log_time: float, msg) -> None:
        store = typestore()
        if topic not in self._conns:
            if msgtype == TRIGGER_EVENT:
                conn = self._writer.add_connection(topic, msgtype, msgdef=_TRIGGER_EVENT_DEF,
                                                   rihs01=store.hash_rihs01(msgtype))
            else:
                conn = self._writer.add_connection(topic, msgtype, typestore=store)
            self._conns[topic] = conn
        self._writer.write(self._conns[topic], int(round(log_time * 1e9)), store.serialize_cdr(msg, msgtype))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
