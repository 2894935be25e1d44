"""Channel surgery on a network of the space: its prunable units, and one unit cut to fewer mid channels by
Torch-Pruning's dependency graph (which slices every coupled layer with it)."""

from __future__ import annotations

import contextlib
import sys

import torch
import torch_pruning as tp
from torch import nn

from edgenas.space.blocks import Head, MBConv

IMPORTANCE = tp.importance.GroupMagnitudeImportance(p=2)


def mid_channels(net: nn.Module) -> dict[int, int]:
    """The prunable units of a `Network`, layer index -> mid channels: every MBConv block and the head."""
    return {i: m.expand[0].out_channels for i, m in enumerate(net) if isinstance(m, (MBConv, Head))}


def prune_unit(net: nn.Module, layer: int, keep: int) -> nn.Module:
    """Keep the `keep` mid channels of unit `layer` with the largest group L2 magnitude. Torch-Pruning's
    dependency graph slices every layer coupled to them: BatchNorms, the depthwise convolution, squeeze-excite's
    two convolutions, the projection's input (or the classifier's)."""
    conv = net[layer].expand[0]
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=_example(net))
    scores = IMPORTANCE(graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels))))
    drop = scores.argsort()[: conv.out_channels - keep].tolist()
    graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=drop).prune()
    return net.to(memory_format=torch.channels_last)


def _example(net: nn.Module) -> torch.Tensor:
    """An input of the network's shape: a `Network` of the space, or any module with an `input_shape`."""
    if hasattr(net, "input_shape"):
        return torch.zeros(net.input_shape)
    spec = net.layer_specs[0]
    return torch.zeros(1, spec.cin, net.arch.resolution, net.arch.resolution)


def macs_params(net: nn.Module) -> tuple[int, int]:
    """Torch-Pruning's count of multiply-accumulates and parameters, on one input."""
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for --json
        macs, params = tp.utils.count_ops_and_params(net, _example(net))
    return int(macs), int(params)
