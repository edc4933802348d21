"""Losses at the output layer: each writes the output error dL/dz and, at log points, the loss itself,
written once against `xp` on a workspace's feature-major buffers (z and y of shape (d_out, n)).

A loss is k * S, where S sums over the batch and k = loss_factor(...) averages it (or not). `error(out)`
leaves dS/dz / factor in g[-1] (the backward pass multiplies by factor * k * lr) and, when `out` (a
(1, 1) buffer) is given, S in `out`: nothing reaches the host here.
"""

import numpy as np

from gpunet.calls import Calls
from gpunet.errors import ConfigError

LOSSES = ("sse", "mse", "ce")


def loss_factor(loss, n, d_out):
    """k in loss = k * S: 1 for `sse`, 1 / (n * d_out) for `mse`, 1 / n for `ce` (the mean over rows)."""
    if loss not in LOSSES:
        raise ConfigError(f"unknown --loss {loss!r}: choose one of {', '.join(LOSSES)}")
    return {"sse": 1.0, "mse": 1.0 / (n * d_out), "ce": 1.0 / n}[loss]


class _ListedError:
    """A loss whose output error (without the loss itself) is a list of calls, `calls`, listed again when
    `weight` (per row, 0 for padding rows: it multiplies the output error) is set."""

    _weight = None

    @property
    def weight(self):
        return self._weight

    @weight.setter
    def weight(self, w):
        self._weight = w
        scaled = [] if w is None else [(self.xp.multiply, (self.g, w, self.g))]
        self.calls = Calls(self._error_calls() + scaled)


class SquaredError(_ListedError):
    """sse and mse: a linear output, S = sum (y_pred - y)^2, dS/dz = 2 (y_pred - y)."""

    factor = 2

    def __init__(self, ws):
        self.xp, self.z, self.y, self.g = ws.xp, ws.z[-1], ws.y, ws.g[-1]
        # the residual as a row and a column: their product is the sum of squares
        self._row, self._col = self.g.reshape(1, -1), self.g.reshape(-1, 1)
        self._sum_of_squares = self._row.dot
        self.weight = None

    def _error_calls(self):
        return [(self.xp.subtract, (self.z, self.y, self.g))]

    def error(self, out=None):
        self.calls()
        if out is not None:
            self._sum_of_squares(self._col, out)


class SoftmaxCrossEntropy(_ListedError):
    """ce: softmax over the d_out classes, S = -sum log p[label], dS/dz = p - onehot.

    y holds one-hot rows; a row of zeros (a label the model does not know) adds nothing to S or its
    gradient, and never counts as correct.
    """

    factor = 1

    def __init__(self, ws):
        xp, n, dt = ws.xp, ws.n, ws.net.dtype
        self.xp, self.z, self.y, self.g = xp, ws.z[-1], ws.y, ws.g[-1]
        self.top = xp.empty(n, dt)  # each row's largest logit
        self.total = xp.empty(n, dt)  # each row's sum of exponentials
        self._cols = None  # column indices, made at the first accuracy count
        self.weight = None

    def _error_calls(self):
        xp, z, g = self.xp, self.z, self.g
        return [
            (xp.max, (z, 0, self.top)),  # over axis 0, into top
            (xp.subtract, (z, self.top, z)),  # shifted: the largest logit of each row is 0, exp cannot overflow
            (xp.exp, (z, g)),
            (xp.sum, (g, 0, None, self.total)),  # over axis 0, dtype None, into total
            (xp.divide, (g, self.total, g)),  # p
            (xp.subtract, (g, self.y, g)),
        ]

    def error(self, out=None):
        self.calls()
        if out is not None:
            # -log p[label] = log sum exp(z) - z[label] (z shifted), for the rows with a known label
            known = self.y.sum(axis=0)
            out[...] = self.xp.dot(known, self.xp.log(self.total)) - self.xp.vdot(self.y, self.z)

    def correct(self, out):
        """The number of rows whose largest logit is their label's, into `out` (a (1, 1) buffer)."""
        xp = self.xp
        if self._cols is None:
            self._cols = xp.arange(self.z.shape[1])
        out[...] = self.y[xp.argmax(self.z, axis=0), self._cols].sum()


