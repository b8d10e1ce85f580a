"""policy_node's inference thread: the latest observation in, chunks to the controller out.

One daemon thread owns the runtime (``gr00t_rlhf_train.inference``: used from this one thread
only). It sleeps until a chunk is due (:meth:`Controller.replan_due`) AND a camera frame newer than
the last one used has arrived AND every required input is fresh; then it snapshots the latest
messages (the latest observation wins: nothing queues) and calls ``runtime.act``. The control
timer never waits for it. Errors of the model (InferenceError, InferenceTimeout, anything else)
go to :meth:`Controller.on_error` (zero command until a good chunk) and to ``report`` (the node's
logger); the thread goes on and retries at the next due observation.

Test-only faults (the node's ``fault`` parameter; never set on a robot): ``nan`` makes every
chunk NaN, ``delay:SECONDS`` makes every call that much slower (a model slower than the control
period), ``scale:FACTOR`` multiplies the actions (commands beyond the wheel limit), ``none``.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from gr00t_rlhf_ros.control import Controller
from gr00t_rlhf_ros.observation import Observation, ObservationBuilder
from gr00t_rlhf_ros.recording import error_summary

FAULTS = ("none", "nan", "delay:SECONDS", "scale:FACTOR")


@dataclass(frozen=True)
class Fault:
    kind: str = "none"          # none | nan | delay | scale
    value: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "Fault":
        """``"none"``, ``"nan"``, ``"delay:0.3"``, ``"scale:10"``; ValueError naming the parameter otherwise."""
        kind, _, arg = str(text).strip().partition(":")
        if kind in ("none", "nan") and not arg:
            return cls(kind)
        if kind in ("delay", "scale"):
            try:
                v = float(arg)
            except ValueError:
                v = math.nan
            if math.isfinite(v) and v >= 0:
                return cls(kind, v)
        raise ValueError(f"parameter fault: {text!r} is not one of {', '.join(FAULTS)} (test-only)")


@dataclass
class Result:
    """What the last call gave (for diagnostics); ``chunk`` is the runtime's Chunk."""

    chunk: object
    observation: Observation
    wall_s: float               # the whole act() call, s (fault delay included)
    ready_wall: float = 0.0     # time.time() when the controller had the chunk (vs. the camera stamp)


class InferenceWorker:
    """The inference thread. ``start()``, ``stop()``; ``last`` is the last good :class:`Result`."""

    def __init__(self, runtime, builder: ObservationBuilder, controller: Controller, input_timeout: float,
                 report: Callable[[str], None], fault: Fault = Fault(), seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.runtime, self.builder, self.controller = runtime, builder, controller
        self.input_timeout, self.report, self.fault, self.clock = input_timeout, report, fault, clock
        self.seed = seed
        self.last: Result | None = None
        self.calls = 0
        self.errors = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._used_frame = 0
        self._thread = threading.Thread(target=self._run, name="policy_inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Something changed (a frame arrived, a tick passed): look again now."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to end; True if it did within ``timeout`` (a model call in flight finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _ready(self) -> bool:
        now = self.clock()
        return (self.builder.frame > self._used_frame and self.controller.replan_due(now)
                and not self.builder.stale(now, self.input_timeout))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            if self._stop.is_set() or not self._ready():
                continue
            try:
                self.step()
            except Exception as e:  # noqa: BLE001 - the thread's boundary: report, zero, go on
                self.errors += 1
                self.controller.on_error(f"inference worker: {error_summary(e)}")
                self.report(f"inference worker failed: {error_summary(e)}; commanding zero, retrying")

    def step(self) -> Result | None:
        """One inference from the latest observation (None if an input never arrived)."""
        obs = self.builder.snapshot()
        if obs is None:
            return None
        self._used_frame = obs.frame
        start = self.clock()
        if self.fault.kind == "delay" and self.fault.value > 0:
            self._stop.wait(self.fault.value)
        try:
            chunk = self.runtime.act(obs.data, seed=self.seed)
        except Exception as e:  # noqa: BLE001 - InferenceError / InferenceTimeout / a model bug: zero, retry
            self.errors += 1
            msg = self.controller.on_error(f"inference failed: {type(e).__name__}: {e}")
            self.report(msg)
            return None
        self.calls += 1
        if self.fault.kind == "nan":
            chunk = replace(chunk, actions=np.full_like(np.asarray(chunk.actions, dtype=np.float32), np.nan))
        elif self.fault.kind == "scale":
            chunk = replace(chunk, actions=np.asarray(chunk.actions) * self.fault.value)
        now = self.clock()
        result = Result(chunk, obs, now - start, time.time())
        err = self.controller.on_chunk(chunk.actions, obs.t0, now, meta=result)
        if err is not None:
            self.errors += 1
            self.report(err)
            return None
        self.last = result
        return result
