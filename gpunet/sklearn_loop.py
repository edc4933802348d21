"""scikit-learn's MLP training semantics on gpunet's engine, written once against `xp`.

gpunet's `Trainer` has its own epoch (losses summed over batches, its Adam, its log points). The
scikit-learn estimators (gpunet/sklearn.py) need scikit-learn's instead, to give its numbers: Glorot
weights drawn in its order, per-batch losses weighted by batch size, alpha over the batch, its SGD
(v = mu v - lr g) and Adam (eps added to the uncorrected sqrt(v)), its learning-rate schedules and stopping
rules, and L-BFGS through scipy. The forward and backward passes, output errors and L2 gradient are the
engine's own (Network, Workspace, gpunet/losses.py); this module only drives them. It does not import
scikit-learn.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from gpunet.calls import Calls
from gpunet.losses import binary_log_loss_terms, poisson_deviance_terms
from gpunet.model import Layout, Network, rows_with_ones

# scikit-learn's output activation -> (gpunet's output loss, the backward scale that makes dS/dz = p - y)
OUTPUTS = {"identity": ("sse", 0.5), "softmax": ("log", 1.0), "logistic": ("bce", 1.0), "exp": ("poisson", 1.0)}
HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
PREDICT_CHUNK = 8192  # rows per forward pass when predicting


def glorot_params(sizes, rs, activation):
    """Flat float64 parameters drawn from RandomState `rs` as scikit-learn draws them: per layer its
    weights, then its bias, uniform in +-sqrt(f / (fan_in + fan_out)), f = 2 for logistic, else 6."""
    layout = Layout(sizes)
    flat = np.empty(layout.size)
    factor = 2.0 if activation == "logistic" else 6.0
    for w, b in layout.unpack(flat):
        bound = np.sqrt(factor / (w.shape[0] + w.shape[1]))
        w[...] = rs.uniform(-bound, bound, w.shape)
        b[...] = rs.uniform(-bound, bound, b.shape[0])
    return flat


def _scalar(like, value):
    """A 0-d array of `like`'s dtype on its backend holding `value`: ufuncs take it faster than a Python float."""
    s = like[:1].reshape(()).copy()
    s[...] = value
    return s


class _Moves:
    """An optimizer whose state is arrays and numbers only (it is pickled with a fitted estimator): `xp` comes
    with each step, and moved() carries the arrays between the host and a backend. Its update is a list of
    calls (gpunet/calls.py) on its buffers and the step's params and grads, made at the first step on them.
    Only the state a later step needs is kept between fits (and pickled): the scratch buffers and constants
    of the update (SCRATCH) are made again at the first step."""

    _calls = None  # (params, the update's Calls on them)
    SCRATCH = ()

    @property
    def learning_rate(self):
        """The current learning rate, as scikit-learn's optimizers name it."""
        return self.lr

    def moved(self, to):
        """self, with every array attribute replaced by to(array) (Backend.asarray or Backend.to_numpy); the
        scratch buffers are dropped (made again at the next step)."""
        self._calls = None  # they name the arrays left behind
        for name in self.SCRATCH:
            self.__dict__.pop(name, None)
        for name, value in vars(self).items():
            if isinstance(value, list):
                setattr(self, name, [to(a) for a in value])
            elif hasattr(value, "shape"):
                setattr(self, name, to(value))
        return self

    def step(self, xp, params, grads):
        """One update of params from grads: the calls listed for them, made again for other buffers."""
        if self._calls is None or self._calls[0] is not params:
            if not all(name in vars(self) for name in self.SCRATCH):
                self._scratch(params)
            self._calls = (params, Calls(self._update_calls(xp, params, grads)))
        self._calls[1]()


