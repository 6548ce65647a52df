"""Stage tests run tiny models: one intra-op thread is fastest and keeps shared CI cores free
(EDTALK_TEST_THREADS overrides it, for the seed sweep)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Tiny models: one intra-op thread (`one_thread` in tests/conftest.py)."""
