"""gr00t_rlhf_ros.observation: the policy's observation from the latest messages (rclpy messages, no DDS)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
from sensor_msgs.msg import Image, Imu, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from gr00t_rlhf_ros.contract import load_contract  # noqa: E402
from gr00t_rlhf_ros.msgs import BadMessage  # noqa: E402
from gr00t_rlhf_ros.observation import ObservationBuilder, ObservationError, input_map  # noqa: E402
from gr00t_rlhf_train.inference.api import ObservationSpec, check_observation  # noqa: E402

SPEC = ObservationSpec()   # GR00T N1 on this robot: video.ego_view, 3 states, the task description
C = load_contract()


def builder(**kw) -> ObservationBuilder:
    return ObservationBuilder(input_map(C, SPEC.video_keys, SPEC.state_keys, SPEC.language_key), **kw)


def image(w=8, h=6, encoding="rgb8", value=7, step=None) -> Image:
    c = 1 if encoding == "mono8" else 3
    msg = Image(height=h, width=w, encoding=encoding, step=step if step is not None else w * c)
    msg.data = bytes([value]) * (msg.step * h)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 500_000_000
    return msg


def joints(left=1.5, right=-0.5) -> JointState:
    return JointState(name=["right_wheel_joint", "left_wheel_joint"], velocity=[right, left])


def imu(x=3.0, y=4.0) -> Imu:
    m = Imu()
    m.linear_acceleration.x, m.linear_acceleration.y = x, y
    return m


def feed_all(b: ObservationBuilder, now: float = 1.0) -> None:
    b.on_camera(image(), now)
    b.on_joint_states(joints(), now)
    b.on_imu(imu(), now)
    b.on_task(String(data="Find Blue cube"), now)


def test_the_snapshot_has_the_model_keys_from_the_contract_sources():
    b = builder()
    assert b.snapshot() is None                              # nothing yet
    feed_all(b, now=2.0)
    obs = b.snapshot()
    assert obs.t0 == 2.0 and obs.frame == 1 and obs.camera_stamp == 12.5
    d = check_observation(SPEC, obs.data)                    # what the runtime accepts
    assert d["video.ego_view"].shape == (6, 8, 3) and d["video.ego_view"].dtype == np.uint8
    assert d["state.left_wheel"][0] == 1.5 and d["state.right_wheel"][0] == -0.5   # by joint name, not order
    assert d["state.acceleration"][0] == pytest.approx(5.0)  # |(3, 4, 0)|
    assert d["annotation.human.action.task_description"] == "Find Blue cube" and d["stamp"] == 2.0


def test_ages_and_stale_inputs():
    b = builder(topics={"imu": "/robot1/imu"})
    assert b.stale(0.0, 0.5) == ["camera", "joint_states", "/robot1/imu", "task"]
    feed_all(b, now=1.0)
    b.on_camera(image(), 1.4)
    ages = b.ages(1.6)
    assert ages["camera"] == pytest.approx(0.2) and ages["joint_states"] == pytest.approx(0.6) and ages["task"] == 0.0
    assert b.stale(1.6, 0.5) == ["joint_states", "/robot1/imu"]


def test_the_task_parameter_holds_until_a_message_arrives():
    b = builder(task="Find Red cube")
    b.on_camera(image(), 1.0)
    b.on_joint_states(joints(), 1.0)
    b.on_imu(imu(), 1.0)
    assert b.snapshot().data[SPEC.language_key] == "Find Red cube"
    b.on_task(String(data="Find Green sphere"), 1.1)
    assert b.snapshot().data[SPEC.language_key] == "Find Green sphere"


@pytest.mark.parametrize("bad, reason", [
    (image(encoding="32FC1"), "unsupported encoding"),
    (image(step=3), "step smaller"),
    (image(w=0), "empty image"),
])
def test_a_bad_image_is_refused_and_the_last_good_one_stays(bad, reason):
    b = builder()
    b.on_camera(image(value=9), 1.0)
    if bad.width == 0:
        bad.data = b""
    with pytest.raises(BadMessage) as e:
        b.on_camera(bad, 2.0)
    assert reason in e.value.reason and b.frame == 1 and b.ages(2.0)["camera"] == pytest.approx(1.0)


def test_an_image_of_another_size_than_required_is_refused():
    b = builder(image_size=(240, 320))
    with pytest.raises(BadMessage, match="image is 8x6, the dataset's images are 320x240"):
        b.on_camera(image(), 1.0)


def test_mono_and_bgr_images_become_rgb():
    b = builder()
    feed_all(b)
    bgr = image(encoding="bgr8")
    bgr.data = bytes([1, 2, 3]) * 48
    b.on_camera(bgr, 1.0)
    px = b.snapshot().data["video.ego_view"]
    assert px[0, 0].tolist() == [3, 2, 1] and px.flags["C_CONTIGUOUS"]


def test_bad_state_messages_are_refused():
    b = builder()
    with pytest.raises(BadMessage, match="left_wheel_joint"):
        b.on_joint_states(JointState(name=["right_wheel_joint"], velocity=[0.0]), 1.0)
    with pytest.raises(BadMessage, match="non-finite"):
        b.on_imu(imu(x=float("nan")), 1.0)
    with pytest.raises(BadMessage, match="empty task"):
        b.on_task(String(data="  "), 1.0)


def test_a_model_key_the_contract_cannot_feed_is_a_one_line_error():
    with pytest.raises(ObservationError, match="state.battery: .*has no 'battery'"):
        input_map(C, ["video.ego_view"], [("state.battery", 1)], SPEC.language_key)
    with pytest.raises(ObservationError, match="2 camera views"):
        input_map(C, ["video.ego_view", "video.wrist"], SPEC.state_keys, SPEC.language_key)
    with pytest.raises(ObservationError, match="video.wrist"):
        input_map(C, ["video.wrist"], SPEC.state_keys, SPEC.language_key)
