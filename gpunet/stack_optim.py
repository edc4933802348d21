"""The stacked optimizers: scikit-learn's SGD and Adam (gpunet/sklearn_loop.py) over K models' (K, P) parameters
(gpunet/stack.py), each model with its own learning rate, momentum, Nesterov's or not, power_t, betas and epsilon
as (K, 1) columns; a stopped model's update is 0. A chunk of models' update is a list of calls on views of the
buffers, run right after the chunk's gradient."""

import math

import numpy as np

from gpunet.calls import Calls
from gpunet.sklearn_loop import SGD, Adam


class _StackOptimizer:
    """What the stacked SGD and Adam share: per-model numbers on the host, their (K, 1) columns on the backend,
    which model is still training (`active`), and the update of a chunk of models as calls made at its first step
    (the Stack runs each chunk's update right after its gradient, while its buffers are in cache)."""

    def __init__(self, backend, params, lr):
        self.backend, self.xp, self.dtype = backend, backend.xp, params.dtype
        self.lr_init = np.asarray(lr, np.float64).copy()
        self.lr = self.lr_init.copy()
        self.active = np.ones(self.lr.shape[0], bool)
        self._calls, self._scratch = {}, {}

    def _column(self, values):
        """(K,) host values as a (K, 1) array of its own on the backend (the CPU's asarray would be a view of them,
        which the columns written per step would write through)."""
        return self.backend.asarray(np.array(values, np.float64)[:, None], self.dtype)

    def begin_step(self, j):
        """Batch j's step begins (its numbers set before the chunks' updates)."""

    def chunk_calls(self, sl, params, grads):
        """The update of the models in slice `sl` of (K, P) params from grads (a stopped model's is 0), as calls."""
        key = (sl.start, sl.stop)
        if key not in self._calls:
            self._calls[key] = Calls(self._update_calls(params[sl], grads[sl], sl))
        return self._calls[key]

    def scratch(self, name, like):
        """A (K, ...) scratch buffer shaped as `like`, made once per optimizer."""
        if name not in self._scratch:
            self._scratch[name] = self.xp.empty_like(like)
        return self._scratch[name]

    def select(self, rows):
        """This optimizer for the models at `rows` (host indices) only, with their state."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._calls, new._scratch = {}, {}
        on_backend = self.backend.asarray(rows)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.ndim == 1:  # a host number per model
                setattr(new, name, value[rows])
        for name in self.STATE:  # (K, ...) or, Adam's [m; v], (2, K, ...) on the backend
            value = getattr(self, name)
            setattr(new, name, value[on_backend] if name != "mv" else value[:, on_backend])
        new._columns()
        return new

    def freeze(self, k):
        """Model k stops: its later updates are 0."""
        self.active[k] = False
        self._set()

    def iteration_ends(self, ks, ts):
        """The models `ks` ended an epoch, having seen ts rows in all."""

    def trigger_stopping(self, k):
        return True

    def epoch_starts(self, batches):
        pass

    def epoch_ends(self):
        pass


class StackSGD(_StackOptimizer):
    """sklearn_loop.SGD over (K, P): v = mu v - lr g; params += v, or with Nesterov, params += mu v - lr g; lr,
    momentum, nesterov and power_t per model, the schedule shared."""

    STATE = ("v",)

    def __init__(self, backend, params, lr, schedule, momentum, nesterov, power_t):
        super().__init__(backend, params, lr)
        self.schedule = schedule
        self.momentum, self.power_t = np.asarray(momentum, np.float64), np.asarray(power_t, np.float64)
        self.nesterov = np.asarray(nesterov, bool)
        self.v = self.xp.zeros_like(params)
        self._columns()

    def _columns(self):
        self._lr, self._mu = self._column(self.lr), self._column(self.momentum)
        self._set()

    def _set(self):
        """The learning rates and momenta as the update reads them: 0 for a stopped model, whose v becomes 0."""
        self._lr[...] = self._column(self.lr * self.active)
        self._mu[...] = self._column(self.momentum * self.active)

    def _update_calls(self, params, grads, sl):
        xp, v, mu, lr = self.xp, self.v[sl], self._mu[sl], self._lr[sl]
        tmp, update = self.scratch("tmp", self.v)[sl], self.scratch("update", self.v)[sl]
        calls = [(xp.multiply, (grads, lr, tmp)), (xp.multiply, (v, mu, v)), (xp.subtract, (v, tmp, v))]
        if not self.nesterov.any():
            return calls + [(xp.add, (params, v, params))]
        calls += [(xp.multiply, (v, mu, update)), (xp.subtract, (update, tmp, update))]
        if not self.nesterov.all():  # update = nesterov ? mu v - lr g : v, exactly (x 1 + 0 and 0 + x 1)
            nesterov = self._column(self.nesterov[sl])
            calls += [(xp.multiply, (update, nesterov, update)), (xp.multiply, (v, 1 - nesterov, tmp)),
                      (xp.add, (update, tmp, update))]
        return calls + [(xp.add, (params, update, params))]

    def iteration_ends(self, ks, ts):
        if self.schedule == "invscaling":  # in Python floats, as scikit-learn computes it
            for k, t in zip(ks, ts):
                self.lr[k] = float(self.lr_init[k]) / (int(t) + 1) ** float(self.power_t[k])

    def trigger_stopping(self, k):
        """Whether model k stops; with the adaptive schedule, divide its rate by 5 instead while it is above 1e-6."""
        if self.schedule != "adaptive" or self.lr[k] <= 1e-6:
            return True
        self.lr[k] /= 5.0
        return False

    def epoch_ends(self):
        if self.schedule != "constant":
            self._set()

    def single(self, k, params):
        """Model k's optimizer as gpunet.sklearn's estimator keeps it (on the host), with `params` its parameters."""
        opt = SGD(params, self.lr_init[k], self.schedule, self.momentum[k], bool(self.nesterov[k]), self.power_t[k])
        opt.lr = float(self.lr[k])
        opt.v = self.backend.to_numpy(self.v[k]).copy()
        return opt


TABLE_STEPS = 256  # Adam's steps whose rates are computed at once


class StackAdam(_StackOptimizer):
    """sklearn_loop.Adam over (K, P): params -= lr_t m / (sqrt(v) + eps), lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); lr,
    beta_1, beta_2 and epsilon per model. Each epoch's lr_t of every step and model is one table moved once. With
    eps_corrected, gpunet.optim.Adam's (Kingma and Ba's): eps_t = eps sqrt(1 - b2^t) in place of eps, a table too."""

    def __init__(self, backend, params, lr, beta_1, beta_2, epsilon, eps_corrected=False):
        super().__init__(backend, params, lr)
        self.beta_1, self.beta_2 = np.asarray(beta_1, np.float64), np.asarray(beta_2, np.float64)
        self.epsilon = np.asarray(epsilon, np.float64)
        self.eps_corrected = eps_corrected
        self.t = 0
        self.mv = self.xp.zeros((2, *params.shape), self.dtype)  # [m; v]
        self._columns()

    STATE = ("mv",)

    def _columns(self):
        self._neg_lr = self._column(-self.lr)  # this step's -lr_t per model
        self._eps = self._column(self.epsilon)  # this step's epsilon per model
        self._table = self._eps_table = self._block = None

    def _set(self):
        self._block = None  # a model stopped: the tables are made again from the next epoch, its rate 0 in them

    def _lr_t(self, t):
        """lr_t of every model at step t (host), as scikit-learn computes it."""
        return self.lr_init * np.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)

    def epoch_starts(self, batches):
        """This epoch's steps' -lr_t (and eps_t) per model: views of tables made for TABLE_STEPS steps at once (a
        table per epoch of one batch was 7% of a small stack's epoch)."""
        first = self.t + 1
        held = self._block is not None and self._block[0] <= first and first + batches <= self._block[0] + len(
            self._block[1])  # this epoch's steps are in the tables made
        if not held:
            self._block = (first, *self._tables(first, max(batches, TABLE_STEPS)))
        at = first - self._block[0]
        self._table = self._block[1][at : at + batches]
        self._eps_table = None if self._block[2] is None else self._block[2][at : at + batches]

    def _tables(self, first, count):
        """(-lr_t, eps_t or None) of steps first, first + 1, ... (count of them) and every model, on the backend."""
        steps = first + np.arange(count)[:, None]
        table = -self._lr_t(steps) * self.active  # 0 for a stopped model: its update is 0
        eps = self.epsilon * np.sqrt(1 - self.beta_2**steps) if self.eps_corrected else None
        return tuple(None if a is None else self.backend.asarray(a[:, :, None], self.dtype) for a in (table, eps))

    def _update_calls(self, params, grads, sl):
        xp, mv = self.xp, self.mv[:, sl]
        m, v = mv
        terms = self.scratch("terms", self.mv)[:, sl]  # [(1 - b1) g; (1 - b2) g^2]
        g1, g2 = terms
        betas = self.backend.asarray(np.stack([self.beta_1[sl], self.beta_2[sl]])[:, :, None], self.dtype)
        one_b1, one_b2 = (self._column(c[sl]) for c in (1 - self.beta_1, 1 - self.beta_2))
        eps = self._eps[sl]
        tmp, update = self.scratch("tmp", self.mv[0])[sl], self.scratch("update", self.mv[0])[sl]
        return [
            (xp.multiply, (grads, one_b1, g1)), (xp.multiply, (grads, grads, g2)), (xp.multiply, (g2, one_b2, g2)),
            (xp.multiply, (mv, betas, mv)),
            (xp.add, (mv, terms, mv)),  # m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2
            (xp.sqrt, (v, tmp)), (xp.add, (tmp, eps, tmp)),
            (xp.multiply, (m, self._neg_lr[sl], update)), (xp.divide, (update, tmp, update)),
            (xp.add, (params, update, params)),
        ]

    def begin_step(self, j):
        self.t += 1
        self._neg_lr[...] = self._table[j]
        if self._eps_table is not None:
            self._eps[...] = self._eps_table[j]

    def single(self, k, params):
        """Model k's optimizer as gpunet.sklearn's estimator keeps it (on the host), with `params` its parameters."""
        opt = Adam(params, self.lr_init[k], self.beta_1[k], self.beta_2[k], self.epsilon[k])
        opt.t = self.t
        opt.lr = opt.lr_init * math.sqrt(1 - opt.beta_2**opt.t) / (1 - opt.beta_1**opt.t)
        opt.mv = self.backend.to_numpy(self.mv[:, k]).copy()
        return opt
