"""feedback_node over real DDS: typed keys become /human_feedback messages; bad input is named."""
import subprocess
import threading

from std_msgs.msg import Int32

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.qos import profile
from ros_harness import node_argv, wait_until


def test_keys_send_feedback_and_quit(ros_env, ros_node, tmp_path):
    spec = load_contract().topic("human_feedback")
    got, lock = [], threading.Lock()

    def cb(msg):
        with lock:
            got.append(msg.data)

    sub = ros_node.node.create_subscription(Int32, spec.name, cb, profile(spec))
    log = open(tmp_path / "feedback.log", "w+")
    proc = subprocess.Popen(node_argv("feedback_node"), env=ros_env, stdin=subprocess.PIPE, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: sub.get_publisher_count() > 0, 30, "feedback_node's publisher to match")

        def press(keys: str):
            proc.stdin.write(keys)
            proc.stdin.flush()

        # /human_feedback is volatile: until the writer has matched our reader too, a key press is
        # not delivered. Press "b" until one arrives, then the rest.
        wait_until(lambda: press("b\n") or got, 30, "the first feedback message", interval=0.5)
        press("g\n7\nstart\n")
        wait_until(lambda: got[-1] == 1, 15, "the 'good' feedback")
        proc.stdin.write("q\n")
        proc.stdin.flush()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log.seek(0)
    text = log.read()
    assert set(got[:-1]) == {0} and got[-1] == 1, text
    assert "g  ->  1  Doing good" in text                         # the help shows the keymap
    assert "ignored input '7'" in text                            # not a key of the vocabulary
    assert "/recorder/start_episode is not available" in text     # no recorder running: said, not crashed


def test_bad_vocabulary_parameter_is_one_clear_line(ros_env):
    r = subprocess.run(node_argv("feedback_node", "-p", "vocabulary:=ternary"), env=ros_env, capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert "feedback vocabulary 'ternary': not a preset" in r.stderr and "Traceback" not in r.stderr
