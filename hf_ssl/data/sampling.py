"""A deterministic, resumable, rank-aware stream of unlabeled batches."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["UnlabeledBatchSampler"]


class UnlabeledBatchSampler(Sampler[list[int]]):
    """Endless batches of row indices over an unlabeled pool.

    Position ``p`` of the global stream is row ``perm_e[p % n]`` with ``e = p // n`` and ``perm_e`` a
    permutation seeded by ``(seed, e)``; global batch ``b`` covers positions ``[b·G, (b+1)·G)`` with
    ``G = batch_size · num_replicas``, and rank ``r`` takes its ``r``-th slice. The stream is therefore
    the same on every rank, needs no communication, and resumes exactly from a batch counter.

    Args:
        num_rows: size of the pool.
        batch_size: per-process batch size.
        seed: base seed of the permutations.
        num_replicas: number of processes.
        rank: this process's index.
        start_batch: number of batches already consumed (for resume).
    """

    def __init__(self, num_rows: int, batch_size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 start_batch: int = 0):
        if num_rows <= 0:
            raise ValueError("UnlabeledBatchSampler needs a non-empty pool")
        self.num_rows, self.batch_size, self.seed = num_rows, batch_size, seed
        self.num_replicas, self.rank, self.start_batch = num_replicas, rank, start_batch
        self._cache: tuple[int, np.ndarray] | None = None

    def _perm(self, epoch: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_rows))
        return self._cache[1]

    def batch(self, b: int) -> list[int]:
        """Indices of this rank's part of global batch ``b``."""
        width = self.batch_size * self.num_replicas
        start = b * width + self.rank * self.batch_size
        positions = range(start, start + self.batch_size)
        return [int(self._perm(p // self.num_rows)[p % self.num_rows]) for p in positions]

    def __iter__(self) -> Iterator[list[int]]:
        b = self.start_batch
        while True:
            yield self.batch(b)
            b += 1
