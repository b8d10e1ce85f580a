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


# ---- the two storage styles of the annotation.human.validity column --------------------------
from gr00t_rlhf_train.feedback import KEY_STYLE, TASK_STYLE, resolve_feedback_column  # noqa: E402

GR00T_TASKS = {0: "Find Blue cube", 1: "Doing good", 2: "Doing bad"}  # our writer: texts become tasks
SEED_TASKS = {0: "valid", 1: "Move around the red object", 2: "Move around the blue object"}


def test_task_index_style_maps_through_tasks_jsonl():
    col = resolve_feedback_column([1, 2, 2], GR00T_TASKS, BINARY)
    assert col.style == TASK_STYLE and col.keys == {1: 1, 2: 0} and col.note is None


def test_key_style_of_the_seed_datasets():
    col = resolve_feedback_column([0, 1], SEED_TASKS, BINARY)
    assert col.style == KEY_STYLE and col.keys == {0: 0, 1: 1} and col.unknown == ()
    col = resolve_feedback_column([0, 1, 7], SEED_TASKS, BINARY)  # a label outside the vocabulary
    assert col.style == KEY_STYLE and col.unknown == (7,)


def test_ambiguous_column_reads_task_indices_and_says_so():
    col = resolve_feedback_column([1], GR00T_TASKS, BINARY)  # task 1 = "Doing good", key 1 = "Doing good"
    assert col.style == TASK_STYLE and col.keys == {1: 1} and col.note is None  # both readings agree
    tasks = {0: "Doing good", 1: "Doing bad"}
    col = resolve_feedback_column([0, 1], tasks, BINARY)  # both readings possible, they differ
    assert col.style == TASK_STYLE and col.keys == {0: 1, 1: 0} and "read as task indices" in col.note


def test_mixed_column_is_an_error():
    with pytest.raises(ValueError, match=r"mixed feedback column: values \[2\] fit only as task indices"):
        resolve_feedback_column([0, 2], {0: "Find Blue cube", 2: "Doing bad"}, BINARY)


def test_texts_must_be_distinct():
    with pytest.raises(ValueError, match="share the text"):
        FeedbackVocabulary({0: "same", 1: "same"})


def test_stored_rewards_decide_an_ambiguous_column():
    tasks = {0: "Doing good", 1: "Doing bad"}
    as_tasks = resolve_feedback_column([0, 1], tasks, BINARY, rewards={0: {1.0}, 1: {0.0}})
    assert as_tasks.style == TASK_STYLE and as_tasks.keys == {0: 1, 1: 0} and as_tasks.note is None
    as_keys = resolve_feedback_column([0, 1], tasks, BINARY, rewards={0: {0.0}, 1: {1.0}})
    assert as_keys.style == KEY_STYLE and as_keys.keys == {0: 0, 1: 1}
