"""The paper's visualisations: t-SNE of synthetic-set features (Figures 1 and 3) and image grids (Figure 8).

Figure 1 embeds the features of DM and DM+IID sets (CIFAR10, IPC 10 and 50) given by a pre-trained ResNet18 of
the IID pool, one panel per set, one colour per class; Figure 3 does the same for DM+CC sets at each beta of the
sweep; Figure 8 shows the IPC 10 sets of every dataset, at most ``max_classes`` classes each ("partial").

Features describe what a model trains on: sets with ``expand_factor`` > 1 (IDM) are partitioned and expanded first.
t-SNE runs single-threaded with a fixed seed, so a figure re-rendered from the same inputs is byte-identical.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from iid_distill.utils import UserError

TSNE_MAX_COLUMNS = 5
GRID_MAX_COLUMNS = 4
TSNE_PANEL_INCHES = 2.6
GRID_PANEL_INCHES = 3.4
MAX_LEGEND_CLASSES = 20  # beyond this a legend is unreadable: a colour bar of class indices instead
MAX_ROW_NAMES = 20
DEFAULT_MAX_CLASSES = 10
DEFAULT_IMAGES_PER_CLASS = 10
# Official label order (alphabetical for CIFAR-10, also the order of the image-folder copy; SVHN digit 0 is label 0).
CIFAR10_CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class VisualizeError(UserError):
    """Inputs that cannot be drawn together: mixed datasets, mismatched titles, too few points, a bad model index."""


# ----------------------------------------------------------------------------------------------------------------
# Inputs


def _load_sets(set_paths: Sequence[str | os.PathLike]):
    from iid_distill.synthetic import load_synthetic_set

    if not set_paths:
        raise VisualizeError("no synthetic-set files given; pass at least one SET.pt")
    return [load_synthetic_set(path) for path in set_paths]


def dataset_class_names(dataset_name: str, source: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Class names of ``dataset_name``: built in where the order is fixed, else from the prepared data when ``source``
    or ``cache_dir`` is given (CIFAR-100, Tiny ImageNet), else ``class 0``, ``class 1``, ..."""
    from iid_distill.data import DIGIT_CLASS_NAMES, FASHION_CLASS_NAMES, get_spec, load_dataset

    spec = get_spec(dataset_name)
    built_in = {"cifar10": CIFAR10_CLASS_NAMES, "svhn": DIGIT_CLASS_NAMES, "mnist": DIGIT_CLASS_NAMES,
                "digits": DIGIT_CLASS_NAMES, "fashionmnist": FASHION_CLASS_NAMES}
    if spec.name in built_in:
        return list(built_in[spec.name])
    if source is not None or cache_dir is not None:
        options = {"cache_dir": cache_dir} if cache_dir is not None else {}
        return list(load_dataset(spec.name, source, **options).class_names)
    return [f"class {index}" for index in range(spec.num_classes)]


