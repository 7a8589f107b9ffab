"""What a dataset is (DatasetSpec: classes, geometry, normalisation, DSA strategy), the supported datasets and their
official checksums.
"""

from __future__ import annotations

from dataclasses import dataclass

from iid_distill.utils import UserError


CACHE_FORMAT = 1
DEFAULT_CACHE_DIR = "resources/data"
DEFAULT_RAW_DIR = "resources/raw"
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
DSA_STRATEGY_NO_FLIP = "color_crop_cutout_scale_rotate"  # digits must not be mirrored
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TENSOR_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
DIGITS_TEST_PER_CLASS = 40
DIGITS_SPLIT_SEED = 0


class DataError(UserError):
    """A dataset file, archive, cache or name that cannot be used as given."""




@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: its classes, image geometry, normalisation and DSA strategy."""

    name: str
    num_classes: int
    channels: int
    image_size: int  # square images
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dsa_strategy: str
    train_count: int | None  # official split sizes (informational; local copies may differ)
    test_count: int | None
    title: str = ""  # human-readable name for messages


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), DSA_STRATEGY, 50000, 10000, "CIFAR-10"),
        DatasetSpec("cifar100", 100, 3, 32, (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762), DSA_STRATEGY, 50000, 10000, "CIFAR-100"),
        DatasetSpec("svhn", 10, 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), DSA_STRATEGY_NO_FLIP, 73257, 26032, "SVHN"),
        DatasetSpec("tinyimagenet", 200, 3, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), DSA_STRATEGY, 100000, 10000, "Tiny ImageNet"),
        DatasetSpec("mnist", 10, 1, 28, (0.1307,), (0.3081,), DSA_STRATEGY_NO_FLIP, 60000, 10000, "MNIST"),
        DatasetSpec("fashionmnist", 10, 1, 28, (0.2861,), (0.3530,), DSA_STRATEGY, 60000, 10000, "Fashion-MNIST"),
        # mean/std measured on the train split built below (x/255); tests recompute them from the data
        DatasetSpec("digits", 10, 1, 32, (0.3058,), (0.3237,), DSA_STRATEGY_NO_FLIP, 1397, 400, "digits (scikit-learn 8x8, upscaled)"),
    )
}

DIGIT_CLASS_NAMES = [str(digit) for digit in range(10)]
FASHION_CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# torchvision's published md5 checksums of the official files (Tiny ImageNet: the cs231n zip)
OFFICIAL_MD5: dict[str, dict[str, str]] = {
    "cifar10": {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    "cifar100": {
        "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
    "svhn": {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    },
    # torchvision publishes checksums of the .gz files only; uncompressed idx files are checked by their headers
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashionmnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "tinyimagenet": {"tiny-imagenet-200.zip": "90528d7ca1a48142e341f4ef8d21d0de"},
}


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name`` (case-insensitive)."""
    spec = DATASETS.get(str(name).strip().lower())
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    return spec
