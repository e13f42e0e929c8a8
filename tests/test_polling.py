"""The adaptive polling budget: grows on short gaps, vanishes on long ones."""

from __future__ import annotations

import pytest

from vfio_bridge.polling import PollBudget


def test_budget_grows_to_the_limit_and_shrinks_to_nothing() -> None:
    budget = PollBudget(200)
    assert budget.budget == 0  # an idle device costs no CPU
    for _ in range(10):
        budget.blocked(50e-6)  # requests 50 us apart: polling would have caught them
    assert budget.budget == pytest.approx(200e-6)
    budget.blocked(1.0)  # a long pause shrinks it
    assert 0 < budget.budget < 200e-6
    for _ in range(10):
        budget.blocked(1.0)
    assert budget.budget == 0


def test_zero_limit_never_polls_and_negative_is_refused() -> None:
    budget = PollBudget(0)
    budget.blocked(1e-6)
    assert budget.budget == 0
    with pytest.raises(ValueError):
        PollBudget(-1)
