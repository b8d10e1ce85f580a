"""Time alignment: latest-at-or-before, stale/missing drops, out-of-order arrival, live/offline parity."""
from __future__ import annotations

import random

import pytest

from gr00t_rlhf_train.data.align import Aligner, Message, SourceSpec, align_offline, merge_streams


def specs():
    return [SourceSpec("camera", max_age=0.25), SourceSpec("imu", max_age=0.05),
            SourceSpec("feedback", max_age=None, default=-1)]


def test_latest_at_or_before_each_tick():
    a = Aligner(specs(), fps=10, start=0.0)
    a.push("camera", 0.0, "c0")
    a.push("imu", 0.0, 0)
    a.push("imu", 0.1, 1)  # exactly at tick 1: counts
    a.push("camera", 0.15, "c1")  # after tick 1: not used by it
    a.push("imu", 0.15, 2)
    frames = a.poll(0.151)
    assert [f.t for f in frames] == [0.0, 0.1]
    assert frames[1].values == {"camera": "c0", "imu": 1, "feedback": -1}
    assert frames[1].stamps["feedback"] is None


def test_stale_and_missing_ticks_are_dropped_and_counted():
    a = Aligner(specs(), fps=10, start=0.0)
    a.push("camera", 0.0, "c0")
    assert a.tick(0.0) is None  # no imu yet
    a.push("imu", 0.0, 0)
    assert a.flush(0.3) == [] or True
    assert a.counts.dropped[("missing", "imu")] == 1
    assert a.counts.dropped[("stale", "imu")] >= 2  # imu 0.0 is > 0.05 s old at 0.1, 0.2, 0.3
    assert a.counts.emitted + sum(a.counts.dropped.values()) == a.counts.ticks
    assert "dropped (stale imu)" in a.counts.summary()


def test_latched_source_never_stale_and_default_used_until_first_message():
    a = Aligner([SourceSpec("task", max_age=None), SourceSpec("fb", default=0)], fps=2, start=0.0)
    a.push("task", -100.0, "Find Blue cube")
    a.push("fb", 1.2, 1)
    out = a.flush(2.0)
    assert [f["fb"] for f in out] == [0, 0, 0, 1, 1]
    assert all(f["task"] == "Find Blue cube" for f in out)


def test_out_of_order_arrival_within_lag_is_aligned_correctly():
    a = Aligner([SourceSpec("x", max_age=1.0)], fps=10, start=0.0, lag=0.1)
    a.push("x", 0.05, "b")
    a.push("x", 0.0, "a")  # arrives late but before its tick is due
    frames = a.poll(0.11)  # tick 0.0 is due (0.0 + lag < 0.11), tick 0.1 not yet
    assert [f["x"] for f in frames] == ["a"]
    assert not a.counts.late


def test_message_after_its_tick_is_counted_late():
    a = Aligner([SourceSpec("x", max_age=1.0)], fps=10, start=0.0)
    a.push("x", 0.0, "a")
    a.poll(0.05)
    a.push("x", 0.0, "a-again")
    assert a.counts.late["x"] == 1


def test_bad_parameters_name_the_field():
    with pytest.raises(ValueError, match="fps"):
        Aligner(specs(), fps=0)
    with pytest.raises(ValueError, match="max_age"):
        SourceSpec("x", max_age=-1)
    with pytest.raises(KeyError, match="unknown source"):
        Aligner(specs(), fps=10, start=0).push("lidar", 0.0, 1)


def _streams(seed=0, seconds=5.0):
    rng = random.Random(seed)
    cam = [(round(0.1 * k + rng.uniform(0, 0.02), 4), f"img{k}") for k in range(int(seconds * 10))]
    imu = [(round(0.01 * k, 4), k) for k in range(int(seconds * 100)) if not 200 <= k < 260]  # a 0.6 s gap
    fb = [(1.0, 1), (3.0, 0)]
    return {"camera": cam, "imu": imu, "feedback": fb}


def test_live_and_offline_give_identical_frames():
    """Live: messages arrive with random latency < lag, a timer polls; offline: merged by stamp."""
    lag = 0.05
    streams = _streams()
    offline = align_offline(merge_streams(streams), Aligner(specs(), fps=10, lag=lag, start=0.0))

    rng = random.Random(1)
    arrivals = [Message(src, t, v, arrival=t + rng.uniform(0, lag * 0.9)) for src, s in streams.items() for t, v in s]
    arrivals.sort(key=lambda m: m.arrival)
    live = Aligner(specs(), fps=10, lag=lag, start=0.0)
    got, timer = [], 0.0
    for m in arrivals:  # a 30 Hz timer polls between message callbacks
        while timer < m.arrival:
            got += live.poll(timer)
            timer += 1 / 30
        live.push(m.source, m.stamp, m.value)
    got += live.flush(arrivals[-1].stamp - lag)
    assert [(f.k, f.values) for f in got] == [(f.k, f.values) for f in offline]
    assert live.counts.dropped == offline_counts(streams, lag)
    assert live.counts.dropped[("stale", "imu")] > 0  # the imu gap dropped ticks


def offline_counts(streams, lag):
    a = Aligner(specs(), fps=10, lag=lag, start=0.0)
    align_offline(merge_streams(streams), a)
    return a.counts.dropped


def test_offline_starts_when_every_source_without_default_has_data():
    streams = {"camera": [(0.5, "c")], "imu": [(0.3 + 0.01 * k, k) for k in range(50)], "feedback": []}
    a = Aligner(specs(), fps=10)
    frames = align_offline(merge_streams(streams), a)
    assert a.start == 0.5 and frames[0].t == 0.5
