"""Tests of the coreset baselines: the pure selection rules against slow references, and select_coreset on digits."""

from __future__ import annotations

import pytest
import torch

from iid_distill.coreset import (
    CoresetError,
    ForgettingTracker,
    count_forgetting_events,
    embed_images,
    herding_selection,
    k_center_greedy,
    random_selection,
    select_coreset,
    top_per_class,
    train_on_real,
)
from iid_distill.utils import UserError, make_generator

TINY_NET = {"width": 8}  # a narrow ConvNet keeps the digits runs to seconds on CPU


# ------------------------------------------------------------------------------------------ herding


def slow_herding(features: torch.Tensor, k: int) -> list[int]:
    """Direct transcription: at step t pick the unselected x minimising ||mu - (sum(selected) + x) / t||."""
    mu = features.mean(dim=0)
    selected: list[int] = []
    for step in range(1, k + 1):
        best, best_distance = None, float("inf")
        for i in range(features.shape[0]):
            if i in selected:
                continue
            candidate_mean = (features[selected].sum(dim=0) + features[i]) / step
            distance = float(torch.linalg.norm(mu - candidate_mean))
            if distance < best_distance:
                best, best_distance = i, distance
        selected.append(best)
    return selected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_herding_matches_slow_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(25, 6, generator=generator, dtype=torch.float64)
    picks = herding_selection(features, 10)
    assert picks.tolist() == slow_herding(features, 10)


def test_herding_first_pick_is_nearest_the_mean_and_float32_agrees():
    features = torch.randn(40, 8, generator=torch.Generator().manual_seed(3))
    picks = herding_selection(features, 5)
    assert int(picks[0]) == int(torch.argmin(torch.linalg.norm(features - features.mean(0), dim=1)))
    assert picks.tolist() == slow_herding(features.double(), 5)


def test_herding_never_repeats_even_with_duplicate_rows():
    row = torch.randn(1, 4, generator=torch.Generator().manual_seed(4))
    features = torch.cat([row.repeat(5, 1), torch.randn(3, 4, generator=torch.Generator().manual_seed(5))])
    picks = herding_selection(features, features.shape[0])
    assert sorted(picks.tolist()) == list(range(features.shape[0]))


# ------------------------------------------------------------------------------------------ k-center


