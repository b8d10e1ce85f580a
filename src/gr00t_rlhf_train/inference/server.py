"""The inference server: a local runtime behind a ZeroMQ ROUTER socket (``gr00t-rlhf serve``). No ROS.

    server = InferenceServer(LocalPolicy.open("runs/sft/best"), "tcp://0.0.0.0:5555")
    server.serve_forever()           # until stop() (another thread) or Ctrl-C / SIGTERM in the CLI

Requests (wire.py): ``spec`` -> the runtime's description (kind, ObservationSpec, horizon, ...);
``ping``; ``act`` (policy: an observation + ``seed`` -> actions, scores, chosen, model_s); ``score``
(reward: a clip -> score, model_s). ``server_s`` in a reply: from the request's arrival to the reply
(decode, checks, model, the wait behind a delay), so a client can tell network from server time. Every request is answered, a failure with ``ok: false`` and one
line (a bad observation, a model error, a protocol mismatch) — except an ``act`` / ``score`` that a
newer one from the same client replaced while it waited: its client has given up on it (it timed
out), so the server answers only the newest ("the latest observation wins, nothing queues").
Requests are served one at a time, in order. Best-of-N keeps one clip history per client.
``debug_delay_s`` (TEST ONLY) sleeps before each act / score, to test client timeouts.
"""
from __future__ import annotations

import time
import uuid
from collections import OrderedDict

import numpy as np
import zmq

from . import wire
from .api import InferenceError, one_line

MAX_MESSAGE_BYTES = 64 << 20
MAX_CLIENTS = 64                 # best-of-N histories kept (least recently used dropped)


class InferenceServer:
    def __init__(self, runtime, address: str = "tcp://127.0.0.1:5555", debug_delay_s: float = 0.0):
        from .runtime import LocalPolicy, LocalReward

        if isinstance(runtime, LocalPolicy):
            self.kind = "policy"
        elif isinstance(runtime, LocalReward):
            self.kind = "reward"
        else:
            raise InferenceError(f"InferenceServer: serves a LocalPolicy or LocalReward, got {type(runtime).__name__}")
        if not (isinstance(debug_delay_s, (int, float)) and debug_delay_s >= 0):
            raise InferenceError(f"debug_delay_s = {debug_delay_s!r}: must be >= 0 seconds")
        self.runtime, self.debug_delay_s = runtime, float(debug_delay_s)
        self.instance = uuid.uuid4().hex
        self.stats = {"requests": 0, "replaced": 0, "errors": 0}
        self._histories: OrderedDict[bytes, object] = OrderedDict()
        self._running = False
        self._ctx = zmq.Context()
        self.socket = self._ctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 0)          # a reply to a vanished client is dropped
        try:
            self.socket.bind(address)
        except zmq.ZMQError as e:
            self.close()
            raise InferenceError(f"serve: cannot bind {address}: {e}") from None
        self.address = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    # -- the loop --------------------------------------------------------------------------------
    def serve_forever(self, poll_ms: int = 100) -> None:
        """Serve until ``stop()``; drains every waiting request, keeps the newest act/score per client."""
        self._running = True
        while self._running:
            if not self.socket.poll(poll_ms, zmq.POLLIN):
                continue
            pending: OrderedDict[tuple, tuple] = OrderedDict()
            while True:
                try:
                    frames = self.socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._receive(frames, pending)
            for (identity, _), (header, arrays) in list(pending.items()):
                self._handle(identity, header, arrays)

    def stop(self) -> None:
        self._running = False

    def close(self) -> None:
        self.socket.close(0)
        self._ctx.term()

    def _receive(self, frames: list, pending: OrderedDict) -> None:
        identity, body = frames[0], frames[1:]
        self.stats["requests"] += 1
        try:
            header, arrays = wire.decode(body)
        except wire.WireError as e:
            self._reply(identity, None, error=f"bad request: {e}")
            return
        rid = header.get("id")
        header["received"] = time.perf_counter()                  # for the server time in the reply
        if header["protocol"] != wire.PROTOCOL:
            self._reply(identity, rid, error=f"protocol mismatch: the client speaks {header['protocol']!r}, this "
                                             f"server {wire.PROTOCOL!r}; install the same gr00t_rlhf on both")
            return
        method = header.get("method")
        if method in ("act", "score"):
            key = (identity, "model")
            if key in pending:
                self.stats["replaced"] += 1
                del pending[key]
            pending[key] = (header, arrays)
        else:
            pending[(identity, rid)] = (header, arrays)

    def _handle(self, identity: bytes, header: dict, arrays: dict) -> None:
        rid, method = header.get("id"), header.get("method")
        fields = header.get("fields") if isinstance(header.get("fields"), dict) else {}
        try:
            if method == "spec":
                self._reply(identity, rid, result=self.describe())
            elif method == "ping":
                self._reply(identity, rid, result={})
            elif method == "act" and self.kind == "policy":
                self._act(identity, rid, fields, arrays, header["received"])
            elif method == "score" and self.kind == "reward":
                self._score(identity, rid, fields, arrays, header["received"])
            else:
                raise InferenceError(f"method {method!r} is not served by this {self.kind} server; "
                                     f"it answers spec, ping and {'act' if self.kind == 'policy' else 'score'}")
        except InferenceError as e:
            self._reply(identity, rid, error=one_line(e))
        except Exception as e:  # noqa: BLE001 - the server stays up; the client gets one line
            self._reply(identity, rid, error=f"{type(e).__name__}: {one_line(e)}")

    def describe(self) -> dict:
        return self.runtime.info() | {"server": self.instance}

    def _act(self, identity: bytes, rid, fields: dict, arrays: dict, received: float) -> None:
        seed = fields.pop("seed", None)
        obs = {**arrays, **fields}
        if self.debug_delay_s:
            time.sleep(self.debug_delay_s)
        history = None
        if self.runtime.best_of_n is not None:
            history = self._histories.pop(identity, None) or self.runtime.best_of_n.new_history()
            self._histories[identity] = history
            while len(self._histories) > MAX_CLIENTS:
                self._histories.popitem(last=False)
        chunk = self.runtime.act_with_history(obs, seed, history)
        out = {"actions": chunk.actions}
        if chunk.scores is not None:
            out["scores"] = np.asarray(chunk.scores, np.float32)
        self._reply(identity, rid, arrays=out, result={"chosen": chunk.chosen, "model_s": chunk.model_s,
                                                       "server_s": time.perf_counter() - received})

    def _score(self, identity: bytes, rid, fields: dict, arrays: dict, received: float) -> None:
        clip = {**arrays, **fields}
        if self.debug_delay_s:
            time.sleep(self.debug_delay_s)
        t0 = time.perf_counter()
        value = self.runtime.score(clip)
        now = time.perf_counter()
        self._reply(identity, rid, result={"score": value, "model_s": now - t0, "server_s": now - received})

    def _reply(self, identity: bytes, rid, result: dict | None = None, error: str | None = None,
               arrays: dict | None = None) -> None:
        header = {"id": rid, "server": self.instance, "ok": error is None}
        if error is not None:
            self.stats["errors"] += 1
            header["error"] = error
        else:
            header["result"] = result or {}
        try:
            self.socket.send_multipart([identity, *wire.encode(header, arrays)], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass                                                   # the client's queue is full: it is gone
