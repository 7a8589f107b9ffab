import os

import pytest
import torch

# Deterministic, small and quiet: tests run on CPU only.
torch.use_deterministic_algorithms(False)
os.environ.setdefault("IID_DISTILL_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
