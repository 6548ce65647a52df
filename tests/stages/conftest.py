"""Stage tests run tiny models: one intra-op thread is fastest and keeps shared CI cores free
(EDTALK_TEST_THREADS overrides it, for the seed sweep)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.learn import thread_count


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(thread_count(1) or 1)
    yield
    torch.set_num_threads(before)
