"""A weight-sharing supernet over a `SearchSpace`, in the style of Once-for-All and BigNAS.

Kernels are shared by centre-cropping the largest kernel, channels by taking the first ones, and
depth by taking the first blocks of each stage. `extract(arch)` returns the standalone `Network`
(the modules the latency table measured) with the inherited weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgenas.space import Arch, SearchSpace
from edgenas.space.blocks import ConvBNAct, Head, MBConv, Network, SqueezeExcite, Stem, activation, make_divisible


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, channels: int) -> torch.Tensor:
    """BatchNorm over the first `channels` features, sharing (and updating) the full layer's statistics."""
    mean = bn.running_mean[:channels] if bn.running_mean is not None else None
    var = bn.running_var[:channels] if bn.running_var is not None else None
    use_batch = bn.training or mean is None
    if bn.training and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    return F.batch_norm(x, mean, var, bn.weight[:channels], bn.bias[:channels], use_batch, bn.momentum, bn.eps)


def _centre(weight: torch.Tensor, k: int) -> torch.Tensor:
    start = (weight.shape[-1] - k) // 2
    return weight[..., start:start + k, start:start + k]


class DynamicMBConv(nn.Module):
    """An MBConv holding the largest weights of one block slot; runs any active sub-configuration."""

    def __init__(self, cin_max: int, cout_max: int, kmax: int, emax: int, stride: int, act: str, se: bool):
        super().__init__()
        self.largest = MBConv(cin_max, cout_max, kmax, emax, stride, act, se)
        self.stride, self.act_name, self.has_se = stride, act, se
        self.act = activation(act)

    def forward(self, x: torch.Tensor, cout: int, k: int, e: int) -> torch.Tensor:
        m = self.largest
        cin = x.shape[1]
        mid = make_divisible(cin * e)
        y = F.conv2d(x, m.expand[0].weight[:mid, :cin])
        y = self.act(_bn(y, m.expand[1], mid))
        y = F.conv2d(y, _centre(m.depthwise[0].weight[:mid], k), stride=self.stride, padding=k // 2, groups=mid)
        y = self.act(_bn(y, m.depthwise[1], mid))
        if self.has_se:
            se: SqueezeExcite = m.se
            r = make_divisible(mid // 4)
            s = y.mean((2, 3), keepdim=True)
            s = F.relu(F.conv2d(s, se.reduce.weight[:r, :mid], se.reduce.bias[:r]))
            s = F.hardsigmoid(F.conv2d(s, se.expand.weight[:mid, :r], se.expand.bias[:mid]))
            y = y * s
        y = _bn(F.conv2d(y, m.project[0].weight[:cout, :mid]), m.project[1], cout)
        return x + y if self.stride == 1 and cin == cout else y

    def export(self, cin: int, cout: int, k: int, e: int) -> MBConv:
        """The static block with this configuration's slice of the weights."""
        out = MBConv(cin, cout, k, e, self.stride, self.act_name, self.has_se)
        m, mid = self.largest, make_divisible(cin * e)
        _copy_conv_bn(out.expand, m.expand, slice(0, mid), slice(0, cin))
        _copy_conv_bn(out.depthwise, m.depthwise, slice(0, mid), slice(None), kernel=k)
        if self.has_se:
            r = make_divisible(mid // 4)
            out.se.reduce.weight.data.copy_(m.se.reduce.weight[:r, :mid])
            out.se.reduce.bias.data.copy_(m.se.reduce.bias[:r])
            out.se.expand.weight.data.copy_(m.se.expand.weight[:mid, :r])
            out.se.expand.bias.data.copy_(m.se.expand.bias[:mid])
        _copy_conv_bn(out.project, m.project, slice(0, cout), slice(0, mid))
        return out


def _copy_conv_bn(dst: ConvBNAct, src: ConvBNAct, out_ch: slice, in_ch: slice, kernel: int | None = None) -> None:
    w = src[0].weight[out_ch, in_ch]
    dst[0].weight.data.copy_(_centre(w, kernel) if kernel else w)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst[1], name).data.copy_(getattr(src[1], name)[out_ch])


class Supernet(nn.Module):
    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        kmax, emax = max(space.kernel_sizes), max(space.expand_ratios)
        self.stem = Stem(space.in_channels, space.stem_width, space.stem_stride)
        self.stages = nn.ModuleList()
        cin = space.stem_width
        for stage in space.stages:
            blocks = nn.ModuleList()
            for i in range(max(stage.depths)):
                stride = stage.stride if i == 0 else 1
                blocks.append(DynamicMBConv(cin, max(stage.widths), kmax, emax, stride, stage.act, stage.se))
                cin = max(stage.widths)
            self.stages.append(blocks)
        self.head = Head(cin, space.head_width, space.num_classes)
        self.arch = space.largest()

    def set_active(self, arch: Arch) -> None:
        self.space.check_arch(arch)
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Runs the active architecture; `x` must already be at its resolution."""
        x = self.stem(x)
        for blocks, width, config in zip(self.stages, self.arch.widths, self.arch.blocks):
            for block, (k, e) in zip(blocks, config):
                x = block(x, width, k, e)
        h = self.head
        cin = x.shape[1]
        y = F.hardswish(_bn(F.conv2d(x, h.expand[0].weight[:, :cin]), h.expand[1], h.expand[1].num_features))
        return h.classifier(y.mean((2, 3)))

    @torch.no_grad()
    def extract(self, arch: Arch) -> Network:
        """The standalone network for `arch` with inherited weights (BatchNorm statistics included)."""
        net = Network(self.space, arch)
        net[0].load_state_dict(self.stem.state_dict())
        layer = 1
        cin = self.space.stem_width
        for blocks, width, config in zip(self.stages, arch.widths, arch.blocks):
            for block, (k, e) in zip(blocks, config):
                net[layer] = block.export(cin, width, k, e)
                layer, cin = layer + 1, width
        head: Head = net[layer]
        _copy_conv_bn(head.expand, self.head.expand, slice(None), slice(0, cin))
        head.classifier.load_state_dict(self.head.classifier.state_dict())
        return net
