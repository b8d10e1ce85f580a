"""Remote runtimes: ``RemotePolicy`` / ``RemoteReward`` talk to a ``gr00t-rlhf serve`` server over ZeroMQ
and have the methods of the local runtimes (``open_policy("tcp://gpu-box:5555")``). numpy + pyzmq only.

Timeouts and failures (the robot side must never hang):

* each request waits at most ``timeout_s`` for its reply, sending included, then raises
  ``InferenceTimeout``; the client stays usable: every request carries an id and a late reply to an
  older id is discarded (DEALER socket; ZMQ_IMMEDIATE, so nothing is queued while no server is
  connected: a request to a dead or unreachable server times out instead of being delivered minutes
  later);
* the server gone: the next calls time out too (TCP heartbeats drop a silent peer after 3 s);
* the server restarted on the same address: ZeroMQ reconnects by itself; the reply's server instance
  id changes, the client fetches the spec again and refuses (InferenceError) if the model changed;
* a server-side failure (bad observation, model error) comes back as one-line ``InferenceError``; a
  protocol mismatch is an InferenceError saying which versions met.

Not thread-safe: use a client from one thread.
"""
from __future__ import annotations

import itertools
import math
import re
import time

import numpy as np
import zmq

from . import wire
from .api import (Chunk, InferenceError, InferenceTimeout, ObservationSpec, check_clip, check_observation,
                  one_line)

_ADDRESS = re.compile(r"^tcp://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})$")


def parse_address(address: str) -> str:
    """-> the address checked as tcp://HOST:PORT (InferenceError naming it otherwise)."""
    m = _ADDRESS.match(str(address))
    if not m or not 0 < int(m.group(2)) < 65536:
        raise InferenceError(f"remote source {address!r}: expected tcp://HOST:PORT (port 1..65535)")
    return str(address)


def _check_timeout(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InferenceError(f"{name} = {value!r}: must be a positive number of seconds")
    return float(value)


class Connection:
    """One DEALER socket to a server with request ids and deadlines (see the module docstring)."""

    def __init__(self, address: str, timeout_s: float = 1.0):
        self.address = parse_address(address)
        self.timeout_s = _check_timeout("timeout_s", timeout_s)
        self._ids = itertools.count(1)
        self._ctx = zmq.Context()
        s = self.socket = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.IMMEDIATE, 1)
        s.setsockopt(zmq.RECONNECT_IVL, 100)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        s.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
        s.setsockopt(zmq.MAXMSGSIZE, 64 << 20)
        try:
            s.connect(self.address)
        except zmq.ZMQError as e:
            self.close()
            raise InferenceError(f"remote source {address!r}: {e}") from None
        self.server: str | None = None                          # the instance id the client knows
        self.last_server: str | None = None                     # the instance id of the last reply
        self.stale_replies = 0

    def request(self, method: str, fields: dict | None = None, arrays: dict | None = None,
                timeout_s: float | None = None) -> tuple[dict, dict]:
        """-> (reply header, arrays) of a successful reply; InferenceTimeout / InferenceError otherwise."""
        if self.socket is None:
            raise InferenceError(f"{self.address}: the runtime is closed")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        rid = next(self._ids)
        frames = wire.encode({"id": rid, "method": method, "fields": fields or {}}, arrays)
        while True:                                              # send: only onto a live connection
            try:
                self.socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
                break
            except zmq.Again:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise InferenceTimeout(f"{self.address}: no server connected within {timeout:g} s "
                                           f"(is `gr00t-rlhf serve` running there?)") from None
                self.socket.poll(max(1, int(left * 1000)), zmq.POLLOUT)
        while True:                                              # receive: the reply with this id
            left = deadline - time.monotonic()
            if left <= 0 or not self.socket.poll(max(1, int(math.ceil(left * 1000))), zmq.POLLIN):
                if time.monotonic() < deadline:
                    continue
                raise InferenceTimeout(f"{self.address}: no reply to {method!r} within {timeout:g} s")
            reply = self.socket.recv_multipart(zmq.NOBLOCK)
            try:
                header, out = wire.decode(reply)
            except wire.WireError as e:
                raise InferenceError(f"{self.address}: bad reply ({e})") from None
            if header["protocol"] != wire.PROTOCOL and not header.get("ok", False):
                raise InferenceError(f"{self.address}: {header.get('error') or 'protocol mismatch'}")
            if header["protocol"] != wire.PROTOCOL:
                raise InferenceError(f"{self.address}: the server speaks {header['protocol']!r}, this client "
                                     f"{wire.PROTOCOL!r}; install the same gr00t_rlhf on both")
            if header.get("id") != rid:
                self.stale_replies += 1                          # the late reply of a timed-out request
                continue
            self.last_server = header.get("server")
            if not header.get("ok"):
                raise InferenceError(f"{self.address}: {header.get('error') or 'request failed'}")
            return header, out

    def close(self) -> None:
        """Close the socket (idempotent); later requests raise InferenceError."""
        if getattr(self, "socket", None) is not None:
            self.socket.close(0)
            self.socket = None
        if not self._ctx.closed:
            self._ctx.term()


