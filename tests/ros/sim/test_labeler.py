"""The simulated human: truth from ground-truth progress, collisions and success; seeded noise."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gr00t_rlhf_ros.sim.labeler import LabelerConfig, SimulatedHuman, label_episode

LAYOUT = {"objects": [{"name": "red_cube", "position": [0.0, 0.0]}, {"name": "blue_cube", "position": [3.0, 0.0]}]}


def gt(t, x, y=0.0, goal=(3.0, 0.0), collision=False, collisions=0, success=None, around=None, around_done=True,
       around_progress=0.0, seed=7, task="Find Blue cube"):
    d = math.hypot(goal[0] - x, goal[1] - y)
    return {"time": round(t, 6), "seed": seed, "task": task, "x": x, "y": y, "yaw": 0.0, "goal_distance": d,
            "collision": collision, "collisions": collisions, "success": d <= 0.5 if success is None else success,
            "around": around, "around_done": around_done, "around_progress": around_progress}


def drive(speed, seconds=4.0, rate=20.0, x0=0.0, **kw):
    """Ground truth of a robot moving along x at ``speed`` m/s."""
    return [gt(i / rate, x0 + speed * i / rate, **kw) for i in range(int(seconds * rate) + 1)]


def truths(gts, **cfg):
    return [k for _, k in label_episode(gts, LabelerConfig(**cfg), LAYOUT).timeline]


def test_binary_truth_follows_progress_towards_the_goal():
    assert set(truths(drive(0.3, x0=-3.0))[10:]) == {1}           # approaching: good after min_watch
    assert set(truths(drive(-0.3, x0=-1.0))[10:]) == {0}          # moving away: bad
    assert set(truths(drive(0.0, x0=-1.0))[10:]) == {0}           # standing still far away: bad
    assert truths(drive(0.0, x0=-1.0))[:10] == [1] * 10           # before min_watch: the vocabulary default


def test_binary_truth_success_and_collision():
    assert set(truths(drive(0.0, x0=2.8))) == {1}                 # at the goal from the start
    seq = drive(0.3, x0=-3.0)
    for i in range(40, 45):
        seq[i] = seq[i] | {"collision": True, "collisions": 1}
    for i in range(45, len(seq)):
        seq[i] = seq[i] | {"collisions": 1}
    tr = truths(seq)
    assert tr[39] == 1 and set(tr[40:45 + 20]) == {0}             # bad while touching and for collision_window after
    assert tr[-1] == 1


def test_score_truth():
    approach_far = truths(drive(0.3, x0=-6.0), vocabulary="score")
    assert set(approach_far[12:]) == {3}                          # full progress, far away
    assert truths(drive(0.0, x0=2.8), vocabulary="score")[0] == 5  # success
    away = truths(drive(-0.3, x0=-1.0), vocabulary="score")
    assert max(away[12:]) <= -2
    near = truths(drive(0.3, x0=1.0, seconds=1.5), vocabulary="score")
    assert near[-1] == 4                                           # full progress close to the goal
    seq = drive(0.3, x0=-6.0)
    seq[30] = seq[30] | {"collision": True, "collisions": 1}
    assert truths(seq, vocabulary="score")[30] == -5


def test_around_phase_counts_approach_then_arc():
    task = "Move around the red object before proceeding to the goal"
    far = [gt(i / 20, -3.0 + 0.3 * i / 20, around="red_cube", around_done=False, task=task) for i in range(60)]
    assert set(truths(far)[12:]) == {1}                           # approaching the object to circle
    r, w = 0.6, 0.5                                               # circling at 0.3 m/s
    circle = [gt(i / 20, r * math.cos(w * i / 20), r * math.sin(w * i / 20), around="red_cube", around_done=False,
                 around_progress=w * i / 20, task=task) for i in range(60)]
    assert set(truths(circle)[12:]) == {1}
    still = [gt(i / 20, r, 0.0, around="red_cube", around_done=False, task=task) for i in range(60)]
    assert set(truths(still)[12:]) == {0}
    with pytest.raises(ValueError, match="sim/layout"):
        label_episode(far, LabelerConfig(), layout=None)


def test_noiseless_presses_reproduce_the_truth():
    seq = drive(0.3, x0=-3.0, seconds=3) + [gt(3 + i / 20, -2.1 - 0.3 * i / 20) for i in range(1, 60)]
    human = SimulatedHuman(LabelerConfig())
    for g in seq:
        human.observe(g)
        assert human.held_key == human.timeline[-1][1]
    keys = [p.key for p in human.presses]
    assert keys and all(a != b for a, b in zip(keys, keys[1:]))   # a press only where the truth changes
    assert human.stats.agreement == 1.0


def test_reaction_delay_shifts_presses():
    seq = drive(-0.3, x0=-1.0, seconds=3)
    no_delay = label_episode(seq, LabelerConfig()).presses
    delayed = label_episode(seq, LabelerConfig(reaction_delay=0.3)).presses
    assert [p.key for p in no_delay] == [p.key for p in delayed] == [0]
    assert delayed[0].time == pytest.approx(no_delay[0].time + 0.3, abs=1e-6)


def test_flip_noise_rate_and_seeding():
    seq = drive(0.0, x0=2.8, seconds=200, rate=10)                  # truth: good all along
    ep = label_episode(seq, LabelerConfig(flip_prob=0.25, seed=3))
    wrong = 1 - ep.stats.agreement
    assert 0.18 < wrong < 0.32, wrong
    again = label_episode(seq, LabelerConfig(flip_prob=0.25, seed=3))
    other = label_episode(seq, LabelerConfig(flip_prob=0.25, seed=4))
    assert again.presses == ep.presses
    assert other.presses != ep.presses
    assert label_episode(seq, LabelerConfig(flip_prob=0.0, seed=3)).stats.agreement == 1.0


def test_noise_does_not_depend_on_the_observation_rate():
    """The DDS path sees the ground truth at slightly other times than the in-process path: noise is per time slot."""
    cfg = LabelerConfig(flip_prob=0.3, reaction_delay=0.2, reaction_jitter=0.1, seed=5)
    a = SimulatedHuman(cfg)
    b = SimulatedHuman(cfg)
    held_a, held_b = [], []
    for i in range(20 * 60):
        t = i / 20
        a.observe(gt(t, 2.8))
        if i % 4 == 0:
            held_a.append(a.held_key)
    for i in range(50 * 60):
        t = i / 50 + 0.003
        b.observe(gt(t, 2.8))
        if i % 10 == 0:
            held_b.append(b.held_key)
    agree = np.mean(np.array(held_a[:len(held_b)]) == np.array(held_b[:len(held_a)]))
    assert agree > 0.9, agree


def test_skipped_stretches_hold_the_last_key():
    seq = drive(-0.3, x0=-1.0, seconds=20)
    assert label_episode(seq, LabelerConfig(skip_prob=1.0)).presses == []      # always distracted
    some = label_episode(seq + [gt(20 + i / 20, -7.0 + 0.3 * i / 20) for i in range(1, 200)],
                         LabelerConfig(skip_prob=0.3, seed=1))
    assert some.stats.skipped_observations > 0


def test_scores_flip_to_the_mirrored_score():
    seq = drive(0.3, x0=-12.0, seconds=25, rate=10)               # far away all along: truth 3
    ep = label_episode(seq, LabelerConfig(vocabulary="score", flip_prob=0.5, seed=2))
    assert {p.key for p in ep.presses if p.flipped} == {-3}
    assert {p.key for p in ep.presses if not p.flipped} == {3}


def test_time_going_back_needs_a_reset():
    human = SimulatedHuman()
    human.observe(gt(1.0, 0.0))
    with pytest.raises(ValueError, match="reset"):
        human.observe(gt(0.5, 0.0))
    human.reset()
    human.observe(gt(0.0, 0.0))


@pytest.mark.parametrize("field,value,match", [
    ("flip_prob", 1.5, "LabelerConfig.flip_prob: 1.5 must be a probability"),
    ("window", 0, "LabelerConfig.window: 0 must be a positive number"),
    ("reaction_delay", -1, "LabelerConfig.reaction_delay: -1 must be a number >= 0"),
    ("seed", -2, "LabelerConfig.seed"),
    ("collision_score", 9, "LabelerConfig.collision_score"),
    ("vocabulary", "nope", "LabelerConfig.vocabulary: feedback vocabulary 'nope'"),
])
def test_bad_config_is_one_line(field, value, match):
    with pytest.raises(ValueError, match=match) as e:
        LabelerConfig(**{field: value})
    assert "\n" not in str(e.value)


def test_vocabulary_with_other_keys_is_refused(tmp_path):
    p = tmp_path / "rewards.jsonl"
    p.write_text('{"annotation.human.validity": 0, "feedback": "no"}\n{"annotation.human.validity": 2, "feedback": "yes"}\n')
    with pytest.raises(ValueError, match="neither binary"):
        LabelerConfig(vocabulary=str(p))
