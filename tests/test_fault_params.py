"""Fault parameters a scenario author gets wrong: one line naming the fault, the field and the rule."""
from __future__ import annotations

import pytest

from mlops_drill.errors import DrillError
from mlops_drill.injector.fault import make
from mlops_drill.mlplatform.model import SCORE_BUCKETS


def test_drift_median_must_be_a_bucket_bound_of_the_score_histogram() -> None:
    # the check reads the median off the serving pods' histogram, so only its bucket bounds work
    with pytest.raises(DrillError) as err:
        make("shift-input-distribution", {"min_median_score": 0.03})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("fault shift-input-distribution: params.min_median_score: ")
    assert "0.02" in message and "0.05" in message
    assert make("shift-input-distribution", {"min_median_score": 0.05}).params.min_median_score == 0.05


@pytest.mark.parametrize("seconds", [0.1, 601])
def test_first_reclaim_time_is_bounded(seconds: float) -> None:
    with pytest.raises(DrillError, match=r"^fault disable-checkpointing: params.first_preempt_after_seconds: "):
        make("disable-checkpointing", {"first_preempt_after_seconds": seconds})


def test_drift_overrides_are_transaction_profile_parameters() -> None:
    # the replay builds its profile from them: a typo would only fail in the replay pod, after the drill started
    with pytest.raises(DrillError) as err:
        make("shift-input-distribution", {"overrides": {"amount_mean": 4.5}})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("fault shift-input-distribution: params.overrides: ")
    assert "amount_mean" in message and "amount_log_mean" in message
    fault = make("shift-input-distribution", {"overrides": {"amount_log_mean": 4.5, "night_share": 0.22}})
    assert fault._overrides() == {"amount_log_mean": 4.5}  # 2024-09's own night share is no override
