"""The network zoo of the DC / DSA / DM code base (Zhao & Bilen), rewritten with one common interface.

Every network is a :class:`DistillNet` and exposes three views of the same computation:

* ``feature_map(x)`` -> the last block's map, ``N x d x h x w`` (covariance matching reads this);
* ``embed(x)``       -> the classifier's input, ``N x embed_dim`` (distribution matching reads this);
* ``forward(x)``     -> logits, ``N x num_classes``; always ``classifier(embed(x))``.

``embed`` is computed from ``feature_map`` and ``forward`` from ``embed``, so the three agree by construction.
What ``embed`` does with the map differs per family:

* ConvNet, AlexNet, VGG11, LeNet: flatten the map;
* ResNet18: global average pooling to ``1 x 1`` then flatten (512-d; equal to the original ``avg_pool2d(., 4)`` at
  32 px and 28 px, and still 512-d at 64 px where the original would break);
* MLP: it has no spatial map, so ``feature_map`` returns the last hidden layer as ``N x 128 x 1 x 1``.

Architectures follow the original definitions, including the quirk that the first conv of ConvNet and VGG11 uses
padding 3 (AlexNet: 4, LeNet: 2) on 1-channel input, so 28 px digits become 32 px inside. Classifier widths are sized
from the actual feature shape, found once at construction by a forward pass on one zero image, so any channel count
and 28 / 32 / 64 px inputs work. Weights use PyTorch's default initialisation, as the original code does.

Forward passes hold no Python-side state and never modify their input in place, so the modules work with
``torch.func.functional_call`` / ``vmap`` (norms other than BatchNorm) and with ``channels_last`` tensors.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from iid_distill.utils import UserError

__all__ = [
    "NETWORK_NAMES",
    "AlexNet",
    "AlexNetBN",
    "BasicBlock",
    "ConvNet",
    "DistillNet",
    "LeNet",
    "MLP",
    "NetworkConfigError",
    "ResNet18",
    "ResNet18BN",
    "VGG11",
    "VGG11BN",
    "get_network",
]

CONVNET_NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
CONVNET_ACTIVATIONS = ("relu", "sigmoid", "leakyrelu")
CONVNET_POOLINGS = ("avgpool", "maxpool", "none")
VGG11_CONFIG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
RESNET18_BLOCKS = (2, 2, 2, 2)
RESNET18_PLANES = (64, 128, 256, 512)


class NetworkConfigError(UserError):
    """A network name, option or input size that the zoo cannot build."""


def _check_choice(owner: str, option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise NetworkConfigError(f"{owner}: {option}={value!r} is not supported; choose one of {', '.join(choices)}")


def _check_positive_int(owner: str, option: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NetworkConfigError(f"{owner}: {option} must be a positive integer, got {value!r}")


def make_norm(name: str, channels: int, spatial_size: int | None = None) -> nn.Module:
    """Normalisation layer by name, as in the original code.

    ``instancenorm`` is GroupNorm with one group per channel (affine), not ``nn.InstanceNorm2d``;
    ``layernorm`` normalises over ``[C, H, W]`` and so needs the spatial size.
    """
    if name == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if name == "batchnorm":
        return nn.BatchNorm2d(channels)
    if name == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    if name == "layernorm":
        if spatial_size is None:
            raise ValueError("layernorm needs the spatial size of its input")
        return nn.LayerNorm([channels, spatial_size, spatial_size], elementwise_affine=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}")


def make_activation(name: str) -> nn.Module:
    """Activation by name; not in-place, so inputs are never overwritten (functional_call / vmap safe)."""
    if name == "relu":
        return nn.ReLU()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.01)
    raise ValueError(f"unknown activation {name!r}")


ACTIVATION_MODULES = (nn.ReLU, nn.Sigmoid, nn.LeakyReLU)  # what make_activation builds (DataDAM reads their outputs)


def make_pool(name: str) -> nn.Module:
    if name == "avgpool":
        return nn.AvgPool2d(kernel_size=2, stride=2)
    if name == "maxpool":
        return nn.MaxPool2d(kernel_size=2, stride=2)
    raise ValueError(f"unknown pooling {name!r}")


class DistillNet(nn.Module):
    """Base class: subclasses define ``feature_map`` (and, if not flattening, ``embedding_from_map``).

    After :meth:`_attach_classifier`, ``feature_shape`` is ``(d, h, w)`` of the last map and ``embed_dim`` the
    classifier's input size, both for the input size the network was built for.
    """

    classifier: nn.Module
    feature_shape: tuple[int, int, int]
    embed_dim: int

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output, ``N x d x h x w``."""
        raise NotImplementedError

    def embedding_from_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Turn the last map into the classifier's input; flattening by default."""
        return torch.flatten(feature_map, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's input, ``N x embed_dim``."""
        return self.embedding_from_map(self.feature_map(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))

    def _attach_classifier(self, channels: int, image_size: int, make_head: Callable[[int], nn.Module]) -> None:
        """Probe the feature shape with one zero image, then build the classifier for it."""
        probe = torch.zeros(1, channels, image_size, image_size)
        was_training = self.training
        self.eval()  # BatchNorm: no running-stat update and no batch-size-1 error during the probe
        try:
            with torch.no_grad():
                feature_map = self.feature_map(probe)
                embedding = self.embedding_from_map(feature_map)
        except (RuntimeError, ValueError) as error:  # too-small maps: pooling (RuntimeError), norms (ValueError)
            raise NetworkConfigError(
                f"{type(self).__name__}: a {channels}x{image_size}x{image_size} input is too small for this network "
                f"({str(error).splitlines()[0]}); use a larger image_size"
            ) from error
        finally:
            self.train(was_training)
        if feature_map.numel() == 0:
            raise NetworkConfigError(
                f"{type(self).__name__}: a {channels}x{image_size}x{image_size} input leaves an empty feature map; "
                "use a larger image_size"
            )
        self.feature_shape = tuple(int(size) for size in feature_map.shape[1:])
        self.embed_dim = int(embedding.shape[1])
        self.classifier = make_head(self.embed_dim)


class ConvNet(DistillNet):
    """``depth`` blocks of conv3x3 -> norm -> activation -> 2x2 pool; embedding = flattened last map; linear head.

    The default (width 128, depth 3, instance norm, ReLU, average pooling) is the DC/DSA/DM ConvNet:
    128 x 4 x 4 = 2048-d embedding and 320,010 parameters on 3 x 32 x 32 with 10 classes.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: int,
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        activation: str = "relu",
        pooling: str = "avgpool",
    ) -> None:
        super().__init__()
        _check_positive_int("ConvNet", "width", width)
        _check_positive_int("ConvNet", "depth", depth)
        _check_choice("ConvNet", "norm", norm, CONVNET_NORMS)
        _check_choice("ConvNet", "activation", activation, CONVNET_ACTIVATIONS)
        _check_choice("ConvNet", "pooling", pooling, CONVNET_POOLINGS)
        layers: list[nn.Module] = []
        in_channels, size = channels, image_size
        for block in range(depth):
            padding = 3 if channels == 1 and block == 0 else 1  # original quirk: 28 px digits become 32 px
            size = size + 2 * padding - 2
            if size < 1:
                raise NetworkConfigError(
                    f"ConvNet: a {image_size} px input is too small for depth {depth}; use a larger image_size or depth"
                )
            layers.append(nn.Conv2d(in_channels, width, kernel_size=3, padding=padding))
            if norm != "none":
                layers.append(make_norm(norm, width, size))
            layers.append(make_activation(activation))
            if pooling != "none":
                layers.append(make_pool(pooling))
                size //= 2
            in_channels = width
        self.features = nn.Sequential(*layers)
        # the CPU plan below is measured for the published block (instance norm, ReLU, average pooling) only
        self._cpu_plan = norm == "instancenorm" and activation == "relu" and pooling == "avgpool"
        self._attach_classifier(channels, image_size, lambda dim: nn.Linear(dim, num_classes))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        if self._cpu_plan and x.device.type == "cpu" and not torch.is_grad_enabled() and x.dim() == 4 and not _in_functorch_transform():
            return self._feature_map_cpu_inference(x)
        return self.features(x)

    def _feature_map_cpu_inference(self, x: torch.Tensor) -> torch.Tensor:
        """The same blocks without autograd, with a memory layout per op chosen by measurement on x86 CPUs (oneDNN).

        NCHW 2x2 average pooling runs ~14x slower than channels_last (17 vs 1.2 ms for 64 x 128 x 32 x 32) and
        channels_last convolutions 1.1-1.5x faster, but channels_last GroupNorm is 20x slower below 32 px: so every
        conv reads channels_last, the 32 px blocks stay channels_last, smaller blocks normalise in NCHW, and ReLU runs
        in place. The real-image forward of distillation (2,560 images per DM iteration) is ~1.3x faster; values
        equal ``self.features(x)`` to float32 rounding (convolution algorithms differ by layout). With autograd the
        plain blocks run: there the layouts gave no gain (GroupNorm's channels_last backward is slow).
        """
        layers = list(self.features)
        for start in range(0, len(layers), 4):
            conv, norm, _, pool = layers[start : start + 4]
            x = conv(x.contiguous(memory_format=torch.channels_last))
            if x.shape[-1] < 32:
                x = x.contiguous()
            x = pool(torch.relu_(norm(x)))
        return x.contiguous()


def _in_functorch_transform() -> bool:
    """True inside ``torch.vmap`` / ``torch.func`` transforms (memory formats cannot be queried there)."""
    return torch._C._functorch.peek_interpreter_stack() is not None


class AlexNet(DistillNet):
    """DC-style AlexNet: conv5x5 128 -> pool, conv5x5 192 -> pool, conv3x3 256 / 192 / 192 -> pool, linear head.

    ``norm="batchnorm"`` puts a BatchNorm after every conv (AlexNetBN); the default has no normalisation.
    """

    def __init__(self, channels: int, num_classes: int, image_size: int, norm: str = "none") -> None:
        super().__init__()
        _check_choice("AlexNet", "norm", norm, ("none", "batchnorm"))

        def conv_block(in_channels: int, out_channels: int, kernel_size: int, padding: int) -> list[nn.Module]:
            return [
                nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding=padding),
                *([nn.BatchNorm2d(out_channels)] if norm == "batchnorm" else []),
                nn.ReLU(),
            ]

        self.features = nn.Sequential(
            *conv_block(channels, 128, 5, 4 if channels == 1 else 2),
            nn.MaxPool2d(kernel_size=2, stride=2),
            *conv_block(128, 192, 5, 2),
            nn.MaxPool2d(kernel_size=2, stride=2),
            *conv_block(192, 256, 3, 1),
            *conv_block(256, 192, 3, 1),
            *conv_block(192, 192, 3, 1),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self._attach_classifier(channels, image_size, lambda dim: nn.Linear(dim, num_classes))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class AlexNetBN(AlexNet):
    """AlexNet with BatchNorm after every conv."""

    def __init__(self, channels: int, num_classes: int, image_size: int) -> None:
        super().__init__(channels, num_classes, image_size, norm="batchnorm")


class VGG11(DistillNet):
    """VGG11 (cfg 64,M,128,M,256,256,M,512,512,M,512,512,M) with conv3x3 -> norm -> ReLU; linear head.

    Instance norm by default (GroupNorm with one group per channel); ``norm="batchnorm"`` gives VGG11BN.
    512 x 1 x 1 map at 32 px (and at 28 px, via the padding-3 first conv on 1-channel input).
    """

    def __init__(self, channels: int, num_classes: int, image_size: int, norm: str = "instancenorm") -> None:
        super().__init__()
        _check_choice("VGG11", "norm", norm, ("instancenorm", "batchnorm"))
        layers: list[nn.Module] = []
        in_channels = channels
        for index, entry in enumerate(VGG11_CONFIG):
            if entry == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            padding = 3 if channels == 1 and index == 0 else 1
            layers += [nn.Conv2d(in_channels, entry, kernel_size=3, padding=padding), make_norm(norm, entry), nn.ReLU()]
            in_channels = entry
        self.features = nn.Sequential(*layers)
        self._attach_classifier(channels, image_size, lambda dim: nn.Linear(dim, num_classes))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class VGG11BN(VGG11):
    """VGG11 with BatchNorm."""

    def __init__(self, channels: int, num_classes: int, image_size: int) -> None:
        super().__init__(channels, num_classes, image_size, norm="batchnorm")


class BasicBlock(nn.Module):
    """ResNet basic block: two conv3x3 (no bias) with norms, identity or conv1x1 + norm shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.norm2 = make_norm(norm, planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), make_norm(norm, planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))  # out-of-place add: functional_call / vmap safe


class ResNet18(DistillNet):
    """CIFAR-style ResNet18: 3x3 stride-1 stem (64) + norm + ReLU, no max-pool, BasicBlocks [2,2,2,2] with planes
    64/128/256/512 (strides 1,2,2,2), global average pooling, linear 512 -> classes.

    Instance norm by default; this network is also IID's frozen feature extractor g, whose ``embed`` is the
    512-d pooled vector. ``feature_map`` is the last block's 512 x h x w map (4 x 4 at 32 px).
    """

    def __init__(self, channels: int, num_classes: int, image_size: int, norm: str = "instancenorm") -> None:
        super().__init__()
        _check_choice("ResNet18", "norm", norm, ("instancenorm", "batchnorm"))
        self.stem = nn.Sequential(
            nn.Conv2d(channels, RESNET18_PLANES[0], kernel_size=3, stride=1, padding=1, bias=False),
            make_norm(norm, RESNET18_PLANES[0]),
            nn.ReLU(),
        )
        stages: list[nn.Module] = []
        in_planes = RESNET18_PLANES[0]
        for stage, (planes, num_blocks) in enumerate(zip(RESNET18_PLANES, RESNET18_BLOCKS)):
            strides = [1 if stage == 0 else 2] + [1] * (num_blocks - 1)
            blocks = []
            for stride in strides:
                blocks.append(BasicBlock(in_planes, planes, stride, norm))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self._attach_classifier(channels, image_size, lambda dim: nn.Linear(dim, num_classes))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))

    def embedding_from_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(feature_map, 1), 1)