@pytest.mark.parametrize("seed", [0, 1])
def test_k_center_each_pick_is_the_farthest_point(seed):
    features = torch.randn(50, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    picks = k_center_greedy(features, 12).tolist()
    assert len(set(picks)) == len(picks)
    assert picks[0] == int(torch.argmin(torch.linalg.norm(features - features.mean(0), dim=1)))
    for step in range(1, len(picks)):
        distance_to_chosen = torch.cdist(features, features[picks[:step]]).min(dim=1).values  # brute force
        assert float(distance_to_chosen[picks[step]]) == pytest.approx(float(distance_to_chosen.max()), rel=1e-12)
        assert float(distance_to_chosen[picks[step]]) > 0


def test_k_center_random_start_is_seeded():
    features = torch.randn(30, 3, generator=torch.Generator().manual_seed(7))
    first = k_center_greedy(features, 6, start="random", generator=make_generator(11)).tolist()
    again = k_center_greedy(features, 6, start="random", generator=make_generator(11)).tolist()
    assert first == again
    assert first[0] == int(torch.randint(30, (), generator=make_generator(11)))
    starts = {k_center_greedy(features, 1, start="random", generator=make_generator(seed)).item() for seed in range(10)}
    assert len(starts) > 1


def test_k_center_no_duplicates_when_all_points_coincide():
    picks = k_center_greedy(torch.ones(6, 3), 6)
    assert sorted(picks.tolist()) == list(range(6))


def test_selection_functions_reject_bad_k():
    features = torch.randn(4, 2)
    for bad_k in (0, 5):
        with pytest.raises(ValueError):
            herding_selection(features, bad_k)
        with pytest.raises(ValueError):
            k_center_greedy(features, bad_k)
    with pytest.raises(ValueError):
        k_center_greedy(features, 2, start="random")  # no generator


# ------------------------------------------------------------------------------------------ forgetting

# rows: presentations (epochs), columns: samples; True = classified correctly at that presentation
HISTORY = torch.tensor(
    [
        [1, 0, 1, 0, 1, 1],
        [0, 0, 1, 1, 0, 1],
        [1, 0, 1, 1, 0, 0],
        [0, 0, 1, 0, 1, 1],
        [1, 0, 1, 0, 1, 0],
    ],
    dtype=torch.bool,
)
EXPECTED_EVENTS = [2, 0, 0, 1, 1, 2]


def test_count_forgetting_events_on_handcrafted_history():
    assert count_forgetting_events(HISTORY).tolist() == EXPECTED_EVENTS


def test_forgetting_tracker_replays_history_in_shuffled_batches():
    tracker = ForgettingTracker(HISTORY.shape[1])
    generator = torch.Generator().manual_seed(0)
    for presentation in HISTORY:
        order = torch.randperm(HISTORY.shape[1], generator=generator)
        for batch in order.split(4):  # batches of 4 and 2, as train_network's last partial batch
            tracker.update_correct(batch, presentation[batch])
    assert tracker.events.tolist() == EXPECTED_EVENTS
    assert tracker.presentations.tolist() == [HISTORY.shape[0]] * HISTORY.shape[1]


def test_forgetting_tracker_reads_correctness_from_logits():
    tracker = ForgettingTracker(3)
    labels = torch.tensor([0, 1, 1])
    right = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    tracker.update(torch.arange(3), right, labels)
    tracker.update(torch.tensor([0, 2]), -right[[0, 2]], labels[[0, 2]])  # samples 0 and 2 now wrong
    assert tracker.events.tolist() == [1, 0, 1]


def test_forgetting_during_training_sees_every_sample_once_per_epoch():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(40, 1, 32, 32, generator=generator)
    labels = torch.arange(40) % 4
    spec = type("Spec", (), {"channels": 1, "num_classes": 4, "image_size": 32})()
    tracker = ForgettingTracker(40)
    train_on_real(images, labels, spec, arch="ConvNet", arch_kwargs={"width": 4}, epochs=4, seed=0, batch_size=16,
                  lr=0.01, momentum=0.9, weight_decay=5e-4, on_batch_end=tracker.update)
    assert tracker.presentations.tolist() == [4] * 40
    assert int(tracker.events.max()) <= 2  # an event needs a correct presentation before it: at most epochs // 2


def test_top_per_class_takes_highest_scores_and_breaks_ties_by_seed():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    scores = torch.tensor([5, 1, 3, 3, 0, 0, 0, 7])
    picks = top_per_class(scores, labels, 2, 2, make_generator(0))
    assert labels[picks].tolist() == [0, 0, 1, 1]
    assert picks[0] == 0 and picks[1] in (2, 3)  # score 5, then one of the tied 3s
    assert picks[2] == 7 and picks[3] in (4, 5, 6)
    assert picks.tolist() == top_per_class(scores, labels, 2, 2, make_generator(0)).tolist()
    tie_choices = {tuple(top_per_class(scores, labels, 2, 2, make_generator(seed)).tolist()) for seed in range(20)}
    assert len(tie_choices) > 1
    with pytest.raises(ValueError):
        top_per_class(scores, labels, 2, 5, make_generator(0))


# ------------------------------------------------------------------------------------------ random


def test_random_selection_is_per_class_and_seeded():
    labels = torch.arange(60) % 3
    class_indices = [torch.nonzero(labels == c).flatten() for c in range(3)]
    picks = random_selection(class_indices, 4, make_generator(1))
    assert labels[picks].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert picks.unique().numel() == 12
    assert picks.tolist() == random_selection(class_indices, 4, make_generator(1)).tolist()
    assert picks.tolist() != random_selection(class_indices, 4, make_generator(2)).tolist()
    with pytest.raises(ValueError):
        random_selection(class_indices, 21, make_generator(1))


# ------------------------------------------------------------------------------------------ select_coreset


TINY_OPTIONS = dict(embed_epochs=1, forgetting_epochs=3, arch_kwargs=TINY_NET)


@pytest.mark.parametrize("method", ["random", "herding", "kcenter", "forgetting"])
def test_select_coreset_returns_the_selected_real_images(digits, method, tmp_path):
    from iid_distill.data import normalize
    from iid_distill.synthetic import load_synthetic_set, save_synthetic_set

    ipc = 3
    sset = select_coreset(method, digits, ipc, seed=0, device="cpu", **TINY_OPTIONS)
    indices = torch.tensor(sset.meta["indices"])
    assert indices.numel() == ipc * 10 and indices.unique().numel() == indices.numel()
    assert sset.labels.tolist() == sum(([c] * ipc for c in range(10)), [])
    assert torch.equal(sset.labels, digits.train.labels[indices])
    assert torch.equal(sset.images, normalize(digits.train.images[indices], digits.spec))
    assert sset.meta["method"] == sset.meta["method_id"] == method and sset.meta["ipc"] == ipc and sset.meta["dataset"] == "digits"
    if method != "random":
        assert sset.meta["params"]["arch_kwargs"] == TINY_NET and sset.meta["params"]["lr"] == 0.01
    save_synthetic_set(sset, tmp_path / "set.pt")  # validates the set and its meta
    assert load_synthetic_set(tmp_path / "set.pt", dataset="digits").meta["indices"] == sset.meta["indices"]


@pytest.mark.parametrize("method, configures", [("random", False), ("herding", True), ("forgetting", True)])
def test_select_coreset_keeps_freed_memory_when_it_trains_on_the_cpu(digits, monkeypatch, method, configures):
    import iid_distill.coreset as coreset_module

    calls = []
    monkeypatch.setattr(coreset_module, "keep_freed_memory", lambda device: calls.append(device.type) or True)
    select_coreset(method, digits, 1, seed=0, device="cpu", **TINY_OPTIONS)
    assert bool(calls) is configures  # a training run without it page-faulted 78 million times in 3 minutes


def test_select_coreset_herding_uses_the_trained_embedding(digits):
    from iid_distill.data import normalize

    sset = select_coreset("herding", digits, 2, seed=5, device="cpu", **TINY_OPTIONS)
    images = normalize(digits.train.images, digits.spec)
    net = train_on_real(images, digits.train.labels, digits.spec, arch="ConvNet", arch_kwargs=TINY_NET, epochs=1, seed=5,
                        batch_size=256, lr=0.01, momentum=0.9, weight_decay=5e-4)
    features = embed_images(net, images, 256)
    members = digits.train_class_indices[4]
    expected = members[herding_selection(features[members], 2)]
    assert sset.meta["indices"][8:10] == expected.tolist()


def test_select_coreset_is_reproducible(digits):
    first = select_coreset("forgetting", digits, 2, seed=1, device="cpu", **TINY_OPTIONS)
    second = select_coreset("forgetting", digits, 2, seed=1, device="cpu", **TINY_OPTIONS)
    assert first.meta["indices"] == second.meta["indices"]
    other_seed = select_coreset("random", digits, 2, seed=2, device="cpu")
    assert select_coreset("random", digits, 2, seed=1, device="cpu").meta["indices"] != other_seed.meta["indices"]


@pytest.mark.parametrize(
    ("method", "ipc", "options", "message"),
    [
        ("kmeans", 1, {}, "unknown"),
        ("random", 10_000, {}, "smallest class"),
        ("random", 0, {}, "positive integer"),
        ("herding", 1, {"embed_epochs": 0}, "embed_epochs"),
        ("kcenter", 1, {"kcenter_start": "corner"}, "kcenter_start"),
    ],
)
def test_select_coreset_rejects_bad_requests(digits, method, ipc, options, message):
    with pytest.raises(CoresetError, match=message) as error:
        select_coreset(method, digits, ipc, seed=0, device="cpu", **options)
    assert isinstance(error.value, UserError) and "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------ net cache


def _counting(monkeypatch, name):
    import iid_distill.coreset as coreset_module

    calls = []
    original = getattr(coreset_module, name)
    monkeypatch.setattr(coreset_module, name, lambda *args, **kwargs: calls.append(name) or original(*args, **kwargs))
    return calls


def test_net_cache_trains_the_embedding_net_once_for_every_method_and_ipc(digits, monkeypatch, tmp_path):
    uncached = {(method, ipc): select_coreset(method, digits, ipc, seed=0, device="cpu", **TINY_OPTIONS).meta["indices"]
                for method, ipc in (("herding", 2), ("kcenter", 3))}
    trainings = _counting(monkeypatch, "train_on_real")
    cache = tmp_path / "nets"
    for (method, ipc), expected in uncached.items():
        sset = select_coreset(method, digits, ipc, seed=0, device="cpu", net_cache=str(cache), **TINY_OPTIONS)
        assert sset.meta["indices"] == expected  # the same selection with or without the cache
    assert trainings == ["train_on_real"]
    assert [path.name.split("-")[:3] for path in cache.iterdir()] == [["embedding", "net", "digits"]]
    select_coreset("herding", digits, 2, seed=1, device="cpu", net_cache=str(cache), **TINY_OPTIONS)
    assert len(trainings) == 2 and len(list(cache.iterdir())) == 2  # another seed is another network


def test_net_cache_keeps_forgetting_counts(digits, monkeypatch, tmp_path):
    expected = select_coreset("forgetting", digits, 2, seed=0, device="cpu", **TINY_OPTIONS).meta["indices"]
    runs = _counting(monkeypatch, "forgetting_counts")
    selected = {ipc: select_coreset("forgetting", digits, ipc, seed=0, device="cpu", net_cache=str(tmp_path), **TINY_OPTIONS).meta["indices"]
                for ipc in (3, 2)}
    assert runs == ["forgetting_counts"]  # counted once, for IPC 3; IPC 2 read them
    assert selected[2] == expected


def test_cached_tensors_refuses_a_file_that_is_not_its_own(digits, tmp_path):
    from iid_distill.coreset import cached_tensors, training_key
    from iid_distill.versions import implementation_version

    training = dict(arch="ConvNet", arch_kwargs={}, seed=0, batch_size=8, lr=0.01, momentum=0.9, weight_decay=5e-4)
    key = training_key("embedding-net", digits, torch.device("cpu"), 1, training)
    assert key["implementation"] == implementation_version("coreset") and key["torch"] == str(torch.__version__)  # a bump retrains
    computed = cached_tensors(str(tmp_path), key, lambda: {"w": torch.ones(2)})
    (path,) = tmp_path.iterdir()
    assert torch.equal(cached_tensors(str(tmp_path), key, lambda: {"w": torch.zeros(2)})["w"], computed["w"])
    torch.save({"key": {**key, "epochs": 99}, "tensors": {}}, path)
    with pytest.raises(CoresetError, match="does not hold the network") as wrong:
        cached_tensors(str(tmp_path), key, lambda: {"w": torch.zeros(2)})
    path.write_bytes(b"not a torch file")
    with pytest.raises(CoresetError, match="unreadable coreset cache file") as unreadable:
        cached_tensors(str(tmp_path), key, lambda: {"w": torch.zeros(2)})
    for error in (wrong, unreadable):
        assert str(path) in str(error.value) and "delete it" in str(error.value) and "\n" not in str(error.value)


def test_a_registered_coreset_method_runs_by_id(digits, tmp_path, monkeypatch):
    from iid_distill import cli, coreset
    from iid_distill.synthetic import load_synthetic_set

    monkeypatch.setattr(coreset, "SELECTORS", dict(coreset.SELECTORS))  # registered for this test only

    @coreset.register_coreset("first")
    def first_images(request):
        return torch.cat([members[: request.ipc] for members in request.dataset.train_class_indices]), {"rule": "first"}

    assert "first" in coreset.coreset_methods()
    out = tmp_path / "first.pt"
    assert cli.main(["coreset", "--dataset", "digits", "--method", "first", "--ipc", "2", "--out", str(out), "--device", "cpu",
                     "--cache-dir", str(digits.cache_path.parent)]) == 0
    sset = load_synthetic_set(out)
    expected = torch.cat([members[:2] for members in digits.train_class_indices])
    assert sset.meta["indices"] == expected.tolist() and sset.meta["params"] == {"rule": "first"} and sset.meta["method_id"] == "first"
    with pytest.raises(ValueError, match="already registered"):
        coreset.register_coreset("first")(first_images)


def test_sets_and_records_carry_the_method_id_and_its_label(digits):
    from iid_distill.evaluate import EvalConfig, evaluate_synthetic_set

    sset = select_coreset("kcenter", digits, 1, 0, "cpu", embed_epochs=1, arch_kwargs={"width": 8})
    assert sset.meta["method_id"] == "kcenter" and sset.meta["method_label"] == "K-Center"
    (record,) = evaluate_synthetic_set(sset, digits, EvalConfig(epochs=1, arch_kwargs={"width": 8}), [0], "cpu")
    assert record["method_id"] == "kcenter" and record["method_label"] == "K-Center"
