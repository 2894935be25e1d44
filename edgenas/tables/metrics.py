"""How well predicted latencies match measured ones."""

from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau


def prediction_metrics(predicted, measured) -> dict:
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = (p - m) / m
    tau = kendalltau(p, m).statistic if len(m) > 1 else float("nan")
    return {
        "n": int(len(m)),
        "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))),
        "rmspe": float(np.sqrt(np.mean(rel**2))),
        "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
        "kendall_tau": float(tau),
        "mean_bias_pct": float(np.mean(rel) * 100),
        # how far the measured latency runs over the prediction in 95% of networks: the search's guard band
        "overrun_p95_pct": float(np.percentile((m - p) / p, 95) * 100),
    }
