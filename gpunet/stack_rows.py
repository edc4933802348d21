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

import copy
from dataclasses import dataclass

import numpy as np

from gpunet.model import rows_with_ones
from gpunet.sklearn_loop import reshuffled


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
            self.idx = reshuffled(self.rs, self.idx)
            self.order = self.backend.asarray(self.idx)
        return stack.epoch(self.x_rows, self.y_t, self.order, self.batch_size, opt)

    def select(self, rows):
        return selected(self, rows, ("n",))


def selected(obj, rows, names, fresh=()):
    """A shallow copy of a plan (or held-out rows) for the models at `rows`: its per-model arrays `names` taken at
    `rows`, its attributes `fresh` (what was made for all the models) None again."""
    new = copy.copy(obj)
    for name in names:
        setattr(new, name, getattr(obj, name)[rows])
    for name in fresh:
        setattr(new, name, None)
    return new


def held_out_rows(backend, dtype, xs, ys, of):
    """(xr, rows, valid, y) of each model's held-out set: the sets' inputs xs (n_i, d_in) one after another in one
    row-major array xr with ones (model.rows_with_ones; a sparse X made dense); rows (K, width) model k's rows of
    set of[k], padded past them with its own last row (finite where its rows are); valid (K, width) its own rows;
    y (K, width, d_out) float64 its targets of ys, 0 past them."""
    xr, starts = rows_with_ones(backend, xs, dtype)
    sizes = np.diff(starts)
    n, cols = sizes[of], np.arange(sizes.max())
    valid = cols[None, :] < n[:, None]
    rows = starts[of][:, None] + np.minimum(cols[None, :], n[:, None] - 1)
    padded = np.zeros((len(ys), sizes.max(), ys[0].shape[1]))
    for i, y in enumerate(ys):
        padded[i, : len(y)] = y
    return xr, rows, valid, padded[of]


def order_table(first, orders, which, n):
    """(K, max n) each model's rows in this epoch's order: model k's n[k] rows are first[k] + orders[which[k]] (its
    stream's or data set's order of its rows); past them, its first row."""
    width = max(len(o) for o in orders if o is not None)  # an order of a model selected out too
    padded = np.zeros((len(orders), width), np.int64)  # each order, 0 past its rows
    for s, order in enumerate(orders):
        if order is not None:
            padded[s, : len(order)] = order
    inside = np.arange(width)[None, :] < n[:, None]
    return (first[:, None] + np.where(inside, padded[which], 0))[:, : n.max()]


def padded_batches(table, n, batch):
    """Per batch of an epoch, (rows, valid, size): each model's rows (K, width) of batch j, rows [j b_k, (j + 1) b_k)
    of its row of `table` (order_table), padded with its first row; valid (K, width) marks its own rows, size (K,)
    counts them. n (K,) and batch (K,): each model's rows and batch size (one number of batches for all)."""
    cols = np.arange(table.shape[1])
    for j in range(int(-(-n[0] // batch[0]))):
        start = j * batch
        size = np.minimum(batch, n - start)
        width = int(size.max())
        valid = cols[None, :width] < size[:, None]
        at = np.minimum(start[:, None] + cols[None, :width], table.shape[1] - 1)
        yield np.where(valid, np.take_along_axis(table, at, axis=1), table[:, :1]), valid, size


@dataclass
class Batch:
    """One step's rows for K models, on the backend: rows (K, n) into the plan's row array; weight (K, 1, n) of
    each row in the loss (its sample weight, 0 for padding); scale (K, 1, n): the factor of each row's output error
    in the gradient (scikit-learn's: weight over the model's weight sum); inv (K, 1) 1 / weight sum. ratio (K,)
    host: rows over weight sum."""

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
    """

    def __init__(self, backend, dtype, xr, yr, sw, spans, data, streams, stream, batch, shuffle):
        self.backend, self.dtype, self.xr, self.yr, self.sw = backend, dtype, xr, yr, sw
        self.spans, self.data, self.streams, self.stream = spans, np.asarray(data), streams, np.asarray(stream)
        self.batch, self.shuffle = np.asarray(batch), shuffle
        self.n = np.array([spans[d][1] for d in self.data])
        self.idx = [None] * len(streams)  # each stream's row order of its data set, as fit_stochastic keeps idx
        for d, s in zip(self.data, self.stream):
            self.idx[s] = np.arange(spans[d][1])
        self.batches = -(-self.n // self.batch)
        self._fixed = None  # the batches of the epoch, while they stay the same
        self._parts = None  # per batch, what depends on its sizes and weights only (without sample weights)
        if len(set(self.batches.tolist())) != 1:
            raise ValueError("the models of a ModelRows plan take the same number of batches per epoch")

    def select(self, rows):
        """This plan for the models at `rows` only (their streams go on as they were)."""
        return selected(self, rows, ("data", "stream", "batch", "n", "batches"), ("_fixed", "_parts"))

    def epoch(self, stack, opt):
        """One epoch of every model of `stack`, stepped by `opt`; each model's loss (K,) on the host."""
        if self.shuffle:
            for s, rs in enumerate(self.streams):
                self.idx[s] = reshuffled(rs, self.idx[s])
            self._fixed = None
        if self._fixed is None:  # without shuffles every epoch takes the same batches
            self._fixed = list(self._batches())
        return stack.epoch_own(self.xr, self.yr, self._fixed, opt, self.n)

    def _batches(self):
        first = np.array([self.spans[d][0] for d in self.data])
        to, self._parts = self.backend.asarray, self._parts or {}
        table = order_table(first, self.idx, self.stream, self.n)
        for j, (rows, valid, size) in enumerate(padded_batches(table, self.n, self.batch)):
            if self.sw is not None or j not in self._parts:  # without sample weights, the same every epoch
                weight = valid * (1.0 if self.sw is None else self.sw[rows])
                total = weight.sum(axis=1)
                self._parts[j] = dict(weight=to(weight[:, None, :], self.dtype),
                                      scale=to((weight / total[:, None])[:, None, :], self.dtype),
                                      inv=to((1.0 / total)[:, None], self.dtype), ratio=size / total)
            yield Batch(rows=to(rows), **self._parts[j])
