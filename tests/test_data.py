"""Tests of iid_distill.data on small generated fixtures in the official formats, plus the real CIFAR-10 JPEG copy."""

from __future__ import annotations

import hashlib
import json
import pickle
import time
import types
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import iid_distill.data as data
from data_fixtures import (
    encode_image,
    tar_folder,
    tar_member,
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_mnist,
    write_svhn,
    write_tiny_imagenet,
    zip_folder,
)
from iid_distill.data import (
    DATASETS,
    DataError,
    PreparedDataset,
    Split,
    dataset_info,
    denormalize,
    get_spec,
    load_dataset,
    normalize,
    prepare_dataset,
)
from iid_distill.utils import UserError, sha256_tensor

REAL_CIFAR10 = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg.tar.gz"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRICKY_CLASSES = ["truck", "cat", "cat-a", "Zebra", "bird", "dog", "deer", "frog", "horse", "ship"]  # "cat-a/" sorts before "cat/" as a path


def assert_matches(ds: PreparedDataset, fixture) -> None:
    """The loaded dataset holds exactly the fixture's images, labels and class names, in order."""
    assert ds.class_names == fixture.class_names
    for split, images, labels in ((ds.train, fixture.train_images, fixture.train_labels), (ds.test, fixture.test_images, fixture.test_labels)):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert split.images.is_contiguous()
        assert torch.equal(split.images, torch.from_numpy(images))
        assert torch.equal(split.labels, torch.from_numpy(labels))


def files_under(path: Path) -> set[Path]:
    return {item for item in path.rglob("*")}


def md5s(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in folder.iterdir() if path.is_file()}


# ------------------------------------------------------------------------------------------------ specs


def test_specs_match_the_method_notes():
    assert set(DATASETS) == {"cifar10", "cifar100", "svhn", "tinyimagenet", "mnist", "fashionmnist", "digits"}
    tiny = get_spec("TinyImageNet")
    assert (tiny.image_size, tiny.num_classes, tiny.train_count, tiny.test_count, tiny.channels) == (64, 200, 100000, 10000, 3)
    assert (get_spec("mnist").mean, get_spec("mnist").std) == ((0.1307,), (0.3081,))
    assert (get_spec("fashionmnist").mean, get_spec("fashionmnist").std) == ((0.2861,), (0.3530,))
    assert get_spec("fashionmnist").image_size == 28 and get_spec("fashionmnist").channels == 1
    for name, spec in DATASETS.items():
        assert len(spec.mean) == len(spec.std) == spec.channels
        has_flip = "flip" in spec.dsa_strategy.split("_")
        assert has_flip == (name not in {"svhn", "mnist", "digits"}), name


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DataError, match="valid names: cifar10, cifar100, digits") as caught:
        get_spec("imagenet")
    assert isinstance(caught.value, UserError)


# --------------------------------------------------------------------------------------- official formats


def test_cifar10_official_layout_round_trip_and_cache(tmp_path):
    fixture = write_cifar10(tmp_path / "raw/cifar10", class_names=CIFAR10_CLASSES)
    cache = tmp_path / "cache"
    ds = load_dataset("cifar10", raw_dir=tmp_path / "raw", cache_dir=cache, checksums=False)
    assert_matches(ds, fixture)
    assert ds.train.images.shape == (20, 3, 32, 32) and len(ds.test) == 10
    assert ds.cache_path.parent == cache and ds.cache_path.name.startswith("cifar10-dir-") and ds.cache_path.suffix == ".pt"
    tensors = {"train_images": ds.train.images, "train_labels": ds.train.labels, "test_images": ds.test.images, "test_labels": ds.test.labels}
    assert ds.sha256 == {key: sha256_tensor(tensor) for key, tensor in tensors.items()}
    manifest = json.loads(ds.cache_path.with_suffix(".json").read_text())
    assert manifest["train"]["sha256"] == {"images": ds.sha256["train_images"], "labels": ds.sha256["train_labels"]}
    assert manifest["test"]["per_class"] == dict.fromkeys(CIFAR10_CLASSES, 1)
    assert sorted(path.name for path in cache.iterdir()) == sorted([ds.cache_path.name, ds.cache_path.with_suffix(".json").name])

    start = time.perf_counter()
    again = load_dataset("cifar10", raw_dir=tmp_path / "raw", cache_dir=cache, checksums=False)
    assert time.perf_counter() - start < 1.0
    assert_matches(again, fixture)
    assert again.sha256 == ds.sha256


