"""K networks of one architecture trained as one computation: scikit-learn's stochastic fit (gpunet/sklearn_loop.py)
over a leading model axis, written once against `xp`.

Candidates of a search differ in numbers the update reads (alpha, the learning rate, momentum, Nesterov's or not,
power_t, Adam's betas and epsilon), in their random_state and in their rows (their fold). Here they are one stack:
parameters (K, P), row k model k's flat buffer in gpunet's layout (gpunet/model.py); every matrix product one
matmul over the model axis, the batch's inputs shared by models that share their rows and order
(gpunet/stack_rows.py), else each model's own; the per-model numbers (K, 1) columns (gpunet/stack_optim.py).

A step runs chunk by chunk of models: each chunk's forward pass, output error, backward pass, weight decay and
update, before the next chunk's, so that a chunk's activations, gradients and optimizer state stay in a core's
cache between the passes that write and read them (all K models' arrays at once would stream through memory
for every element-wise pass). On the CPU, the chunks of a step split between as many threads as BLAS had, BLAS then
on one thread per product (Stack.on_threads), where a chunk's products are long enough to pay for it (THREAD_WORK).

Each model keeps scikit-learn's stopping rule on its own loss curve (gpunet/stack_loop.py): a stopped model's
learning rate (and momentum) become 0, so that its parameters stay as they are while the others go on.
"""

import threading
from functools import partial

import numpy as np

from gpunet.calls import Calls
from gpunet.fused import blas_threads, run_parts
from gpunet.losses import binary_log_loss_terms, loss_factor, poisson_deviance_terms
from gpunet.model import Layout
from gpunet.sklearn_loop import loss_terms, take_batch

# A chunk of models' batch buffers and parameter state. Measured side by side (100 digits fits, hidden 64, batches
# of 200, 5 alternating runs on a loaded 2-vCPU AMD EPYC): all models at once 3.16 s, chunks of 4 MiB 2.94 s, of
# 1 MiB 3.28 s; 100 iris fits (hidden 32): 0.77 s at once, 0.81 s in 4 MiB chunks (one chunk in three).
CHUNK_BYTES = 1 << 22
SMALL, FEW = 1 << 17, 10  # see together()
# The multiply-adds of a chunk's forward products (models x rows x parameters) from which a step's chunks run on
# threads. The threads take turns at the interpreter between their NumPy calls, so they pay only where the calls are
# long. Measured side by side on 2 cores, 20 models in chunks of 5, 2 threads against 1: digits (200 x 4,810 a model)
# 1.14-1.39x faster; iris (120 x 259) 0.83x; 4 models of 120 x 67 0.35x. Unmeasured beyond 2 cores.
THREAD_WORK = 1 << 21


