"""Feedback vocabularies: presets, rewards.jsonl parsing, validation."""
import json

import pytest

from gr00t_rlhf_train.feedback import BINARY, SCORE, FeedbackVocabulary, load_vocabulary


def test_presets_and_reward():
    assert load_vocabulary("binary") is BINARY
    assert BINARY.reward(0) == 0.0 and BINARY.reward(1) == 1.0
    assert SCORE.keys == list(range(-5, 6)) and SCORE.reward(-3) == -0.6
    with pytest.raises(ValueError, match=r"human_feedback: 4 is not a feedback key"):
        BINARY.check(4, "human_feedback")


def test_roundtrip_through_rewards_jsonl(tmp_path):
    p = tmp_path / "rewards.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in SCORE.to_jsonl_rows()))
    v = load_vocabulary(str(p))
    assert v.texts == SCORE.texts and v.key_field == "annotation.human.score"
    assert FeedbackVocabulary.from_json(BINARY.to_json()) == BINARY


def test_seed_vocabularies_parse(datasets_dir):
    for name in ("Policy_Data_results_0001", "Reward_Results_with_505_Reward"):
        v = load_vocabulary(str(datasets_dir / name / "meta" / "rewards.jsonl"))
        assert len(v.texts) in (2, 11)


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="not a preset"):
        load_vocabulary("ternary")
    p = tmp_path / "rewards.jsonl"
    p.write_text('{"score": 1}\n')
    with pytest.raises(ValueError, match="line 1"):
        load_vocabulary(str(p))
    with pytest.raises(ValueError, match="default"):
        FeedbackVocabulary({0: "a"}, default=3)
