"""Latency-constrained search: predictors for latency (tables) and accuracy (supernet), and evolution."""
