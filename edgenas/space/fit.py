"""A space made to fit the data it is trained on: a user brings images, not a space built for them.

A space's stem takes a number of channels, its head tells a number of classes apart, and its resolutions were chosen
for an image size. `follow_data` keeps everything else (the stages, widths, depths, kernels and expansions that
were designed for the template), takes the channels and classes the data has, and scales the resolutions down to
images smaller than they are, so that `--data` with 32x32 RGB images needs no `--space`. A space that already fits
is returned unchanged, with its name and its tables.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable

from edgenas.errors import BadInput
from edgenas.space.space import SearchSpace

#: resolutions scaled to another image size are rounded to a multiple of this (and kept at least this large)
RESOLUTION_STEP = 4


def scaled_resolutions(space: SearchSpace, size: int) -> tuple[int, ...]:
    """The space's resolutions, scaled down so that the largest is the data's image side when it was larger (an image
    scaled up gains no detail, only cost); kept when the images are as large or larger: looking at them smaller is
    the space's choice, and what keeps its networks cheap."""
    top = max(space.resolutions)
    if size >= top:
        return space.resolutions
    scaled = {max(RESOLUTION_STEP, round(r * size / top / RESOLUTION_STEP) * RESOLUTION_STEP) for r in space.resolutions}
    return tuple(sorted(scaled - {max(scaled)} | {size}))


#: the name `follow_data` gives: the template's, then what the data set (channels, image side, classes)
FITTED_NAME = re.compile(r"^(?P<template>.+)-c(?P<channels>\d+)-r(?P<size>\d+)-n(?P<classes>\d+)$")


def fitted_by_name(name: str, registry: dict[str, Callable[[], SearchSpace]]) -> SearchSpace | None:
    """The space `follow_data` named `name`, made again from its registered template (None: not such a name)."""
    m = FITTED_NAME.match(name)
    if m is None or m["template"] not in registry:
        return None
    channels, size, classes = int(m["channels"]), int(m["size"]), int(m["classes"])
    if min(channels, size) < 1 or classes < 2:
        raise BadInput(f"space '{name}': {channels} channel(s), {size}px images and {classes} classes cannot be fitted "
                       f"(at least 1 channel, 1 pixel and 2 classes)")
    fitted = follow_data(registry[m["template"]](), channels, size, classes)
    if fitted.name != name:  # e.g. digits-c1-r28-n10 is the digits space itself
        raise BadInput(f"space '{name}': '{m['template']}' fits {channels}-channel {size}px images of {classes} classes "
                       f"as it is; name it '{fitted.name}'")
    return fitted


def follow_data(space: SearchSpace, channels: int, size: int, classes: int) -> SearchSpace:
    """`space` with `channels` input channels, `classes` classes and resolutions of at most `size` pixels (the
    smaller side of the data's images); named after what changed, so that its tables sit apart from the template's."""
    resolutions = scaled_resolutions(space, size)
    if (channels, classes, resolutions) == (space.in_channels, space.num_classes, space.resolutions):
        return space
    return replace(space, name=f"{space.name}-c{channels}-r{size}-n{classes}", in_channels=channels, num_classes=classes,
                   resolutions=resolutions,
                   description=f"{space.name} made to fit {channels}-channel {size}px images of {classes} classes"
                               f" ({space.description})")


def follow_dataset(space: SearchSpace, data) -> tuple[SearchSpace, str | None]:
    """`follow_data` on a loaded `data.Dataset` (N, C, H, W): the fitted space, and a line that says what changed
    (None when nothing did), for the verb to print."""
    fitted = follow_data(space, data.x.shape[1], min(data.x.shape[2:]), len(data.classes))
    if fitted is space:
        return space, None
    return fitted, (f"space '{space.name}' made to fit {data.source}: {fitted.in_channels} channel(s), "
                    f"{fitted.num_classes} classes, resolutions {', '.join(map(str, fitted.resolutions))} "
                    f"(its tables, and its name for --space: '{fitted.name}')")
