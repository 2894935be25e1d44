"""A small correction from the sum of blocks to end-to-end latency.

Standalone blocks each pay the runtime's per-call overhead, and the whole network adds what no block
holds (graph set-up, fusion across blocks); a linear fit on the sum and the number of units captures both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from edgenas.errors import BadInput

FEATURES = ("intercept_ms", "raw_sum", "per_unit_ms")


@dataclass(frozen=True)
class Correction:
    """A table's end-to-end correction: intercept + scale * (sum of the blocks) + per_unit * (units)."""
    model: str  # "linear", or "proportional" (the scale alone, which keeps every prediction positive)
    coef: tuple[float, float, float]  # (intercept_ms, scale, per_unit_ms), as FEATURES names them
    fit_samples: int  # networks the fit saw
    features: tuple[str, ...] = FEATURES
    held_out: dict | None = None  # `prediction_metrics` on networks the fit did not see; overrun_p95_pct is the guard band
    fitted: str | None = None  # when `validate` fitted it
    rejected: dict | None = None  # a linear fit refused for predicting <= 0 for the fastest network: its coef, fastest_ms

    @property
    def overrun_p95_pct(self) -> float | None:
        return (self.held_out or {}).get("overrun_p95_pct")

    def validated(self, held_out: dict, fitted: str) -> "Correction":
        return replace(self, held_out=held_out, fitted=fitted)

    def to_dict(self) -> dict:
        d = {**asdict(self), "coef": list(self.coef), "features": list(self.features)}
        return {k: v for k, v in d.items() if v is not None or k in ("held_out", "fitted")}

    @classmethod
    def from_dict(cls, d, where) -> "Correction":
        coef = d.get("coef") if isinstance(d, dict) else None
        if not (isinstance(coef, list) and len(coef) == 3 and all(isinstance(c, (int, float)) and math.isfinite(c) for c in coef)):
            raise BadInput(f"{where}: field 'correction' is damaged (no three finite 'coef'); set it to null and run "
                           f"`edgenas validate` again")
        return cls(str(d.get("model", "linear")), tuple(float(c) for c in coef), int(d.get("fit_samples", 0)),
                   tuple(d.get("features", FEATURES)), d.get("held_out"), d.get("fitted"), d.get("rejected"))


def _design(raw_ms, units) -> np.ndarray:
    raw_ms, units = np.asarray(raw_ms, float), np.asarray(units, float)
    return np.stack([np.ones_like(raw_ms), raw_ms, units], axis=1)


def fit_correction(raw_ms, units, measured_ms, proportional: bool = False) -> Correction:
    """Least squares on relative error (rows weighted by 1/measured), because budgets are met in percent.
    `proportional`: the scale term alone, which keeps every prediction positive."""
    x, y = _design(raw_ms, units), np.asarray(measured_ms, float)
    coef, *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
    model = "linear"
    if coef[1] <= 0 or proportional:
        # Latency must grow with the blocks' latency; on a few noisy samples the free fit can say
        # otherwise, and a search would then prefer slower blocks. Keep only the proportional term.
        r = np.asarray(raw_ms, float) / y
        coef, model = np.array([0.0, float(r.sum() / (r * r).sum()), 0.0]), "proportional"
    return Correction(model, tuple(float(c) for c in coef), int(len(y)))


def coefficients(correction: Correction | None) -> tuple[float, float, float]:
    """(intercept, scale, per unit); a table not validated yet predicts the plain sum."""
    return correction.coef if correction else (0.0, 1.0, 0.0)


def apply_correction(correction: Correction | None, raw_ms: float, units: int) -> float:
    """The one formula every prediction uses, in plain floats: a search evaluates it 10^5 times a second."""
    intercept, scale, per_unit = coefficients(correction)
    return intercept + scale * raw_ms + per_unit * units
