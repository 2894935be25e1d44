"""The search space as plain data: stages with elastic depth, kernel, expand ratio and width, and elastic resolution.

An architecture (`Arch`) is a choice for each of those; a `LayerSpec` is one measurable unit
(stem, one whole MBConv block with its residual, or head): the keys of a latency table.
Blocks are measured whole because per-operator sums miss fusion.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from itertools import product
from typing import Callable

from edgenas.errors import BadInput

ACTIVATIONS = ("relu", "hswish")


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels as MobileNet does: to a multiple of `divisor`, never more than 10% down."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


@dataclass(frozen=True)
class StageSpec:
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    stride: int
    act: str = "hswish"
    se: bool = False


@dataclass(frozen=True)
class LayerSpec:
    """One unit of a network as the latency table sees it; `key` is its table key."""

    kind: str  # "stem" | "mbconv" | "head"
    cin: int
    cout: int
    size: int  # input height and width
    kernel: int = 0
    expand: int = 0
    stride: int = 1
    act: str = ""
    se: bool = False
    mid: int = 0  # head: width of the final 1x1 expansion

    @property
    def key(self) -> str:
        if self.kind == "stem":
            return f"stem:c{self.cin}-o{self.cout}-s{self.stride}-r{self.size}"
        if self.kind == "head":
            return f"head:i{self.cin}-m{self.mid}-o{self.cout}-r{self.size}"
        return (
            f"mbconv:i{self.cin}-o{self.cout}-k{self.kernel}-e{self.expand}-s{self.stride}"
            f"-r{self.size}-{self.act}{'-se' if self.se else ''}"
        )

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.cin, self.size, self.size)


@dataclass(frozen=True, order=True)
class Arch:
    """One network of the space. Its `encoding` is stable: equal networks have equal strings."""

    resolution: int
    widths: tuple[int, ...]
    # per stage, one (kernel, expand) pair per active block
    blocks: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.blocks)

    @property
    def encoding(self) -> str:
        stages = "/".join(
            f"w{w}:" + ",".join(f"k{k}e{e}" for k, e in blocks) for w, blocks in zip(self.widths, self.blocks)
        )
        return f"r{self.resolution}/{stages}"

    def to_dict(self) -> dict:
        return {"resolution": self.resolution, "widths": list(self.widths), "blocks": [[list(b) for b in s] for s in self.blocks]}

    @classmethod
    def from_dict(cls, d: dict) -> "Arch":
        try:
            return cls(
                resolution=int(d["resolution"]),
                widths=tuple(int(w) for w in d["widths"]),
                blocks=tuple(tuple((int(k), int(e)) for k, e in s) for s in d["blocks"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"not an architecture: {json.dumps(d)[:200]} ({e})") from None


@dataclass(frozen=True)
class SearchSpace:
    name: str
    in_channels: int
    num_classes: int
    resolutions: tuple[int, ...]
    stem_width: int
    stem_stride: int
    stages: tuple[StageSpec, ...]
    head_width: int
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    expand_ratios: tuple[int, ...] = (3, 4, 6)
    description: str = ""

    def __post_init__(self):
        problems = []
        if not self.stages:
            problems.append("it has no stages")
        for i, s in enumerate(self.stages):
            if not s.widths or not s.depths or min(s.depths) < 1 or min(s.widths) < 1:
                problems.append(f"stage {i} needs positive widths and depths")
            if s.act not in ACTIVATIONS:
                problems.append(f"stage {i} act '{s.act}' is not one of {', '.join(ACTIVATIONS)}")
            if s.stride not in (1, 2):
                problems.append(f"stage {i} stride must be 1 or 2")
        if any(k % 2 == 0 for k in self.kernel_sizes):
            problems.append("kernel sizes must be odd")
        if problems:
            raise BadInput(f"search space '{self.name}': {'; '.join(problems)}")

    # ---- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def hash(self) -> str:
        """Identifies what the space contains (not its name): a table is valid for spaces with this hash."""
        d = self.to_dict()
        d.pop("name"), d.pop("description")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    # ---- geometry -------------------------------------------------------------------------
    @staticmethod
    def _down(size: int, stride: int) -> int:
        return (size + stride - 1) // stride

    def _stem(self, resolution: int) -> LayerSpec:
        return LayerSpec("stem", self.in_channels, self.stem_width, resolution, stride=self.stem_stride)

    def _head(self, cin: int, size: int) -> LayerSpec:
        return LayerSpec("head", cin, self.num_classes, size, mid=self.head_width)

    def layers(self, arch: Arch) -> list[LayerSpec]:
        """The stem, blocks and head of `arch`, each a table entry."""
        size = arch.resolution
        layers = [self._stem(size)]
        size = self._down(size, self.stem_stride)
        cin = self.stem_width
        for stage, width, blocks in zip(self.stages, arch.widths, arch.blocks):
            for i, (k, e) in enumerate(blocks):
                stride = stage.stride if i == 0 else 1
                layers.append(LayerSpec("mbconv", cin, width, size, k, e, stride, stage.act, stage.se))
                size = self._down(size, stride)
                cin = width
        layers.append(self._head(cin, size))
        return layers

    def slots(self):
        """Every place a unit can take, with the unit measured there: (resolution, place, LayerSpec).

        A place is ("stem",), ("block", stage, first_of_stage, cin, cout, kernel, expand) or ("head", cin).
        Blocks after the first of a stage all share one place: their shape does not depend on depth.
        """
        for res in self.resolutions:
            yield res, ("stem",), self._stem(res)
            size = self._down(res, self.stem_stride)
            cins = [self.stem_width]
            for s, stage in enumerate(self.stages):
                for first in (True, False):
                    stride = stage.stride if first else 1
                    for cin, cout, k, e in product(cins if first else stage.widths, stage.widths,
                                                   self.kernel_sizes, self.expand_ratios):
                        if first or cin == cout:
                            spec = LayerSpec("mbconv", cin, cout, size, k, e, stride, stage.act, stage.se)
                            yield res, ("block", s, first, cin, cout, k, e), spec
                    size = self._down(size, stride)
                cins = list(stage.widths)
            for cin in cins:
                yield res, ("head", cin), self._head(cin, size)

    def all_layers(self) -> list[LayerSpec]:
        """Every unique unit any network of the space can contain: the rows of a full latency table."""
        return list({spec.key: spec for _, _, spec in self.slots()}.values())

    # ---- sampling -------------------------------------------------------------------------
    def sample(self, rng: random.Random, lean: float = 0.0) -> Arch:
        """A random network. With `lean` in [-1, 1], each choice is the smallest (< 0) or largest (> 0) option with
        probability |lean|: uniform draws seldom reach the ends of the latency range, where predictors need samples too."""
        pick = max if lean > 0 else min

        def choose(options):
            return pick(options) if lean and rng.random() < abs(lean) else rng.choice(options)

        return Arch(
            resolution=choose(self.resolutions),
            widths=tuple(choose(s.widths) for s in self.stages),
            blocks=tuple(
                tuple((choose(self.kernel_sizes), choose(self.expand_ratios)) for _ in range(choose(s.depths)))
                for s in self.stages
            ),
        )

    def largest(self) -> Arch:
        return Arch(max(self.resolutions), tuple(max(s.widths) for s in self.stages),
                    tuple(((max(self.kernel_sizes), max(self.expand_ratios)),) * max(s.depths) for s in self.stages))

    def smallest(self) -> Arch:
        return Arch(min(self.resolutions), tuple(min(s.widths) for s in self.stages),
                    tuple(((min(self.kernel_sizes), min(self.expand_ratios)),) * min(s.depths) for s in self.stages))

    def check_arch(self, arch: Arch) -> None:
        """Refuse an architecture that is not in this space, naming the first offending choice."""
        def bad(what):
            raise BadInput(f"architecture {arch.encoding} is not in space '{self.name}': {what}")

        if arch.resolution not in self.resolutions:
            bad(f"resolution {arch.resolution} not in {list(self.resolutions)}")
        if len(arch.widths) != len(self.stages) or len(arch.blocks) != len(self.stages):
            bad(f"it has {len(arch.widths)} stages, the space {len(self.stages)}")
        for i, (stage, w, blocks) in enumerate(zip(self.stages, arch.widths, arch.blocks)):
            if w not in stage.widths:
                bad(f"stage {i} width {w} not in {list(stage.widths)}")
            if len(blocks) not in stage.depths:
                bad(f"stage {i} depth {len(blocks)} not in {list(stage.depths)}")
            for k, e in blocks:
                if k not in self.kernel_sizes or e not in self.expand_ratios:
                    bad(f"stage {i} block k{k}e{e} not in kernels {list(self.kernel_sizes)} x expands {list(self.expand_ratios)}")


# ---- registry (in the manner of timm's model registry) --------------------------------------
_REGISTRY: dict[str, Callable[[], SearchSpace]] = {}


def register_space(fn: Callable[[], SearchSpace]) -> Callable[[], SearchSpace]:
    _REGISTRY[fn.__name__.replace("_", "-")] = fn
    return fn


def list_spaces() -> list[SearchSpace]:
    return [fn() for fn in _REGISTRY.values()]


def space_from_dict(d: dict, source: str = "search space") -> SearchSpace:
    try:
        stages = tuple(
            StageSpec(tuple(s["widths"]), tuple(s["depths"]), int(s["stride"]), s.get("act", "hswish"), bool(s.get("se", False)))
            for s in d["stages"]
        )
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k != "stages"}
        return SearchSpace(stages=stages, **fields)
    except KeyError as e:
        raise BadInput(f"{source}: field {e} is missing") from None
    except TypeError as e:
        raise BadInput(f"{source}: {e}") from None


@register_space
def digits() -> SearchSpace:
    """Small images such as the bundled 28x28 digits: the default."""
    return SearchSpace(
        name="digits",
        description="MobileNetV3-style space for small grayscale images (28x28 digits)",
        in_channels=1,
        num_classes=10,
        resolutions=(20, 24, 28),
        stem_width=16,
        stem_stride=2,
        stages=(
            StageSpec(widths=(16, 24), depths=(1, 2), stride=1, act="relu"),
            StageSpec(widths=(24, 32), depths=(1, 2, 3), stride=2, act="relu"),
            StageSpec(widths=(32, 48), depths=(1, 2, 3), stride=2, act="hswish", se=True),
            StageSpec(widths=(48, 64), depths=(1, 2), stride=1, act="hswish", se=True),
        ),
        head_width=128,
    )


@register_space
def mobilenetv3_224() -> SearchSpace:
    """Once-for-All's MobileNetV3 space at ImageNet resolutions, with elastic width."""
    return SearchSpace(
        name="mobilenetv3-224",
        description="Once-for-All MobileNetV3 space for 224x224 RGB images, with elastic width",
        in_channels=3,
        num_classes=1000,
        resolutions=(160, 176, 192, 208, 224),
        stem_width=16,
        stem_stride=2,
        stages=(
            StageSpec(widths=(16, 24), depths=(2, 3, 4), stride=2, act="relu"),
            StageSpec(widths=(32, 40), depths=(2, 3, 4), stride=2, act="relu", se=True),
            StageSpec(widths=(64, 80), depths=(2, 3, 4), stride=2, act="hswish"),
            StageSpec(widths=(96, 112), depths=(2, 3, 4), stride=1, act="hswish", se=True),
            StageSpec(widths=(136, 160), depths=(2, 3, 4), stride=2, act="hswish", se=True),
        ),
        head_width=1280,
    )
