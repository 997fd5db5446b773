"""Image classifiers of each architecture class that ONNX model zoos ship. Needs torch.

Compact re-statements (no torchvision here) that keep each class's distinctive ops:
AlexNet's LRN, VGG's deep 3x3 stacks, SqueezeNet's Fire concat, ShuffleNet's grouped conv
and channel shuffle, DenseNet's dense concat, Inception's branches, ResNet-50's bottlenecks.
`width` scales channels so tests can run small versions of the same graphs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def _conv(cin: int, cout: int, k: int, s: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _head(cin: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def alexnet(width: int = 64, classes: int = 1000) -> nn.Module:
    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 11, 4, 2),
        nn.ReLU(),
        nn.LocalResponseNorm(5),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(w, 3 * w, 5, padding=2),
        nn.ReLU(),
        nn.LocalResponseNorm(5),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(3 * w, 4 * w, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(6),
        nn.Flatten(),
        nn.Dropout(),
        nn.Linear(4 * w * 36, 4 * w),
        nn.ReLU(),
        nn.Linear(4 * w, classes),
    )


def vgg(width: int = 64, classes: int = 1000) -> nn.Module:
    layers: list[nn.Module] = []
    cin = 3
    for stage, repeats in enumerate((2, 2, 3, 3, 3)):
        cout = width * min(2**stage, 8)
        layers += [_conv(cin if i == 0 else cout, cout, 3) for i in range(repeats)]
        layers.append(nn.MaxPool2d(2))
        cin = cout
    return nn.Sequential(*layers, _head(cin, classes))


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.e1(s), self.e3(s)], 1)


def squeezenet(width: int = 16, classes: int = 1000) -> nn.Module:
    w = width
    return nn.Sequential(
        nn.Conv2d(3, 6 * w, 3, 2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(6 * w, w, 4 * w),
        Fire(8 * w, w, 4 * w),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(8 * w, 2 * w, 8 * w),
        nn.Dropout(),
        nn.Conv2d(16 * w, classes, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class ShuffleUnit(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.reduce = _conv(channels, channels // 4, 1, groups=groups)
        self.depthwise = nn.Sequential(
            nn.Conv2d(channels // 4, channels // 4, 3, padding=1, groups=channels // 4),
            nn.BatchNorm2d(channels // 4),
        )
        self.expand = nn.Sequential(
            nn.Conv2d(channels // 4, channels, 1, groups=groups), nn.BatchNorm2d(channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        n, c, h, w = y.shape
        y = y.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)
        return torch.relu(x + self.expand(self.depthwise(y)))


def shufflenet(width: int = 48, classes: int = 1000) -> nn.Module:
    c = width * 4
    return nn.Sequential(
        _conv(3, c, 3, 2),
        nn.MaxPool2d(3, 2, 1),
        ShuffleUnit(c, 4),
        ShuffleUnit(c, 4),
        _conv(c, 2 * c, 3, 2),
        ShuffleUnit(2 * c, 4),
        _head(2 * c, classes),
    )


class DenseBlock(nn.Module):
    def __init__(self, cin: int, growth: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm2d(cin + i * growth),
                nn.ReLU(),
                nn.Conv2d(cin + i * growth, growth, 3, padding=1, bias=False),
            )
            for i in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


def densenet(width: int = 32, classes: int = 1000) -> nn.Module:
    g = width // 2
    return nn.Sequential(
        _conv(3, 2 * width, 7, 2),
        nn.MaxPool2d(3, 2, 1),
        DenseBlock(2 * width, g, 4),
        nn.Conv2d(2 * width + 4 * g, width, 1),
        nn.AvgPool2d(2),
        DenseBlock(width, g, 4),
        _head(width + 4 * g, classes),
    )


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, w: int) -> None:
        super().__init__()
        self.b1 = _conv(cin, w, 1)
        self.b3 = nn.Sequential(_conv(cin, w, 1), _conv(w, w, 3))
        self.b5 = nn.Sequential(_conv(cin, w // 2, 1), _conv(w // 2, w, 5))
        self.pool = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), _conv(cin, w, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], 1)


def inception(width: int = 32, classes: int = 1000) -> nn.Module:
    return nn.Sequential(
        _conv(3, 2 * width, 7, 2),
        nn.MaxPool2d(3, 2, 1),
        InceptionBlock(2 * width, width),
        nn.MaxPool2d(3, 2, 1),
        InceptionBlock(4 * width, width),
        _head(4 * width, classes),
    )


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(cin, mid, 1),
            _conv(mid, mid, 3, stride),
            nn.Conv2d(mid, 4 * mid, 1, bias=False),
            nn.BatchNorm2d(4 * mid),
        )
        needs_projection = stride != 1 or cin != 4 * mid
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, 4 * mid, 1, stride, bias=False), nn.BatchNorm2d(4 * mid))
            if needs_projection
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.shortcut(x) + self.body(x))


def resnet50(width: int = 64, classes: int = 1000) -> nn.Module:
    layers: list[nn.Module] = [_conv(3, width, 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = width
    for stage, blocks in enumerate((3, 4, 6, 3)):
        mid = width * 2**stage
        for block in range(blocks):
            layers.append(Bottleneck(cin, mid, 2 if block == 0 and stage > 0 else 1))
            cin = 4 * mid
    return nn.Sequential(*layers, _head(cin, classes))


CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {
    "alexnet": alexnet,
    "vgg": vgg,
    "squeezenet": squeezenet,
    "shufflenet": shufflenet,
    "densenet": densenet,
    "inception": inception,
    "resnet50": resnet50,
}


def build(name: str, width: int | None = None, classes: int = 1000) -> nn.Module:
    """An eval-mode classifier with seeded weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    factory = CLASSIFIERS[name]
    model = factory(classes=classes) if width is None else factory(width=width, classes=classes)
    randomize_batchnorm(model)
    return model.eval()


def randomize_batchnorm(model: nn.Module) -> None:
    """Fresh BatchNorm statistics are 0 and 1, which would hide mistakes in folding them."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
