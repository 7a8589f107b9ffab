"""Tests for the network zoo: sizes, the forward / embed / feature_map contract, seeding and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from iid_distill.models import (
    NETWORK_NAMES,
    ConvNet,
    NetworkConfigError,
    ResNet18,
    get_network,
)
from iid_distill.utils import UserError

NUM_CLASSES = 10


def count_parameters(net: nn.Module) -> int:
    return sum(parameter.numel() for parameter in net.parameters())


# Hand counts on 3 x 32 x 32 inputs with 10 classes (conv: in*out*k*k + out; norm affine: 2*C; linear: in*out + out).
EXPECTED_PARAMETERS = {
    # 3 convs: 3*128*9+128 = 3,584 and 2 x 128*128*9+128 = 147,584; 3 GroupNorm(128) = 3*256; fc 2048*10+10 = 20,490
    "ConvNet": 3_584 + 2 * 147_584 + 3 * 256 + 20_490,  # 320,010
    # conv5x5 3->128: 9,728; 128->192: 614,592; conv3x3 192->256: 442,624; 256->192: 442,560; 192->192: 331,968;
    # fc 192*4*4*10+10 = 30,730
    "AlexNet": 9_728 + 614_592 + 442_624 + 442_560 + 331_968 + 30_730,  # 1,872,202
    # convs 3->64: 1,792; 64->128: 73,856; 128->256: 295,168; 256->256: 590,080; 256->512: 1,180,160;
    # 3 x 512->512: 2,359,808; norms 2*(64+128+256+256+4*512) = 5,504; fc 512*10+10 = 5,130
    "VGG11": 1_792 + 73_856 + 295_168 + 590_080 + 1_180_160 + 3 * 2_359_808 + 5_504 + 5_130,  # 9,231,114
    # the standard CIFAR ResNet18 count (GroupNorm(C, C) has as many affine parameters as BatchNorm2d(C))
    "ResNet18": 11_173_962,
    "ResNet18BN": 11_173_962,
    # conv 3->6: 456; 6->16: 2,416; fc 400->120: 48,120; 120->84: 10,164; 84->10: 850
    "LeNet": 456 + 2_416 + 48_120 + 10_164 + 850,  # 62,006
    # 3072->128: 393,344; 128->128: 16,512; 128->10: 1,290
    "MLP": 393_344 + 16_512 + 1_290,  # 411,146
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_parameter_counts(name):
    assert count_parameters(get_network(name, 3, NUM_CLASSES, 32)) == EXPECTED_PARAMETERS[name]


def test_convnet_parameter_count_is_the_published_one():
    assert count_parameters(ConvNet(3, 10, 32)) == 320_010


# (channels, image_size) -> expected (d, h, w) of feature_map and embed size, per name
EXPECTED_FEATURES = {
    "ConvNet": {(1, 28): (128, 4, 4), (3, 32): (128, 4, 4), (3, 64): (128, 8, 8)},
    "ConvNetBN": {(1, 28): (128, 4, 4), (3, 32): (128, 4, 4), (3, 64): (128, 8, 8)},
    "ConvNetLN": {(1, 28): (128, 4, 4), (3, 32): (128, 4, 4), (3, 64): (128, 8, 8)},
    "ConvNetGN": {(1, 28): (128, 4, 4), (3, 32): (128, 4, 4), (3, 64): (128, 8, 8)},
    "ConvNetNN": {(1, 28): (128, 4, 4), (3, 32): (128, 4, 4), (3, 64): (128, 8, 8)},
    "ConvNetMP": {(1, 28): (128, 4, 4), (3, 32): (128, 4, 4), (3, 64): (128, 8, 8)},
    "ConvNetNP": {(1, 28): (128, 32, 32), (3, 32): (128, 32, 32), (3, 64): (128, 64, 64)},
    "ConvNetD4": {(1, 28): (128, 2, 2), (3, 32): (128, 2, 2), (3, 64): (128, 4, 4)},
    "ConvNetW64": {(1, 28): (64, 4, 4), (3, 32): (64, 4, 4), (3, 64): (64, 8, 8)},
    "ConvNetW256": {(1, 28): (256, 4, 4), (3, 32): (256, 4, 4), (3, 64): (256, 8, 8)},
    "AlexNet": {(1, 28): (192, 4, 4), (3, 32): (192, 4, 4), (3, 64): (192, 8, 8)},
    "AlexNetBN": {(1, 28): (192, 4, 4), (3, 32): (192, 4, 4), (3, 64): (192, 8, 8)},
    "VGG11": {(1, 28): (512, 1, 1), (3, 32): (512, 1, 1), (3, 64): (512, 2, 2)},
    "VGG11BN": {(1, 28): (512, 1, 1), (3, 32): (512, 1, 1), (3, 64): (512, 2, 2)},
    "ResNet18": {(1, 28): (512, 4, 4), (3, 32): (512, 4, 4), (3, 64): (512, 8, 8)},
    "ResNet18BN": {(1, 28): (512, 4, 4), (3, 32): (512, 4, 4), (3, 64): (512, 8, 8)},
    "LeNet": {(1, 28): (16, 5, 5), (3, 32): (16, 5, 5), (3, 64): (16, 13, 13)},
    "MLP": {(1, 28): (128, 1, 1), (3, 32): (128, 1, 1), (3, 64): (128, 1, 1)},
}
POOLED_EMBEDDINGS = {"ResNet18", "ResNet18BN"}  # global average pooling: embed is d, not d*h*w


def test_every_registered_name_has_expected_shapes():
    assert set(EXPECTED_FEATURES) == set(NETWORK_NAMES)


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_output_shapes(name):
    for (channels, image_size), feature_shape in EXPECTED_FEATURES[name].items():
        net = get_network(name, channels, NUM_CLASSES, image_size, seed=0)
        images = torch.randn(2, channels, image_size, image_size)
        embed_dim = feature_shape[0] if name in POOLED_EMBEDDINGS else feature_shape[0] * feature_shape[1] * feature_shape[2]
        with torch.no_grad():
            feature_map = net.feature_map(images)
            embedding = net.embed(images)
            logits = net(images)
        assert feature_map.shape == (2, *feature_shape), (channels, image_size)
        assert embedding.shape == (2, embed_dim), (channels, image_size)
        assert logits.shape == (2, NUM_CLASSES), (channels, image_size)
        assert net.feature_shape == feature_shape and net.embed_dim == embed_dim
        assert torch.isfinite(logits).all()


def test_convnet_embed_is_flattened_feature_map_and_forward_is_classifier_of_embed():
    net = get_network("ConvNet", 3, NUM_CLASSES, 32, seed=1)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        embedding = net.embed(images)
        torch.testing.assert_close(embedding, net.feature_map(images).reshape(4, -1))
        torch.testing.assert_close(net(images), net.classifier(embedding))
    assert embedding.shape == (4, 2048)


@pytest.mark.parametrize("name", ["ResNet18", "LeNet", "MLP"])
def test_forward_is_classifier_of_embed_for_other_heads(name):
    net = get_network(name, 3, NUM_CLASSES, 32, seed=2)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(images), net.classifier(net.embed(images)))


def test_resnet18_embed_is_pooled_512d_map():
    net = get_network("ResNet18", 3, NUM_CLASSES, 32, seed=3)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        embedding = net.embed(images)
        torch.testing.assert_close(embedding, net.feature_map(images).mean(dim=(2, 3)))
    assert embedding.shape == (2, 512)
    assert isinstance(net, ResNet18)


def test_mnist_convnet_pads_first_conv_to_32px():
    def conv_paddings(net):
        return [m.padding for m in net.modules() if isinstance(m, nn.Conv2d)]

    assert conv_paddings(get_network("ConvNet", 1, NUM_CLASSES, 28)) == [(3, 3), (1, 1), (1, 1)]
    assert conv_paddings(get_network("ConvNet", 3, NUM_CLASSES, 32)) == [(1, 1), (1, 1), (1, 1)]
    assert conv_paddings(get_network("VGG11", 1, NUM_CLASSES, 28))[:2] == [(3, 3), (1, 1)]
    assert conv_paddings(get_network("AlexNet", 1, NUM_CLASSES, 28))[0] == (4, 4)


def test_layernorm_convnet_normalises_over_channel_and_space():
    net = get_network("ConvNetLN", 1, NUM_CLASSES, 28)
    layer_norm = net.features[1]
    assert isinstance(layer_norm, nn.LayerNorm) and layer_norm.normalized_shape == (128, 32, 32)


def test_same_seed_same_weights_and_global_rng_untouched():
    state_before = torch.get_rng_state()
    first = get_network("ConvNet", 3, NUM_CLASSES, 32, seed=7)
    second = get_network("ConvNet", 3, NUM_CLASSES, 32, seed=7)
    other = get_network("ConvNet", 3, NUM_CLASSES, 32, seed=8)
    assert torch.equal(torch.get_rng_state(), state_before)
    for (key, a), b, c in zip(first.state_dict().items(), second.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b), key
    assert not torch.equal(first.features[0].weight, other.features[0].weight)


def test_global_manual_seed_reproduces_default_init():
    torch.manual_seed(11)
    first = get_network("AlexNet", 3, NUM_CLASSES, 32)
    torch.manual_seed(11)
    second = get_network("AlexNet", 3, NUM_CLASSES, 32)
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)


def test_generator_gives_reproducible_nets_and_advances():
    generator_a = torch.Generator().manual_seed(5)
    generator_b = torch.Generator().manual_seed(5)
    first = get_network("LeNet", 3, NUM_CLASSES, 32, generator=generator_a)
    second = get_network("LeNet", 3, NUM_CLASSES, 32, generator=generator_b)
    third = get_network("LeNet", 3, NUM_CLASSES, 32, generator=generator_a)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert not torch.equal(first.features[0].weight, third.features[0].weight)
    with pytest.raises(NetworkConfigError, match="not both"):
        get_network("LeNet", 3, NUM_CLASSES, 32, seed=1, generator=generator_a)


@pytest.mark.parametrize("name", ["ConvNetBN", "AlexNetBN", "VGG11BN", "ResNet18BN"])
def test_bn_variants_contain_batchnorm(name):
    net = get_network(name, 3, NUM_CLASSES, 32)
    assert any(isinstance(module, nn.BatchNorm2d) for module in net.modules())


@pytest.mark.parametrize("name", [n for n in NETWORK_NAMES if not n.endswith("BN")])
def test_default_variants_contain_no_batchnorm(name):
    net = get_network(name, 3, NUM_CLASSES, 32)
    assert not any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in net.modules())


def test_instance_norm_is_groupnorm_per_channel():
    for name in ("ConvNet", "VGG11", "ResNet18"):
        norms = [m for m in get_network(name, 3, NUM_CLASSES, 32).modules() if isinstance(m, nn.GroupNorm)]
        assert norms and all(m.num_groups == m.num_channels and m.affine for m in norms), name


def test_construction_probe_leaves_batchnorm_statistics_and_mode_alone():
    net = get_network("ConvNetBN", 3, NUM_CLASSES, 32)
    batch_norm = net.features[1]
    assert net.training
    assert int(batch_norm.num_batches_tracked) == 0
    assert torch.equal(batch_norm.running_mean, torch.zeros(128))


def test_overrides_change_the_architecture():
    net = get_network("ConvNet", 3, NUM_CLASSES, 32, width=32, depth=2, activation="leakyrelu", pooling="maxpool")
    assert net.feature_shape == (32, 8, 8)
    assert any(isinstance(m, nn.LeakyReLU) for m in net.modules())
    assert any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert any(isinstance(m, nn.Sigmoid) for m in get_network("ConvNet", 3, 10, 32, activation="sigmoid").modules())


def test_unknown_name_lists_valid_names():
    with pytest.raises(UserError) as caught:
        get_network("ResNet50", 3, NUM_CLASSES, 32)
    assert isinstance(caught.value, NetworkConfigError)
    for name in NETWORK_NAMES:
        assert name in str(caught.value)


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("ConvNet", {"norm": "weirdnorm"}, "norm='weirdnorm'"),
        ("ConvNet", {"activation": "tanh"}, "activation='tanh'"),
        ("ConvNet", {"pooling": "sumpool"}, "pooling='sumpool'"),
        ("ConvNet", {"width": 0}, "width"),
        ("LeNet", {"width": 64}, "unknown option"),
        ("ResNet18", {"norm": "layernorm"}, "norm='layernorm'"),
    ],
)
def test_bad_options_are_user_errors(name, overrides, message):
    with pytest.raises(NetworkConfigError, match=message):
        get_network(name, 3, NUM_CLASSES, 32, **overrides)


def test_too_small_input_is_a_user_error():
    with pytest.raises(NetworkConfigError, match="image_size"):
        get_network("VGG11", 3, NUM_CLASSES, 8)
    with pytest.raises(NetworkConfigError, match="image_size"):
        get_network("ConvNetD4", 3, NUM_CLASSES, 4)
    with pytest.raises(NetworkConfigError, match="num_classes"):
        get_network("ConvNet", 3, 0, 32)


def test_vmap_over_stacked_parameters_matches_each_net():
    nets = [get_network("ConvNet", 3, NUM_CLASSES, 16, width=8, seed=s) for s in range(3)]
    params, buffers = torch.func.stack_module_state(nets)
    images = torch.randn(2, 3, 16, 16)

    def call(p, b):
        return torch.func.functional_call(nets[0], (p, b), (images,))

    with torch.no_grad():
        batched = torch.func.vmap(call)(params, buffers)
        for index, net in enumerate(nets):
            torch.testing.assert_close(batched[index], net(images))


def test_input_is_not_modified():
    net = get_network("ResNet18", 3, NUM_CLASSES, 32, seed=0)
    images = torch.randn(2, 3, 32, 32)
    copy = images.clone()
    net(images).sum().backward()
    assert torch.equal(images, copy)


@pytest.mark.parametrize("name", ["ConvNet", "ConvNetLN", "ResNet18", "MLP"])
def test_channels_last_gives_same_outputs(name):
    net = get_network(name, 3, NUM_CLASSES, 32, seed=4)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference_map, reference_logits = net.feature_map(images), net(images)
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(net.feature_map(images), reference_map, rtol=1e-4, atol=1e-4)  # summation order differs
        torch.testing.assert_close(net(images), reference_logits, rtol=1e-4, atol=1e-4)  # summation order differs
