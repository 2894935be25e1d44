"""NetAdapt's candidates tried side by side in worker processes, one thread each (a step's candidates are independent:
each is distilled on batches made before any starts, so the result is the one trying them in turn would give)."""

from __future__ import annotations

import io

import torch
from torch import nn

from edgenas.compress.surgery import prune_unit


_worker: dict = {}  # in a candidate worker: the distiller every candidate of a prune shares


def init_candidate_worker(distiller: bytes) -> None:
    torch.set_num_threads(1)
    _worker.update(distiller=from_bytes(distiller))


def try_candidate(net: nn.Module, layer: int, keep: int, batches: list, distiller=None):
    """`net` with `layer` pruned to `keep` mid channels, briefly distilled on `batches`; its held-out accuracy and loss."""
    distiller = distiller or _worker["distiller"]
    cand = prune_unit(net, layer, keep)
    distiller.fit(cand, batches, distiller.optimizer(cand))
    return cand, *distiller.score(cand)


def as_bytes(obj) -> bytes:
    """Networks cross to and from workers as bytes: torch's own pickling of tensors between processes shares them
    through file descriptors, which left the pool waiting forever for its workers to exit."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def from_bytes(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=False)


def try_candidate_in_worker(net: bytes, layer: int, keep: int, batches: bytes) -> bytes:
    return as_bytes(try_candidate(from_bytes(net), layer, keep, from_bytes(batches)))


def candidate_pool(distiller, candidates: int):
    """Worker processes that try candidates side by side, one thread each; None where there is one core or one
    candidate. Candidates are distilled on batches made before they start, so the result is the one trying them in
    turn would give."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = min(os.cpu_count() or 1, candidates)
    if workers < 2:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=init_candidate_worker, initargs=(as_bytes(distiller),))
