"""Search spaces by name: a registered one, one made to fit data (`space.fit`), or a JSON file.

Apart from `space.space`, which `space.fit` builds on, so that neither imports the other back."""

from __future__ import annotations

from pathlib import Path

from edgenas.errors import BadInput
from edgenas.space.fit import fitted_by_name
from edgenas.space.space import _REGISTRY, SearchSpace, space_from_dict


def get_space(name_or_path: str) -> SearchSpace:
    """A registered space by name, a registered space made to fit data by the name a build gave it (`space.fit`:
    `digits-c3-r32-n10`, so that `edgenas profile` can measure the tables of a build on RGB images), or a JSON file
    holding `SearchSpace` fields."""
    if name_or_path in _REGISTRY:
        return _REGISTRY[name_or_path]()
    fitted = fitted_by_name(name_or_path, _REGISTRY)
    if fitted is not None:
        return fitted
    if name_or_path.endswith(".json") or Path(name_or_path).is_file():
        from edgenas.jsonio import read_json

        return space_from_dict(read_json(Path(name_or_path)), source=name_or_path)
    raise BadInput(f"unknown search space '{name_or_path}'; known spaces: {', '.join(_REGISTRY)} (or give a path to a .json file)")
