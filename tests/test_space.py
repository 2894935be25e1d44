import random

import pytest
import torch

from conftest import TINY_SPACE
from edgenas.errors import BadInput
from edgenas.space import Arch, get_space, list_spaces
from edgenas.space.blocks import Network, build_layer


@pytest.mark.parametrize("name", ["digits", "mobilenetv3-224", TINY_SPACE])
def test_every_sampled_network_is_covered_by_the_table_keys(name):
    space = get_space(name)
    keys = {layer.key for layer in space.all_layers()}
    assert len(keys) == len(space.all_layers())
    rng = random.Random(0)
    used = set()
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(3000)]:
        space.check_arch(arch)
        layer_keys = [layer.key for layer in space.layers(arch)]
        assert set(layer_keys) <= keys
        used |= set(layer_keys)
    if name != "mobilenetv3-224":  # small spaces: sampling reaches every key, so none is wasted
        assert used == keys


def test_registry_lists_default_and_large_preset():
    spaces = {s.name: s for s in list_spaces()}
    assert max(spaces["digits"].resolutions) == 28 and spaces["digits"].in_channels == 1
    assert max(spaces["mobilenetv3-224"].resolutions) == 224
    assert set(spaces["digits"].kernel_sizes) == {3, 5, 7} and set(spaces["digits"].expand_ratios) == {3, 4, 6}


def test_encoding_is_stable_and_round_trips():
    space = get_space("digits")
    rng = random.Random(1)
    for _ in range(200):
        arch = space.sample(rng)
        again = Arch.from_dict(arch.to_dict())
        assert again == arch and hash(again) == hash(arch) and again.encoding == arch.encoding
    assert space.largest().encoding != space.smallest().encoding


def test_space_hash_follows_content_not_name():
    a = get_space("digits")
    from dataclasses import replace

    assert replace(a, name="other").hash == a.hash
    assert replace(a, resolutions=(24, 28)).hash != a.hash


def test_arch_outside_space_is_refused():
    space = get_space("digits")
    arch = space.largest()
    bad = Arch(arch.resolution, (17,) + arch.widths[1:], arch.blocks)
    with pytest.raises(BadInput, match="stage 0 width 17"):
        space.check_arch(bad)


@pytest.mark.parametrize("name", ["digits", TINY_SPACE])
def test_each_layer_maps_its_declared_shape(name):
    space = get_space(name)
    arch = space.largest()
    x = torch.zeros(1, space.in_channels, arch.resolution, arch.resolution)
    for spec in space.layers(arch):
        assert tuple(x.shape) == spec.input_shape
        x = build_layer(spec).eval()(x)
    assert tuple(x.shape) == (1, space.num_classes)
    net = Network(space, arch).eval()
    assert tuple(net(torch.zeros(1, space.in_channels, arch.resolution, arch.resolution)).shape) == (1, space.num_classes)


def test_bad_space_file_is_named(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"name": "x"}')
    with pytest.raises(BadInput, match=f"{path}.*missing"):
        get_space(str(path))
    with pytest.raises(BadInput, match="known spaces: digits"):
        get_space("nosuchspace")
