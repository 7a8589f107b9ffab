import os

import pytest
import torch

# Deterministic, small and quiet: tests run on CPU only.
torch.use_deterministic_algorithms(False)
os.environ.setdefault("IID_DISTILL_NO_PROGRESS", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu need CUDA: skipped, saying so, where there is none (CI and these CPU machines)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """The embedded digits dataset (scikit-learn, 32x32, 1 channel, 10 classes), prepared once per test session."""
    from iid_distill.data import load_dataset

    return load_dataset("digits", cache_dir=tmp_path_factory.mktemp("digits-cache"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with a digits cache and s.pt, the IPC-1 random coreset of digits (the bad-input sweeps' starting point)."""
    from iid_distill import cli

    root = tmp_path_factory.mktemp("bad-input")
    assert cli.main(["coreset", "--dataset", "digits", "--method", "random", "--ipc", "1", "--out", str(root / "s.pt"),
                     "--device", "cpu", "--cache-dir", str(root / "cache")]) == 0
    return root


@pytest.fixture
def in_workdir(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    return workdir
