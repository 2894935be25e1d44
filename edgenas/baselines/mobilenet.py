"""What a user would ship without edgenas's search: MobileNetV2, its width multiplier and input resolution shrunk by hand
until it fits the budget, trained from scratch on the same data for as many epochs as edgenas trains.

The network is built from the space's own blocks (`space.blocks`: the same convolution, BatchNorm and activation
modules), so that it is exported, quantized, compiled and measured by exactly the code that ships edgenas's pick.
ImageNet's MobileNetV2 reduces its input 32 times, which leaves nothing of a 28-pixel image; like the ports of it to
CIFAR (kuangliu/pytorch-cifar, for one), its strides are moved so that small images end on a 4x4 map: an overall
stride of 8, as the networks of the digits space have. Written here because torchvision cannot be installed beside
this torch (see the project notes), and the network is forty lines.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from edgenas.accuracy import ort_accuracy
from edgenas.bundle import ModelInfo, write_bundle
from edgenas.compress.surgery import macs_params
from edgenas.data import DataRecord, Split, resize, to_input
from edgenas.learning import cosine_schedule, optimizer, shift_augment
from edgenas.measure.onnx_export import INPUT_NAME, to_onnx
from edgenas.progress import bar
from edgenas.space.blocks import ConvBNAct, MBConv
from edgenas.space.space import make_divisible
from edgenas.supernet.train_config import TrainConfig

#: MobileNetV2's inverted residual stages (expansion t, channels c, blocks n, stride s), strides moved for small images
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 1), (6, 320, 1, 1))
#: the width multipliers MobileNetV2 was published with, and below
WIDTHS = (0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1.0)


class MobileNetV2(nn.Sequential):
    def __init__(self, width: float, in_channels: int, num_classes: int, resolution: int):
        stem = make_divisible(32 * width)
        layers, cin = [ConvBNAct(in_channels, stem, 3, 2, act="relu")], stem
        for t, c, n, s in SETTINGS:
            cout = make_divisible(c * width)
            for i in range(n):
                layers.append(MBConv(cin, cout, 3, t, s if i == 0 else 1, "relu", se=False))
                cin = cout
        last = make_divisible(1280 * max(1.0, width))
        layers += [ConvBNAct(cin, last, 1, act="relu"), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, num_classes)]
        super().__init__(*layers)
        self.width, self.resolution, self.input_shape = width, resolution, (1, in_channels, resolution, resolution)


@dataclass(frozen=True)
class Scaled:
    """One width and resolution, and its latency as it ships (measured as the table measures)."""
    width: float
    resolution: int
    macs: int
    measured_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def scale_to_fit(budget_ms: float, channels: int, classes: int, widths: tuple[float, ...], resolutions: tuple[int, ...],
                 measure: Callable[[bytes, tuple[int, ...]], float], tried: dict | None = None) -> tuple[Scaled | None, dict]:
    """What a user does by hand: of every width and resolution, the one with the most MACs that measures within the
    budget (None when even the smallest does not). `tried` caches the measurements across budgets."""
    tried = {} if tried is None else tried
    for w in widths:
        for r in resolutions:
            if (w, r) not in tried:
                net = MobileNetV2(w, channels, classes, r)
                tried[(w, r)] = Scaled(w, r, macs_params(net)[0], measure(to_onnx(net, net.input_shape), net.input_shape))
    fits = [s for s in tried.values() if s.measured_ms <= budget_ms]
    return max(fits, key=lambda s: (s.macs, -s.measured_ms), default=None), tried


def train_from_scratch(net: MobileNetV2, split: Split, epochs: int, cfg: TrainConfig = TrainConfig()) -> MobileNetV2:
    """Cross-entropy on the labels with the supernet's recipe: its optimizer, learning rate, schedule, label
    smoothing, random shifts, batch size and training images (`cfg.limit`)."""
    torch.manual_seed(cfg.seed)
    n = min(cfg.limit or len(split.train_y), len(split.train_y))
    steps = math.ceil(n / cfg.batch_size)
    opt = optimizer(net.parameters(), cfg.lr, cfg.weight_decay)
    sched = cosine_schedule(opt, epochs * steps, min(100, steps))
    x_all, y_all = split.train_x[:n], torch.as_tensor(split.train_y[:n])
    net = net.to(memory_format=torch.channels_last).train()
    with bar(epochs * steps, f"train MobileNetV2 x{net.width:g} @{net.resolution}", unit="step") as progress:
        for epoch in range(epochs):
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            order = torch.randperm(n, generator=gen).numpy()
            for step in range(steps):
                idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                x = shift_augment(to_input(x_all[idx], split.normalization), cfg.shift, gen)
                logits = net(resize(x, net.resolution).contiguous(memory_format=torch.channels_last))
                loss = F.cross_entropy(logits, y_all[idx], label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                progress.update()
    return net.eval().to(memory_format=torch.contiguous_format)


def export_baseline(net: MobileNetV2, split: Split, data: DataRecord, out: Path, record: dict) -> ModelInfo:
    """The trained network as an fp32 bundle, as `export` writes the searched one: what quantize and compile take."""
    onnx_model = to_onnx(net, net.input_shape)
    info = ModelInfo(input_name=INPUT_NAME, input_shape=net.input_shape, normalization=split.normalization,
                     classes=split.classes, data=data)
    info = info.then("export", accuracy={"fp32": ort_accuracy(onnx_model, info, split)},
                     record={"baseline": f"MobileNetV2 x{net.width:g} at {net.resolution} px", **record})
    write_bundle(out, onnx_model, info)
    return info
