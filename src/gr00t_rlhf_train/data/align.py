"""Time alignment of message streams onto the dataset timeline: THE one used live and offline.

The live recorder (ROS callbacks) and the offline bag converter both build an :class:`Aligner`
and feed it the same way, so a bag converted offline gives the frames the recorder saw live:

* ``push(source, stamp, value)`` stores a message (any arrival order; kept sorted by stamp);
* ticks lie on a fixed grid ``t_k = start + k / fps``;
* ``tick(t)`` builds the frame at ``t``: for every source, the latest message with
  ``stamp <= t``. If a source has no such message ("missing") or its latest one is older than
  the source's ``max_age`` ("stale"), the tick is dropped and counted per (reason, source);
* ``poll(now)`` ticks every grid point with ``t_k + lag < now``: a tick is taken once the clock
  has moved ``lag`` seconds past it, so messages that arrive up to ``lag`` late still count.
  The live recorder calls ``poll(clock_now)`` from a timer; :func:`align_offline` calls
  ``poll(arrival)`` before pushing each recorded message, which is the same sequence of calls
  the recorder makes when every message arrives within ``lag`` of its stamp.
* A message whose stamp is at or before an already emitted tick is "late": it is still stored
  (it may be the latest for the next tick) and counted, because live and offline may then differ.
"""
from __future__ import annotations

import bisect
import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

_NO_DEFAULT = object()
_EPS = 1e-9  # stamps within this of a tick count as "at" the tick


@dataclass(frozen=True)
class SourceSpec:
    """One input stream. ``max_age=None``: never stale (latched data such as the task).

    ``default``: the value used before the first message arrives (e.g. a "no feedback" key);
    without one, ticks before the first message are dropped as "missing".
    """

    name: str
    max_age: float | None = None
    default: Any = _NO_DEFAULT

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"SourceSpec.name: {self.name!r} must be a non-empty string")
        if self.max_age is not None and not (isinstance(self.max_age, (int, float)) and self.max_age > 0):
            raise ValueError(f"SourceSpec({self.name}).max_age: {self.max_age!r} must be a positive number of seconds or None")

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


@dataclass(frozen=True)
class AlignedFrame:
    """The values of every source at tick ``t`` (the ``k``-th tick of the grid)."""

    k: int
    t: float
    values: dict[str, Any]
    stamps: dict[str, float | None]  # stamp of the message used; None where the default was used

    def __getitem__(self, source: str) -> Any:
        return self.values[source]


@dataclass
class AlignCounts:
    """What happened to the ticks and messages so far."""

    ticks: int = 0
    emitted: int = 0
    dropped: Counter = field(default_factory=Counter)  # (reason, source) -> ticks dropped
    late: Counter = field(default_factory=Counter)  # source -> messages stamped at/before an emitted tick
    pruned: Counter = field(default_factory=Counter)  # source -> messages discarded (buffer cap)

    def summary(self) -> str:
        parts = [f"{self.emitted}/{self.ticks} ticks kept"]
        for (reason, src), n in sorted(self.dropped.items()):
            parts.append(f"{n} dropped ({reason} {src})")
        for src, n in sorted(self.late.items()):
            parts.append(f"{n} late messages ({src})")
        return ", ".join(parts)