class SGD(_Moves):
    """scikit-learn's SGD over a flat buffer: v = mu v - lr g; params += v, or with Nesterov, params += mu v - lr g."""

    SCRATCH = ("tmp", "update", "_mu", "_lr")

    def __init__(self, params, lr, schedule="constant", momentum=0.9, nesterov=True, power_t=0.5):
        self.lr_init, self.lr, self.schedule = float(lr), float(lr), schedule
        self.momentum, self.nesterov, self.power_t = float(momentum), nesterov, float(power_t)
        self.v = params * 0

    def _scratch(self, params):
        self.tmp, self.update = params * 0, params * 0
        self._mu, self._lr = _scalar(params, self.momentum), _scalar(params, self.lr)

    def _update_calls(self, xp, params, grads):
        v, tmp, update, mu = self.v, self.tmp, self.update, self._mu
        calls = [(xp.multiply, (grads, self._lr, tmp)), (xp.multiply, (v, mu, v)), (xp.subtract, (v, tmp, v))]
        if self.nesterov:
            return calls + [(xp.multiply, (v, mu, update)), (xp.subtract, (update, tmp, update)),
                            (xp.add, (params, update, params))]
        return calls + [(xp.add, (params, v, params))]

    def iteration_ends(self, t):
        if self.schedule == "invscaling":
            self.lr = self.lr_init / (t + 1) ** self.power_t
            self._set_lr()

    def trigger_stopping(self):
        """Whether to stop; with the adaptive schedule, divide the rate by 5 instead while it is above 1e-6."""
        if self.schedule != "adaptive" or self.lr <= 1e-6:
            return True
        self.lr /= 5.0
        self._set_lr()
        return False

    def _set_lr(self):
        if "_lr" in vars(self):  # else made from lr at the next step
            self._lr[...] = self.lr


