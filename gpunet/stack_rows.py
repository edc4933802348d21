"""Which rows each model of a stack (gpunet/stack.py) trains on, epoch by epoch, in scikit-learn's order.

Two plans with one interface (epoch, select, n):
- SharedRows: every model has the same rows and one random_state, so one shuffle and one batch serve all.
- ModelRows: each model has its own rows (a fold of a search), its own random_state (its own shuffles) and
  its own sample weights. All models' rows live in one row-major array (their data sets concatenated, each
  once, with a column of ones for the bias); batch j of model k is its rows [j b_k, (j + 1) b_k) of its own
  order. Where models' batches differ in size (folds one row apart, the last batch), the shorter are padded
  with a weight of 0, so that a padding row adds nothing; each model's gradient is over its own rows' weight
  sum. The models of one plan take the same number of batches per epoch (fit_stack groups them so).
"""

from dataclasses import dataclass

import numpy as np


class SharedRows:
    """One X, one row order: the plan of candidates that share their rows and random_state."""

    def __init__(self, backend, x_rows, y_t, rs, shuffle, batch_size, k):
        """x_rows: the inputs as sklearn_loop.batch_rows gives them; y_t (d_out, N) the targets."""
        self.backend, self.x_rows, self.y_t, self.rs = backend, x_rows, y_t, rs
        self.shuffle, self.batch_size = shuffle, batch_size
        self.idx, self.order = np.arange(y_t.shape[1]), backend.xp.arange(y_t.shape[1])
        self.n = np.full(k, y_t.shape[1])  # training rows per model

    def epoch(self, stack, opt):
        """One epoch of every model of `stack`, stepped by `opt`; each model's loss (K,) on the host."""
        if self.shuffle:
            perm = np.arange(self.idx.shape[0])
            self.rs.shuffle(perm)  # as sklearn_loop.fit_stochastic draws it
            self.idx = self.idx[perm]
            self.order = self.backend.asarray(self.idx)
        return stack.epoch(self.x_rows, self.y_t, self.order, self.batch_size, opt)

    def select(self, rows):
        self.n = self.n[rows]
        return self


@dataclass
class Batch:
    """One step's rows for K models, on the backend: rows (K, n) into the plan's row array; weight (K, 1, n) of
    each row in the loss (its sample weight, 0 for padding); scale (K, 1, n) = weight times the output error's
    factor over the model's weight sum; inv (K, 1) 1 / weight sum. ratio (K,) host: rows over weight sum."""

    rows: object
    weight: object
    scale: object
    inv: object
    ratio: np.ndarray


class ModelRows:
    """Each model's own rows, row order and sample weights.

    Args:
        backend, dtype: where the batches' tables go, and their dtype.
        xr, yr: (M, d_in + 1) inputs with a last column of ones, (M, d_out) targets, on the backend: the
            models' data sets one after another.
        sw: (M,) host sample weights, or None.
        spans: per data set (first row in xr, rows).
        data: (K,) the data set of each model.
        streams: per distinct (random_state, data set) of these models its RandomState, after the weights were
            drawn.
        stream: (K,) each model's stream (an index into streams).
        batch: (K,) each model's batch size.
        shuffle: whether each epoch shuffles (scikit-learn's shuffle).
        factor: the output error's factor (the gradient of the loss sum over the error).
    """

    def __init__(self, backend, dtype, xr, yr, sw, spans, data, streams, stream, batch, shuffle, factor):
        self.backend, self.dtype, self.xr, self.yr, self.sw = backend, dtype, xr, yr, sw
        self.spans, self.data, self.streams, self.stream = spans, np.asarray(data), streams, np.asarray(stream)
        self.batch, self.shuffle, self.factor = np.asarray(batch), shuffle, factor
        self.n = np.array([spans[d][1] for d in self.data])
        self.idx = [None] * len(streams)  # each stream's row order of its data set, as fit_stochastic keeps idx
        for d, s in zip(self.data, self.stream):
            self.idx[s] = np.arange(spans[d][1])
        self.batches = -(-self.n // self.batch)
        self._fixed = None  # the batches of the epoch, while they stay the same
        if len(set(self.batches.tolist())) != 1:
            raise ValueError("the models of a ModelRows plan take the same number of batches per epoch")

    def select(self, rows):
        """This plan for the models at `rows` only (their streams go on as they were)."""
        new = object.__new__(ModelRows)
        new.__dict__.update(self.__dict__)
        for name in ("data", "stream", "batch", "n", "batches"):
            setattr(new, name, getattr(self, name)[rows])
        new._fixed = None
        return new

    def epoch(self, stack, opt):
        """One epoch of every model of `stack`, stepped by `opt`; each model's loss (K,) on the host."""
        if self.shuffle:
            for s, rs in enumerate(self.streams):
                perm = np.arange(self.idx[s].shape[0])
                rs.shuffle(perm)  # as sklearn_loop.fit_stochastic draws it, per stream
                self.idx[s] = self.idx[s][perm]
            self._fixed = None
        if self._fixed is None:  # without shuffles every epoch takes the same batches
            self._fixed = list(self._batches())
        return stack.epoch_own(self.xr, self.yr, self._fixed, opt, self.n)

    def _orders(self):
        """(K, max rows) each model's rows of xr in this epoch's order (past its own rows: its first row)."""
        first = np.array([self.spans[d][0] for d in self.data])
        width = max(idx.shape[0] for idx in self.idx if idx is not None)  # a stream of a model selected out too
        padded = np.zeros((len(self.idx), width), np.int64)  # each stream's order, 0 past its rows
        for s, idx in enumerate(self.idx):
            if idx is not None:
                padded[s, : idx.shape[0]] = idx
        inside = np.arange(width)[None, :] < self.n[:, None]
        return (first[:, None] + np.where(inside, padded[self.stream], 0))[:, : self.n.max()]

    def _batches(self):
        orders = self._orders()
        cols = np.arange(orders.shape[1])
        to = self.backend.asarray
        for j in range(int(self.batches[0])):
            start = j * self.batch
            size = np.minimum(self.batch, self.n - start)  # rows of each model in this batch
            width = int(size.max())
            at = start[:, None] + cols[None, :width]
            valid = cols[None, :width] < size[:, None]
            rows = np.where(valid, np.take_along_axis(orders, np.minimum(at, orders.shape[1] - 1), axis=1),
                            orders[:, :1])
            weight = valid * (1.0 if self.sw is None else self.sw[rows])
            total = weight.sum(axis=1)
            yield Batch(rows=to(rows), weight=to(weight[:, None, :], self.dtype),
                        scale=to((weight * (self.factor / total)[:, None])[:, None, :], self.dtype),
                        inv=to((1.0 / total)[:, None], self.dtype), ratio=size / total)