def test_official_checksums_are_verified(tmp_path):
    write_cifar10(tmp_path / "raw/cifar10")
    with pytest.raises(DataError, match=r"cifar-10-batches-py/batches\.meta: md5 [0-9a-f]{32} does not match the official 5ff9c5.*re-download"):
        prepare_dataset("cifar10", raw_dir=tmp_path / "raw", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    # a checksum table for the files at hand is accepted ...
    table = md5s(tmp_path / "raw/cifar10/cifar-10-batches-py")
    assert load_dataset("cifar10", raw_dir=tmp_path / "raw", cache_dir=tmp_path / "cache", checksums=table).train.images.shape[0] == 20
    # ... and one that disagrees names the file
    with pytest.raises(DataError, match="test_batch: md5"):
        load_dataset("cifar10", raw_dir=tmp_path / "raw", cache_dir=tmp_path / "other", checksums={**table, "test_batch": "0" * 32})


def test_verified_official_cache_is_used_without_the_raw_files(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    fixture = write_cifar10(raw / "cifar10")
    monkeypatch.setitem(data.OFFICIAL_MD5, "cifar10", md5s(raw / "cifar10/cifar-10-batches-py"))
    path = prepare_dataset("cifar10", raw_dir=raw, cache_dir=tmp_path / "cache")
    assert path.name == "cifar10-official.pt"
    for file in (raw / "cifar10/cifar-10-batches-py").iterdir():
        file.unlink()
    assert_matches(load_dataset("cifar10", raw_dir=raw, cache_dir=tmp_path / "cache"), fixture)


def test_cifar100_official_layout(tmp_path):
    fixture = write_cifar100(tmp_path / "src")
    ds = load_dataset("cifar100", source=tmp_path / "src", cache_dir=tmp_path / "cache", checksums=False)
    assert_matches(ds, fixture)
    assert len(ds.class_names) == 100 and ds.train.images.shape == (100, 3, 32, 32)


def test_svhn_official_mat_files_map_label_10_to_digit_0(tmp_path):
    fixture = write_svhn(tmp_path / "raw/svhn")
    ds = load_dataset("svhn", raw_dir=tmp_path / "raw", cache_dir=tmp_path / "cache", checksums=False)
    assert_matches(ds, fixture)
    assert int(ds.train.labels.min()) == 0 and int(ds.train.labels.max()) == 9


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files(tmp_path, gz):
    fixture = write_mnist(tmp_path / "raw/mnist/MNIST/raw", gz=gz)  # where torchvision's download puts them
    ds = load_dataset("mnist", raw_dir=tmp_path / "raw", cache_dir=tmp_path / "cache", checksums=False)
    assert_matches(ds, fixture)
    assert ds.train.images.shape == (20, 1, 28, 28)


def test_fashionmnist_class_names_and_gz_checksums(tmp_path):
    fixture = write_mnist(tmp_path / "src", gz=True)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: md5|train-images-idx3-ubyte.gz: md5"):
        load_dataset("fashionmnist", source=tmp_path / "src", cache_dir=tmp_path / "cache")
    ds = load_dataset("fashionmnist", source=tmp_path / "src", cache_dir=tmp_path / "cache", checksums=False)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert torch.equal(ds.train.images, torch.from_numpy(fixture.train_images))


@pytest.mark.parametrize("as_zip", [False, True])
def test_tiny_imagenet_official_layout(tmp_path, as_zip):
    fixture = write_tiny_imagenet(tmp_path / "src")
    source = tmp_path / "src"
    if as_zip:
        source = zip_folder(tmp_path / "src/tiny-imagenet-200", tmp_path / "tiny-imagenet-200.zip")
        with pytest.raises(DataError, match="tiny-imagenet-200.zip: md5 .* official 90528d7c"):
            load_dataset("tinyimagenet", source=source, cache_dir=tmp_path / "cache")
    ds = load_dataset("tinyimagenet", source=source, cache_dir=tmp_path / "cache", checksums=False)
    assert_matches(ds, fixture)
    assert ds.train.images.shape == (200, 3, 64, 64) and ds.class_names == sorted(ds.class_names)


def test_tiny_imagenet_zip_in_the_raw_dir(tmp_path):
    fixture = write_tiny_imagenet(tmp_path / "src")
    (tmp_path / "raw/tinyimagenet").mkdir(parents=True)
    zip_folder(tmp_path / "src/tiny-imagenet-200", tmp_path / "raw/tinyimagenet/tiny-imagenet-200.zip")
    assert_matches(load_dataset("tinyimagenet", raw_dir=tmp_path / "raw", cache_dir=tmp_path / "cache", checksums=False), fixture)


# ----------------------------------------------------------------------------------- image folders, archives


def test_image_folder_orders_classes_and_files_by_sorted_name(tmp_path):
    fixture = write_image_folder(tmp_path / "tree", TRICKY_CLASSES, file_names=["2.png", "10.png", "1.png"], test_name="val")
    ds = load_dataset("cifar10", source=tmp_path / "tree", cache_dir=tmp_path / "cache")
    assert ds.class_names == sorted(TRICKY_CLASSES) and ds.class_names.index("cat") < ds.class_names.index("cat-a")
    assert_matches(ds, fixture)
    assert ds.train.images.shape == (30, 3, 32, 32)


def test_tar_gz_with_top_level_directory_is_read_without_extracting(tmp_path):
    fixture = write_image_folder(tmp_path / "tree", TRICKY_CLASSES, channels=1, size=28)
    (tmp_path / "tree/train/cat/.hidden.png").write_bytes(b"ignored")  # hidden and non-image files are skipped
    (tmp_path / "tree/test/cat/notes.txt").write_text("ignored")
    archive = tar_folder(tmp_path / "tree", tmp_path / "mnist-pngs.tgz", top="mnist-pngs")
    (tmp_path / "work").mkdir()
    before = files_under(tmp_path / "work")
    ds = load_dataset("mnist", source=archive, cache_dir=tmp_path / "work/cache")
    assert_matches(ds, fixture)
    assert ds.cache_path.name == f"mnist-{hashlib.sha256(archive.read_bytes()).hexdigest()[:12]}.pt"
    assert files_under(tmp_path / "work") - before == {tmp_path / "work/cache", ds.cache_path, ds.cache_path.with_suffix(".json")}


@pytest.mark.parametrize(
    "member",
    [
        tar_member("../evil", b"pwned"),
        tar_member("/tmp/iid-distill-absolute-evil", b"pwned"),
        tar_member("top/train/cat/link.png", link_to="../../../../evil"),
        tar_member("top/train/cat/abs.png", link_to="/etc/passwd"),
        tar_member("top/train/cat/hard.png", link_to="../evil", hard=True),
    ],
    ids=["dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out"],
)
def test_unsafe_tar_members_are_rejected_and_nothing_is_written(tmp_path, member):
    write_image_folder(tmp_path / "tree", CIFAR10_CLASSES, per_class=1)
    archive = tar_folder(tmp_path / "tree", tmp_path / "bad.tar.gz", top="top", extra=[member])
    before = files_under(tmp_path)
    with pytest.raises(DataError, match=r"unsafe archive .*bad\.tar\.gz.*(absolute path|escapes the archive root|points outside)"):
        load_dataset("cifar10", source=archive, cache_dir=tmp_path / "cache")
    assert files_under(tmp_path) == before
    assert not Path("/tmp/iid-distill-absolute-evil").exists()


def test_unsafe_zip_member_is_rejected(tmp_path):
    import zipfile

    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("train/cat/0.png", encode_image(np.zeros((3, 32, 32), np.uint8)))
        handle.writestr("../evil.png", b"pwned")
    with pytest.raises(DataError, match="escapes the archive root"):
        load_dataset("cifar10", source=archive, cache_dir=tmp_path / "cache")
    assert not (tmp_path.parent / "evil.png").exists() and not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------------------- errors


def test_missing_official_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataError, match=r"CIFAR-10 not found in .*raw/cifar10: put cifar-10-batches-py/ .*--download.*--source"):
        load_dataset("cifar10", raw_dir=tmp_path / "raw", cache_dir=tmp_path / "cache")
    write_cifar10(tmp_path / "raw/cifar10")
    (tmp_path / "raw/cifar10/cifar-10-batches-py/test_batch").unlink()
    with pytest.raises(DataError, match=r"cifar-10-batches-py is missing test_batch: put the official CIFAR-10 files there .*--download"):
        load_dataset("cifar10", raw_dir=tmp_path / "raw", cache_dir=tmp_path / "cache", checksums=False)
    with pytest.raises(DataError, match="source .*nowhere does not exist"):
        load_dataset("cifar10", source=tmp_path / "nowhere", cache_dir=tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no SVHN data found in .*empty: expected train_32x32.mat and test_32x32.mat or an image folder"):
        load_dataset("svhn", source=tmp_path / "empty", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="digits is built in"):
        load_dataset("digits", source=tmp_path / "empty", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_wrong_class_count_is_rejected(tmp_path):
    write_image_folder(tmp_path / "nine", CIFAR10_CLASSES[:9], per_class=1)
    with pytest.raises(DataError, match="has 9 class folders but cifar10 has 10 classes"):
        load_dataset("cifar10", source=tmp_path / "nine", cache_dir=tmp_path / "cache")
    write_cifar10(tmp_path / "meta9", class_names=CIFAR10_CLASSES[:9])
    with pytest.raises(DataError, match="has 9 classes but cifar10 has 10"):
        load_dataset("cifar10", source=tmp_path / "meta9", cache_dir=tmp_path / "cache", checksums=False)
    write_cifar10(tmp_path / "c10")
    with pytest.raises(DataError, match="has 10 classes but cifar100 has 100|no CIFAR-100 data"):
        load_dataset("cifar100", source=tmp_path / "c10/cifar-10-batches-py", cache_dir=tmp_path / "cache", checksums=False)
    fixture_dir = tmp_path / "svhn"
    write_svhn(fixture_dir)
    from scipy.io import savemat

    savemat(fixture_dir / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[11], [3]], np.uint8)})
    with pytest.raises(DataError, match=r"test_32x32.mat: labels span 3..11, expected 1..10"):
        load_dataset("svhn", source=fixture_dir, cache_dir=tmp_path / "cache", checksums=False)
    write_image_folder(tmp_path / "mismatch", CIFAR10_CLASSES, per_class=1)
    (tmp_path / "mismatch/test/truck").rename(tmp_path / "mismatch/test/lorry")
    with pytest.raises(DataError, match=r"test class folders differ from train/ \(lorry, truck\)"):
        load_dataset("cifar10", source=tmp_path / "mismatch", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_wrong_image_size_and_channels_are_rejected(tmp_path):
    write_image_folder(tmp_path / "small", CIFAR10_CLASSES, per_class=1, size=16)
    with pytest.raises(DataError, match=r"train/airplane/0000.png is 16x16, expected 32x32 for cifar10; resize"):
        load_dataset("cifar10", source=tmp_path / "small", cache_dir=tmp_path / "cache")
    write_image_folder(tmp_path / "rgb", CIFAR10_CLASSES, per_class=1, size=28)
    with pytest.raises(DataError, match=r"0000.png has mode RGB, expected a grayscale \(L\) image for mnist"):
        load_dataset("mnist", source=tmp_path / "rgb", cache_dir=tmp_path / "cache")
    write_image_folder(tmp_path / "rgba", CIFAR10_CLASSES, per_class=1, channels=4)
    with pytest.raises(DataError, match="has mode RGBA, expected an RGB"):
        load_dataset("cifar10", source=tmp_path / "rgba", cache_dir=tmp_path / "cache")
    # an idx file whose header says 32x32 for MNIST
    fixture_dir = tmp_path / "idx"
    write_mnist(fixture_dir)
    (fixture_dir / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (32).to_bytes(4, "big") * 2 + bytes(10 * 1024))
    with pytest.raises(DataError, match=r"test images have shape \(1, 32, 32\), expected \(1, 28, 28\)"):
        load_dataset("mnist", source=fixture_dir, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_grayscale_images_become_rgb_for_colour_datasets(tmp_path):
    fixture = write_image_folder(tmp_path / "gray", CIFAR10_CLASSES, per_class=1, channels=1)
    ds = load_dataset("cifar10", source=tmp_path / "gray", cache_dir=tmp_path / "cache")
    assert torch.equal(ds.train.images, torch.from_numpy(fixture.train_images).expand(-1, 3, -1, -1))


def test_corrupt_files_are_rejected(tmp_path):
    write_image_folder(tmp_path / "garbage", CIFAR10_CLASSES, per_class=1)
    (tmp_path / "garbage/test/dog/0000.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"cannot read image .*test/dog/0000.png .*corrupt or not an image"):
        load_dataset("cifar10", source=tmp_path / "garbage", cache_dir=tmp_path / "cache")
    write_image_folder(tmp_path / "truncated", CIFAR10_CLASSES, per_class=1)
    jpeg = encode_image(np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8), "JPEG")
    (tmp_path / "truncated/train/cat/0000.png").unlink()
    (tmp_path / "truncated/train/cat/0000.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(DataError, match=r"cannot read image .*train/cat/0000.jpg"):
        load_dataset("cifar10", source=tmp_path / "truncated", cache_dir=tmp_path / "cache")
    archive = tar_folder(tmp_path / "truncated", tmp_path / "whole.tar.gz")
    (tmp_path / "cut.tar.gz").write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"cannot read archive .*cut.tar.gz .*corrupt or truncated"):
        load_dataset("cifar10", source=tmp_path / "cut.tar.gz", cache_dir=tmp_path / "cache")
    write_mnist(tmp_path / "idx", gz=True)
    (tmp_path / "idx/train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(DataError, match="cannot decompress .*train-labels-idx1-ubyte.gz"):
        load_dataset("mnist", source=tmp_path / "idx", cache_dir=tmp_path / "cache", checksums=False)
    write_mnist(tmp_path / "short")
    path = tmp_path / "short/train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"header says \(20, 28, 28\) but holds 15670 bytes \(truncated or corrupt\)"):
        load_dataset("mnist", source=tmp_path / "short", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


class _CodeInPickle:
    """Unpickling this calls open(marker, "w"): the marker file exists afterwards iff the pickle's code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_cifar_pickles_cannot_run_code(tmp_path):
    write_cifar10(tmp_path / "src")
    batch = tmp_path / "src/cifar-10-batches-py/data_batch_3"
    marker = tmp_path / "code-ran"
    batch.write_bytes(pickle.dumps({"data": _CodeInPickle(marker), "labels": []}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3 \(UnpicklingError: refusing to load (__builtin__|builtins|io)\.open\)"):
        load_dataset("cifar10", source=tmp_path / "src", cache_dir=tmp_path / "cache", checksums=False)
    assert not marker.exists()


def test_modified_or_unreadable_cache_is_rejected_until_forced(tmp_path):
    write_image_folder(tmp_path / "tree", CIFAR10_CLASSES, per_class=1)
    path = prepare_dataset("cifar10", source=tmp_path / "tree", cache_dir=tmp_path / "cache")
    payload = torch.load(path, weights_only=True)
    payload["tensors"]["train_images"][0, 0, 0, 0] ^= 1
    torch.save(payload, path)
    with pytest.raises(DataError, match=r"train_images does not match its recorded sha256 .*--force"):
        load_dataset("cifar10", source=tmp_path / "tree", cache_dir=tmp_path / "cache")
    assert prepare_dataset("cifar10", source=tmp_path / "tree", cache_dir=tmp_path / "cache") == path  # kept as is without force
    fresh = load_dataset("cifar10", source=tmp_path / "tree", cache_dir=tmp_path / "cache", force=True)
    assert fresh.sha256["train_images"] == sha256_tensor(fresh.train.images)
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cache .* is unreadable .*--force"):
        load_dataset("cifar10", source=tmp_path / "tree", cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------------------- download


def _fake_torchvision(cifar10_class) -> types.SimpleNamespace:
    return types.SimpleNamespace(datasets=types.SimpleNamespace(CIFAR10=cifar10_class))


def test_download_failure_is_one_clear_line(tmp_path, monkeypatch):
    def offline(root, train, download):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data.load, "import_torchvision", lambda: _fake_torchvision(offline))
    with pytest.raises(DataError) as caught:
        load_dataset("cifar10", raw_dir=tmp_path / "raw", cache_dir=tmp_path / "cache", download=True)
    message = str(caught.value)
    assert "\n" not in message and "could not download CIFAR-10" in message and "URLError" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message and str(tmp_path / "raw/cifar10") in message


def test_download_uses_torchvision_then_reads_the_official_layout(tmp_path, monkeypatch):
    calls = []

    def fake_cifar10(root, train, download):
        calls.append((root, download))
        write_cifar10(Path(root), class_names=CIFAR10_CLASSES)

    monkeypatch.setattr(data.load, "import_torchvision", lambda: _fake_torchvision(fake_cifar10))
    ds = load_dataset("cifar10", raw_dir=tmp_path / "raw", cache_dir=tmp_path / "cache", download=True, checksums=False)
    assert calls == [(str(tmp_path / "raw/cifar10"), True)] and ds.class_names == CIFAR10_CLASSES
    load_dataset("cifar10", raw_dir=tmp_path / "raw", cache_dir=tmp_path / "other", download=True, checksums=False)
    assert len(calls) == 1  # files already present: no second download


# ------------------------------------------------------------------------------------------------ digits


def test_digits_split_is_stratified_and_deterministic(tmp_path):
    ds = load_dataset("digits", cache_dir=tmp_path / "cache")
    spec = ds.spec
    assert ds.cache_path.name == "digits-sklearn.pt"
    assert (len(ds.train), len(ds.test)) == (spec.train_count, spec.test_count) == (1397, 400)
    assert ds.train.images.shape[1:] == (1, 32, 32) and ds.train.images.dtype == torch.uint8
    assert torch.bincount(ds.test.labels, minlength=10).tolist() == [40] * 10
    assert int(ds.train.images.max()) > 200  # scaled from 0..16 to 0..255
    full = torch.cat([ds.train.labels, ds.test.labels])
    from sklearn.datasets import load_digits

    assert torch.bincount(full).tolist() == np.bincount(load_digits().target).tolist()
    train_index, test_index = data.digits_split_indices(torch.from_numpy(load_digits().target).long())
    again_train, again_test = data.digits_split_indices(torch.from_numpy(load_digits().target).long())
    assert torch.equal(train_index, again_train) and torch.equal(test_index, again_test)
    assert torch.equal(torch.sort(torch.cat([train_index, test_index])).values, torch.arange(1797))
    rebuilt = load_dataset("digits", cache_dir=tmp_path / "again")
    assert rebuilt.sha256 == ds.sha256
    pixels = ds.train.images.double() / 255
    assert abs(pixels.mean().item() - spec.mean[0]) < 1e-3 and abs(pixels.std().item() - spec.std[0]) < 1e-3


# ------------------------------------------------------------------------------------ tensors and summaries


def test_normalize_denormalize_round_trip():
    spec = get_spec("cifar10")
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    normalized = normalize(images, spec)
    assert normalized.dtype == torch.float32
    expected_first = (images[:, 0].float() / 255 - 0.4914) / 0.2023
    assert torch.allclose(normalized[:, 0], expected_first, atol=1e-6)
    assert torch.allclose(denormalize(normalized, spec) * 255, images.float(), atol=1e-3)
    assert denormalize(torch.full((3, 2, 2), 50.0), spec).max() == 1.0
    assert normalize(images[0], spec).shape == (3, 8, 8)
    with pytest.raises(TypeError, match="uint8"):
        normalize(images.float(), spec)


def test_class_indices_group_samples_by_class():
    labels = torch.tensor([2, 0, 2, 1, 0, 2])
    split = Split(torch.zeros(6, 1, 2, 2, dtype=torch.uint8), labels)
    groups = split.class_indices(4)
    assert [group.tolist() for group in groups] == [[1, 4], [3], [0, 2, 5], []]
    assert all(group.dtype == torch.int64 for group in groups)


def test_dataset_info_is_json_and_counts_per_class(tmp_path):
    write_image_folder(tmp_path / "tree", CIFAR10_CLASSES, per_class=2)
    ds = load_dataset("cifar10", source=tmp_path / "tree", cache_dir=tmp_path / "cache")
    info = json.loads(json.dumps(dataset_info(ds)))
    assert info["train"]["images"] == 20 and info["train"]["official_images"] == 50000
    assert info["train"]["per_class"] == dict.fromkeys(CIFAR10_CLASSES, 2) and info["test"]["shape"] == [20, 3, 32, 32]
    assert info["test"]["sha256"]["images"] == sha256_tensor(ds.test.images)
    assert ds.train_class_indices is ds.train_class_indices
    assert [group.tolist() for group in ds.train_class_indices][0] == [0, 1]


# ------------------------------------------------------------------------------------ real CIFAR-10 (JPEG)


@pytest.fixture(scope="session")
def real_cifar10(tmp_path_factory):
    """The real CIFAR-10 JPEG copy, prepared once per session (decoding 60k JPEGs takes a few seconds)."""
    if not REAL_CIFAR10.exists():
        pytest.skip(f"{REAL_CIFAR10} is not present (the offline CIFAR-10 copy beside the checkout, as in CI)")
    cache = tmp_path_factory.mktemp("real-cifar10")
    start = time.perf_counter()
    path = prepare_dataset("cifar10", source=REAL_CIFAR10, cache_dir=cache)
    print(f"\nprepared {path.name} in {time.perf_counter() - start:.1f} s")
    return cache


@pytest.mark.slow
def test_real_cifar10_jpeg_archive(real_cifar10):
    start = time.perf_counter()
    ds = load_dataset("cifar10", source=REAL_CIFAR10, cache_dir=real_cifar10)
    seconds = time.perf_counter() - start
    print(f"loaded from cache in {seconds:.2f} s; train {ds.sha256['train_images']}, test {ds.sha256['test_images']}")
    assert seconds < 2.0
    assert ds.class_names == CIFAR10_CLASSES
    assert ds.train.images.shape == (50000, 3, 32, 32) and ds.test.images.shape == (10000, 3, 32, 32)
    assert torch.bincount(ds.train.labels, minlength=10).tolist() == [5000] * 10
    assert torch.bincount(ds.test.labels, minlength=10).tolist() == [1000] * 10
    # the JPEG copy keeps CIFAR-10's statistics: per-channel means within 0.01 of the spec's
    means = ds.train.images[::10].float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor(ds.spec.mean), atol=0.01)
