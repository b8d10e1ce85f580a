"""Operator input -> feedback / episode commands."""
import pytest

from gr00t_rlhf_ros.feedback_keys import Command, default_keymap, interpret, parse_keymap
from gr00t_rlhf_train.feedback import BINARY, SCORE


def test_binary_defaults():
    km = default_keymap(BINARY)
    assert km == {"g": 1, "b": 0}
    assert interpret("g", km, BINARY) == Command("feedback", 1)
    assert interpret("b\n", km, BINARY) == Command("feedback", 0)
    assert interpret("s", km, BINARY) == Command("start")
    assert interpret("e", km, BINARY) == Command("stop")
    assert interpret("d", km, BINARY) == Command("discard")
    assert interpret("discard", km, BINARY) == Command("discard")
    assert interpret("x", km, BINARY) is None
    assert interpret("7", km, BINARY) is None


def test_score_keys_cover_negative_scores():
    km = default_keymap(SCORE)
    assert km["5"] == 5 and km["0"] == 0 and km["!"] == -1 and km["%"] == -5
    assert interpret("-3", km, SCORE) == Command("feedback", -3)


def test_keymap_errors_name_the_entry():
    with pytest.raises(ValueError, match=r"entry 'g=7'.*allowed: \[0, 1\]"):
        parse_keymap(["g=7"], BINARY)
    with pytest.raises(ValueError, match="reserved for start"):
        parse_keymap(["s=1"], BINARY)
    with pytest.raises(ValueError, match="must look like"):
        parse_keymap(["good"], BINARY)