class Aligner:
    """Streaming aligner; see the module docstring for the semantics."""

    def __init__(self, sources: Sequence[SourceSpec], fps: float, start: float | None = None,
                 lag: float = 0.0, max_buffer: int = 10_000):
        if not sources:
            raise ValueError("Aligner.sources: at least one SourceSpec is needed")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"Aligner.sources: duplicate names in {names}")
        if not (isinstance(fps, (int, float)) and fps > 0 and math.isfinite(fps)):
            raise ValueError(f"Aligner.fps: {fps!r} must be a positive number")
        if lag < 0:
            raise ValueError(f"Aligner.lag: {lag!r} must be >= 0 seconds")
        self.sources = {s.name: s for s in sources}
        self.fps = float(fps)
        self.lag = float(lag)
        self.max_buffer = int(max_buffer)
        self.counts = AlignCounts()
        self._stamps: dict[str, list[float]] = {n: [] for n in names}
        self._values: dict[str, list[Any]] = {n: [] for n in names}
        self._start = start
        self._next_k = 0
        self._last_tick: float | None = None

    # ---- input -----------------------------------------------------------------------------
    def push(self, source: str, stamp: float, value: Any) -> None:
        """Store one message of ``source`` stamped ``stamp`` (seconds)."""
        if source not in self.sources:
            raise KeyError(f"Aligner.push: unknown source {source!r} (known: {sorted(self.sources)})")
        stamps, values = self._stamps[source], self._values[source]
        if self._last_tick is not None and stamp <= self._last_tick + _EPS:
            self.counts.late[source] += 1
        i = bisect.bisect_right(stamps, stamp)
        stamps.insert(i, stamp)
        values.insert(i, value)
        if len(stamps) > self.max_buffer:  # nobody ticks: keep memory bounded
            del stamps[0], values[0]
            self.counts.pruned[source] += 1

    # ---- the grid --------------------------------------------------------------------------
    @property
    def start(self) -> float | None:
        return self._start

    def set_start(self, start: float) -> None:
        """Anchor the grid (only before the first tick)."""
        if self._next_k:
            raise RuntimeError("Aligner.set_start: the grid is fixed once a tick was taken")
        self._start = float(start)

    def tick_time(self, k: int) -> float:
        if self._start is None:
            raise RuntimeError("Aligner: no start time; pass start= or call set_start()")
        return self._start + k / self.fps

    def poll(self, now: float) -> list[AlignedFrame]:
        """Take every grid tick ``t`` with ``t + lag < now``; return the frames kept."""
        if self._start is None:
            return []
        out = []
        while self.tick_time(self._next_k) + self.lag < now:
            frame = self._tick_k(self._next_k)
            if frame is not None:
                out.append(frame)
        return out

    def flush(self, until: float) -> list[AlignedFrame]:
        """Take every remaining grid tick ``t <= until`` (end of an episode or of a bag)."""
        if self._start is None:
            return []
        out = []
        while self.tick_time(self._next_k) <= until + _EPS:
            frame = self._tick_k(self._next_k)
            if frame is not None:
                out.append(frame)
        return out

    def tick(self, t: float) -> AlignedFrame | None:
        """Align at an arbitrary time ``t`` (after the previous tick); None if dropped."""
        if self._last_tick is not None and t <= self._last_tick:
            raise ValueError(f"Aligner.tick: t={t} is not after the previous tick {self._last_tick}")
        return self._align(self._next_k, t)

    # ---- the alignment ---------------------------------------------------------------------
    def _tick_k(self, k: int) -> AlignedFrame | None:
        return self._align(k, self.tick_time(k))

    def _align(self, k: int, t: float) -> AlignedFrame | None:
        self._next_k = k + 1
        self._last_tick = t
        self.counts.ticks += 1
        values, stamps, reason = {}, {}, None
        for name, spec in self.sources.items():
            st = self._stamps[name]
            i = bisect.bisect_right(st, t + _EPS) - 1
            if i < 0:
                if spec.has_default:
                    values[name], stamps[name] = spec.default, None
                    continue
                reason = reason or ("missing", name)
                continue
            if spec.max_age is not None and t - st[i] > spec.max_age + _EPS:
                reason = reason or ("stale", name)
            values[name], stamps[name] = self._values[name][i], st[i]
            if i > 0:  # older messages can never be the latest again
                del st[:i], self._values[name][:i]
        if reason is not None:
            self.counts.dropped[reason] += 1
            return None
        self.counts.emitted += 1
        return AlignedFrame(k, t, values, stamps)


@dataclass(frozen=True)
class Message:
    """One recorded message: ``arrival`` is when the recorder would have received it."""

    source: str
    stamp: float
    value: Any
    arrival: float | None = None  # None: arrival == stamp

    @property
    def when(self) -> float:
        return self.stamp if self.arrival is None else self.arrival


def merge_streams(streams: Mapping[str, Iterable[tuple[float, Any]]]) -> Iterable[Message]:
    """Merge per-source ``(stamp, value)`` streams, each sorted by stamp, into one by stamp."""
    def tagged(i: int, name: str, stream):
        for t, v in stream:
            yield t, i, name, v

    iters = [tagged(i, n, s) for i, (n, s) in enumerate(streams.items())]
    for t, _, name, value in heapq.merge(*iters, key=lambda x: (x[0], x[1])):
        yield Message(name, t, value)


def align_offline(messages: Iterable[Message], aligner: Aligner, end: float | None = None) -> list[AlignedFrame]:
    """Run recorded messages (sorted by arrival) through ``aligner`` exactly as the live recorder.

    Before each message is pushed the clock is advanced to its arrival (``poll``); at the end
    the remaining ticks up to ``end`` (default: the last arrival) are taken. If the aligner has
    no start yet, the grid starts at the first stamp where every source without a default has
    a message.
    """
    frames: list[AlignedFrame] = []
    pending: list[Message] = []
    needed = {n for n, s in aligner.sources.items() if not s.has_default}
    seen: set[str] = set()
    last = None
    for msg in messages:
        last = msg.when
        if aligner.start is None:
            pending.append(msg)
            seen.add(msg.source)
            if needed <= seen:
                aligner.set_start(max(min(m.stamp for m in pending if m.source == n) for n in needed) if needed
                                  else pending[0].stamp)
                for m in pending:
                    frames += aligner.poll(m.when)
                    aligner.push(m.source, m.stamp, m.value)
                pending = []
            continue
        frames += aligner.poll(msg.when)
        aligner.push(msg.source, msg.stamp, msg.value)
    if aligner.start is not None and last is not None:
        frames += aligner.flush(last - aligner.lag if end is None else end)
    return frames
