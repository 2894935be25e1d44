"""Accuracy of one sub-network with supernet weights, after recalibrating its BatchNorm statistics."""

from __future__ import annotations

import torch
from torch import nn

from edgenas.data import Split, to_input
from edgenas.space import Arch

BN_CALIBRATION_IMAGES = 1000


@torch.no_grad()
def recalibrate_bn(net: nn.Module, images: torch.Tensor, batch_size: int = 250) -> nn.Module:
    """Shared weights see a different input distribution in each sub-network, so the statistics the
    supernet kept for the largest net do not fit the others: re-estimate them on training images."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    net.train()
    for i in range(0, len(images), batch_size):
        net(images[i:i + batch_size])
    for bn in bns:
        bn.momentum = 0.1
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (net(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x)


class SubnetEvaluator:
    """Scores architectures on the validation split; inputs per resolution are prepared once."""

    def __init__(self, supernet, split: Split, calibration_images: int = BN_CALIBRATION_IMAGES):
        self.supernet, self.split = supernet, split
        self.n_cal = min(calibration_images, len(split.train_y))
        self._inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.val_y = torch.as_tensor(split.val_y)

    def inputs(self, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        if resolution not in self._inputs:
            s = self.split
            self._inputs[resolution] = tuple(to_input(x, s.normalization, resolution).contiguous(memory_format=torch.channels_last)
                                             for x in (s.train_x[: self.n_cal], s.val_x))
        return self._inputs[resolution]

    def network(self, arch: Arch) -> nn.Module:
        """The standalone sub-network with inherited weights and recalibrated BatchNorm."""
        cal, _ = self.inputs(arch.resolution)
        return recalibrate_bn(self.supernet.extract(arch).to(memory_format=torch.channels_last), cal)

    def __call__(self, arch: Arch) -> float:
        _, val = self.inputs(arch.resolution)
        return accuracy(self.network(arch), val, self.val_y)
