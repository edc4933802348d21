"""Which rows each mini-batch step takes, on one process or on each rank of a data-parallel run.

Every process draws the same permutation of all ranks' training rows from the seed, so the global
batches are the same whatever the number of ranks. A rank holds the contiguous rows [first, first + m)
and takes, of each global batch, the rows that live in its share. Their number varies from batch to
batch, so a rank gathers its own rows first, then padding up to a multiple of BUCKET rows (at most the
batch's): a padding row of zeros (one column after its data) whose output error is multiplied by a weight
of 0, so it adds nothing to the loss, the gradient or the accuracy. Each rank so computes about its share
of a batch, with a few workspace sizes, each allocated once.
"""

import numpy as np

BUCKET = 16  # a rank's rows of a batch are padded up to a multiple of this many


def shuffles(seed):
    """The stream of a run's epoch permutations (permutation(n) per epoch) drawn from its seed: the same on every
    backend and rank, and for a run trained alone or in a stack (gpunet/stack_train_rows.py)."""
    return np.random.default_rng([seed, 2])


class RowPlan:
    """The rows of an epoch's batches for this process.

    Args:
        n: training rows over all ranks.
        batch: rows per global batch.
        first, m: this rank's rows are [first, first + m) of the n.
        padded: several ranks (a padding column and row weights); False on one process.
    """

    def __init__(self, n, batch, first, m, padded):
        self.n, self.batch, self.first, self.m, self.padded = n, batch, first, m, padded

    def place(self, backend, a, dtype):
        """Rows `a` (m, features) on the device, feature-major, with the padding column of zeros when padded."""
        if not self.padded:
            return backend.asarray(a.T, dtype)
        out = backend.xp.zeros((a.shape[1], self.m + 1), dtype)
        out[:, : self.m] = backend.asarray(a.T, dtype)
        return out

    def epoch(self, backend, shuffle, dtype):
        """(rows, weights or None, spans or None) on the device for the next epoch. One process: batch j
        takes rows [j * batch, ...). Several ranks: batch j takes rows[a : a + size] and their weights for
        (a, size) = spans[j], this rank's rows of the batch and then padding, size a multiple of BUCKET."""
        perm = shuffle.permutation(self.n)
        if not self.padded:
            return backend.asarray(perm), None, None
        owned = (perm >= self.first) & (perm < self.first + self.m)
        # within each batch, this rank's rows first (in the permutation's order), then the padding
        order = np.lexsort((~owned, np.arange(self.n) // self.batch))
        starts = np.arange(0, self.n, self.batch)
        mine = np.add.reduceat(owned.astype(np.int64), starts)
        sizes = np.minimum(np.minimum(self.batch, self.n - starts), np.maximum(1, -(-mine // BUCKET)) * BUCKET)
        keep = np.arange(self.n) % self.batch < np.repeat(sizes, self.batch)[: self.n]
        rows, weights = self._placed(backend, np.where(owned, perm - self.first, self.m)[order][keep],
                                     owned[order][keep], dtype)
        return rows, weights, list(zip((np.cumsum(sizes) - sizes).tolist(), sizes.tolist()))

    def in_order(self, backend, i, size, dtype):
        """(rows, weights or None) on the device for rows [i, i + size) in their own order (a pass without updates)."""
        if not self.padded:
            return backend.asarray(np.arange(i, i + size)), None
        local = np.arange(i, i + size) - self.first
        owned = (local >= 0) & (local < self.m)
        return self._placed(backend, np.where(owned, local, self.m), owned, dtype)

    @staticmethod
    def _placed(backend, rows, owned, dtype):
        return backend.asarray(rows), backend.asarray(owned, dtype)
