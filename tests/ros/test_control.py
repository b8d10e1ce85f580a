"""gr00t_rlhf_ros.control: chunk timing, blending, clamping and the safety state machine (no ROS)."""
from __future__ import annotations

import numpy as np
import pytest

from gr00t_rlhf_ros.control import (DRIVING, ESTOP, FAULT, STALE, Blend, ControlConfig, Controller, Trajectory,
                                    wheels_to_twist)

CFG = ControlConfig(control_rate=50.0, action_rate=10.0, replan_every=8, blend_steps=4, max_wheel_speed=5.0)


def ramp(start: float, n: int = 16, step: float = 0.1) -> np.ndarray:
    """[n, 2]: left = right = start + i * step."""
    v = start + step * np.arange(n)
    return np.stack([v, v], axis=1)


def test_a_trajectory_interpolates_between_actions_and_runs_out():
    tr = Trajectory(ramp(0.0), t0=10.0, dt=0.1)
    assert tr.at(10.0)[0] == pytest.approx(0.0)
    assert tr.at(10.25)[0] == pytest.approx(0.25)          # between actions 2 and 3
    assert tr.at(11.55)[0] == pytest.approx(1.5)           # the last action is held to the end
    assert tr.at(11.6) is None
    held = Trajectory(ramp(0.0), t0=10.0, dt=0.1, interpolation="hold")
    assert held.at(10.25)[0] == pytest.approx(0.2)


def test_a_late_chunk_starts_where_its_observation_time_says():
    c = Controller(CFG)
    assert c.on_chunk(ramp(0.0), t0=0.0, now=0.3, meta="chunk 1") is None   # the model took 300 ms
    cmd = c.tick(0.3, [])
    assert cmd.state == DRIVING and cmd.wheels[0] == pytest.approx(0.3) and cmd.chunk_index == 3
    assert cmd.first_of_chunk == "chunk 1"
    assert c.tick(0.32, []).first_of_chunk is None         # only the first command is marked


def test_a_chunk_arriving_after_its_end_is_dropped():
    c = Controller(CFG)
    assert c.on_chunk(ramp(0.0), t0=0.0, now=1.7) is None
    assert c.counts.late == 1 and c.tick(1.7, []).state == STALE


def test_replanning_is_due_every_k_actions():
    c = Controller(CFG)
    assert c.replan_due(0.0)
    c.on_chunk(ramp(0.0), t0=0.0, now=0.05)
    assert not c.replan_due(0.74) and c.replan_due(0.75)   # 8 actions, less half an action of jitter


def test_the_new_chunk_is_cross_faded_in_without_a_jump():
    c = Controller(CFG)
    c.on_chunk(ramp(0.0, step=0.0), t0=0.0, now=0.0)        # old plan: 0 rad/s
    c.on_chunk(ramp(2.0, step=0.0), t0=0.8, now=0.8)        # new plan: 2 rad/s
    times = np.arange(0.8, 1.4, 0.02)
    trace = [c.tick(t, []).wheels[0] for t in times]
    assert trace[0] == pytest.approx(0.0)                   # starts where the old plan was
    assert max(np.abs(np.diff(trace))) <= 2.0 / 20 + 1e-9   # 2 rad/s over 0.4 s at 50 Hz: steps of 0.1
    assert trace[-1] == pytest.approx(2.0)
    no_blend = Controller(ControlConfig(blend_steps=0))
    no_blend.on_chunk(ramp(0.0, step=0.0), 0.0, 0.0)
    no_blend.on_chunk(ramp(2.0, step=0.0), 0.8, 0.8)
    assert no_blend.tick(0.8, []).wheels[0] == pytest.approx(2.0)


def test_a_chunk_arriving_mid_blend_fades_out_the_blend():
    old = Trajectory(ramp(0.0, step=0.0), 0.0, 0.1)
    mid = Blend(old, Trajectory(ramp(2.0, step=0.0), 0.0, 0.1), start=0.0, duration=0.4)
    assert mid.at(0.2)[0] == pytest.approx(1.0)
    c = Controller(CFG)
    c.on_chunk(ramp(0.0, step=0.0), 0.0, 0.0)
    c.on_chunk(ramp(2.0, step=0.0), 0.1, 0.1)
    before = c.tick(0.3, [])                                # half way: 1.0
    c.on_chunk(ramp(-2.0, step=0.0), 0.3, 0.3)
    after = c.tick(0.3, [])
    assert before.wheels[0] == pytest.approx(1.0) and after.wheels[0] == pytest.approx(1.0)
    assert c.tick(0.7, []).wheels[0] == pytest.approx(-2.0)


def test_commands_are_clamped_to_the_wheel_limit():
    c = Controller(CFG)
    c.on_chunk(np.array([[9.0, -7.0]] * 16), 0.0, 0.0)
    cmd = c.tick(0.0, [])
    assert cmd.wheels == (5.0, -5.0) and cmd.clamped and c.counts.clamped == 1


@pytest.mark.parametrize("bad", [np.full((16, 2), np.nan), np.array([[np.inf, 0.0]] * 16), np.zeros((16, 3))])
def test_a_bad_chunk_stops_the_robot_until_a_good_one(bad):
    c = Controller(CFG)
    c.on_chunk(ramp(1.0), 0.0, 0.0)
    assert c.tick(0.1, []).state == DRIVING
    err = c.on_chunk(bad, 0.2, 0.2)
    assert err and ("not finite" in err or "shape" in err)
    cmd = c.tick(0.2, [])
    assert cmd.state == FAULT and cmd.wheels == (0.0, 0.0) and c.replan_due(0.2)
    assert c.on_chunk(ramp(1.0), 0.3, 0.3) is None and c.tick(0.3, []).state == DRIVING


