"""Which rows each model of a stack trains and is validated on under gpunet train's rules (gpunet/stack_train.py).

Two plans with one interface (epoch, select, n):
- SharedPlan: every model has the same data and seed (a search's candidates on one fold), so one permutation and
  one batch serve all; each epoch's permutation is train()'s, default_rng([seed, 2]).permutation(n), none with the
  whole batch.
- OwnPlan: each model has its data set (a fold and seed of a search) and batch size; all data sets' rows live in
  one row-major array with a column of ones. Each data set draws its permutation as train() does with its own
  seed; a model's batch j is rows [j b, (j + 1) b) of its data set's order, the shorter padded with weight-0 rows,
  its output error scaled by its own rows' loss factor. The models of one plan take the same number of batches.

And the validation losses of both kinds, as Monitor.validation takes them: k S + decay / 2 sum(w^2), in float64 on
the host from the stacked logits.
"""

import numpy as np

from gpunet.batches import shuffles
from gpunet.losses import loss_factor
from gpunet.model import rows_with_ones
from gpunet.stack import StackWorkspace
from gpunet.stack_rows import Batch, held_out_rows, order_table, padded_batches, selected


class SharedPlan:
    """One data set and seed for all the models."""

    def __init__(self, backend, dtype, data, batch, seed, k):
        self.backend = backend
        n = len(data.x)
        self.batch = min(batch or n, n)
        self.x_rows = rows_with_ones(backend, [data.x], dtype)[0]
        self.y_t = backend.asarray(data.y.T, dtype)
        self.order = backend.xp.arange(n)
        self.shuffle = None if self.batch == n else shuffles(seed)
        self.n = np.full(k, n)  # training rows per model

    def epoch(self, stack, opt):
        order = self.order if self.shuffle is None else self.backend.asarray(self.shuffle.permutation(self.n[0]))
        stack.steps(self.x_rows, self.y_t, order, self.batch, opt)

    def select(self, rows):
        return selected(self, rows, ("n",))


class OwnPlan:
    """Each model's data set (sets[of[k]], Datasets of one dtype), batch size and seed (seeds per data set)."""

    def __init__(self, backend, dtype, sets, of, batch, seeds):
        self.backend, self.dtype = backend, dtype
        self.xr, starts = rows_with_ones(backend, [d.x for d in sets], dtype)
        self.yr = backend.asarray(np.concatenate([d.y for d in sets]), dtype)
        sizes = np.array([len(d.x) for d in sets])
        self.of, self.first = np.asarray(of), starts[:-1]
        self.n = sizes[self.of]
        self.batch = np.minimum(np.asarray(batch), self.n)
        # each data set's permutation stream, as train() draws it: none where its models take the whole batch
        self.shuffles = [None if (self.batch[self.of == d] == sizes[d]).all() else shuffles(s)
                         for d, s in enumerate(seeds)]
        self.sizes = sizes
        if len(set((-(-self.n // self.batch)).tolist())) != 1:
            raise ValueError("the models of an OwnPlan take the same number of batches per epoch")
        self._fixed = self._parts = None

    def select(self, rows):
        return selected(self, rows, ("of", "n", "batch"), ("_fixed", "_parts"))

    def epoch(self, stack, opt):
        if self._fixed is None or any(s is not None for s in self.shuffles):
            orders = [np.arange(m) if s is None else s.permutation(m) for s, m in zip(self.shuffles, self.sizes)]
            self._fixed = list(self._batches(stack, orders))
        stack.steps_own(self.xr, self.yr, self._fixed, opt)

    def _batches(self, stack, orders):
        """This epoch's stack_rows.Batch list from each data set's order; each model's error scaled by its own rows'
        factor (Stack.error_scale)."""
        to, self._parts = self.backend.asarray, self._parts or {}
        table = order_table(self.first[self.of], orders, self.of, self.n)
        for j, (rows, valid, size) in enumerate(padded_batches(table, self.n, self.batch)):
            if j not in self._parts:  # what depends on the batches' sizes only, the same every epoch: moved once
                scale = np.array([stack.error_scale(m) for m in size])
                weight = valid.astype(np.float64)
                self._parts[j] = dict(weight=to(weight[:, None, :], self.dtype),
                                      scale=to((weight * scale[:, None])[:, None, :], self.dtype),
                                      inv=to(np.ones((len(self.of), 1)), self.dtype), ratio=np.ones(len(self.of)))
            yield Batch(rows=to(rows), **self._parts[j])


class SharedValidation:
    """The validation rows of one data set, in a workspace of their own, shared by the models."""

    def __init__(self, backend, loss, data, dtype):
        self.backend, self.loss = backend, loss
        self.x_rows = rows_with_ones(backend, [data.x_val], dtype)[0]
        self.y = data.y_val.T.astype(np.float64)  # (d_out, n_val)
        self.k_val = loss_factor(loss, len(data.x_val), data.y.shape[1])
        self.ws = None

    def select(self, rows):
        return self

    def losses(self, stack):
        """(K,) each model's validation loss at its current parameters."""
        if self.ws is None or self.ws.stack is not stack:
            self.ws = StackWorkspace(stack, self.x_rows.shape[0])
            self.ws.x_rows[...] = self.x_rows
        for part in self.ws.parts:
            part.forward()
        z = self.backend.to_numpy(self.ws.z[-1]).astype(np.float64)  # (K, d_out, n_val)
        return self.k_val * _loss_sums(self.loss, z, self.y[None]) + stack.alpha / 2 * stack.sum_squared_weights()


class OwnValidation:
    """Each model's validation rows (its data set's), padded to the longest with rows that count for nothing."""

    def __init__(self, backend, loss, sets, of, dtype):
        self.backend, self.loss, self.of = backend, loss, np.asarray(of)
        self.xr, self.rows, self.valid, y = held_out_rows(backend, dtype, [d.x_val for d in sets],
                                                          [d.y_val for d in sets], self.of)
        self.y = y.transpose(0, 2, 1)  # (K, d_out, width), zeros past a model's rows
        self.k_val = np.array([loss_factor(loss, m, sets[0].y.shape[1]) for m in self.valid.sum(axis=1)])

    def select(self, rows):
        return selected(self, rows, ("of", "valid", "rows", "y", "k_val"))

    def losses(self, stack):
        z = self.backend.to_numpy(stack.logits(self.xr, self.rows)).astype(np.float64)
        z = np.where(self.valid[:, None, :], z, 0.0)  # padding rows: logits 0 and no target, so they add nothing
        return self.k_val * _loss_sums(self.loss, z, self.y, self.valid) + stack.alpha / 2 * stack.sum_squared_weights()


def _loss_sums(loss, z, y, valid=None):
    """(K,) S of each model from its logits z (K, d_out, n) and targets y (K or 1, d_out, n), rows where `valid`
    (K, n) only: ce's -log p[label] = log sum exp(z) - z[label] from shifted logits (as one model's loss takes it:
    no cancellation of large logits), for rows with a label; else the sum of squares."""
    if loss == "ce":
        z = z - z.max(axis=1, keepdims=True)
        known = y.sum(axis=1)  # 1 for a row with a label (a padding row has none)
        return (np.log(np.exp(z).sum(axis=1)) * known).sum(axis=1) - (z * y).sum(axis=(1, 2))
    r = z - y
    if valid is not None:
        r *= valid[:, None, :]
    return np.einsum("kij,kij->k", r, r)
