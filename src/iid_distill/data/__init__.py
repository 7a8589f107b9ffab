"""Datasets: specs, readers for the official on-disk formats and image folders/archives, and a hashed cache.

Every dataset is prepared once into ``<cache_dir>/<name>-<source id>.pt``: uint8 images (N, C, H, W) and int64
labels per split, with the sha256 of each tensor recorded in the file and in a sidecar ``.json`` manifest. Loading
re-hashes the tensors and refuses a cache whose contents do not match its recorded hashes.

Sources (``source=None`` means the official layout under ``<raw_dir>/<name>/``; ``digits`` is built in):

- the official torchvision layouts (CIFAR pickles, SVHN ``.mat``, MNIST idx files), checked against torchvision's
  published md5 checksums, parsed here without torchvision;
- Tiny ImageNet's official layout (``wnids.txt``, ``train/<wnid>/images``, ``val/val_annotations.txt``), as a
  folder or the official zip; its ``val`` split is the test split;
- an image folder ``train/<class>/*.png|jpg`` + ``test/<class>/*`` (or ``val/``), as a folder, ``.zip``,
  ``.tar.gz``/``.tgz`` or ``.tar``, possibly inside one top-level folder.

Archives are read in memory, never extracted; members with absolute paths, ``..`` components or links that point
outside the archive are rejected before any image is decoded.

A package: ``specs`` -> ``prepared`` -> ``trees`` -> ``formats`` -> ``load`` (the public ``load_dataset`` /
``prepare_dataset``).
"""

from __future__ import annotations

from iid_distill.data.specs import (  # noqa: F401
    CACHE_FORMAT,
    DATASETS,
    DEFAULT_CACHE_DIR,
    DEFAULT_RAW_DIR,
    DIGITS_SPLIT_SEED,
    DIGITS_TEST_PER_CLASS,
    DIGIT_CLASS_NAMES,
    DSA_STRATEGY,
    DSA_STRATEGY_NO_FLIP,
    DataError,
    DatasetSpec,
    FASHION_CLASS_NAMES,
    IMAGE_EXTENSIONS,
    OFFICIAL_MD5,
    TENSOR_KEYS,
    get_spec,
)
from iid_distill.data.prepared import (  # noqa: F401
    PreparedDataset,
    Split,
    dataset_info,
    denormalize,
    normalize,
)
from iid_distill.data.formats import (  # noqa: F401
    OFFICIAL_LAYOUTS,
    digits_split_indices,
)
from iid_distill.data.load import (  # noqa: F401
    load_dataset,
    prepare_dataset,
)