class Adam(_Moves):
    """scikit-learn's Adam over a flat buffer: params -= lr_t m / (sqrt(v) + eps), lr_t = lr sqrt(1 - b2^t) / (1 - b1^t).

    m and v are the rows of one (2, P) buffer, so that one multiplication by [b1; b2] (whole rows: NumPy
    broadcasts a column at half the speed) and one addition move both: 10 calls a step instead of 12."""

    SCRATCH = ("terms", "betas", "tmp", "update", "_c")

    def __init__(self, params, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        self.lr_init, self.lr = float(lr), float(lr)
        self.beta_1, self.beta_2, self.epsilon, self.t = float(beta_1), float(beta_2), float(epsilon), 0
        self.mv = params[None].repeat(2, axis=0) * 0  # [m; v]

    def _scratch(self, params):
        self.terms = self.mv * 0  # [(1 - b1) g; (1 - b2) g^2]
        self.betas = self.mv * 0
        self.betas[0], self.betas[1] = self.beta_1, self.beta_2
        self.tmp, self.update = params * 0, params * 0
        self._c = [_scalar(params, c) for c in (1 - self.beta_1, 1 - self.beta_2, self.epsilon, -self.lr)]

    def _update_calls(self, xp, params, grads):
        (m, v), (g1, g2), tmp, update = self.mv, self.terms, self.tmp, self.update
        one_b1, one_b2, eps, neg_lr = self._c
        return [
            (xp.multiply, (grads, one_b1, g1)), (xp.multiply, (grads, grads, g2)), (xp.multiply, (g2, one_b2, g2)),
            (xp.multiply, (self.mv, self.betas, self.mv)),
            (xp.add, (self.mv, self.terms, self.mv)),  # m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2
            (xp.sqrt, (v, tmp)), (xp.add, (tmp, eps, tmp)),
            (xp.multiply, (m, neg_lr, update)), (xp.divide, (update, tmp, update)), (xp.add, (params, update, params)),
        ]

    def step(self, xp, params, grads):
        self.t += 1
        self.lr = self.lr_init * math.sqrt(1 - self.beta_2**self.t) / (1 - self.beta_1**self.t)
        if "_c" not in vars(self):
            self._scratch(params)
        self._c[-1][...] = -self.lr
        super().step(xp, params, grads)

    def iteration_ends(self, t):
        pass

    def trigger_stopping(self):
        return True


class Engine:
    """A gpunet Network with scikit-learn's objective: loss = mean of the output loss + alpha sum(w^2) / (2 n).

    The gradient is scikit-learn's: (a.T delta + alpha w) / n with delta = p - y at the output. For the
    identity output with several targets that is n_outputs times the gradient of its loss (scikit-learn
    issue #8349), followed here on purpose.

    Args:
        backend: a gpunet.backend.Backend.
        sizes: layer widths [d_in, *hidden, d_out].
        params: flat host parameters in gpunet's layout.
        dtype: the dtype of every buffer.
        activation: scikit-learn's hidden activation name (identity, logistic, tanh, relu).
        out_activation: identity (squared error), softmax (log loss), logistic (binary log loss) or exp
            (Poisson deviance).
        alpha: the L2 strength.
    """

    def __init__(self, backend, sizes, params, dtype, activation, out_activation, alpha):
        loss, self.grad_scale = OUTPUTS[out_activation]
        self.backend, self.xp, self.alpha, self.out_activation = backend, backend.xp, alpha, out_activation
        self.net = Network(backend, sizes, params, dtype, HIDDEN[activation], loss)
        d_out = sizes[-1]
        # S (the output loss's sum over a batch) times this is the batch's loss times its size
        self.loss_per_sum = 1.0 / (2 * d_out) if out_activation == "identity" else 1.0
        self._workspaces = {}
        # Each batch's loss parts since the last loss(), written in place by its passes (an accumulation on
        # the backend would be one call more per batch): S into _s[k], c sum(w^2) into _pen[k], counted
        # _counts[k] times in the summed loss times size (scikit-learn sums the batches' in float64).
        self._s, self._pen = self.xp.zeros((16, 1, 1), self.net.dtype), self.xp.zeros(16, self.net.dtype)
        self._counts = []
        self._gradients = {}  # (batch size, slot) -> gradient()'s calls
        self._weights = {}  # batch size -> (1, n) buffer for the batch's sample weights
        self.eps = float(np.finfo(self.net.dtype).eps)  # scikit-learn clips probabilities to [eps, 1 - eps]

    def workspace(self, n):
        """Buffers for batches of n rows, their inputs held as rows (Workspace's `rows`: batches from rows())."""
        if n not in self._workspaces:
            self._workspaces[n] = self.net.workspace(n, rows=True)
        return self._workspaces[n]

    def rows(self, x_t):
        """x_t (d_in, N) as the batches are taken from it (batch_rows)."""
        return batch_rows(self.backend, x_t, self.net.dtype)

    def take(self, x_rows, y_t, rows, ws):
        """The batch at `rows` of rows() and y_t (d_out, N) into `ws` (take_batch)."""
        take_batch(self.backend, x_rows, y_t, rows, ws)

    def _slot(self, count):
        """The next batch's index into _s and _pen, its penalty counted `count` times; the buffers grow as needed."""
        k = len(self._counts)
        if k == self._s.shape[0]:
            self._s, self._pen = (self.xp.concatenate([a, self.xp.zeros_like(a)]) for a in (self._s, self._pen))
            self._gradients = {}  # their calls name the slots left behind
        self._counts.append(count)
        return k

    def gradient(self, ws):
        """net.grads = scikit-learn's gradient on the batch in `ws`; its S and penalty into the next slot."""
        k = self._slot(ws.n)
        if (ws.n, k) not in self._gradients:
            self._gradients[ws.n, k] = self._gradient_calls(ws, k)
        self._gradients[ws.n, k]()

    def _gradient_calls(self, ws, k):
        """gradient()'s passes on `ws` into slot k, as one list (a step's Python between NumPy calls is what a
        small network's time goes to)."""
        # dS/dz = p - y, propagated and over n: a.T delta / n
        calls = ws.gradient_calls(self.grad_scale / ws.n, self._s[k])
        if self.alpha:  # + alpha w / n; (alpha / n) sum(w^2) into the slot
            calls += self.net.decay_calls(self.alpha / ws.n, penalty=self._pen[k : k + 1].reshape(()))
        return calls

    def weighted_gradient(self, ws, sw):
        """gradient() with scikit-learn's sample weights sw (1, n): delta = sw (p - y), loss and gradient over sum(sw)."""
        xp = self.xp
        k = self._slot(1)
        ws.forward()
        ws.error()  # g[-1] = p - y
        sw_sum = sw.sum()
        ratio = ws.n / sw_sum  # the batch's loss times its size is ratio (loss_per_sum S_w + alpha/2 sum(w^2))
        s_w = xp.dot(row_losses(xp, self.out_activation, ws.z[-1], ws.g[-1], ws.y, self.eps), sw[0])
        self._s[k] = ratio * s_w
        xp.multiply(ws.g[-1], sw, out=ws.g[-1])
        ws.backward(self.grad_scale)
        if self.alpha:
            self._pen[k] = ratio * self.net.add_decay(self.alpha, penalty=True)
        xp.divide(self.net.grads, sw_sum, out=self.net.grads)

    def batch_gradient(self, ws, sw_t=None, rows=None):
        """The gradient on the batch in `ws`, weighted by columns `rows` of sw_t (1, N) when given."""
        if sw_t is None:
            return self.gradient(ws)
        if ws.n not in self._weights:
            self._weights[ws.n] = self.xp.empty((1, ws.n), self.net.dtype)
        sw = self._weights[ws.n]
        if rows is None:
            sw[...] = sw_t
        else:
            self.backend.take(sw_t, rows, out=sw)
        self.weighted_gradient(ws, sw)

    def loss(self, n):
        """The mean loss over n rows from the batches' slots, on the host; the slots start again from the first."""
        m = len(self._counts)
        s, pen = (self.backend.to_numpy(a[:m]).astype(np.float64).ravel() for a in (self._s, self._pen))
        self._counts, counts = [], self._counts
        return (self.loss_per_sum * s.sum() + 0.5 * pen.dot(counts)) / n

    def epoch(self, x_rows, y_t, order, batch_size, opt, sw_t=None):
        """One pass over the observations `order` of x_rows (from rows()) and y_t (d_out, N) in batches (weighted
        by the columns of sw_t (1, N) when given); return the epoch's loss."""
        xp, n = self.xp, order.shape[0]
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            ws = self.workspace(rows.shape[0])
            self.take(x_rows, y_t, rows, ws)
            self.batch_gradient(ws, sw_t, rows)
            opt.step(xp, self.net.params, self.net.grads)
        return self.loss(n)

    def predict(self, x_t):
        """The output activations (n, d_out) for inputs x_t (d_in, n) on the backend, in chunks of rows."""
        xp, n = self.xp, x_t.shape[1]
        y_pred = xp.empty((n, self.net.layout.sizes[-1]), self.net.dtype)
        for start in range(0, n, PREDICT_CHUNK):
            stop = min(start + PREDICT_CHUNK, n)
            ws = self.workspace(stop - start)
            ws.x[...] = x_t[:, start:stop]
            z = ws.forward()
            y_pred[start:stop] = output_activation(xp, z, self.out_activation).T
        return y_pred

    def loss_and_grad(self, flat, ws, sw_t=None):
        """scikit-learn's (loss, gradient) on the whole batch in `ws` (weighted by sw_t (1, n) when given) at host
        parameters `flat`, both on the host."""
        self.net.params[...] = self.backend.asarray(flat, self.net.dtype)
        self.batch_gradient(ws, sw_t)
        return self.loss(ws.n), self.backend.to_numpy(self.net.grads).astype(np.float64)

    def params_host(self):
        return self.backend.to_numpy(self.net.params).copy()


def batch_rows(backend, x_t, dtype):
    """x_t (d_in, N) as the batches are taken from it: a dense X as rows (N, d_in + 1), each observation followed
    by a 1 (the bias's input), so that a batch is its rows whole, a few cache lines each, straight into a workspace
    (200 columns of x_t were 200 cache misses per feature: 150 us a step of 1.2 ms on 20,000 x 64); a sparse X
    (SparseRows) as it is."""
    if getattr(x_t, "sparse_rows", False):
        return x_t
    return rows_with_ones(backend, [x_t.T], dtype)[0]


def rows_of(backend, X, dtype):
    """X (rows, features) as batch_rows() gives the batches' source, made straight from X (not through its
    feature-major copy): a dense X as rows with ones, a sparse X as SparseRows."""
    if hasattr(X, "tocsr"):
        from gpunet.sklearn_arrays import SparseRows  # scikit-learn's validation: the estimators' only

        return SparseRows(X, backend, dtype)
    return rows_with_ones(backend, [X], dtype)[0]


def take_batch(backend, x_rows, y_t, rows, ws):
    """The batch at `rows` of batch_rows()'s x_rows and of y_t (d_out, N) into workspace `ws` (its x_rows, whose
    transpose its products read, or for a sparse X its x, and its y); `ws` for one model or for a stack."""
    if getattr(x_rows, "sparse_rows", False):  # gpunet.sklearn_arrays.SparseRows: rows made dense
        x_rows.take(rows, ws.x)
    elif backend.name == "cpu":
        x_rows.take(rows, axis=0, out=ws.x_rows, mode="clip")  # the method, no bounds check (as Backend.take)
    else:
        backend.xp.take(x_rows, rows, axis=0, out=ws.x_rows)
    backend.take(y_t, rows, out=ws.y)


def row_losses(xp, kind, z, g, y, eps):
    """Each row's loss sum S_i (n,) as scikit-learn computes it, from the logits z and the output error g = p - y
    (d_out, n): squared errors, log losses of p clipped to [eps, 1 - eps], or Poisson deviances. p is computed
    again from z (softmax's z as the error left it, shifted), not as g + y: (p - 1) + 1 loses a small p."""
    if kind == "identity":
        return (g * g).sum(axis=0)
    return loss_terms(xp, kind, output_activation(xp, z.copy(), kind), y, eps).sum(axis=0)


def loss_terms(xp, kind, p, y, eps):
    """scikit-learn's loss of each output of each row, from the output activations p (softmax, logistic or exp) and
    the targets y of the same shape: log losses of p clipped to [eps, 1 - eps], or Poisson deviances."""
    if kind == "logistic":
        return binary_log_loss_terms(xp, y, p, eps)
    if kind == "exp":
        return poisson_deviance_terms(xp, y, p)
    return -(y * xp.log(xp.clip(p, eps, 1 - eps)))


def output_activation(xp, z, kind):
    """scikit-learn's output activation of logits z (d_out, n), in place: identity, softmax over d_out, logistic or exp."""
    if kind == "softmax":
        xp.subtract(z, z.max(axis=0), out=z)
        xp.exp(z, out=z)
        xp.divide(z, z.sum(axis=0), out=z)
    elif kind == "logistic":
        xp.negative(z, out=z)
        xp.exp(z, out=z)
        xp.add(z, 1, out=z)
        xp.reciprocal(z, out=z)
    elif kind == "exp":
        xp.exp(z, out=z)
    return z


@dataclass
class History:
    """scikit-learn's record of a stochastic fit, carried over warm starts and partial fits."""

    early_stopping: bool
    n_iter_: int = 0
    t_: int = 0
    loss_: float = None
    loss_curve_: list = field(default_factory=list)
    best_loss_: float = None
    validation_scores_: list = None
    best_validation_score_: float = None
    no_improvement_count: int = 0
    best_params: object = None  # the parameters of the best validation score (on the backend during a fit)

    def __post_init__(self):
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
        else:
            self.best_loss_ = np.inf

    def update(self, tol, score, params):
        """Count an epoch without improvement by tol, from the validation `score()` or the training loss."""
        if self.early_stopping:
            s = score()
            self.validation_scores_.append(s)
            self.no_improvement_count = self.no_improvement_count + 1 if s < self.best_validation_score_ + tol else 0
            if s > self.best_validation_score_:
                self.best_validation_score_, self.best_params = s, params.copy()
        else:
            last = self.loss_curve_[-1]
            self.no_improvement_count = self.no_improvement_count + 1 if last > self.best_loss_ - tol else 0
            self.best_loss_ = min(self.best_loss_, last)


def reshuffled(rs, idx):
    """The next epoch's row order from the last, `idx`, as scikit-learn draws it from RandomState rs (its
    sklearn.utils.shuffle of the indices): one model's, a stack's (gpunet/stack_rows.py) and each of its streams'."""
    perm = np.arange(idx.shape[0])
    rs.shuffle(perm)
    return idx[perm]


def fit_stochastic(engine, opt, hist, x_rows, y_t, rs, s):
    """scikit-learn's stochastic epochs: shuffle, batches, loss curve, schedule and stopping rule.

    Args:
        engine, opt, hist: the Engine, SGD/Adam and History to continue.
        x_rows, y_t: training inputs as the batches are taken from them (rows_of) and targets (d_out, n) on the
            backend.
        rs: the numpy RandomState for the shuffles.
        s: settings with max_iter, shuffle, batch_size, tol, n_iter_no_change, incremental, verbose,
            sample_weight (1, n) on the backend or None, and score (a function giving the validation score,
            with early stopping).

    Returns:
        True when it stopped at max_iter without converging (scikit-learn's ConvergenceWarning).
    """
    xp, n = engine.xp, y_t.shape[1]
    idx = np.arange(n)
    order = xp.arange(n)
    hist.n_iter_ = 0  # as scikit-learn: the epochs of this call (t_ counts them all)
    for _ in range(s.max_iter):
        if s.shuffle:
            idx = reshuffled(rs, idx)
            order = engine.backend.asarray(idx)
        hist.loss_ = engine.epoch(x_rows, y_t, order, s.batch_size, opt, s.sample_weight)
        hist.n_iter_ += 1
        hist.t_ += n
        hist.loss_curve_.append(hist.loss_)
        if s.verbose:
            print("Iteration %d, loss = %.8f" % (hist.n_iter_, hist.loss_))
        hist.update(s.tol, s.score, engine.net.params)
        if s.verbose and s.score is not None:
            print("Validation score: %f" % hist.validation_scores_[-1])
        opt.iteration_ends(hist.t_)
        if hist.no_improvement_count > s.n_iter_no_change:
            if _no_improvement(opt, s):
                return False
            hist.no_improvement_count = 0
        if s.incremental:
            return False
    return True


def _no_improvement(opt, s):
    """After n_iter_no_change epochs without improvement: True to stop (else the adaptive rate was cut)."""
    stop = opt.trigger_stopping()
    if s.verbose:
        what = "Validation score did not improve" if s.score is not None else "Training loss did not improve"
        print(f"{what} more than tol={s.tol:f} for {s.n_iter_no_change} consecutive epochs. "
              + ("Stopping." if stop else f"Setting learning rate to {opt.lr:f}"))
    return stop


def fit_lbfgs(engine, x_t, y_t, max_iter, max_fun, tol, sw_t=None):
    """scikit-learn's L-BFGS: scipy's L-BFGS-B on the whole set, loss and gradient from the engine.

    Returns:
        scipy's OptimizeResult; the engine holds its parameters.
    """
    import scipy.optimize  # only this solver needs scipy

    ws = engine.workspace(x_t.shape[1])
    ws.x[...], ws.y[...] = x_t[:, :], y_t  # x_t[:, :] makes a sparse X's rows dense
    res = scipy.optimize.minimize(
        engine.loss_and_grad, engine.params_host().astype(np.float64), args=(ws, sw_t), method="L-BFGS-B", jac=True,
        options={"maxfun": max_fun, "maxiter": max_iter, "gtol": tol},
    )
    engine.net.params[...] = engine.backend.asarray(res.x, engine.net.dtype)
    return res
