"""K networks of one architecture trained as one computation: scikit-learn's stochastic fit (gpunet/sklearn_loop.py)
over a leading model axis, written once against `xp`.

Candidates of a search that share their rows, their row order (one random_state) and their architecture start from
the same weights and see the same batches; they differ only in numbers the update reads: alpha, the learning rate,
momentum, Nesterov's or not, power_t, Adam's betas and epsilon. Here they are one stack: parameters (K, P), row k
model k's flat buffer in gpunet's layout (gpunet/model.py); every matrix product one matmul over the model axis, the
batch's inputs shared; the per-model numbers (K, 1) columns. Each model keeps scikit-learn's stopping rule on its own
loss curve: a stopped model's learning rate (and momentum) become 0, so that its parameters stay as they are while
the others go on, and its parameters and optimizer state are copied to the host as it stops.
"""

import math
from functools import partial

import numpy as np

from gpunet.calls import Calls
from gpunet.losses import binary_log_loss_terms, poisson_deviance_terms
from gpunet.model import Layout
from gpunet.sklearn_loop import OUTPUTS, SGD, Adam


class Stack:
    """K networks of one architecture with scikit-learn's objective (as sklearn_loop.Engine's), alpha per model.

    Args:
        backend: a gpunet.backend.Backend.
        sizes: layer widths [d_in, *hidden, d_out].
        params: (K, P) host parameters, row k model k's in gpunet's flat layout.
        dtype: the dtype of every buffer.
        activation: scikit-learn's hidden activation name (identity, logistic, tanh, relu).
        out_activation: identity, softmax, logistic or exp.
        alpha: (K,) L2 strengths.
    """

    def __init__(self, backend, sizes, params, dtype, activation, out_activation, alpha):
        self.backend, self.xp = backend, backend.xp
        self.layout, self.dtype = Layout(sizes), np.dtype(dtype)
        self.activation, self.out_activation = activation, out_activation
        self.k = params.shape[0]
        self.params = backend.asarray(params, self.dtype)
        if self.params is params:  # already of the dtype, on the backend: the stack's buffer is its own
            self.params = params.copy()
        self.grads = self.xp.zeros_like(self.params)
        self.blocks, self.grad_blocks = self._blocks(self.params), self._blocks(self.grads)
        self.weights = [blk[:, :-1] for blk in self.blocks]  # w without its bias row: the input gradient's factor
        self.alpha = np.asarray(alpha, np.float64)
        self.grad_scale = OUTPUTS[out_activation][1]
        # dS/dz of the loss sum S over the output error p - y: SquaredError's is 2 (p - y)
        self.error_factor = (2.0 if out_activation == "identity" else 1.0) * self.grad_scale
        self.loss_per_sum = 1.0 / (2 * sizes[-1]) if out_activation == "identity" else 1.0
        self.eps = float(np.finfo(self.dtype).eps)
        self._workspaces, self._decay = {}, {}
        self._s = self._pen = None  # (batches, K): each batch's loss sum S and penalty (alpha / n) sum(w^2)

    def select(self, rows):
        """A stack of the models at `rows` (host indices) only, with their parameters."""
        sizes, act, out = self.layout.sizes, self.activation, self.out_activation
        return Stack(self.backend, sizes, self.params[self.backend.asarray(rows)], self.dtype, act, out,
                     self.alpha[rows])

    def _blocks(self, flat):
        """(K, fan_in + 1, fan_out) views of (K, P) `flat` per layer: weight rows, then the bias row."""
        return [flat[:, o : o + r * c].reshape(self.k, r, c) for o, (r, c) in zip(self.layout.offsets,
                                                                                 self.layout.shapes)]

    def workspace(self, n, own=False):
        if (n, own) not in self._workspaces:
            self._workspaces[n, own] = StackWorkspace(self, n, own)
        return self._workspaces[n, own]

    def _decay_calls(self, n):
        """grads += (alpha / n) w per model (not the biases), through a (K, P) buffer of alpha_k / n on the weights;
        None when every alpha is 0."""
        if not self.alpha.any():
            return None
        if n not in self._decay:
            scaled = self.backend.asarray((self.alpha / n)[:, None] * self._on_weights(), self.dtype)
            tmp = self.xp.empty_like(self.params)
            self._decay[n] = (tmp, Calls([(self.xp.multiply, (self.params, scaled, tmp)),
                                          (self.xp.add, (self.grads, tmp, self.grads))]))
        return self._decay[n]

    def _own_decay_calls(self):
        """For batches of each model's own rows: pen = alpha sum(w^2) per model, grads += (alpha / weight sum) w
        through `inv` (K, 1), set per batch; None when every alpha is 0."""
        if not self.alpha.any():
            return None
        if "own" not in self._decay:
            xp = self.xp
            alpha_w = self.backend.asarray(self.alpha[:, None] * self._on_weights(), self.dtype)
            tmp, inv = xp.empty_like(self.params), xp.empty((self.k, 1), self.dtype)
            self._decay["own"] = (tmp, inv, Calls([(xp.multiply, (self.params, alpha_w, tmp))]),
                                  Calls([(xp.multiply, (tmp, inv, tmp)), (xp.add, (self.grads, tmp, self.grads))]))
        return self._decay["own"]

    def _on_weights(self):
        """(P,) host: 1 on the weights, 0 on the biases (which take no decay)."""
        on_weights = np.zeros(self.layout.size)
        for w, _ in self.layout.unpack(on_weights):
            w[...] = 1.0
        return on_weights

    def gradient(self, ws, j, inv=None):
        """grads = each model's scikit-learn gradient on the batch in `ws`; S and penalty into slot j. With each
        model's own rows, inv (K, 1) is 1 / each model's weight sum."""
        ws.forward()
        ws.error(self._s[j])
        ws.backward()
        if ws.own:
            decay = self._own_decay_calls()
            if decay is not None:
                tmp, inv_buffer, scaled, add = decay
                scaled()
                self.xp.matmul(tmp[:, None, :], self.params[:, :, None], out=self._pen[j].reshape(self.k, 1, 1))
                inv_buffer[...] = inv
                add()
            return
        decay = self._decay_calls(ws.n)
        if decay is not None:
            tmp, calls = decay
            calls()
            # (alpha / n) sum(w^2) per model: each row of tmp . the same row of params
            self.xp.matmul(tmp[:, None, :], self.params[:, :, None], out=self._pen[j].reshape(self.k, 1, 1))

    def epoch(self, x_t, y_t, order, batch_size, opt):
        """One pass over the columns `order` of x_t (d_in, N), y_t (d_out, N) in batches, every model stepped by
        `opt`; return the epoch's loss of each model (K,) on the host."""
        n = order.shape[0]
        batches = -(-n // batch_size)
        self._slots(batches)
        opt.epoch_starts(batches)
        counts = []
        for j, start in enumerate(range(0, n, batch_size)):
            rows = order[start : start + batch_size]
            ws = self.workspace(rows.shape[0])
            ws.gather(x_t, y_t, rows)
            self.gradient(ws, j)
            opt.step(j, self.params, self.grads)
            counts.append(ws.n)
        s, pen = (self.backend.to_numpy(a).astype(np.float64) for a in (self._s, self._pen))
        # scikit-learn's epoch loss: the batches' losses times their sizes, summed in float64, over n
        return (self.loss_per_sum * s.sum(axis=0) + 0.5 * np.dot(counts, pen)) / n

    def epoch_own(self, xr, yr, batches, opt, n):
        """One epoch of batches of each model's own rows (gpunet/stack_rows.py): `batches` its stack_rows.Batch
        list, xr and yr the rows they index, n (K,) each model's training rows; return each model's epoch loss
        (K,) on the host."""
        self._slots(len(batches))
        opt.epoch_starts(len(batches))
        for j, batch in enumerate(batches):
            ws = self.workspace(batch.rows.shape[1], own=True)
            ws.gather_own(xr, yr, batch)
            self.gradient(ws, j, batch.inv)
            opt.step(j, self.params, self.grads)
        s, pen = (self.backend.to_numpy(a).astype(np.float64) for a in (self._s, self._pen))
        ratio = np.stack([batch.ratio for batch in batches])
        # each batch's loss times its rows, as scikit-learn's weighted loss gives it, summed over n
        return (ratio * (self.loss_per_sum * s + 0.5 * pen)).sum(axis=0) / n

    def outputs(self, xr, rows):
        """Each model's output activations (K, d_out, n) on the backend for its rows `rows` (K, n) (host) of xr
        (M, d_in + 1); the rows are gathered again only when `rows` is another array."""
        ws = self.workspace(rows.shape[1], own="outputs")
        if ws._held is not rows:
            self.xp.take(xr, self.backend.asarray(rows), axis=0, out=ws.xr)
            ws._held = rows
        ws.forward()
        if self.out_activation == "identity":
            return ws.z[-1]
        ws._out._probabilities()
        return ws.g[-1]

    def _slots(self, batches):
        if self._s is None or self._s.shape[0] != batches:
            self._s, self._pen = (self.xp.zeros((batches, self.k), self.dtype) for _ in range(2))

    def params_host(self, k):
        """Model k's flat parameters, a host copy."""
        return self.backend.to_numpy(self.params[k]).copy()


class StackWorkspace:
    """The activations and gradients of K models for batches of n rows, allocated once; feature-major as
    gpunet.model.Workspace's: a[0] (d_in + 1, n) is the batch's inputs with a row of ones, shared by the models;
    a[l] (K, fan_in + 1, n) above it, whose rows but the last are the layer below's output z."""

    def __init__(self, stack, n, own=False):
        xp, dt, sizes, k = stack.xp, stack.dtype, stack.layout.sizes, stack.k
        self.stack, self.xp, self.n, self.own = stack, xp, n, own
        self._held = None  # the stack_rows.Batch gathered last
        if own:  # each model's own rows (gpunet/stack_rows.py): gathered row-major with their ones, used transposed
            self.xr, self.yr = xp.empty((k, n, sizes[0] + 1), dt), xp.empty((k, n, sizes[-1]), dt)
            first = self.xr.transpose(0, 2, 1)
        else:
            first = xp.ones((sizes[0] + 1, n), dt)
        self.a = [first] + [xp.ones((k, h + 1, n), dt) for h in sizes[1:-1]]
        self.x = self.a[0][:-1]
        self.z = [a[:, :-1] for a in self.a[1:]] + [xp.empty((k, sizes[-1], n), dt)]
        hidden = stack.activation != "identity"
        self.d = [xp.empty((k, h, n), dt) if hidden else None for h in sizes[1:-1]]  # act'(z), from the forward pass
        self.g = [xp.empty((k, c, n), dt) for c in sizes[1:]]  # dS/dz per layer, scaled
        kind = stack.out_activation
        if own:  # each model's weights of its rows, and their scale with its factor over its weight sum, per batch
            self.y = self.yr.transpose(0, 2, 1)
            self.weight, self._scale = xp.empty((k, 1, n), dt), xp.empty((k, 1, n), dt)
        else:
            self.y = xp.empty((sizes[-1], n), dt)
            self._scale = stack.backend.asarray(stack.error_factor / n, dt)  # -> a.T delta / n
        self._out = _OutputError(self, kind)
        self._forward, self._backward = self._forward_calls(), self._backward_calls()

    def _forward_calls(self):
        """z = w.T a + b per layer and model (the bias through the row of ones); act(z) in place on hidden layers,
        its derivative into d."""
        xp, calls = self.xp, Calls()
        for layer, (blk, a, z) in enumerate(zip(self.stack.blocks, self.a, self.z)):
            calls.append((partial(xp.matmul, out=z), (blk.transpose(0, 2, 1), a)))
            if layer < len(self.d) and self.d[layer] is not None:
                calls += _activation_calls(xp, self.stack.activation, z, self.d[layer])
        return calls

    def _backward_calls(self):
        """From the output error in g[-1]: scaled, then per layer from the top dS/dw and dS/db (via the row of ones)
        and, below the top, dS/dz of the layer below through its activation's derivative."""
        xp, stack = self.xp, self.stack
        calls = Calls([(xp.multiply, (self.g[-1], self._scale, self.g[-1]))])
        for layer in reversed(range(len(self.g))):
            g = self.g[layer]
            calls.append((partial(xp.matmul, out=stack.grad_blocks[layer]), (self.a[layer], g.transpose(0, 2, 1))))
            if layer > 0:
                # one output (an inner dimension of 1): the product is w g, which a broadcast multiply gives faster
                if g.shape[1] == 1:
                    calls.append((xp.multiply, (stack.weights[layer], g, self.g[layer - 1])))
                else:
                    calls.append((partial(xp.matmul, out=self.g[layer - 1]), (stack.weights[layer], g)))
                if self.d[layer - 1] is not None:
                    calls.append((xp.multiply, (self.g[layer - 1], self.d[layer - 1], self.g[layer - 1])))
        return calls

    def gather_own(self, xr, yr, batch):
        """Each model's rows of `batch` (a stack_rows.Batch) from xr (M, d_in + 1) and yr (M, d_out), with their
        weights and scales."""
        if batch is self._held:  # this batch's rows are still here (an epoch of one batch, not shuffled)
            return
        xp = self.xp
        xp.take(xr, batch.rows, axis=0, out=self.xr)
        xp.take(yr, batch.rows, axis=0, out=self.yr)
        self.weight[...], self._scale[...] = batch.weight, batch.scale
        self._held = batch

    def gather(self, x_t, y_t, rows):
        """Columns `rows` of x_t (d_in, N) and y_t (d_out, N) as the batch, for every model."""
        backend = self.stack.backend
        if getattr(x_t, "sparse_rows", False):  # a sparse X (gpunet.sklearn_arrays.SparseRows): rows made dense
            x_t.take(rows, self.x)
        else:
            backend.take(x_t, rows, out=self.x)
        backend.take(y_t, rows, out=self.y)

    def forward(self):
        self._forward()

    def error(self, loss_out):
        """g[-1] = each model's output error p - y; each model's loss sum S into loss_out (K,)."""
        self._out(loss_out)

    def backward(self):
        self._backward()


def _activation_calls(xp, name, z, d):
    """act(z) in place and act'(z) into d, as gpunet/activations.py defines them (the derivative from the output)."""
    if name == "relu":  # relu'(z) = [z > 0], relu(z) = z relu'(z)
        return [(xp.greater, (z, 0, d)), (xp.multiply, (z, d, z))]
    if name == "tanh":  # 1 - a^2
        return [(xp.tanh, (z, z)), (xp.multiply, (z, z, d)), (xp.subtract, (1, d, d))]
    # logistic: a = 1 / (1 + exp(-z)), a' = (1 - a) a
    return [(xp.negative, (z, z)), (xp.exp, (z, z)), (xp.add, (z, 1, z)), (xp.reciprocal, (z, z)),
            (xp.subtract, (1, z, d)), (xp.multiply, (d, z, d))]


class _OutputError:
    """The output error g = p - y of K models from their logits z (K, d_out, n) and the shared targets y (d_out, n),
    and each model's loss sum S, as gpunet/losses.py computes them for one; with each model's own rows, its
    targets (K, d_out, n) and its rows' weights."""

    def __init__(self, ws, kind):
        xp, k, n = ws.xp, ws.stack.k, ws.n
        self.ws, self.xp, self.kind, self.k = ws, xp, kind, k
        self.z, self.y, self.g = ws.z[-1], ws.y, ws.g[-1]
        if kind == "softmax":
            self.top, self.total = (xp.empty((k, 1, n), ws.stack.dtype) for _ in range(2))
            self.known = xp.empty(n, ws.stack.dtype)  # 1 for a row with a label, 0 for a row of zeros
            eps = ws.stack.eps
            self.low, self.high = -np.log1p(-eps), -np.log(eps)  # -log(1 - eps) <= -log p <= -log(eps)

    def __call__(self, s):
        if self.ws.own:
            return self._weighted(s)
        xp, z, y, g = self.xp, self.z, self.y, self.g
        if self.kind == "identity":
            xp.subtract(z, y, out=g)
            flat = g.reshape(self.k, 1, -1)
            xp.matmul(flat, flat.transpose(0, 2, 1), out=s.reshape(self.k, 1, 1))  # sum of squares per model
            return
        self._probabilities()  # the softmax's largest logit of each row is then 0
        if self.kind == "softmax":
            # -log p[label] = log sum exp(z) - z[label], clipped as scikit-learn clips p, for the rows with a label
            xp.sum(y, axis=0, out=self.known)
            xp.log(self.total, out=self.total)
            xp.subtract(self.total, (z * y).sum(axis=1, keepdims=True), out=self.total)
            xp.clip(self.total, self.low, self.high, out=self.total)
            xp.matmul(self.total.reshape(self.k, -1), self.known, out=s)
        elif self.kind == "logistic":
            s[...] = binary_log_loss_terms(xp, y, g, self.ws.stack.eps).sum(axis=(1, 2))
        else:  # exp: Poisson
            s[...] = poisson_deviance_terms(xp, y, g).sum(axis=(1, 2))
        xp.subtract(g, y, out=g)

    def _probabilities(self):
        """g = the output activation of z (not the identity): softmax over the outputs (z shifted in place), logistic
        or exp."""
        xp, z, g = self.xp, self.z, self.g
        if self.kind == "softmax":
            xp.max(z, axis=1, keepdims=True, out=self.top)
            xp.subtract(z, self.top, out=z)
            xp.exp(z, out=g)
            xp.sum(g, axis=1, keepdims=True, out=self.total)
            xp.divide(g, self.total, out=g)
        elif self.kind == "logistic":
            xp.negative(z, out=g)
            xp.exp(g, out=g)
            xp.add(g, 1, out=g)
            xp.reciprocal(g, out=g)
        else:
            xp.exp(z, out=g)

    def _weighted(self, s):
        """g = p - y and each model's weighted loss sum S = sum_i weight_i S_i into s (K,), S_i each row's loss as
        scikit-learn's weighted loss takes it (sklearn_loop.row_losses)."""
        xp, z, y, g, ws = self.xp, self.z, self.y, self.g, self.ws
        if self.kind == "identity":
            xp.subtract(z, y, out=g)
            terms = g * g
        else:
            self._probabilities()
            if self.kind == "logistic":
                terms = binary_log_loss_terms(xp, y, g, ws.stack.eps)
            elif self.kind == "exp":
                terms = poisson_deviance_terms(xp, y, g)
            else:
                terms = -(y * xp.log(xp.clip(g, ws.stack.eps, 1 - ws.stack.eps)))
            xp.subtract(g, y, out=g)
        rows = terms.sum(axis=1, keepdims=True)  # (K, 1, n)
        xp.matmul(rows, ws.weight.transpose(0, 2, 1), out=s.reshape(self.k, 1, 1))


class _StackOptimizer:
    """What the stacked SGD and Adam share: per-model numbers on the host, their (K, 1) columns on the backend,
    which model is still training (`active`), and the update as calls made at the first step."""

    def __init__(self, backend, params, lr):
        self.backend, self.xp, self.dtype = backend, backend.xp, params.dtype
        self.lr_init = np.asarray(lr, np.float64).copy()
        self.lr = self.lr_init.copy()
        self.active = np.ones(self.lr.shape[0], bool)
        self._calls = None

    def _column(self, values):
        """(K,) host values as a (K, 1) array on the backend."""
        return self.backend.asarray(np.asarray(values, np.float64)[:, None], self.dtype)

    def step(self, j, params, grads):
        """Batch j's update of every model's params from its grads (a stopped model's is 0)."""
        if self._calls is None:
            self._calls = Calls(self._update_calls(params, grads))
        self._calls()

    def select(self, rows):
        """This optimizer for the models at `rows` (host indices) only, with their state."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._calls = None
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

    def iteration_ends(self, k, t):
        pass

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

    def _update_calls(self, params, grads):
        xp, v, mu = self.xp, self.v, self._mu
        tmp, update = xp.empty_like(params), xp.empty_like(params)
        calls = [(xp.multiply, (grads, self._lr, tmp)), (xp.multiply, (v, mu, v)), (xp.subtract, (v, tmp, v))]
        if not self.nesterov.any():
            return calls + [(xp.add, (params, v, params))]
        calls += [(xp.multiply, (v, mu, update)), (xp.subtract, (update, tmp, update))]
        if not self.nesterov.all():  # update = nesterov ? mu v - lr g : v, exactly (x 1 + 0 and 0 + x 1)
            nesterov = self._column(self.nesterov)
            calls += [(xp.multiply, (update, nesterov, update)), (xp.multiply, (v, 1 - nesterov, tmp)),
                      (xp.add, (update, tmp, update))]
        return calls + [(xp.add, (params, update, params))]

    def iteration_ends(self, k, t):
        if self.schedule == "invscaling":
            self.lr[k] = float(self.lr_init[k]) / (t + 1) ** float(self.power_t[k])

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


class StackAdam(_StackOptimizer):
    """sklearn_loop.Adam over (K, P): params -= lr_t m / (sqrt(v) + eps), lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); lr,
    beta_1, beta_2 and epsilon per model. Each epoch's lr_t of every step and model is one table moved once."""

    def __init__(self, backend, params, lr, beta_1, beta_2, epsilon):
        super().__init__(backend, params, lr)
        self.beta_1, self.beta_2 = np.asarray(beta_1, np.float64), np.asarray(beta_2, np.float64)
        self.epsilon = np.asarray(epsilon, np.float64)
        self.t = 0
        self.mv = self.xp.zeros((2, *params.shape), self.dtype)  # [m; v]
        self._columns()

    STATE = ("mv",)

    def _columns(self):
        self._neg_lr = self._column(-self.lr)  # this step's -lr_t per model
        self._table = None

    def _set(self):
        pass  # read from the next epoch's table

    def _lr_t(self, t):
        """lr_t of every model at step t (host), as scikit-learn computes it."""
        return self.lr_init * np.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)

    def epoch_starts(self, batches):
        steps = self.t + 1 + np.arange(batches)[:, None]
        table = -self._lr_t(steps) * self.active  # 0 for a stopped model: its update is 0
        self._table = self.backend.asarray(table[:, :, None], self.dtype)

    def _update_calls(self, params, grads):
        xp, (m, v) = self.xp, self.mv
        terms = xp.empty_like(self.mv)  # [(1 - b1) g; (1 - b2) g^2]
        g1, g2 = terms
        betas = self.backend.asarray(np.stack([self.beta_1, self.beta_2])[:, :, None], self.dtype)
        one_b1, one_b2, eps = (self._column(c) for c in (1 - self.beta_1, 1 - self.beta_2, self.epsilon))
        tmp, update = xp.empty_like(params), xp.empty_like(params)
        return [
            (xp.multiply, (grads, one_b1, g1)), (xp.multiply, (grads, grads, g2)), (xp.multiply, (g2, one_b2, g2)),
            (xp.multiply, (self.mv, betas, self.mv)),
            (xp.add, (self.mv, terms, self.mv)),  # m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2
            (xp.sqrt, (v, tmp)), (xp.add, (tmp, eps, tmp)),
            (xp.multiply, (m, self._neg_lr, update)), (xp.divide, (update, tmp, update)),
            (xp.add, (params, update, params)),
        ]

    def step(self, j, params, grads):
        self.t += 1
        self._neg_lr[...] = self._table[j]
        super().step(j, params, grads)

    def single(self, k, params):
        """Model k's optimizer as gpunet.sklearn's estimator keeps it (on the host), with `params` its parameters."""
        opt = Adam(params, self.lr_init[k], self.beta_1[k], self.beta_2[k], self.epsilon[k])
        opt.t = self.t
        opt.lr = opt.lr_init * math.sqrt(1 - opt.beta_2**opt.t) / (1 - opt.beta_1**opt.t)
        opt.mv = self.backend.to_numpy(self.mv[:, k]).copy()
        return opt


