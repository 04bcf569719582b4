"""Zoo tests run on one thread: on a busy 2-core machine two OpenMP threads stall on the small
convolutions of the embedded tokenizers (10x slower), and the recorded outputs were made with
one thread."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
