"""The elastic MobileNetV3-style search space: its definition as data, and the torch blocks it is built from."""

from edgenas.space.lookup import get_space
from edgenas.space.space import Arch, LayerSpec, SearchSpace, StageSpec, list_spaces, register_space

__all__ = ["Arch", "LayerSpec", "SearchSpace", "StageSpec", "get_space", "list_spaces", "register_space"]