def fit_stochastic_stack(stack, opt, hists, rows, s):
    """scikit-learn's stochastic epochs (sklearn_loop.fit_stochastic) for a stack: its batches from the row plan,
    each model's own loss curve, schedule and stopping rule.

    Args:
        stack, opt: the Stack and its StackSGD / StackAdam.
        hists: one sklearn_loop.History per model, continued.
        rows: the models' row plan, a stack_rows.SharedRows or stack_rows.ModelRows.
        s: settings with max_iter, tol, n_iter_no_change and score (with early stopping a
            stack_scores.ValidationScores, else None).

    Returns:
        Per model (params, optimizer, unconverged): its flat host parameters, its optimizer as
        gpunet.sklearn keeps it, and whether it stopped at max_iter without converging.
    """
    done = [None] * stack.k
    ids = np.arange(stack.k)  # the model of each row of the stack
    score = s.score
    for hist in hists:
        hist.n_iter_ = 0
    for _ in range(s.max_iter):
        if not opt.active.any():
            break
        if 2 * opt.active.sum() <= stack.k:  # most have stopped: the others as a smaller stack
            keep = np.flatnonzero(opt.active)
            stack, opt, rows, ids = stack.select(keep), opt.select(keep), rows.select(keep), ids[keep]
            score = None if score is None else score.select(keep)
        losses = rows.epoch(stack, opt)
        scores = None if score is None else score(stack)
        for k in np.flatnonzero(opt.active):
            hist = hists[ids[k]]
            hist.loss_ = losses[k]
            hist.n_iter_ += 1
            hist.t_ += int(rows.n[k])
            hist.loss_curve_.append(hist.loss_)
            hist.update(s.tol, None if scores is None else partial(float, scores[k]), _Row(stack, k))
            opt.iteration_ends(k, hist.t_)
            if hist.no_improvement_count > s.n_iter_no_change:
                if opt.trigger_stopping(k):
                    done[ids[k]] = _finished(stack, opt, k, hist, False)
                    opt.freeze(k)
                    continue
                hist.no_improvement_count = 0
        opt.epoch_ends()
    for k in np.flatnonzero(opt.active):
        done[ids[k]] = _finished(stack, opt, k, hists[ids[k]], True)
    return done


class _Row:
    """Model k's parameters as History.update copies them when its validation score improves: a host copy."""

    def __init__(self, stack, k):
        self.stack, self.k = stack, k

    def copy(self):
        return self.stack.params_host(self.k)


def _finished(stack, opt, k, hist, unconverged):
    """(params, optimizer, unconverged) of model k as its fit ends: with early stopping its best parameters."""
    params = stack.params_host(k) if hist.best_params is None else hist.best_params
    return params, opt.single(k, params), unconverged
