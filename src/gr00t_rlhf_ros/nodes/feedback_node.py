"""feedback_node: an operator at a terminal sends human_feedback and starts/stops/discards episodes.

Run it in its own terminal while the robot drives (``ros2 run gr00t_rlhf_ros feedback_node`` or
``python -m gr00t_rlhf_ros.nodes.feedback_node``; for a namespaced robot add
``--ros-args -r __ns:=/robot1``). It needs no environment variable to reach a graph started by
``gr00t-rlhf drive`` or ``ros2 launch`` (both keep Fast DDS's default transports, docs/ros.md). In a terminal, single key presses act at once;
with stdin from a pipe or script, each line is a key, an integer feedback key or a word.
"""
from __future__ import annotations

# first: lifecycle notes this process's parent before the slow rclpy imports (see die_with_parent)
from gr00t_rlhf_ros import lifecycle  # isort: skip

import sys
import termios
import threading
import time
import tty

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from std_msgs.msg import Int32
from std_srvs.srv import Trigger

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.feedback_keys import default_keymap, help_text, interpret, parse_keymap
from gr00t_rlhf_ros.qos import profile
from gr00t_rlhf_train.feedback import load_vocabulary


class FeedbackNode(Node):
    def __init__(self):
        super().__init__("feedback_node")
        c = load_contract()
        vocab_spec = self.declare_parameter(
            "vocabulary", "binary",
            ParameterDescriptor(description="feedback vocabulary: 'binary', 'score' or a rewards.jsonl path")).value
        keymap = self.declare_parameter(
            "keymap", [""],
            ParameterDescriptor(description="key=feedback-key entries, e.g. ['g=1', 'b=0'] (empty: defaults)")).value
        self.vocab = load_vocabulary(vocab_spec)
        keymap = [k for k in keymap if k]
        self.keymap = parse_keymap(keymap, self.vocab) if keymap else default_keymap(self.vocab)
        fb = c.topic("human_feedback")
        self.pub = self.create_publisher(Int32, fb.name, profile(fb))
        self.episode_clients = {kind: self.create_client(Trigger, c.service(f"{kind}_episode").name)
                        for kind in ("start", "stop", "discard")}
        self.done = threading.Event()
        self.pending = 0          # service calls awaiting their reply
        self._done_at = None

    def on_input(self, token: str) -> None:
        cmd = interpret(token, self.keymap, self.vocab)
        if cmd is None:
            if token.strip():
                self.get_logger().warning(f"ignored input {token.strip()!r} (press h for help)")
            return
        if cmd.kind == "feedback":
            self.pub.publish(Int32(data=cmd.value))
            self.get_logger().info(f"feedback {cmd.value}: {self.vocab.texts[cmd.value]}")
        elif cmd.kind == "help":
            print(help_text(self.keymap, self.vocab), flush=True)
        elif cmd.kind == "quit":
            self.done.set()
        else:
            self._call(cmd.kind)

    def _call(self, kind: str) -> None:
        client = self.episode_clients[kind]
        # (runs on the input thread: waiting here does not stop the node from spinning)
        if not client.wait_for_service(timeout_sec=3.0):
            self.get_logger().error(f"{self.resolve_service_name(client.srv_name)} is not available: "
                                    "is recorder_node running (in this namespace)?")
            return
        self.pending += 1
        future = client.call_async(Trigger.Request())
        future.add_done_callback(lambda f: self._report(kind, f))

    def finished(self) -> bool:
        """Quit was asked (or input ended) and the last replies arrived (or 2 s passed)."""
        if not self.done.is_set():
            return False
        if self._done_at is None:
            self._done_at = time.monotonic()
        return self.pending == 0 or time.monotonic() - self._done_at > 2.0

    def _report(self, kind, future):
        self.pending -= 1
        resp = future.result()
        if resp.success:  # one call site per severity (rclpy requires it)
            self.get_logger().info(f"{kind} episode: {resp.message}")
        else:
            self.get_logger().error(f"{kind} episode: {resp.message}")


def _read_input(node: FeedbackNode) -> None:
    stream = sys.stdin
    if stream.isatty():
        fd = stream.fileno()
        old = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            while not node.done.is_set():
                ch = stream.read(1)
                if not ch:
                    break
                node.on_input(ch)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
    else:
        for line in stream:
            node.on_input(line)
            if node.done.is_set():
                break
    node.done.set()


def _start(args=None) -> FeedbackNode:
    node = FeedbackNode()
    print(help_text(node.keymap, node.vocab), flush=True)
    threading.Thread(target=_read_input, args=(node,), daemon=True).start()
    return node


def main(args=None):
    lifecycle.run(_start, "feedback_node", args, until=FeedbackNode.finished)


if __name__ == "__main__":
    main()