class ResNet18BN(ResNet18):
    """ResNet18 with BatchNorm."""

    def __init__(self, channels: int, num_classes: int, image_size: int) -> None:
        super().__init__(channels, num_classes, image_size, norm="batchnorm")


class LeNet(DistillNet):
    """LeNet: conv5x5 6 -> ReLU -> maxpool, conv5x5 16 -> ReLU -> maxpool; head fc 120 -> 84 -> classes (ReLU).

    ``embed`` is the flattened conv map (16 x 5 x 5 = 400 at 28 / 32 px); the classifier is the three-layer head.
    """

    def __init__(self, channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=5, padding=2 if channels == 1 else 0),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self._attach_classifier(
            channels,
            image_size,
            lambda dim: nn.Sequential(nn.Linear(dim, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes)),
        )

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class MLP(DistillNet):
    """Flatten -> 128 -> ReLU -> 128 -> ReLU -> classes.

    It has no spatial map: ``feature_map`` returns the last hidden layer as ``N x 128 x 1 x 1`` and ``embed`` the
    same 128 values flattened.
    """

    def __init__(self, channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * image_size * image_size, 128),
            nn.ReLU(),
            nn.Linear(128, 128),
            nn.ReLU(),
        )
        self._attach_classifier(channels, image_size, lambda dim: nn.Linear(dim, num_classes))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(x)[:, :, None, None]


