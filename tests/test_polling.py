"""The adaptive polling window: grows on short gaps, vanishes on long ones."""

from __future__ import annotations

import pytest

from vfio_bridge.polling import PollWindow


def test_window_grows_to_the_limit_and_shrinks_to_nothing() -> None:
    window = PollWindow(200)
    assert window.window == 0  # an idle device costs no CPU
    for _ in range(10):
        window.blocked(50e-6)  # requests 50 us apart: polling would have caught them
    assert window.window == pytest.approx(200e-6)
    window.blocked(1.0)  # a long pause shrinks it
    assert 0 < window.window < 200e-6
    for _ in range(10):
        window.blocked(1.0)
    assert window.window == 0


def test_zero_limit_never_polls_and_negative_is_refused() -> None:
    window = PollWindow(0)
    window.blocked(1e-6)
    assert window.window == 0
    with pytest.raises(ValueError):
        PollWindow(-1)
