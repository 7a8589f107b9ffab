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


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """The embedded digits dataset (scikit-learn, 32x32, 1 channel, 10 classes), prepared once per test session."""
    from iid_distill.data import load_dataset

    return load_dataset("digits", cache_dir=tmp_path_factory.mktemp("digits-cache"))