# name -> (class, fixed constructor options); caller overrides win over the fixed options
_REGISTRY: dict[str, tuple[type[DistillNet], dict[str, Any]]] = {
    "ConvNet": (ConvNet, {}),
    "ConvNetBN": (ConvNet, {"norm": "batchnorm"}),
    "ConvNetLN": (ConvNet, {"norm": "layernorm"}),
    "ConvNetGN": (ConvNet, {"norm": "groupnorm"}),
    "ConvNetNN": (ConvNet, {"norm": "none"}),
    "ConvNetMP": (ConvNet, {"pooling": "maxpool"}),
    "ConvNetNP": (ConvNet, {"pooling": "none"}),
    "ConvNetD4": (ConvNet, {"depth": 4}),
    "ConvNetW64": (ConvNet, {"width": 64}),
    "ConvNetW256": (ConvNet, {"width": 256}),
    "AlexNet": (AlexNet, {}),
    "AlexNetBN": (AlexNetBN, {}),
    "VGG11": (VGG11, {}),
    "VGG11BN": (VGG11BN, {}),
    "ResNet18": (ResNet18, {}),
    "ResNet18BN": (ResNet18BN, {}),
    "LeNet": (LeNet, {}),
    "MLP": (MLP, {}),
}
NETWORK_NAMES: tuple[str, ...] = tuple(_REGISTRY)
_INPUT_ARGUMENTS = ("self", "channels", "num_classes", "image_size")


