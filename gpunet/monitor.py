"""What training reports at its log points, and early stopping: the only places where numbers reach the host."""

import math
from dataclasses import dataclass

from gpunet.comm import Single
from gpunet.errors import Diverged
from gpunet.losses import loss_factor


@dataclass
class LogPoint:
    """The figures of one log point; val_* are None without validation rows, accuracies None unless ce."""

    epoch: int
    loss: float
    val_loss: float | None = None
    accuracy: float | None = None
    val_accuracy: float | None = None


class Monitor:
    """Buffers that hold an epoch's loss (and, for ce, its correct counts) per batch on the device, and the
    validation pass; read on the host only at log points, where the ranks' sums are added up.

    Args:
        net: the Network trained.
        config: the run's Config (loss, weight decay).
        n_batches, n: the batches per epoch and the training rows (of all ranks).
        val: this rank's validation rows' Workspace, or None.
        comm: the communicator (gpunet.comm).
        n_val: the validation rows of all ranks.
    """

    def __init__(self, net, config, n_batches, n, val=None, comm=None, n_val=None):
        xp, dt = net.xp, net.dtype
        self.net, self.backend, self.val, self.comm = net, net.backend, val, comm or Single()
        self.classify, self.decay = config.loss == "ce", config.weight_decay
        self.k = loss_factor(config.loss, n, config.d_out)
        self.k_val = loss_factor(config.loss, n_val, config.d_out) if n_val else None
        self.n, self.n_val = n, n_val
        self.loss_sums = xp.zeros((n_batches, 1), dt)
        self.hits = xp.zeros((n_batches, 1), dt) if self.classify else None
        self._val_sum, self._val_hits = xp.zeros((1, 1), dt), xp.zeros((1, 1), dt)
        self._penalty = 0.0

    def _penalty_now(self):
        """decay / 2 * sum(w^2) at the current parameters, a 0-d array on the device (0.0 without decay)."""
        return self.decay / 2 * self.net.sum_squared_weights() if self.decay else 0.0

    def begin_epoch(self):
        """At a log epoch, before its first update: the weight penalty of the parameters its loss is taken at."""
        self._penalty = self._penalty_now()  # stays on the device until the epoch's loss is read

    def out(self, j):
        """Where batch j's loss sum goes."""
        return self.loss_sums[j : j + 1]

    def count(self, ws, j):
        """After batch j's forward pass (ce only): its correct rows."""
        if self.classify:
            ws.correct(self.hits[j : j + 1])

    def _sums(self, *buffers):
        """The sums of device buffers (None: 0), added up over the ranks, on the host."""
        local = [0.0 if b is None else float(self.backend.to_numpy(b).sum()) for b in buffers]
        return self.comm.sum(local) if self.comm.size > 1 else local

    def epoch(self, t, history):
        """The epoch's (loss, accuracy or None) on the host (the sync point), the loss checked to be finite."""
        total, hits = self._sums(self.loss_sums, self.hits)
        loss = self.k * total + float(self._penalty)
        if not math.isfinite(loss):
            raise Diverged(t, loss, [(p.epoch, p.loss) for p in history])
        return loss, (hits / self.n if self.classify else None)

    def validation(self):
        """(loss, accuracy or None) on the validation rows at the current parameters."""
        ws = self.val
        if ws is not None:  # a rank may hold no validation rows
            ws.forward()
            ws.error(self._val_sum)
            if self.classify:
                ws.correct(self._val_hits)
        total, hits = self._sums(*((self._val_sum, self._val_hits) if ws is not None else (None, None)))
        return self.k_val * total + float(self._penalty_now()), (hits / self.n_val if self.classify else None)

    def point(self, t, loss, accuracy):
        """The LogPoint of epoch t, with the validation figures where there are validation rows."""
        val_loss, val_acc = self.validation() if self.n_val else (None, None)
        return LogPoint(t, loss, val_loss, accuracy, val_acc)


class EarlyStopping:
    """Stop when the validation loss has not improved for `patience` log points; keep the best parameters.

    The best parameters are copied on the device, at log points only.
    """

    def __init__(self, net, patience):
        self.net, self.patience = net, patience
        self.best = net.xp.empty_like(net.params)
        # the kept log point's epoch, training loss and validation loss, as the Result names them
        self.best_epoch = self.best_loss = self.best_val_loss = None
        self.waited = 0

    def update(self, point):
        """Record a log point; return True when training should stop."""
        if self.best_val_loss is None or point.val_loss < self.best_val_loss:
            self.best_epoch, self.best_loss, self.best_val_loss, self.waited = point.epoch, point.loss, point.val_loss, 0
            self.best[...] = self.net.params
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self):
        """Put the best parameters back into the network (when a log point has been seen)."""
        if self.best_epoch is not None:
            self.net.params[...] = self.best
