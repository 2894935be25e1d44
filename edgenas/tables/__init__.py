"""Latency lookup tables: their schema, how they are measured (profile) and checked (validate)."""