class _Remote:
    kind = ""
    last_server_s = 0.0        # the server's time of the last request (arrival to reply), s

    def __init__(self, address: str, timeout_s: float = 1.0, connect_timeout_s: float = 10.0):
        connect_timeout_s = _check_timeout("connect_timeout_s", connect_timeout_s)
        self.conn = Connection(address, timeout_s)
        try:
            header, _ = self.conn.request("spec", timeout_s=connect_timeout_s)
        except InferenceError as e:
            self.conn.close()
            raise type(e)(f"remote {self.kind} {address!r}: {one_line(e).replace(address + ': ', '')}") from None
        self._info = self._accept(header)
        self.source = address

    def _accept(self, header: dict) -> dict:
        info = header.get("result") or {}
        if info.get("kind") != self.kind:
            raise InferenceError(f"{self.conn.address} serves a {info.get('kind')!r} model, not a {self.kind}")
        self.spec = ObservationSpec.from_dict(info.get("spec") or {})
        self.conn.server = header.get("server")
        return info

    def info(self) -> dict:
        return dict(self._info, remote=self.conn.address)

    def _call(self, method: str, fields: dict, arrays: dict) -> tuple[dict, dict]:
        try:
            header, out = self.conn.request(method, fields, arrays)
        except InferenceTimeout:
            raise
        except InferenceError:
            self._check_restart()                                 # a new server with another model says why
            raise
        self._check_restart()
        return header, out

    def _check_restart(self) -> None:
        """After a reply from a new server instance (restarted): carry on if it serves the same model."""
        if self.conn.last_server is None or self.conn.last_server == self.conn.server:
            return
        fresh, _ = self.conn.request("spec")
        keep = ("server", "device", "remote")
        before = {k: v for k, v in self._info.items() if k not in keep}
        after = {k: v for k, v in (fresh.get("result") or {}).items() if k not in keep}
        if before != after:
            raise InferenceError(f"{self.conn.address}: the server restarted with a different model "
                                 f"({after.get('kind')} {after.get('source')!r}); restart this node to use it")
        self._info = fresh.get("result") or {}
        self.conn.server = fresh.get("server")

    def close(self) -> None:
        self.conn.close()


class RemotePolicy(_Remote):
    """``act(observation, seed=None) -> Chunk`` on a ``gr00t-rlhf serve policy`` server."""

    kind = "policy"

    def __init__(self, address: str, num_candidates: int = 1, timeout_s: float = 1.0, connect_timeout_s: float = 10.0,
                 condition: str | None = None, guidance: float | None = None):
        super().__init__(address, timeout_s, connect_timeout_s)
        n = int(self._info.get("num_candidates", 1))
        if num_candidates not in (1, n):
            self.close()
            raise InferenceError(f"remote policy {address!r} samples {n} candidate(s), num_candidates = "
                                 f"{num_candidates} was asked: best-of-N runs on the server (serve policy "
                                 f"--num-candidates {num_candidates} --reward-model R)")
        self.num_candidates = n
        # an advantage-conditioned policy samples as its server was started: asking for another setting is refused
        served = {"condition": self._info.get("condition"), "guidance": self._info.get("guidance")}
        for name, asked in (("condition", condition), ("guidance", guidance)):
            if asked is not None and asked != served[name]:
                self.close()
                how = (f"serves {name} {served[name]!r}" if served["condition"] is not None
                       else "serves a policy without advantage conditioning")
                raise InferenceError(f"remote policy {address!r} {how}, {name} = {asked!r} was asked: the "
                                     f"server sets it (serve policy --{name} VALUE)")

    def act(self, observation: dict, seed: int | None = None) -> Chunk:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise InferenceError(f"seed = {seed!r}: must be a non-negative integer or None")
        clean = check_observation(self.spec, observation)
        fields, arrays = wire.split_fields(clean)
        fields["seed"] = None if seed is None else int(seed)
        header, out = self._call("act", fields, arrays)
        result = header.get("result") or {}
        self.last_server_s = float(result.get("server_s", 0.0))
        actions = out.get("actions")
        if actions is None or actions.shape != (self.spec.action_horizon, self.spec.action_dim):
            raise InferenceError(f"{self.conn.address}: bad reply: actions "
                                 f"{None if actions is None else list(actions.shape)}, expected "
                                 f"[{self.spec.action_horizon}, {self.spec.action_dim}]")
        return Chunk(actions=actions.astype(np.float32), scores=out.get("scores"), chosen=int(result.get("chosen", 0)),
                     model_s=float(result.get("model_s", 0.0)))


class RemoteReward(_Remote):
    """``score(clip) -> float`` on a ``gr00t-rlhf serve reward`` server."""

    kind = "reward"

    @property
    def horizon(self) -> int:
        return int(self._info["horizon"])

    @property
    def frame_rate(self) -> float:
        return float(self._info["frame_rate"])

    @property
    def action_horizon(self) -> int:
        return int(self._info.get("action_horizon", 0))

    @property
    def reward_range(self) -> tuple[float, float]:
        lo, hi = self._info["reward_range"]
        return float(lo), float(hi)

    def score(self, clip: dict) -> float:
        clean = check_clip(self.spec, clip, self.horizon, self.action_horizon)
        fields, arrays = wire.split_fields(clean)
        header, _ = self._call("score", fields, arrays)
        self.last_model_s = float((header.get("result") or {}).get("model_s", 0.0))
        self.last_server_s = float((header.get("result") or {}).get("server_s", 0.0))
        return float((header.get("result") or {})["score"])
