"""Static torch modules for the units of the space.

These are the modules that are exported and measured for the latency table, and the ones a
sub-network extracted from the supernet is made of, so what is measured is what ships.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.space.space import Arch, LayerSpec, SearchSpace, make_divisible


def activation(name: str) -> nn.Module:
    return nn.ReLU(inplace=True) if name == "relu" else nn.Hardswish(inplace=True)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = "relu"):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(activation(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        mid = make_divisible(channels // 4)
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(mid, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, optional SE, 1x1 project, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, expand: int, stride: int, act: str, se: bool):
        super().__init__()
        mid = make_divisible(cin * expand)
        self.expand = ConvBNAct(cin, mid, 1, act=act)
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid) if se else nn.Identity()
        self.project = ConvBNAct(mid, cout, 1, act=None)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class Stem(nn.Module):
    """3x3 strided conv, then a fixed depthwise-separable block with a residual (as in Once-for-All)."""

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.conv = ConvBNAct(cin, width, 3, stride, act="hswish")
        self.depthwise = ConvBNAct(width, width, 3, groups=width, act="relu")
        self.pointwise = ConvBNAct(width, width, 1, act=None)

    def forward(self, x):
        x = self.conv(x)
        return x + self.pointwise(self.depthwise(x))


class Head(nn.Module):
    def __init__(self, cin: int, mid: int, num_classes: int):
        super().__init__()
        self.expand = ConvBNAct(cin, mid, 1, act="hswish")
        self.classifier = nn.Linear(mid, num_classes)

    def forward(self, x):
        return self.classifier(self.expand(x).mean((2, 3)))


def build_layer(spec: LayerSpec) -> nn.Module:
    if spec.kind == "stem":
        return Stem(spec.cin, spec.cout, spec.stride)
    if spec.kind == "head":
        return Head(spec.cin, spec.mid, spec.cout)
    return MBConv(spec.cin, spec.cout, spec.kernel, spec.expand, spec.stride, spec.act, spec.se)


class Network(nn.Sequential):
    """A standalone network of the space: exactly the table's units, in order."""

    def __init__(self, space: SearchSpace, arch: Arch):
        space.check_arch(arch)
        self.layer_specs = space.layers(arch)
        super().__init__(*(build_layer(s) for s in self.layer_specs))
        self.arch = arch


def randomize_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm non-trivial statistics, so an untrained block does real arithmetic when exported."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return module


_PARAMS: dict[str, int] = {}


def layer_params(spec: LayerSpec) -> int:
    """Parameters of one unit, counted once per table key (the search asks for millions)."""
    if spec.key not in _PARAMS:
        _PARAMS[spec.key] = sum(p.numel() for p in build_layer(spec).parameters())
    return _PARAMS[spec.key]
