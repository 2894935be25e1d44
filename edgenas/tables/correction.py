"""A small correction from the sum of blocks to end-to-end latency.

Standalone blocks each pay the runtime's per-call overhead, and the whole network adds what no block
holds (graph set-up, fusion across blocks); a linear fit on the sum and the number of units captures both.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("intercept_ms", "raw_sum", "per_unit_ms")


def _design(raw_ms, units) -> np.ndarray:
    raw_ms, units = np.asarray(raw_ms, float), np.asarray(units, float)
    return np.stack([np.ones_like(raw_ms), raw_ms, units], axis=1)


def fit_correction(raw_ms, units, measured_ms, proportional: bool = False) -> dict:
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
    return {"model": model, "features": list(FEATURES), "coef": [float(c) for c in coef], "fit_samples": int(len(y))}


def coefficients(correction: dict | None) -> tuple[float, float, float]:
    """(intercept, scale, per unit); a table not validated yet predicts the plain sum."""
    return tuple(correction["coef"]) if correction else (0.0, 1.0, 0.0)


def apply_correction(correction: dict | None, raw_ms: float, units: int) -> float:
    """The one formula every prediction uses, in plain floats: a search evaluates it 10^5 times a second."""
    intercept, scale, per_unit = coefficients(correction)
    return intercept + scale * raw_ms + per_unit * units
