"""The synthetic-set file format: round trip, byte stability, every validation error, the image grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iid_distill.synthetic import (
    FORMAT_TAG,
    FORMAT_VERSION,
    SyntheticSet,
    SyntheticSetError,
    grid_pixel_size,
    load_synthetic_set,
    save_image_grid,
    save_synthetic_set,
)
from iid_distill.utils import UserError

NUM_CLASSES, IPC = 10, 2  # digits: 1 x 32 x 32, 10 classes


def make_set(ipc: int = IPC, **meta_overrides) -> SyntheticSet:
    generator = torch.Generator().manual_seed(7)
    images = torch.randn(NUM_CLASSES * ipc, 1, 32, 32, generator=generator)
    labels = torch.arange(NUM_CLASSES).repeat(ipc)  # interleaved on purpose: files need not be class-sorted
    meta = {"dataset": "digits", "ipc": ipc, "method": "random", "params": {"b": 1, "a": [1, 2]}, "seed": 0, "git_sha": "abc"}
    meta.update(meta_overrides)
    return SyntheticSet(images, labels, meta)


def write_payload(path, **changes) -> None:
    sset = make_set()
    payload = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "images": sset.images, "labels": sset.labels, "meta": sset.meta}
    payload.update(changes)
    torch.save(payload, path)


def test_round_trip_keeps_everything(tmp_path):
    sset = make_set(expand_factor=2)
    save_synthetic_set(sset, tmp_path / "set.pt")
    loaded = load_synthetic_set(tmp_path / "set.pt", dataset="digits")
    assert torch.equal(loaded.images, sset.images) and loaded.images.dtype == torch.float32
    assert torch.equal(loaded.labels, sset.labels) and loaded.labels.dtype == torch.int64
    assert loaded.meta == sset.meta
    assert loaded.expand_factor == 2


def test_identical_input_gives_identical_bytes(tmp_path):
    first, second = make_set(), make_set()
    second.meta = dict(reversed(list(second.meta.items())))  # key order must not matter
    save_synthetic_set(first, tmp_path / "a.pt")
    save_synthetic_set(second, tmp_path / "other_name.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "other_name.pt").read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_save_stores_a_compact_copy_of_a_view(tmp_path):
    sset = make_set()
    big = torch.cat([sset.images, torch.zeros(1000, 1, 32, 32)])
    save_synthetic_set(SyntheticSet(big[: sset.images.shape[0]], sset.labels, sset.meta), tmp_path / "view.pt")
    save_synthetic_set(sset, tmp_path / "plain.pt")
    assert (tmp_path / "view.pt").read_bytes() == (tmp_path / "plain.pt").read_bytes()


def test_classes_meta_allows_partial_class_coverage(tmp_path):
    sset = make_set()
    keep = sset.labels < 3
    partial = SyntheticSet(sset.images[keep], sset.labels[keep], {**sset.meta, "classes": [0, 1, 2]})
    save_synthetic_set(partial, tmp_path / "partial.pt")
    assert load_synthetic_set(tmp_path / "partial.pt").meta["classes"] == [0, 1, 2]


BAD_PAYLOADS = {
    "format tag": (dict(format="something-else"), "format tag"),
    "version": (dict(version=99), "version 99"),
    "images int": (dict(images=torch.zeros(20, 1, 32, 32, dtype=torch.uint8)), "images must be a float"),
    "images 3-D": (dict(images=torch.zeros(20, 32, 32)), "images must be a float"),
    "labels int32": (dict(labels=torch.zeros(20, dtype=torch.int32)), "labels must be an int64"),
    "labels 2-D": (dict(labels=torch.zeros(20, 1, dtype=torch.int64)), "labels must be an int64"),
    "length mismatch": (dict(labels=torch.arange(10).repeat(3)), "20 images but 30 labels"),
    "label range": (dict(labels=torch.arange(10).repeat(2) + 1), "labels span [1, 10]"),
    "negative label": (dict(labels=torch.arange(10).repeat(2) - 1), "labels span [-1, 8]"),
    "channels": (dict(images=torch.zeros(20, 3, 32, 32)), "needs (1, 32, 32)"),
    "size": (dict(images=torch.zeros(20, 1, 28, 28)), "needs (1, 32, 32)"),
    "per-class count": (dict(labels=torch.cat([torch.zeros(2, dtype=torch.int64), torch.arange(10).repeat(2)[2:]])), "expected 2 (ipc 2)"),
    "ipc mismatch": (dict(meta={**make_set().meta, "ipc": 3}), "expected 3 (ipc 3)"),
    "missing meta key": (dict(meta={k: v for k, v in make_set().meta.items() if k != "git_sha"}), "lacks required key(s) git_sha"),
    "unknown dataset": (dict(meta={**make_set().meta, "dataset": "imagenet-22k"}), "not a known dataset"),
    "bad ipc": (dict(meta={**make_set().meta, "ipc": 0}), "meta['ipc'] must be a positive integer"),
    "nan": (dict(images=torch.full((20, 1, 32, 32), float("nan"))), "NaN"),
    "not a dict": (None, "format tag 'list'"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_every_validation_error_is_one_line_naming_the_file(tmp_path, case):
    changes, expected = BAD_PAYLOADS[case]
    path = tmp_path / "bad.pt"
    if changes is None:
        torch.save([1, 2, 3], path)
    else:
        write_payload(path, **changes)
    with pytest.raises(SyntheticSetError) as raised:
        load_synthetic_set(path)
    message = str(raised.value)
    assert expected in message and str(path) in message and "\n" not in message
    assert isinstance(raised.value, UserError)


def test_wrong_dataset_requested(tmp_path):
    write_payload(tmp_path / "set.pt")
    with pytest.raises(SyntheticSetError, match="made for dataset 'digits', expected 'cifar10'"):
        load_synthetic_set(tmp_path / "set.pt", dataset="cifar10")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(SyntheticSetError, match="no such synthetic-set file"):
        load_synthetic_set(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"this is not a torch file")
    with pytest.raises(SyntheticSetError, match="not a readable synthetic-set file") as raised:
        load_synthetic_set(tmp_path / "junk.pt")
    assert "\n" not in str(raised.value)


class _WritesMarker:
    """Unpickling this calls open(marker, "w"): the marker file exists afterwards iff the pickle's code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_code_carrying_pickle_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"format": FORMAT_TAG, "version": FORMAT_VERSION, "payload": _WritesMarker(marker)}, tmp_path / "evil.pt")
    with pytest.raises(SyntheticSetError, match=r"not a readable synthetic-set file \(it holds objects other than tensors .*refused unread") as error:
        load_synthetic_set(tmp_path / "evil.pt")
    assert not marker.exists()
    assert "weights_only=False will" not in str(error.value) and "likely succeed" not in str(error.value)  # not torch's advice