def test_an_inference_error_stops_the_robot():
    c = Controller(CFG)
    c.on_chunk(ramp(1.0), 0.0, 0.0)
    c.on_error("inference failed: InferenceTimeout: no reply from tcp://x:1 within 1.0 s")
    cmd = c.tick(0.1, [])
    assert cmd.state == FAULT and cmd.wheels == (0.0, 0.0) and "InferenceTimeout" in cmd.reason


def test_stale_inputs_stop_the_robot_and_drop_the_plan():
    c = Controller(CFG)
    c.on_chunk(ramp(1.0), 0.0, 0.0)
    cmd = c.tick(0.1, ["/imu"])
    assert cmd.state == STALE and cmd.wheels == (0.0, 0.0) and "/imu" in cmd.reason
    assert c.tick(0.12, []).state == STALE                  # no plan until a fresh chunk
    assert c.replan_due(0.12)


def test_the_chunk_running_out_stops_the_robot():
    c = Controller(CFG)
    assert c.tick(0.0, []).reason == "waiting for the first chunk"
    c.on_chunk(ramp(1.0), 0.0, 0.0)
    assert c.tick(1.59, []).state == DRIVING
    cmd = c.tick(1.6, [])
    assert cmd.state == STALE and "ran out" in cmd.reason and cmd.wheels == (0.0, 0.0)


def test_estop_latches_until_an_explicit_reset_refused_while_true():
    c = Controller(CFG)
    c.on_chunk(ramp(1.0), 0.0, 0.0)
    assert c.estop(True)
    assert c.tick(0.1, []).state == ESTOP and not c.replan_due(0.1)
    ok, why = c.reset_estop(0.15)
    assert not ok and "still true" in why
    c.estop(False)
    assert c.tick(0.2, []).state == ESTOP                   # released but still latched
    c.on_chunk(ramp(1.0), 0.2, 0.2)                         # computed before the reset: ignored
    assert c.tick(0.2, []).state == ESTOP
    assert c.reset_estop(0.3)[0]
    assert c.tick(0.3, []).state == STALE                   # no old plan resumes
    c.on_chunk(ramp(1.0), 0.25, 0.35)                       # observed before the release: dropped
    assert c.tick(0.35, []).state == STALE
    c.on_chunk(ramp(1.0), 0.3, 0.3)
    assert c.tick(0.3, []).state == DRIVING


def test_config_errors_name_the_field():
    for kwargs, field in [({"replan_every": 0}, "replan_every"), ({"control_rate": -1.0}, "control_rate"),
                          ({"interpolation": "cubic"}, "interpolation"), ({"blend_steps": -1}, "blend_steps")]:
        with pytest.raises(ValueError, match=field):
            ControlConfig(**kwargs)
    with pytest.raises(ValueError, match="replan_every: 20 is more than the model's 16"):
        ControlConfig(replan_every=20).check_horizon(16)


def test_wheel_speeds_to_twist_rep103():
    v, w = wheels_to_twist(1.0, 1.0, 0.07, 0.3)
    assert v == pytest.approx(0.07) and w == 0.0
    v, w = wheels_to_twist(-1.0, 1.0, 0.07, 0.3)            # right wheel forward: turn left (+z)
    assert v == 0.0 and w == pytest.approx(0.14 / 0.3)


# ---- the inference thread (the real tiny policy, no ROS) ------------------------------------------
def test_fault_parameter_values():
    from gr00t_rlhf_ros.policy_worker import Fault

    assert Fault.parse("none") == Fault() and Fault.parse("nan").kind == "nan"
    assert Fault.parse("delay:0.3") == Fault("delay", 0.3) and Fault.parse("scale:10") == Fault("scale", 10.0)
    for bad in ("delay", "delay:-1", "delay:x", "slow", "nan:1"):
        with pytest.raises(ValueError, match="parameter fault"):
            Fault.parse(bad)


def test_the_worker_plans_on_the_latest_observation_and_nothing_queues():
    pytest.importorskip("rclpy")
    import time

    from sensor_msgs.msg import Image, Imu, JointState
    from std_msgs.msg import String

    from gr00t_rlhf_ros.contract import load_contract
    from gr00t_rlhf_ros.observation import ObservationBuilder, input_map
    from gr00t_rlhf_ros.policy_worker import Fault, InferenceWorker
    from gr00t_rlhf_train.inference import open_policy

    runtime = open_policy("tiny", device="cpu")
    s = runtime.spec
    builder = ObservationBuilder(input_map(load_contract(), s.video_keys, s.state_keys, s.language_key))
    ctrl = Controller(ControlConfig(replan_every=1))
    reports = []
    worker = InferenceWorker(runtime, builder, ctrl, 0.5, reports.append, Fault("delay", 0.3), seed=0)
    used = []
    step = worker.step
    worker.step = lambda: used.append(builder.frame) or step()     # the newest frame when a call starts
    img = Image(height=24, width=32, encoding="rgb8", step=96, data=bytes(24 * 96))
    js = JointState(name=["left_wheel_joint", "right_wheel_joint"], velocity=[0.0, 0.0])
    builder.on_task(String(data="Find Blue cube"), time.monotonic())
    worker.start()
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 1.5:                         # frames at 50 Hz, a model at > 300 ms
            now = time.monotonic()
            builder.on_camera(img, now)
            builder.on_joint_states(js, now)
            builder.on_imu(Imu(), now)
            worker.wake()
            time.sleep(0.02)
    finally:
        assert worker.stop(5.0)
        runtime.close()
    assert not reports and 2 <= worker.calls <= 5 and ctrl.counts.chunks == worker.calls
    assert len(used) == worker.calls and all(b - a >= 10 for a, b in zip(used, used[1:]))   # frames skipped
    assert worker.last.observation.frame >= used[-1]
