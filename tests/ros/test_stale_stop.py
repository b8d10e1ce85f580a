"""policy_node's stop on stale inputs, as plain logic (no DDS): ages count from when a message
ARRIVED, and a driving command is checked against them right before it goes out.

Why (measured on the 2-core machine under load, see test_drive_policy's frozen-sim test): the
executor ran input callbacks up to 0.26 s after the middleware had received the message, and a
control tick took up to 0.08 s between reading the clock and publishing; counted from the callback
and checked only at the start of the tick, a non-zero command could go out ~0.3 s after the 0.5 s
input timeout.
"""
from __future__ import annotations

import numpy as np
import pytest

from gr00t_rlhf_ros.control import DRIVING, STALE, ControlConfig, Controller
from gr00t_rlhf_ros.observation import arrival_time

TIMEOUT = 0.5
CFG = ControlConfig(control_rate=20.0, action_rate=10.0, replan_every=8, blend_steps=0, input_timeout=TIMEOUT)


def test_the_arrival_time_is_the_middleware_reception_on_the_monotonic_clock():
    now_ns = 1_700_000_000_000_000_000
    # received 0.25 s before the callback ran
    assert arrival_time(now_ns - 250_000_000, now=100.0, now_ns=now_ns) == pytest.approx(99.75)
    assert arrival_time(now_ns, now=100.0, now_ns=now_ns) == 100.0
    # no stamp (an rmw that does not set it): the callback time
    assert arrival_time(0, now=100.0, now_ns=now_ns) == 100.0
    assert arrival_time(None, now=100.0, now_ns=now_ns) == 100.0
    # a stamp in the future (the system clock stepped back): never younger than the callback
    assert arrival_time(now_ns + 10**9, now=100.0, now_ns=now_ns) == 100.0


def _driving_controller() -> Controller:
    c = Controller(CFG)
    assert c.on_chunk(np.full((16, 2), 2.0), t0=10.0, now=10.05) is None     # 1.6 s of 2 rad/s
    return c


def test_the_stop_counts_from_the_last_arrival_not_from_a_late_callback():
    # the sim's last messages arrive at 10.0; the executor runs their callbacks only at 10.26
    wall0 = 1_700_000_000_000_000_000
    last = arrival_time(wall0, now=10.26, now_ns=wall0 + 260_000_000)
    assert last == pytest.approx(10.0)
    c = _driving_controller()
    fresh = lambda t: ["imu"] if t - last > TIMEOUT else []      # noqa: E731 - the builder's stale(), one input
    assert c.tick_checked(iter([10.45, 10.45]).__next__, fresh).state == DRIVING
    cmd = c.tick_checked(iter([10.55]).__next__, fresh)           # 0.55 s after the arrival, 0.29 s after the callback
    assert cmd.state == STALE and cmd.wheels == (0.0, 0.0) and "imu" in cmd.reason


def test_a_driving_command_is_checked_again_right_before_it_goes_out():
    # the tick reads the clock at 10.45 (inputs 0.45 s old), then waits 0.1 s for the lock / the CPU
    c = _driving_controller()
    clock = iter([10.45, 10.55]).__next__
    stale = lambda t: ["/imu"] if t - 10.0 > TIMEOUT else []      # noqa: E731
    cmd = c.tick_checked(clock, stale)
    assert cmd.state == STALE and cmd.wheels == (0.0, 0.0) and cmd.reason == "no recent /imu"
    assert c.counts.ticks == {"driving": 0, "stale": 1, "estop": 0, "fault": 0}    # one tick counted, as stale
    # the plan was dropped as in any stale tick: fresh inputs alone do not bring the old chunk back
    assert c.tick_checked(iter([10.6, 10.6]).__next__, lambda t: []).state == STALE


def test_a_tick_with_fresh_inputs_is_the_plain_tick():
    a, b = _driving_controller(), _driving_controller()
    checked = a.tick_checked(iter([10.3, 10.31]).__next__, lambda t: [])
    plain = b.tick(10.3, [])
    assert checked == plain and checked.state == DRIVING and checked.wheels == (2.0, 2.0)