def test_save_refuses_invalid_sets_and_non_plain_meta(tmp_path):
    with pytest.raises(SyntheticSetError, match="not plain data"):
        save_synthetic_set(make_set(params={"device": torch.device("cpu")}), tmp_path / "x.pt")
    broken = make_set()
    broken.labels = broken.labels[:-1]
    with pytest.raises(SyntheticSetError, match="20 images but 19 labels"):
        save_synthetic_set(broken, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("nrow, columns", [(None, 3), (2, 2)])
def test_image_grid_has_one_row_per_class(tmp_path, nrow, columns):
    sset = make_set(ipc=3)
    save_image_grid(sset, tmp_path / "grid.png", nrow=nrow)
    with Image.open(tmp_path / "grid.png") as image:
        assert image.format == "PNG" and image.mode == "L"
        assert image.size == grid_pixel_size(NUM_CLASSES, columns, 32, 32)


def test_image_grid_places_each_class_on_its_row(tmp_path):
    from iid_distill.data import get_spec

    spec = get_spec("digits")
    labels = torch.arange(NUM_CLASSES).repeat(IPC)
    brightness = labels.float() / (NUM_CLASSES - 1)  # class k is a flat image of grey level k/9
    images = ((brightness - spec.mean[0]) / spec.std[0]).view(-1, 1, 1, 1).expand(-1, 1, 32, 32).contiguous()
    sset = SyntheticSet(images, labels, make_set().meta)
    save_image_grid(sset, tmp_path / "grid.png")
    pixels = torch.from_numpy(np.array(Image.open(tmp_path / "grid.png")))
    row_centres = [2 + k * 34 + 16 for k in range(NUM_CLASSES)]
    expected = (torch.arange(NUM_CLASSES).float() / 9 * 255).round()
    assert torch.allclose(pixels[row_centres, 2 + 16].float(), expected, atol=1)
    assert int(pixels[0, 0]) == 255  # white padding


COMMITTED_SETS = sorted((Path(__file__).resolve().parents[1] / "reports").rglob("*.pt"))


@pytest.mark.parametrize("path", COMMITTED_SETS, ids=lambda path: path.name)
def test_committed_sets_load_in_the_documented_format(path):
    """The synthetic sets committed under reports/ (fast_mode/, gpu_check/, cpu_ipc1/) load and validate, with
    their distillation record's identity, or a coreset's selected indices; the IPC is the one in the file's name."""
    import json
    import re

    ipc = int(re.search(r"ipc(\d+)", path.name).group(1))
    sset = load_synthetic_set(path, dataset="cifar10")
    assert sset.images.shape == (10 * ipc, 3, 32, 32) and sset.labels.bincount().tolist() == [ipc] * 10 and sset.meta["ipc"] == ipc
    if "indices" in sset.meta:  # a coreset: real training images
        assert len(set(sset.meta["indices"])) == 10 * ipc
        return
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["ipc"] == ipc and record["iterations"] == sset.meta["iteration"] and record["method"] == sset.meta["method"]


def test_reports_hold_committed_sets():
    names = {path.parent.parent.name + "/" + path.name for path in COMMITTED_SETS}
    # the fast-mode comparison's fp32 and bf16 sets; the GPU run's five distilled sets and two coresets
    assert len(COMMITTED_SETS) >= 9 and "gpu_check/cifar10_dm_iid_ipc10.pt" in names
