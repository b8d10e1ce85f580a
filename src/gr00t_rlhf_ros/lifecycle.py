"""How every long-running node of the package starts, spins and stops.

SIGINT and SIGTERM only set a flag (an exception raised from a signal handler can land inside
rclpy's executor); the spin loop notices it within 0.1 s, and the node's ``on_exit`` (stop the
wheels, commit the open episode, ...) runs while the ROS context is still valid, so its last
messages still go out. Errors in the node's construction (bad parameters, an unusable dataset)
print one line naming the problem and exit with code 1, without a traceback.

A node must not outlive whoever started it (``ros2 launch``, ``gr00t-rlhf drive``, a test, a
shell script): ``run`` asks the kernel to send it SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, Linux only; a no-op elsewhere), which takes the normal stop path
above (the recorder commits its episode). If the parent already died before that request, the
node stops at once.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from typing import Callable

# the parent as early as this process can know it (before the slow rclpy import), so that a
# parent dying before the prctl call in die_with_parent is noticed too
_PARENT_AT_START = os.getppid()

import rclpy  # noqa: E402
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402


_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; False elsewhere).

    Returns True if the request is in place. If the parent is already gone (this process was
    re-parented since it started), ``sig`` is sent to this process right away.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    # The kernel signals on the death of the thread that forked us; if the parent died before
    # the request above, nobody will signal: we were re-parented (to init or a subreaper).
    if os.getppid() != _PARENT_AT_START:
        os.kill(os.getpid(), sig)
    return True


def run(make_node: Callable[[], object], name: str, args=None, on_exit: Callable[[object], None] | None = None,
        executor: Callable[[], Executor] = SingleThreadedExecutor,
        startup_errors: tuple[type[BaseException], ...] = (ValueError, OSError),
        until: Callable[[object], bool] = lambda node: False) -> None:
    """Run ``make_node()`` until Ctrl-C, SIGTERM, an external shutdown or ``until(node)``; then ``on_exit(node)``."""
    stop = threading.Event()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, lambda *_: stop.set())   # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    die_with_parent(signal.SIGTERM)  # after the handlers: an early SIGTERM is a clean stop
    try:
        node = make_node()
    except startup_errors as e:
        print(f"[{name}] error: {e}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        sys.exit(1)
    ex = executor()
    ex.add_node(node)
    try:
        while rclpy.ok() and not stop.is_set() and not until(node):
            ex.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ex.shutdown(timeout_sec=5.0)  # let callbacks still running (multi-threaded executor) finish
        if on_exit is not None:  # runs after an external shutdown too: it must check the context itself
            on_exit(node)
        node.destroy_node()
        rclpy.try_shutdown()
