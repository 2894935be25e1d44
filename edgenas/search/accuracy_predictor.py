"""Accuracy predicted from the architecture encoding, so the search need not evaluate every candidate.

Gradient-boosted trees (xgboost, already a dependency of TVM's MetaSchedule) over a one-hot encoding,
trained on sub-networks the supernet has evaluated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.stats import kendalltau

from edgenas.errors import BadInput, one_line
from edgenas.jsonio import atomic_write_bytes
from edgenas.space import Arch, SearchSpace


def arch_features(space: SearchSpace, archs: Sequence[Arch]) -> np.ndarray:
    """One-hot resolution, and per stage width and depth; per block slot kernel and expand (zeros when inactive)."""
    res_idx = {r: i for i, r in enumerate(space.resolutions)}
    k_idx = {k: i for i, k in enumerate(space.kernel_sizes)}
    e_idx = {e: i for i, e in enumerate(space.expand_ratios)}
    offsets, n = [], len(space.resolutions)
    for stage in space.stages:
        w_off = n
        d_off = w_off + len(stage.widths)
        slot_off = d_off + len(stage.depths)
        offsets.append((w_off, d_off, slot_off, {w: i for i, w in enumerate(stage.widths)},
                        {d: i for i, d in enumerate(stage.depths)}))
        n = slot_off + max(stage.depths) * (len(k_idx) + len(e_idx))
    out = np.zeros((len(archs), n), np.float32)
    per_slot = len(k_idx) + len(e_idx)
    for row, arch in enumerate(archs):
        out[row, res_idx[arch.resolution]] = 1
        for (w_off, d_off, slot_off, w_idx, d_idx), w, blocks in zip(offsets, arch.widths, arch.blocks):
            out[row, w_off + w_idx[w]] = 1
            out[row, d_off + d_idx[len(blocks)]] = 1
            for j, (k, e) in enumerate(blocks):
                base = slot_off + j * per_slot
                out[row, base + k_idx[k]] = 1
                out[row, base + len(k_idx) + e_idx[e]] = 1
    return out


class AccuracyPredictor:
    def __init__(self, space: SearchSpace, model=None):
        self.space, self.model = space, model

    def fit(self, archs: Sequence[Arch], accuracies: Sequence[float], seed: int = 0) -> "AccuracyPredictor":
        import xgboost as xgb

        self.model = xgb.XGBRegressor(n_estimators=300, max_depth=4, learning_rate=0.05, subsample=0.8,
                                      colsample_bytree=0.8, random_state=seed, n_jobs=1)
        self.model.fit(arch_features(self.space, archs), np.asarray(accuracies, np.float32))
        return self

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        return self.model.predict(arch_features(self.space, archs)).astype(float)

    def evaluate(self, archs: Sequence[Arch], accuracies: Sequence[float]) -> dict:
        """RMSE (in accuracy points of 0..1) and Kendall τ on held-out sub-networks."""
        pred, true = self(archs), np.asarray(accuracies, float)
        return {"n": len(true), "rmse": float(np.sqrt(np.mean((pred - true) ** 2))),
                "kendall_tau": float(kendalltau(pred, true).statistic)}

    def save(self, path: Path) -> None:
        atomic_write_bytes(Path(path), bytes(self.model.get_booster().save_raw("json")))

    @classmethod
    def load(cls, space: SearchSpace, path: Path) -> "AccuracyPredictor":
        import xgboost as xgb

        model = xgb.XGBRegressor()
        try:
            model.load_model(str(path))
        except (xgb.core.XGBoostError, json.JSONDecodeError, OSError) as e:
            raise BadInput(f"{path}: not an accuracy predictor ({one_line(e)})") from None
        return cls(space, model)
