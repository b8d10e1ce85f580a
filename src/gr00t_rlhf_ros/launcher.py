"""Run a node graph as supervised child processes (what ``gr00t-rlhf drive`` does).

- each node is ``python -m gr00t_rlhf_ros.nodes.<executable> --ros-args ...``;
- every output line is prefixed with ``[executable]``;
- Ctrl-C / SIGTERM: SIGINT to every child, SIGTERM then SIGKILL after deadlines; children also
  get SIGTERM if the launcher itself dies (PR_SET_PDEATHSIG), so none is orphaned;
- a required node that exits stops the others (a robot whose driver or simulator is gone must
  not keep going); the exit code is non-zero if any node failed;
- an empty graph (``--no-sim --driver none``) waits for Ctrl-C / ``duration`` like any other, so a
  bring-up script behaves the same whatever it starts; when every node has exited, it returns.

The children get the launcher's environment as it is: no Fast DDS transport is forced on them,
so a node or tool started by hand (same defaults) always sees them (see docs/ros.md).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from gr00t_rlhf_ros.graph import NodeSpec
from gr00t_rlhf_ros.paths import config_path

_PR_SET_PDEATHSIG = 1


def _die_with_parent():  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _param_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"'{v}'" if not v.startswith("'") else v   # '' too: an empty string, not a missing value
    return str(v)


def node_command(spec: NodeSpec, python: str = sys.executable) -> list[str]:
    """The command line that starts ``spec`` as a process."""
    cmd = [python, "-m", f"gr00t_rlhf_ros.nodes.{spec.executable}", "--ros-args", "-r", f"__node:={spec.executable}"]
    if spec.namespace:  # plain processes have no enclosing namespace: a relative one is under /
        cmd += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    if spec.log_level:
        cmd += ["--log-level", spec.log_level]
    if spec.params_file:
        cmd += ["--params-file", str(config_path(spec.params_file))]
    for k, v in spec.parameters.items():
        cmd += ["-p", f"{k}:={_param_value(v)}"]
    return cmd


def default_environment() -> dict[str, str]:
    env = dict(os.environ)
    # FASTDDS_BUILTIN_TRANSPORTS is deliberately left as the user has it: a participant with
    # LARGE_DATA and one with the default transports do not discover each other (docs/ros.md)
    env.setdefault("MUJOCO_GL", "osmesa")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    return env


@dataclass
class _Child:
    spec: NodeSpec
    proc: subprocess.Popen
    pump: threading.Thread


class Launcher:
    """Start, watch and stop a list of nodes."""

    def __init__(self, nodes: list[NodeSpec], env: dict[str, str] | None = None, out=None,
                 stop_timeout: float = 10.0):
        self.nodes = nodes
        self.env = env or default_environment()
        self.out = out or sys.stdout
        self.stop_timeout = stop_timeout
        self.children: list[_Child] = []
        self._stop = threading.Event()
        self._print_lock = threading.Lock()
        self.failed: list[str] = []
        self._reported: set[str] = set()

    def _say(self, name: str, line: str) -> None:
        with self._print_lock:
            self.out.write(f"[{name}] {line}" if line.endswith("\n") else f"[{name}] {line}\n")
            self.out.flush()

    def _pump(self, name: str, stream) -> None:
        for line in iter(stream.readline, ""):
            self._say(name, line)
        stream.close()

    def start(self) -> None:
        for spec in self.nodes:
            cmd = node_command(spec)
            proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, bufsize=1,
                                    start_new_session=True, preexec_fn=_die_with_parent)
            pump = threading.Thread(target=self._pump, args=(spec.executable, proc.stdout), daemon=True)
            pump.start()
            self.children.append(_Child(spec, proc, pump))
            self._say("drive", f"started {spec.executable} (pid {proc.pid})")

    def request_stop(self, *_):
        self._stop.set()

    def wait(self, duration: float | None = None) -> int:
        """Block until a stop request, ``duration`` seconds, or a required node exiting."""
        t_end = None if duration is None else time.monotonic() + duration
        while not self._stop.is_set():
            if t_end is not None and time.monotonic() >= t_end:
                self._say("drive", f"duration of {duration:g} s reached")
                break
            exited = [c for c in self.children if c.proc.poll() is not None]
            for c in exited:
                if not c.spec.required and c.spec.executable not in self._reported:
                    self._reported.add(c.spec.executable)
                    self._say("drive", f"{c.spec.executable} exited with code {c.proc.returncode} "
                                       "(not required: the others go on)")
                    if c.proc.returncode != 0:
                        self.failed.append(c.spec.executable)
            if any(c.spec.required for c in exited):
                for c in exited:
                    if c.spec.executable in self._reported:
                        continue
                    self._say("drive", f"{c.spec.executable} exited with code {c.proc.returncode}")
                    if c.proc.returncode != 0:
                        self.failed.append(c.spec.executable)
                if not self.failed:  # a required node ended by itself: still not a healthy bring-up
                    self.failed += [c.spec.executable for c in exited]
                break
            if self.children and len(exited) == len(self.children):
                self._say("drive", "every node has exited")
                break
            self._stop.wait(0.1)
        return self.shutdown()

    def shutdown(self) -> int:
        """Stop every child (SIGINT → SIGTERM → SIGKILL); returns the exit code for the launcher."""
        running = [c for c in self.children if c.proc.poll() is None]
        for c in running:
            c.proc.send_signal(signal.SIGINT)
        self._wait_all(running, self.stop_timeout)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = [c for c in running if c.proc.poll() is None]
            for c in left:
                self._say("drive", f"{c.spec.executable} did not stop; sending {sig.name}")
                c.proc.send_signal(sig)
            self._wait_all(left, 5.0)
        for c in self.children:
            c.pump.join(2.0)
            rc = c.proc.returncode
            if c in running and rc not in (0, -signal.SIGINT, 130) and c.spec.executable not in self.failed:
                self.failed.append(c.spec.executable)
        if self.failed:
            self._say("drive", f"failed: {', '.join(self.failed)}")
            return 1
        self._say("drive", "all nodes stopped")
        return 0

    @staticmethod
    def _wait_all(children, timeout):
        deadline = time.monotonic() + timeout
        for c in children:
            try:
                c.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


def run_graph(nodes: list[NodeSpec], duration: float | None = None, session=None) -> int:
    """Run ``nodes`` until Ctrl-C / SIGTERM / ``duration`` / a node failing; returns the exit code.

    ``session`` (a :class:`gr00t_rlhf_ros.drive_session.DriveSession`, optional) starts before the
    nodes, may stop the run (its ``on_goal``), and is finished after every node has stopped: its
    summary line is the last line printed. Ctrl-C while it finishes the video is ignored (a second
    SIGTERM/SIGINT would lose the video; the remux takes well under a second).
    """
    launcher = Launcher(nodes)
    old = {s: signal.signal(s, launcher.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if session is not None:
            session.log = lambda line: launcher._say("drive", line)

            def stop_at_goal():
                launcher._say("drive", "goal reached: stopping (--no-stop-at-goal drives on)")
                launcher.request_stop()
            session.on_goal = stop_at_goal
            session.start()
        launcher.start()
        rc = launcher.wait(duration)
        if session is not None:
            line = session.finish()
            with launcher._print_lock:
                launcher.out.write(line + "\n")
                launcher.out.flush()
        return rc
    finally:
        for s, h in old.items():
            signal.signal(s, h)