def _option_names(cls: type[DistillNet]) -> tuple[str, ...]:
    return tuple(name for name in inspect.signature(cls.__init__).parameters if name not in _INPUT_ARGUMENTS)


def get_network(
    name: str,
    channels: int,
    num_classes: int,
    image_size: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    **overrides: Any,
) -> DistillNet:
    """Build a registered network for ``channels x image_size x image_size`` inputs and ``num_classes`` classes.

    ``overrides`` are constructor options (e.g. ``width=64`` for ConvNet). Initialisation is PyTorch's default and
    draws from the global CPU generator unless ``seed`` (or ``generator``, from which one seed is drawn) is given;
    then the net is built under a forked RNG, so the same seed gives the same weights and global RNG is untouched.
    """
    if name not in _REGISTRY:
        raise NetworkConfigError(f"unknown network {name!r}; valid names: {', '.join(NETWORK_NAMES)}")
    if seed is not None and generator is not None:
        raise NetworkConfigError(f"get_network({name!r}): pass seed or generator, not both")
    for option, value in (("channels", channels), ("num_classes", num_classes), ("image_size", image_size)):
        _check_positive_int(name, option, value)
    cls, fixed_options = _REGISTRY[name]
    accepted = _option_names(cls)
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise NetworkConfigError(f"{name}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(accepted) or 'none'}")
    options = {**fixed_options, **overrides}
    if generator is not None:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    if seed is None:
        return cls(channels, num_classes, image_size, **options)
    # only the CPU generator is seeded (torch.manual_seed would also reseed CUDA); modules are built on the CPU
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        return cls(channels, num_classes, image_size, **options)
