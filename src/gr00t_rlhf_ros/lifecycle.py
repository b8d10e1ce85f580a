"""How every long-running node of the package starts, spins and stops.

SIGINT and SIGTERM only set a flag (an exception raised from a signal handler can land inside
rclpy's executor); the spin loop notices it within 0.1 s, and the node's ``on_exit`` (stop the
wheels, commit the open episode, ...) runs while the ROS context is still valid, so its last
messages still go out. Errors in the node's construction (bad parameters, an unusable dataset)
print one line naming the problem and exit with code 1, without a traceback.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions


def run(make_node: Callable[[], object], name: str, args=None, on_exit: Callable[[object], None] | None = None,
        executor: Callable[[], Executor] = SingleThreadedExecutor,
        startup_errors: tuple[type[BaseException], ...] = (ValueError, OSError),
        until: Callable[[object], bool] = lambda node: False) -> None:
    """Run ``make_node()`` until Ctrl-C, SIGTERM, an external shutdown or ``until(node)``; then ``on_exit(node)``."""
    stop = threading.Event()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, lambda *_: stop.set())   # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
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