def load_feature_network(pool_dir: str | os.PathLike, dataset_name: str, device: torch.device | str, model_index: int = 0, *,
                         arch: str | None = None, dataset_sha256: Mapping[str, str] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Model ``model_index`` of the pool in ``pool_dir`` (frozen, eval mode) and a description of it.

    The pool is checked by ``FeaturePool.load`` (dataset name and geometry, file hashes, ``arch`` unless None, the
    data's ``dataset_sha256`` when given); an unfinished pool is accepted, since any trained model gives features.
    """
    from iid_distill.data import get_spec
    from iid_distill.pretrain import FeaturePool

    pool = FeaturePool.load(pool_dir, get_spec(dataset_name), device, arch=arch,
                            dataset_sha256=dict(dataset_sha256) if dataset_sha256 is not None else None, allow_partial=True)
    if isinstance(model_index, bool) or not isinstance(model_index, int) or not 0 <= model_index < len(pool):
        raise VisualizeError(f"{pool_dir}: model index {model_index!r} is out of range; the pool holds {len(pool)} model(s) (0..{len(pool) - 1})")
    entry = pool.manifest["models"][model_index]
    info = {"pool": Path(pool_dir).name, "arch": pool.manifest["arch"], "index": model_index, "file": entry.get("file"),
            "sha256": entry.get("sha256"), "test_acc": entry.get("test_acc")}
    return pool.models[model_index], info


def training_images(sset) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels a model trains on: IDM sets (``expand_factor`` > 1) partitioned and expanded."""
    from iid_distill.augment import partition_and_expand

    images, labels = sset.images.float(), sset.labels
    if sset.expand_factor > 1:
        images, labels = partition_and_expand(images, labels, sset.expand_factor)
    return images, labels


def set_features(sset, feature_net: nn.Module, device: torch.device | str, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings ``feature_net.embed`` of the set's training images: float64 (N, D) and int64 (N,) labels, on CPU.

    Runs in eval mode without gradients; the network's train/eval mode is restored afterwards.
    """
    if batch_size < 1:
        raise VisualizeError(f"batch size must be at least 1, got {batch_size}")
    images, labels = training_images(sset)
    was_training = feature_net.training
    feature_net.eval()
    try:
        with torch.no_grad():
            chunks = [feature_net.embed(batch.to(device)).to("cpu", torch.float64) for batch in torch.split(images, batch_size)]
    finally:
        feature_net.train(was_training)
    return torch.cat(chunks), labels.cpu()


def tsne_embedding(features: torch.Tensor | np.ndarray, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """2-D t-SNE of ``features`` (N, D): PCA init, automatic learning rate, perplexity min(30, (N - 1) / 3) by default.

    One thread (OpenMP and BLAS) makes the Barnes-Hut sums run in a fixed order: the same seed gives the same points.
    (With PCA initialisation the optimisation itself draws nothing random, so the seed rarely changes the result.)
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    data = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] < 3:
        raise VisualizeError(f"t-SNE needs a (N, D) feature array with N >= 3 points, got shape {data.shape}")
    count = data.shape[0]
    perplexity = min(30.0, (count - 1) / 3.0) if perplexity is None else float(perplexity)
    if not 0.0 < perplexity < count:
        raise VisualizeError(f"t-SNE perplexity must lie in (0, {count}) for {count} points, got {perplexity}")
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=int(seed))
    with threadpool_limits(limits=1):
        return tsne.fit_transform(data)


# ----------------------------------------------------------------------------------------------------------------
# Titles


def set_label(sset) -> str:
    """``<method label>, IPC <ipc>`` from the set's meta (``DM+IID, IPC 10``)."""
    from iid_distill.names import MethodNameError, method_label

    method = str(sset.meta["method"])
    try:
        method = method_label(method)
    except MethodNameError:
        pass  # a label the report does not know: show it as recorded
    return f"{method}, IPC {sset.meta['ipc']}"


def default_titles(ssets: Sequence, paths: Sequence[str | os.PathLike] | None = None, expanded: bool = False) -> list[str]:
    """``set_label`` of each set; where two coincide, the CC beta (Figure 3's panels) and then the file name tell them apart.

    ``expanded``: note ``(x4 expanded)`` on IDM sets, whose features are those of the partitioned and expanded images.
    """
    titles = [set_label(sset) for sset in ssets]
    if len(set(titles)) < len(titles):
        betas = [(sset.meta.get("params") or {}).get("cc_beta") for sset in ssets]
        titles = [title if beta is None else f"{title}, β={beta:g}" for title, beta in zip(titles, betas)]
    if len(set(titles)) < len(titles) and paths is not None:
        titles = [f"{title} ({Path(path).name})" for title, path in zip(titles, paths)]
    if expanded:
        titles = [f"{title} (×{sset.expand_factor ** 2} expanded)" if sset.expand_factor > 1 else title for title, sset in zip(titles, ssets)]
    return titles


def _check_titles(titles: Sequence[str] | None, count: int) -> list[str] | None:
    if titles is None or len(titles) == 0:
        return None
    if len(titles) != count:
        raise VisualizeError(f"{len(titles)} title(s) for {count} synthetic set(s); give one --titles entry per SET")
    return [str(title) for title in titles]


def _single_dataset(ssets: Sequence, paths: Sequence[str | os.PathLike]) -> str:
    datasets = {str(sset.meta["dataset"]) for sset in ssets}
    if len(datasets) != 1:
        found = ", ".join(f"{Path(path).name}: {sset.meta['dataset']}" for sset, path in zip(ssets, paths))
        raise VisualizeError(f"a t-SNE figure embeds sets of one dataset (one feature network), got {found}; draw one figure per dataset")
    return datasets.pop()


# ----------------------------------------------------------------------------------------------------------------
# Figures


def _class_colours(num_classes: int):
    """(colour of class k, colormap, norm): tab10 / tab20 by class index, a continuous map beyond 20 classes."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    if num_classes <= 10:
        cmap = colormaps["tab10"]
        return (lambda k: cmap(int(k))), cmap, None
    if num_classes <= 20:
        cmap = colormaps["tab20"]
        return (lambda k: cmap(int(k))), cmap, None
    cmap, norm = colormaps["turbo"], Normalize(vmin=0, vmax=num_classes - 1)
    return (lambda k: cmap(norm(int(k)))), cmap, norm


def plot_tsne_panels(panels: Sequence[tuple[str, np.ndarray, torch.Tensor | np.ndarray]], class_names: Sequence[str], suptitle: str | None = None):
    """One scatter panel per (title, embedding (N, 2), labels (N,)), up to 5 per row, one colour per class everywhere.

    Up to 20 classes share one legend of class names; more get a colour bar of class indices.
    """
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.lines import Line2D

    from iid_distill.report.figures import FIGURE_RC, _new_figure

    if not panels:
        raise VisualizeError("no t-SNE panels to draw")
    num_classes = len(class_names)
    colour_of, cmap, norm = _class_colours(num_classes)
    columns = min(TSNE_MAX_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    seen: set[int] = set()
    with matplotlib.rc_context(FIGURE_RC):
        legend_width = 1.6 if num_classes <= MAX_LEGEND_CLASSES else 0.9
        fig = _new_figure(TSNE_PANEL_INCHES * columns + legend_width, TSNE_PANEL_INCHES * rows + (0.35 if suptitle else 0.0))
        axes = []
        for index, (title, embedding, labels) in enumerate(panels):
            points = np.asarray(embedding, dtype=np.float64)
            classes = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
            if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] != classes.shape[0]:
                raise VisualizeError(f"panel {title!r}: expected a (N, 2) embedding and N labels, got {points.shape} and {classes.shape}")
            if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
                raise VisualizeError(f"panel {title!r}: labels span {classes.min()}..{classes.max()} but there are {num_classes} class names")
            seen.update(int(k) for k in np.unique(classes))
            ax = fig.add_subplot(rows, columns, index + 1)
            colours = np.array([colour_of(k) for k in classes]).reshape(-1, 4)
            ax.scatter(points[:, 0], points[:, 1], c=colours, s=10, linewidths=0, alpha=0.85)
            ax.set_title(title)
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
            ax.set_xticks([])  # t-SNE coordinates carry no units
            ax.set_yticks([])
            axes.append(ax)
        if num_classes <= MAX_LEGEND_CLASSES:
            handles = [Line2D([], [], linestyle="none", marker="o", markersize=5, markerfacecolor=colour_of(k), markeredgewidth=0,
                              label=str(class_names[k])) for k in sorted(seen)]
            fig.legend(handles=handles, loc="outside right upper", frameon=False, title="Class")
        else:
            colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.8)
            colorbar.set_label(f"class index (0..{num_classes - 1})")
        if suptitle:
            fig.suptitle(suptitle)
    return fig


def select_classes(sset, max_classes: int) -> list[int]:
    """The first ``max_classes`` classes the set covers (sorted class indices)."""
    from iid_distill.data import get_spec

    covered = sset.meta.get("classes", list(range(get_spec(sset.meta["dataset"]).num_classes)))
    return sorted(int(k) for k in covered)[:max_classes]


def grid_panel_title(sset, title: str | None, max_classes: int, data_labels: Mapping[str, str] | None = None) -> str:
    """``<dataset> [(partial: K of C classes)]`` over the given title (default: ``<method>, IPC <ipc>``)."""
    from iid_distill.report import dataset_label

    dataset = str(sset.meta["dataset"])
    covered = len(select_classes(sset, 10**9))
    shown = min(covered, max_classes)
    name = dataset_label(dataset, data_labels)
    heading = f"{name} (partial: {shown} of {covered} classes)" if shown < covered else name
    stored = ""
    if sset.expand_factor > 1:  # IDM stores partitioned images: each holds factor x factor smaller ones
        factor = sset.expand_factor
        stored = f"\n(each image: {factor}x{factor} sub-images, {factor * factor} training images)"
    return f"{heading}\n{title if title is not None else set_label(sset)}{stored}"


def plot_image_grids(panels: Sequence[tuple[str, Any]], max_classes: int = DEFAULT_MAX_CLASSES, images_per_class: int = DEFAULT_IMAGES_PER_CLASS,
                     class_names: Mapping[str, Sequence[str]] | None = None, suptitle: str | None = None):
    """One panel per (title, synthetic set): de-normalised images, one row per class (the first ``max_classes``
    classes, the first ``images_per_class`` images of each); rows are labelled with class names when there are at
    most 20 rows. IDM sets show the stored (un-expanded) images. ``class_names`` maps a dataset name to its names.
    """
    import matplotlib

    from iid_distill.data import denormalize, get_spec
    from iid_distill.report.figures import FIGURE_RC, _new_figure
    from iid_distill.synthetic import GRID_PADDING, _grid_tensor

    if not panels:
        raise VisualizeError("no synthetic sets to draw")
    if max_classes < 1 or images_per_class < 1:
        raise VisualizeError(f"max classes and images per class must be at least 1, got {max_classes} and {images_per_class}")
    columns = min(GRID_MAX_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    with matplotlib.rc_context(FIGURE_RC):
        fig = _new_figure(GRID_PANEL_INCHES * columns, (GRID_PANEL_INCHES + 0.4) * rows + (0.35 if suptitle else 0.0))
        for index, (title, sset) in enumerate(panels):
            spec = get_spec(sset.meta["dataset"])
            classes = select_classes(sset, max_classes)
            keep = torch.isin(sset.labels, torch.tensor(classes, dtype=torch.int64))
            images01 = denormalize(sset.images[keep].detach().to("cpu", torch.float32), spec)
            count = min(images_per_class, int(sset.meta["ipc"]))
            grid = _grid_tensor(images01, sset.labels[keep].cpu(), classes, count, GRID_PADDING).permute(1, 2, 0).numpy()
            ax = fig.add_subplot(rows, columns, index + 1)
            if grid.shape[2] == 1:
                ax.imshow(grid[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="antialiased")
            else:
                ax.imshow(grid, interpolation="antialiased")
            ax.set_title(title)
            ax.set_xticks([])
            names = (class_names or {}).get(spec.name)
            if len(classes) <= MAX_ROW_NAMES:
                height = spec.image_size + GRID_PADDING
                ax.set_yticks([GRID_PADDING + spec.image_size / 2 - 0.5 + row * height for row in range(len(classes))])
                ax.set_yticklabels([str(names[k]) if names is not None else str(k) for k in classes], fontsize=7)
                ax.tick_params(axis="y", length=0)
            else:
                ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        if suptitle:
            fig.suptitle(suptitle)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Rendering from files


def render_tsne_figure(set_paths: Sequence[str | os.PathLike], titles: Sequence[str] | None, pool_dir: str | os.PathLike | None,
                       out_stem: str | os.PathLike, device: torch.device | str = "cpu", seed: int = 0, *, suptitle: str | None = None,
                       perplexity: float | None = None, model_index: int = 0, class_names: Sequence[str] | None = None,
                       data_labels: Mapping[str, str] | None = None, batch_size: int = 256, source: str | os.PathLike | None = None,
                       cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Figure 1 / 3: t-SNE of each set's features from pool model ``model_index``; writes ``out_stem``.png/.pdf.

    All sets must be of one dataset; ``pool_dir`` None means that dataset's default pool
    (results/pools/<dataset>-ResNet18). Each set is embedded on its own (its own t-SNE, seeded with ``seed``).
    ``class_names`` defaults to :func:`dataset_class_names` (``source`` / ``cache_dir`` are only used for that).
    """
    from iid_distill.pretrain import default_pool_dir
    from iid_distill.report import dataset_label, save_figure

    ssets = _load_sets(set_paths)
    titles = _check_titles(titles, len(ssets)) or default_titles(ssets, set_paths, expanded=True)
    dataset = _single_dataset(ssets, set_paths)
    pool_dir = default_pool_dir(dataset) if pool_dir is None else pool_dir
    net, info = load_feature_network(pool_dir, dataset, device, model_index)
    panels = []
    for title, sset in zip(titles, ssets):
        features, labels = set_features(sset, net, device, batch_size)
        panels.append((title, tsne_embedding(features, seed, perplexity), labels))
    names = list(class_names) if class_names is not None else dataset_class_names(dataset, source, cache_dir)
    if suptitle is None:
        suptitle = f"t-SNE of {info['arch']} features ({dataset_label(dataset, data_labels)}, pool model {info['index']})"
    return save_figure(plot_tsne_panels(panels, names, suptitle), out_stem)


def render_image_grid_figure(set_paths: Sequence[str | os.PathLike], titles: Sequence[str] | None, out_stem: str | os.PathLike, *,
                             max_classes: int = DEFAULT_MAX_CLASSES, images_per_class: int = DEFAULT_IMAGES_PER_CLASS,
                             suptitle: str | None = None, class_names: Mapping[str, Sequence[str]] | None = None,
                             data_labels: Mapping[str, str] | None = None, source: str | os.PathLike | None = None,
                             cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Figure 8: one image-grid panel per set (datasets may differ); writes ``out_stem``.png/.pdf.

    Panel titles: the dataset (with "partial: K of C classes" when classes were left out) over ``titles`` (default
    ``<method>, IPC <ipc>``). ``class_names`` (dataset -> names) defaults to :func:`dataset_class_names` (``source`` /
    ``cache_dir`` are only used for that).
    """
    from iid_distill.report import save_figure

    ssets = _load_sets(set_paths)
    given = _check_titles(titles, len(ssets)) or [None] * len(ssets)
    names = dict(class_names or {})
    for sset in ssets:
        dataset = str(sset.meta["dataset"])
        if dataset not in names:
            names[dataset] = dataset_class_names(dataset, source, cache_dir)
    panels = [(grid_panel_title(sset, title, max_classes, data_labels), sset) for title, sset in zip(given, ssets)]
    return save_figure(plot_image_grids(panels, max_classes, images_per_class, names, suptitle), out_stem)


__all__ = [
    "VisualizeError",
    "dataset_class_names",
    "default_titles",
    "load_feature_network",
    "plot_image_grids",
    "plot_tsne_panels",
    "render_image_grid_figure",
    "render_tsne_figure",
    "set_features",
    "set_label",
    "training_images",
    "tsne_embedding",
]