def together(backend, whole, numbers, per_set):
    """Whether models of different data sets (folds, seeds) train as one stack, each gathering its own rows, rather
    than a stack per data set whose models share their batches: always on a GPU (the fewest launches); on the CPU
    where each epoch is one `whole` batch (rows gathered once) of small data sets (at most SMALL input numbers,
    rows x (features + 1), the largest `numbers`) and a stack per data set would hold fewer than FEW models
    (`per_set`, the most). Measured on the CPU, iris, 5 folds, scikit-learn's rules: 4 candidates 0.52 s per fold
    against 0.25 s in one stack, 8: 0.61 against 0.46, 12: 1.10 against 1.15, 20: 1.31 against 1.84; gpunet's rules,
    6 candidates x 3 folds: 1.32 against 0.80 s; digits in batches of 200: 10.8 s per fold against 13.6 s."""
    return backend.name == "cuda" or (whole and numbers <= SMALL and per_set < FEW)


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
        rules: "sklearn", scikit-learn's objective: the mean loss over a batch (half the squared error averaged over
            its outputs' columns, the error not), plus alpha / (2 n) sum(w^2), -log p clipped to [-log(1 - eps),
            -log(eps)] in the log loss; or gpunet train's loss "mse", "sse" or "ce" (gpunet/stack_train.py): k S
            with k of gpunet.losses.loss_factor, the penalty alpha / 2 sum(w^2) whatever the batch's rows, nothing
            clipped.
    """

    def __init__(self, backend, sizes, params, dtype, activation, out_activation, alpha, rules="sklearn",
                 threads=None, session=None):
        self.backend, self.xp = backend, backend.xp
        # on the CPU, the chunks of a step run on as many threads as BLAS had (each chunk's products on one: see
        # on_threads); a GPU takes one stream of launches
        self.threads = threads or (blas_threads() if backend.name == "cpu" else 1)
        self.session = session or ThreadSession()
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
        self.rules = rules
        self.loss_per_sum = 1.0 / (2 * sizes[-1]) if out_activation == "identity" else 1.0
        self.eps = float(np.finfo(self.dtype).eps)
        self._workspaces, self._decay = {}, {}
        # the decay's (K, P) scratch, and 1 / each model's weight sum in a batch of its own rows
        self._tmp, self._inv = self.xp.empty_like(self.params), self.xp.empty((self.k, 1), self.dtype)
        self._s = self._pen = None  # (batches, K): each batch's loss sum S and penalty
        self._on_weights = None  # (P,) on the backend: 1 on the weights, 0 on the biases (sum_squared_weights)

    def select(self, rows):
        """A stack of the models at `rows` (host indices) only, with their parameters."""
        sizes, act, out = self.layout.sizes, self.activation, self.out_activation
        return Stack(self.backend, sizes, self.params[self.backend.asarray(rows)], self.dtype, act, out,
                     self.alpha[rows], self.rules, self.threads, self.session)

    def on_threads(self):
        """The context a stack (and the smaller stacks select() makes of it) trains in: only inside it do a step's
        chunks go to threads, and from the first step that sends them until it ends, BLAS runs each product on one
        thread (ThreadSession)."""
        return self.session

    def _blocks(self, flat):
        """(K, fan_in + 1, fan_out) views of (K, P) `flat` per layer: weight rows, then the bias row."""
        return [flat[:, o : o + r * c].reshape(self.k, r, c) for o, (r, c) in zip(self.layout.offsets,
                                                                                 self.layout.shapes)]

    def chunks(self, n, own):
        """Slices of the models in chunks of nearly equal size whose buffers for a batch of n rows fit CHUNK_BYTES;
        with threads, as many chunks for each where even the smallest chunk's products reach THREAD_WORK."""
        sizes = self.layout.sizes
        floats = 3 * n * (sum(h + 1 for h in sizes[1:-1]) + sizes[-1]) + 6 * self.layout.size
        size = max(1, min(self.k, CHUNK_BYTES // (self.dtype.itemsize * (floats + own * n * (sizes[0] + 1)))))
        count = -(-self.k // size)
        threaded = min(self.k, -(-count // self.threads) * self.threads)
        if self.k // threaded * n * self.layout.size >= THREAD_WORK:
            count = threaded
        edges = [self.k * i // count for i in range(count + 1)]
        return [slice(a, b) for a, b in zip(edges, edges[1:])]

    def shares(self, parts, n):
        """Each thread's parts of a workspace of n rows (Stack.step), or one share of them all: outside on_threads,
        or where a chunk's products are too small to pay for the threads' hand-offs (THREAD_WORK)."""
        smallest = min(part.sl.stop - part.sl.start for part in parts)
        if self.threads == 1 or len(parts) == 1 or not self.session.active or smallest * n * self.layout.size < \
                THREAD_WORK:
            return [parts]
        return [parts[t :: self.threads] for t in range(min(self.threads, len(parts)))]

    def error_scale(self, n):
        """The factor of the output error p - y in the gradient of a batch of n rows (shared by the models):
        scikit-learn's 1 / n for every output (its squared error is halved), or gpunet's dS/dz factor (2 for the
        squared error) times its loss factor."""
        if self.rules == "sklearn":
            return 1.0 / n
        return (2.0 if self.out_activation == "identity" else 1.0) * loss_factor(self.rules, n, self.layout.sizes[-1])

    def workspace(self, n, own=False):
        if (n, own) not in self._workspaces:
            self._workspaces[n, own] = StackWorkspace(self, n, own)
        return self._workspaces[n, own]

    def decay_calls(self, n, sl):
        """(tmp, calls, more calls) of the weight decay of the models in slice sl (not the biases): tmp = alpha / n
        w, or with each model's own rows (n None) alpha w, from which the penalty is read; then grads += tmp, with
        own rows after tmp *= `_inv` (1 / each model's weight sum, set per batch). Under gpunet's rules tmp = alpha w
        for every batch. None when every alpha is 0."""
        if not self.alpha.any():
            return None
        if self.rules != "sklearn":  # gpunet's: alpha w whatever the rows
            n = 1
        key = (n, sl.start, sl.stop)
        if key not in self._decay:
            xp = self.xp
            factor = self.alpha if n is None else self.alpha / n
            scaled = self.backend.asarray(factor[sl, None] * self.layout.on_weights(), self.dtype)
            tmp, params, grads = self._tmp[sl], self.params[sl], self.grads[sl]
            add = [(xp.add, (grads, tmp, grads))]
            if n is None:
                add.insert(0, (xp.multiply, (tmp, self._inv[sl], tmp)))
            self._decay[key] = (tmp, Calls([(xp.multiply, (params, scaled, tmp))]), Calls(add))
        return self._decay[key]

    def step(self, ws, j, opt):
        """Batch j in `ws`: each model's scikit-learn gradient, its loss sum S and penalty into slot j, and its
        update by `opt`, chunk by chunk; with threads, each thread's share of the chunks at once (they write
        disjoint rows of every buffer). A workspace's first step runs alone: it makes the calls the others
        replay."""
        opt.begin_step(j)
        if ws.shares is None or ws.opt is not opt:
            ws.opt, ws.shares = opt, self.shares(ws.parts, ws.n)
            if len(ws.shares) > 1:  # BLAS on one thread from this first step, so that every step computes alike
                self.session.hold()
            self._chunks(ws.parts, j, opt)
        elif len(ws.shares) == 1:
            self._chunks(ws.parts, j, opt)
        else:
            run_parts([partial(self._chunks, share, j, opt) for share in ws.shares])

    def _chunks(self, parts, j, opt):
        s, pen = self._s[j], self._pen[j]
        for part in parts:
            part.gradient(s[part.sl], pen[part.sl])
            opt.chunk_calls(part.sl, self.params, self.grads)()

    def penalty(self, tmp, sl, out):
        """out (chunk,) = each model's row of tmp . its row of params: (alpha / n) sum(w^2), or alpha sum(w^2)."""
        self.xp.matmul(tmp[:, None, :], self.params[sl, :, None], out=out.reshape(-1, 1, 1))

    def epoch(self, x_rows, y_t, order, batch_size, opt):
        """One pass over the observations `order` of x_rows (sklearn_loop.batch_rows) and y_t (d_out, N) in
        batches, every model stepped by `opt`; return the epoch's scikit-learn loss of each model (K,) on the host."""
        counts = self.steps(x_rows, y_t, order, batch_size, opt)
        s, pen = self.sums()
        # scikit-learn's epoch loss: the batches' losses times their sizes, summed in float64, over n
        return (self.loss_per_sum * s.sum(axis=0) + 0.5 * np.dot(counts, pen)) / order.shape[0]

    def steps(self, x_rows, y_t, order, batch_size, opt):
        """One pass over the observations `order` of x_rows and y_t in batches, every model stepped by `opt`, each
        batch's loss sums and penalties kept (sums()); return the batches' sizes."""
        n = order.shape[0]
        batches = -(-n // batch_size)
        self._slots(batches)
        opt.epoch_starts(batches)
        counts = []
        for j, start in enumerate(range(0, n, batch_size)):
            rows = order[start : start + batch_size]
            ws = self.workspace(rows.shape[0])
            ws.gather(x_rows, y_t, rows)
            self.step(ws, j, opt)
            counts.append(ws.n)
        return counts

    def sums(self):
        """(S, penalty), each (batches, K) float64 on the host: the last epoch's loss sums and penalties per batch
        and model."""
        return tuple(self.backend.to_numpy(a).astype(np.float64) for a in (self._s, self._pen))

    def epoch_own(self, xr, yr, batches, opt, n):
        """One epoch of batches of each model's own rows (gpunet/stack_rows.py): `batches` its stack_rows.Batch
        list, xr and yr the rows they index, n (K,) each model's training rows; return each model's epoch loss
        (K,) on the host."""
        self.steps_own(xr, yr, batches, opt)
        s, pen = self.sums()
        ratio = np.stack([batch.ratio for batch in batches])
        # each batch's loss times its rows, as scikit-learn's weighted loss gives it, summed over n
        return (ratio * (self.loss_per_sum * s + 0.5 * pen)).sum(axis=0) / n

    def steps_own(self, xr, yr, batches, opt):
        """One pass over `batches` of each model's own rows (stack_rows.Batch), every model stepped by `opt`, each
        batch's loss sums and penalties kept (sums())."""
        self._slots(len(batches))
        opt.epoch_starts(len(batches))
        for j, batch in enumerate(batches):
            ws = self.workspace(batch.rows.shape[1], own=True)
            ws.gather_own(xr, yr, batch)
            self._inv[...] = batch.inv
            self.step(ws, j, opt)

    def logits(self, xr, rows):
        """Each model's output logits z (K, d_out, n) on the backend for its rows `rows` (K, n) (host) of xr."""
        ws = self._held(xr, rows)
        for part in ws.parts:
            part.forward()
        return ws.z[-1]

    def _held(self, xr, rows):
        """The workspace of the models' rows `rows` (K, n) of xr, gathered again only when `rows` is another array."""
        ws = self.workspace(rows.shape[1], own="outputs")
        if ws.held is not rows:
            self.xp.take(xr, self.backend.asarray(rows), axis=0, out=ws.xr)
            ws.held = rows
        return ws

    def outputs(self, xr, rows):
        """Each model's output activations (K, d_out, n) on the backend for its rows `rows` (K, n) (host) of xr
        (M, d_in + 1); the rows are gathered again only when `rows` is another array."""
        ws = self._held(xr, rows)
        for part in ws.parts:
            part.forward()
            if self.out_activation != "identity":
                part.out.probabilities()
        return ws.z[-1] if self.out_activation == "identity" else ws.g[-1]

    def _slots(self, batches):
        if self._s is None or self._s.shape[0] != batches:
            self._s, self._pen = (self.xp.zeros((batches, self.k), self.dtype) for _ in range(2))

    def sum_squared_weights(self):
        """(K,) sum(w^2) over each model's weights (not its biases), float64 on the host."""
        if self._on_weights is None:
            self._on_weights = self.backend.asarray(self.layout.on_weights(), self.dtype)
        return self.backend.to_numpy(self.params**2 @ self._on_weights).astype(np.float64)

    def params_host(self, k):
        """Model k's flat parameters, a host copy."""
        return self.backend.to_numpy(self.params[k]).copy()


class ThreadSession:
    """A stack's training (Stack.on_threads): while it is entered, a step's chunks may go to threads, and once one
    has (hold()), BLAS runs each product on one thread until it ends, so that the chunks' threads and the products'
    never share a core. The limit is process-wide (threadpoolctl): trainings at once in other threads share it,
    and the last to end gives BLAS its threads back."""

    _lock, _holders, _limits = threading.Lock(), 0, None

    def __init__(self):
        self.active = self.held = False

    def __enter__(self):
        self.active = True
        return self

    def __exit__(self, *exc):
        self.active = False
        if self.held:
            self.held = False
            with ThreadSession._lock:
                ThreadSession._holders -= 1
                if ThreadSession._holders == 0:
                    ThreadSession._limits.restore_original_limits()
                    ThreadSession._limits = None

    def hold(self):
        if self.held:
            return
        with ThreadSession._lock:
            if ThreadSession._holders == 0:
                from threadpoolctl import threadpool_limits

                ThreadSession._limits = threadpool_limits(limits=1, user_api="blas")
            ThreadSession._holders += 1
        self.held = True


class StackWorkspace:
    """The activations and gradients of K models for batches of n rows, allocated once; feature-major as
    gpunet.model.Workspace's: a[0] (d_in + 1, n) is the batch's inputs with a row of ones, shared by the models
    (with each model's own rows (K, d_in + 1, n), the transpose of their gathered rows); a[l] (K, fan_in + 1, n)
    above it, whose rows but the last are the layer below's output z. `parts` are its chunks of models."""

    def __init__(self, stack, n, own=False):
        xp, dt, sizes, k = stack.xp, stack.dtype, stack.layout.sizes, stack.k
        self.stack, self.xp, self.n, self.own = stack, xp, n, own
        self.held = None  # the stack_rows.Batch (or held-out rows) gathered last
        if own:  # each model's own rows (gpunet/stack_rows.py): gathered row-major with their ones, used transposed
            self.xr, self.yr = xp.empty((k, n, sizes[0] + 1), dt), xp.empty((k, n, sizes[-1]), dt)
            first = self.xr.transpose(0, 2, 1)
        else:  # the batch shared by the models, gathered as whole rows (sklearn_loop.take_batch)
            self.x_rows = xp.ones((n, sizes[0] + 1), dt)
            first = self.x_rows.T
        self.a = [first] + [xp.ones((k, h + 1, n), dt) for h in sizes[1:-1]]
        self.x = self.a[0][:-1]
        self.z = [a[:, :-1] for a in self.a[1:]] + [xp.empty((k, sizes[-1], n), dt)]
        hidden = stack.activation != "identity"
        self.d = [xp.empty((k, h, n), dt) if hidden else None for h in sizes[1:-1]]  # act'(z), from the forward pass
        self.g = [xp.empty((k, c, n), dt) for c in sizes[1:]]  # dS/dz per layer, scaled
        if own:  # each model's weights of its rows, and their scale with its factor over its weight sum, per batch
            self.y = self.yr.transpose(0, 2, 1)
            self.weight, self.scale = xp.empty((k, 1, n), dt), xp.empty((k, 1, n), dt)
        else:
            self.y, self.weight = xp.empty((sizes[-1], n), dt), None
            self.scale = stack.backend.asarray(stack.error_scale(n), dt)  # -> a.T delta / n
        self.parts = [_Part(self, sl) for sl in stack.chunks(n, bool(own))]
        self.opt = self.shares = None  # the optimizer of the steps, and each thread's parts (Stack.step)

    def gather_own(self, xr, yr, batch):
        """Each model's rows of `batch` (a stack_rows.Batch) from xr (M, d_in + 1) and yr (M, d_out), with their
        weights and scales."""
        if batch is self.held:  # this batch's rows are still here (an epoch of one batch, not shuffled)
            return
        xp = self.xp
        xp.take(xr, batch.rows, axis=0, out=self.xr)
        xp.take(yr, batch.rows, axis=0, out=self.yr)
        if self.held is None or batch.weight is not self.held.weight or batch.scale is not self.held.scale:
            self.weight[...], self.scale[...] = batch.weight, batch.scale
        self.held = batch

    def gather(self, x_rows, y_t, rows):
        """Observations `rows` of x_rows (sklearn_loop.batch_rows) and y_t (d_out, N) as every model's batch."""
        take_batch(self.stack.backend, x_rows, y_t, rows, self)


class _Part:
    """One chunk of a workspace's models (slice sl): views of its buffers and the calls of its passes."""

    def __init__(self, ws, sl):
        stack, xp = ws.stack, ws.xp
        self.stack, self.sl, self.own = stack, sl, ws.own
        per_model = lambda a: a if a is None or (a.ndim < 3 and not ws.own) else a[sl]  # noqa: E731
        self.a = [per_model(ws.a[0])] + [a[sl] for a in ws.a[1:]]
        self.z, self.g = [z[sl] for z in ws.z], [g[sl] for g in ws.g]
        self.d = [None if d is None else d[sl] for d in ws.d]
        y, weight = per_model(ws.y), per_model(ws.weight)
        scale = ws.scale[sl] if ws.own else ws.scale
        self.out = _OutputError(xp, stack.out_activation, self.z[-1], y, self.g[-1], weight,
                                stack.eps if stack.rules == "sklearn" else None)
        self._forward = _forward_calls(xp, stack.activation, [b[sl] for b in stack.blocks], self.a, self.z, self.d)
        self._backward = _backward_calls(xp, self.g, scale, self.a, [b[sl] for b in stack.grad_blocks],
                                         [w[sl] for w in stack.weights], self.d)
        self._decay = ()  # made at the first gradient (a workspace of held-out rows never takes one)
        self._n = None if ws.own else ws.n

    def forward(self):
        self._forward()

    def gradient(self, s, pen):
        """This chunk's gradient into the stack's grads, its loss sums into s and penalties into pen (chunk,)."""
        self._forward()
        self.out(s)
        self._backward()
        if self._decay == ():
            self._decay = self.stack.decay_calls(self._n, self.sl)
        if self._decay is not None:
            tmp, scaled, add = self._decay
            scaled()
            self.stack.penalty(tmp, self.sl, pen)
            add()


def _forward_calls(xp, activation, blocks, a, z, d):
    """z = w.T a + b per layer and model (the bias through the row of ones); act(z) in place on hidden layers,
    its derivative into d."""
    calls = Calls()
    for layer, (blk, a_in, z_out) in enumerate(zip(blocks, a, z)):
        calls.append((partial(xp.matmul, out=z_out), (blk.transpose(0, 2, 1), a_in)))
        if layer < len(d) and d[layer] is not None:
            calls += _activation_calls(xp, activation, z_out, d[layer])
    return calls


def _backward_calls(xp, g, scale, a, grad_blocks, weights, d):
    """From the output error in g[-1]: scaled, then per layer from the top dS/dw and dS/db (via the row of ones)
    and, below the top, dS/dz of the layer below through its activation's derivative."""
    calls = Calls([(xp.multiply, (g[-1], scale, g[-1]))])
    for layer in reversed(range(len(g))):
        calls.append((partial(xp.matmul, out=grad_blocks[layer]), (a[layer], g[layer].transpose(0, 2, 1))))
        if layer > 0:
            # one output (an inner dimension of 1): the product is w g, which a broadcast multiply gives faster
            if g[layer].shape[1] == 1:
                calls.append((xp.multiply, (weights[layer], g[layer], g[layer - 1])))
            else:
                calls.append((partial(xp.matmul, out=g[layer - 1]), (weights[layer], g[layer])))
            if d[layer - 1] is not None:
                calls.append((xp.multiply, (g[layer - 1], d[layer - 1], g[layer - 1])))
    return calls


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
    and each model's loss sum S, as gpunet/losses.py computes them for one; with each model's own rows (weight
    given), its targets (K, d_out, n) and its rows' weights (K, 1, n). With eps None (gpunet train's loss) the log
    loss is not clipped."""

    def __init__(self, xp, kind, z, y, g, weight, eps):
        self.xp, self.kind, self.z, self.y, self.g, self.weight, self.eps = xp, kind, z, y, g, weight, eps
        k, n = z.shape[0], z.shape[2]
        if kind == "softmax":
            self.top, self.total, self.label = (xp.empty((k, 1, n), z.dtype) for _ in range(3))
            self.zy = xp.empty_like(z)
            self.known = xp.empty(n, z.dtype)  # 1 for a row with a label, 0 for a row of zeros
            if eps is not None:
                self.low, self.high = -np.log1p(-eps), -np.log(eps)  # -log(1 - eps) <= -log p <= -log(eps)
        if weight is not None:  # each row's loss (over the outputs), and its terms or its label's count, made once
            self.rows, self.per_row = xp.empty((k, 1, n), z.dtype), xp.empty((k, 1, n), z.dtype)
            self.terms = xp.empty_like(z) if kind == "identity" else None

    def __call__(self, s):
        """g = p - y; each model's loss sum S into s (chunk,)."""
        if self.weight is not None:
            return self._weighted(s)
        xp, z, y, g, k = self.xp, self.z, self.y, self.g, self.z.shape[0]
        if self.kind == "identity":
            xp.subtract(z, y, out=g)
            flat = g.reshape(k, 1, -1)
            xp.matmul(flat, flat.transpose(0, 2, 1), out=s.reshape(k, 1, 1))  # sum of squares per model
            return
        self.probabilities()  # the softmax's largest logit of each row is then 0
        if self.kind == "softmax":  # clipped as scikit-learn clips p, for the rows with a label
            xp.sum(y, axis=0, out=self.known)
            self._minus_log_p()
            if self.eps is not None:
                xp.clip(self.total, self.low, self.high, out=self.total)
            xp.matmul(self.total.reshape(k, -1), self.known, out=s)
        elif self.kind == "logistic":
            s[...] = binary_log_loss_terms(xp, y, g, self.eps).sum(axis=(1, 2))
        else:  # exp: Poisson
            s[...] = poisson_deviance_terms(xp, y, g).sum(axis=(1, 2))
        xp.subtract(g, y, out=g)

    def _minus_log_p(self):
        """total = -log p[label] = log sum exp(z) - z[label] per row (z shifted, total its sum of exps, by
        probabilities()); 0 - 0 for a row of zeros."""
        xp = self.xp
        xp.log(self.total, out=self.total)
        xp.multiply(self.z, self.y, out=self.zy)
        xp.sum(self.zy, axis=1, keepdims=True, out=self.label)  # z[label]
        xp.subtract(self.total, self.label, out=self.total)

    def probabilities(self):
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
        """g = p - y and each model's weighted loss sum S = sum_i weight_i S_i into s, S_i each row's loss as
        scikit-learn's weighted loss takes it (sklearn_loop.loss_terms)."""
        xp, z, y, g = self.xp, self.z, self.y, self.g
        if self.kind == "identity":
            xp.subtract(z, y, out=g)
            terms = xp.multiply(g, g, out=self.terms)
        elif self.kind == "softmax" and self.eps is None:  # gpunet's: -log p[label] from shifted logits, unclipped
            self.probabilities()
            self._minus_log_p()
            xp.sum(y, axis=1, keepdims=True, out=self.per_row)
            xp.multiply(self.total, self.per_row, out=self.total)  # rows with a label only
            xp.subtract(g, y, out=g)
            xp.matmul(self.total, self.weight.transpose(0, 2, 1), out=s.reshape(-1, 1, 1))
            return
        else:
            self.probabilities()
            terms = loss_terms(xp, self.kind, g, y, self.eps)
            xp.subtract(g, y, out=g)
        xp.sum(terms, axis=1, keepdims=True, out=self.rows)  # (chunk, 1, n)
        xp.matmul(self.rows, self.weight.transpose(0, 2, 1), out=s.reshape(-1, 1, 1))
