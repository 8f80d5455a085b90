import math

import pytest

from ddpm_lens.train.stage_schedule import hard_range, stage_of_epoch, stage_target

STUDY_EPOCHS = [1, 1, 1, 1, 1, 1, 1, 1, 12]  # the study's nine stages, 20 epochs
STUDY_T_MIN = [0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.01, 0.0]


def test_stage_of_each_epoch_follows_the_cumulative_epochs_and_holds_the_last():
    assert [stage_of_epoch(STUDY_EPOCHS, e) for e in range(22)] == [*range(8), *[8] * 14]
    assert [stage_of_epoch([2, 0, 3], e) for e in range(6)] == [
        0,
        0,
        2,
        2,
        2,
        2,
    ]  # a 0-epoch stage is skipped
    assert stage_of_epoch([], 5) == -1


def test_hard_ranges_are_the_studys_indices():
    assert [hard_range(t, 1.0, 1000) for t in STUDY_T_MIN] == [
        (lo, 1000) for lo in (300, 200, 150, 100, 70, 50, 30, 10, 0)
    ]
    assert hard_range(0.5, 0.5, 1000) == (499, 500)  # empty: one step below t_max
    assert hard_range(0.0, 0.0, 1000) == (0, 1)  # at least one step wide
    assert hard_range(0.25, 0.75, 8) == (2, 6)


def test_stage_target_rule():
    initial = 0.8
    assert stage_target(0.35, 4, t_min=0.05, initial=initial) == 0.35  # the stage's own value wins
    assert stage_target(None, 0, t_min=0.0, initial=initial) == initial  # stage 0 keeps the initial value
    assert stage_target(None, 3, t_min=0.2, initial=initial) == initial  # t_min >= 0.2 too
    assert stage_target(None, 3, t_min=0.1, initial=initial) == pytest.approx(0.8 * (1 - math.sqrt(0.5)))
    assert stage_target(None, 3, t_min=0.05, initial=initial) == pytest.approx(0.8 * (1 - math.sqrt(0.75)))
    assert stage_target(None, 8, t_min=0.0, initial=initial) == 0.0
    assert stage_target(None, 1, t_min=0.15, initial=3e-5) == pytest.approx(3e-5 * (1 - 0.5))
