"""The paper's visualisations: set features, t-SNE, the t-SNE and image-grid figures and their command lines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from iid_distill import cli
from iid_distill.augment import partition_and_expand
from iid_distill.data import Split
from iid_distill.pretrain import PretrainConfig, pretrain_pool
from iid_distill.synthetic import SyntheticSet, save_synthetic_set
from iid_distill.utils import UserError
from iid_distill.visualize import (
    VisualizeError,
    default_titles,
    load_feature_network,
    plot_image_grids,
    plot_tsne_panels,
    render_image_grid_figure,
    render_tsne_figure,
    set_features,
    tsne_embedding,
)

DIGIT_NAMES = [str(k) for k in range(10)]


def make_set(dataset: str = "digits", ipc: int = 3, method: str = "DM", seed: int = 0, shape=(1, 32, 32), num_classes: int = 10, **meta) -> SyntheticSet:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(num_classes * ipc, *shape, generator=generator)
    labels = torch.arange(num_classes).repeat(ipc)
    full_meta = {"dataset": dataset, "ipc": ipc, "method": method, "params": {}, "seed": seed, "git_sha": "abc"}
    full_meta.update(meta)
    return SyntheticSet(images, labels, full_meta)


def write_set(path, **kwargs):
    save_synthetic_set(make_set(**kwargs), path)
    return path


@pytest.fixture(scope="module")
def pool_dir(digits, tmp_path_factory):
    """One tiny ConvNet trained for one epoch on 200 digits: a real pool directory, built in about a second."""
    subset = dataclasses.replace(digits, train=Split(digits.train.images[:200], digits.train.labels[:200]),
                                 test=Split(digits.test.images[:50], digits.test.labels[:50]))
    config = PretrainConfig(arch="ConvNet", arch_kwargs={"width": 8, "depth": 2}, num_models=1, epochs=1, batch_size=64)
    out = tmp_path_factory.mktemp("pool")
    pretrain_pool(subset, config, out, "cpu", progress=False)
    return out


@pytest.fixture(scope="module")
def set_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sets")
    return {
        "dm": write_set(folder / "dm.pt", method="DM", seed=1),
        "iid": write_set(folder / "iid.pt", method="DM+IID", seed=2),
        "idm": write_set(folder / "idm.pt", method="IDM+IID", seed=3, ipc=2, expand_factor=2),
        "cc_low": write_set(folder / "cc_low.pt", method="DM+CC", seed=4, params={"cc_beta": 0.5}),
        "cc_high": write_set(folder / "cc_high.pt", method="DM+CC", seed=5, params={"cc_beta": 1.5}),
        "cifar100": write_set(folder / "c100.pt", dataset="cifar100", ipc=1, shape=(3, 32, 32), num_classes=100, method="dm_iid"),
    }


def test_features_equal_a_per_image_loop_and_expand_idm_sets(pool_dir):
    net, info = load_feature_network(pool_dir, "digits", "cpu")
    assert info["arch"] == "ConvNet" and info["index"] == 0 and not net.training
    sset = make_set(ipc=2, method="IDM+IID", expand_factor=2)
    features, labels = set_features(sset, net, "cpu", batch_size=7)  # batches that do not divide N

    expanded, expanded_labels = partition_and_expand(sset.images, sset.labels, 2)
    with torch.no_grad():
        expected = torch.cat([net.embed(image[None]) for image in expanded]).double()
    assert features.dtype == torch.float64 and features.device.type == "cpu"
    assert features.shape == (4 * 20, net.embed_dim)
    assert torch.allclose(features, expected, atol=1e-5)
    assert torch.equal(labels, expanded_labels)


def test_feature_network_errors_are_one_line(pool_dir, tmp_path):
    with pytest.raises(UserError) as missing:
        load_feature_network(tmp_path / "no-pool", "digits", "cpu")
    assert "\n" not in str(missing.value) and "pretrain" in str(missing.value)
    with pytest.raises(VisualizeError, match="model index 3 is out of range"):
        load_feature_network(pool_dir, "digits", "cpu", model_index=3)
    with pytest.raises(UserError, match="not 'cifar10'"):
        load_feature_network(pool_dir, "cifar10", "cpu")


def test_tsne_is_deterministic_for_a_seed():
    features = torch.randn(40, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    first, again = tsne_embedding(features, seed=3), tsne_embedding(features, seed=3)
    assert first.shape == (40, 2) and np.isfinite(first).all()
    assert np.array_equal(first, again)
    assert not np.allclose(first, tsne_embedding(features, seed=3, perplexity=5.0))  # the perplexity reaches TSNE
    with pytest.raises(VisualizeError, match="N >= 3"):
        tsne_embedding(features[:2])
    with pytest.raises(VisualizeError, match="perplexity"):
        tsne_embedding(features, perplexity=40)


def test_tsne_panels_share_colours_and_legend():
    rng = np.random.default_rng(0)
    labels = torch.arange(10).repeat(3)
    panels = [(f"panel {k}", rng.normal(size=(30, 2)), labels) for k in range(7)]
    fig = plot_tsne_panels(panels, DIGIT_NAMES, "suptitle here")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [f"panel {k}" for k in range(7)]
    assert all(ax.get_xlabel() == "t-SNE 1" and ax.get_ylabel() == "t-SNE 2" for ax in axes)
    assert axes[0].get_gridspec().ncols == 5  # at most five panels per row
    (legend,) = fig.legends
    assert [text.get_text() for text in legend.get_texts()] == DIGIT_NAMES
    colours = [ax.collections[0].get_facecolors() for ax in axes]
    assert all(np.array_equal(colours[0], other) for other in colours[1:])  # class k has one colour everywhere
    assert fig.get_suptitle() == "suptitle here"


def test_tsne_panels_with_many_classes_get_a_colour_bar():
    names = [f"c{k}" for k in range(30)]
    fig = plot_tsne_panels([("one", np.random.default_rng(1).normal(size=(30, 2)), torch.arange(30))], names)
    assert not fig.legends
    assert len(fig.axes) == 2 and "class index" in fig.axes[1].get_ylabel()
    with pytest.raises(VisualizeError, match="labels span"):
        plot_tsne_panels([("bad", np.zeros((3, 2)), torch.tensor([0, 1, 40]))], names)


def test_default_titles_tell_beta_sweep_sets_apart():
    sets = [make_set(method="DM+CC", params={"cc_beta": beta}) for beta in (0.5, 1.5)] + [make_set(method="dm_iid", ipc=5)]
    assert default_titles(sets) == ["DM+CC, IPC 3, β=0.5", "DM+CC, IPC 3, β=1.5", "DM+IID, IPC 5"]
    idm = make_set(method="IDM+IID", ipc=2, expand_factor=2)
    assert default_titles([idm], expanded=True) == ["IDM+IID, IPC 2 (×4 expanded)"]


def test_render_tsne_figure_writes_byte_stable_png_and_pdf(pool_dir, set_files, tmp_path):
    stem = tmp_path / "figure1"
    paths = [set_files[key] for key in ("dm", "iid", "idm")]
    written = render_tsne_figure(paths, None, pool_dir, stem, "cpu", seed=0)
    assert written == [tmp_path / "figure1.png", tmp_path / "figure1.pdf"]
    first = [path.read_bytes() for path in written]
    assert first[0].startswith(b"\x89PNG") and first[1].startswith(b"%PDF")
    render_tsne_figure(paths, None, pool_dir, stem, "cpu", seed=0)
    assert [path.read_bytes() for path in written] == first


def test_tsne_refuses_mixed_datasets_and_wrong_title_counts(set_files, tmp_path):
    with pytest.raises(VisualizeError, match="one dataset"):
        render_tsne_figure([set_files["dm"], set_files["cifar100"]], None, None, tmp_path / "x", "cpu")
    with pytest.raises(VisualizeError, match="1 title"):
        render_tsne_figure([set_files["dm"], set_files["iid"]], ["only one"], None, tmp_path / "x", "cpu")
    assert not list(tmp_path.iterdir())


def test_partial_image_grid_shows_at_most_max_classes(set_files):
    from iid_distill.synthetic import load_synthetic_set
    from iid_distill.visualize import grid_panel_title

    cifar100, digits_set = load_synthetic_set(set_files["cifar100"]), load_synthetic_set(set_files["dm"])
    panels = [(grid_panel_title(sset, None, 10), sset) for sset in (cifar100, digits_set)]
    fig = plot_image_grids(panels, max_classes=10, images_per_class=2, class_names={"digits": DIGIT_NAMES})
    c100_ax, digits_ax = fig.axes
    assert c100_ax.get_title() == "CIFAR-100 (partial: 10 of 100 classes)\nDM+IID, IPC 1"
    assert digits_ax.get_title() == "digits\nDM, IPC 3"
    assert c100_ax.images[0].get_array().shape == (10 * 34 + 2, 1 * 34 + 2, 3)  # 10 rows, ipc 1 < 2 columns
    assert digits_ax.images[0].get_array().shape == (10 * 34 + 2, 2 * 34 + 2)  # grey, 2 of 3 images per class
    assert [label.get_text() for label in c100_ax.get_yticklabels()] == [str(k) for k in range(10)]
    assert [label.get_text() for label in digits_ax.get_yticklabels()] == DIGIT_NAMES


def test_render_image_grid_figure_is_byte_stable(set_files, tmp_path):
    paths = [set_files["dm"], set_files["idm"], set_files["cifar100"]]
    written = render_image_grid_figure(paths, ["a", "b", "c"], tmp_path / "figure8", max_classes=4)
    first = [path.read_bytes() for path in written]
    assert [path.suffix for path in written] == [".png", ".pdf"]
    render_image_grid_figure(paths, ["a", "b", "c"], tmp_path / "figure8", max_classes=4)
    assert [path.read_bytes() for path in written] == first


def _parse(command, argv):
    return cli.build_parser().parse_args([command, *argv])


def test_command_lines_run_end_to_end(pool_dir, set_files, tmp_path, capsys):
    tsne_args = _parse("tsne", [str(set_files["cc_low"]), str(set_files["cc_high"]), "--pool", str(pool_dir),
                                            "--out", str(tmp_path / "fig3"), "--device", "cpu", "--title", "beta sweep"])
    tsne_paths = cli.cmd_tsne(tsne_args)
    grid_args = _parse("grids", [str(set_files["dm"]), str(set_files["cifar100"]), "--out", str(tmp_path / "fig8"),
                                             "--max-classes", "5", "--data-label", "digits=Digits demo"])
    grid_paths = cli.cmd_grids(grid_args)
    printed = capsys.readouterr().out.split()
    assert printed == [str(path) for path in tsne_paths + grid_paths]
    assert all(path.is_file() and path.stat().st_size > 0 for path in tsne_paths + grid_paths)


def test_image_grid_title_says_why_idm_images_hold_sub_images(set_files):
    from iid_distill.synthetic import load_synthetic_set
    from iid_distill.visualize import grid_panel_title

    sset = load_synthetic_set(set_files["dm"])
    assert "sub-images" not in grid_panel_title(sset, None, 10)
    sset.meta["expand_factor"] = 2  # as IDM's sets (partition and expansion, factor 2)
    assert grid_panel_title(sset, None, 10).endswith("\n(each image: 2x2 sub-images, 4 training images)")
