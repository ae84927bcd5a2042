"""Shared test helpers: the tests folder on sys.path (so ``from gradcheck import check_grads``
works from any test file), small hypothesis budgets, and a ``here`` fixture for file:line checks."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

settings.register_profile(
    "owngrad", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# CI (CI=true) runs the same examples every time: a red build then always means a change, never luck
settings.register_profile("owngrad-ci", parent=settings.get_profile("owngrad"), derandomize=True, database=None)
settings.load_profile("owngrad-ci" if os.environ.get("CI") else "owngrad")


def _here() -> str:
    """'test_file.py:LINE' of the caller's line: put it on the same line as the statement that must be named."""
    f = sys._getframe(1)
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"


@pytest.fixture
def here() -> Callable[[], str]:
    """``site = here(); w += 1`` -- the file:line an error message must name for that statement."""
    return _here