class ClippedLogLoss(SoftmaxCrossEntropy):
    """log (the scikit-learn API's): ce whose S clips p to [eps, 1 - eps] (eps of the dtype) as scikit-learn's
    log loss does, so that each row adds at most -log(eps); the gradient p - onehot is not clipped."""

    def __init__(self, ws):
        super().__init__(ws)
        eps = float(np.finfo(ws.net.dtype).eps)
        self.low, self.high = -np.log1p(-eps), -np.log(eps)  # -log(1 - eps) <= -log p <= -log(eps)

    def error(self, out=None):
        self.calls()
        if out is not None:
            xp = self.xp
            known = self.y.sum(axis=0)
            rows = xp.log(self.total) - (self.y * self.z).sum(axis=0)  # -log p[label] (z shifted)
            out[...] = xp.dot(known, xp.clip(rows, self.low, self.high))


class LogisticCrossEntropy:
    """bce (the scikit-learn API's, not the command line's): a sigmoid per output,
    S = -sum [y log p + (1 - y) log(1 - p)], dS/dz = p - y.

    One independent yes/no per output (binary and multi-label classification). As scikit-learn's
    binary log loss, S clips p to [eps, 1 - eps] (eps of the dtype) before the logs; the gradient is not clipped.
    """

    factor = 1

    def __init__(self, ws):
        self.xp, self.z, self.y, self.g = ws.xp, ws.z[-1], ws.y, ws.g[-1]
        self.eps = float(np.finfo(ws.net.dtype).eps)

    def error(self, out=None):
        xp, g = self.xp, self.g
        xp.negative(self.z, out=g)
        xp.exp(g, out=g)
        xp.add(g, 1, out=g)
        xp.reciprocal(g, out=g)  # p = 1 / (1 + exp(-z))
        if out is not None:
            out[...] = binary_log_loss_terms(xp, self.y, g, self.eps).sum()
        xp.subtract(g, self.y, out=g)


class PoissonDeviance:
    """poisson (the scikit-learn API's): an exponential output p = exp(z), S = sum [y log(y / p) - y + p]
    (half the Poisson deviance, 0 log 0 = 0), dS/dz = p - y."""

    factor = 1

    def __init__(self, ws):
        self.xp, self.z, self.y, self.g = ws.xp, ws.z[-1], ws.y, ws.g[-1]

    def error(self, out=None):
        self.xp.exp(self.z, out=self.g)
        if out is not None:
            out[...] = poisson_deviance_terms(self.xp, self.y, self.g).sum()
        self.xp.subtract(self.g, self.y, out=self.g)


def binary_log_loss_terms(xp, y, p, eps):
    """-[y log p + (1 - y) log(1 - p)] per element, p clipped to [eps, 1 - eps] as in scikit-learn's binary log loss."""
    p = xp.clip(p, eps, 1 - eps)
    return -(y * xp.log(p) + (1 - y) * xp.log(1 - p))


def poisson_deviance_terms(xp, y, p):
    """y log(y / p) - y + p per element, 0 where y = 0 and p = 0."""
    return y * xp.log(xp.where(y > 0, y / p, 1)) - y + p


def output_loss(name, ws):
    """The loss `name` over workspace `ws`'s output buffers (bce, poisson: the scikit-learn API's only)."""
    if name == "bce":
        return LogisticCrossEntropy(ws)
    if name == "poisson":
        return PoissonDeviance(ws)
    if name == "log":
        return ClippedLogLoss(ws)
    loss_factor(name, 1, 1)  # validates the name
    return SoftmaxCrossEntropy(ws) if name == "ce" else SquaredError(ws)


def softmax(z):
    """Row-wise softmax of host logits z (rows, classes), in float64."""
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
