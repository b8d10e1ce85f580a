"""gr00t_rlhf_ros.diagnostics: rolling latency statistics and status formatting (no DDS)."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("diagnostic_msgs")

from gr00t_rlhf_ros.diagnostics import ERROR, OK, RollingStats, format_value, make_status, values_of  # noqa: E402


def test_rolling_stats_keep_the_last_window():
    s = RollingStats(window=3)
    assert s.last is None and s.p50 is None
    for v in (100.0, 1.0, 2.0, 3.0):
        s.add(v)
    assert s.last == 3.0 and s.p50 == 2.0 and s.count == 4  # 100 fell out of the window
    assert 2.9 < s.p99 <= 3.0


def test_rolling_stats_refuse_a_bad_window():
    with pytest.raises(ValueError, match="window"):
        RollingStats(window=0)


def test_values_are_formatted_the_same_for_every_node():
    assert format_value(None) == "n/a"
    assert format_value(1.234567) == "1.235"
    assert format_value(True) == "true"
    assert format_value([0.5, 2]) == "0.5, 2"
    assert format_value(math.nan) == "nan"


def test_a_status_carries_name_level_and_values():
    st = make_status("/robot1/policy_node", ERROR, "fault", {"chunk index": 3, "latency ms": None})
    assert st.name == "/robot1/policy_node" and st.level == ERROR and st.message == "fault"
    assert values_of(st) == {"chunk index": "3", "latency ms": "n/a"}
    with pytest.raises(ValueError, match="level"):
        make_status("x", b"\x09", "", {})
    assert make_status("x", OK, "", {}).level == OK
