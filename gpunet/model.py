"""The network: flat parameter layout, initialisation, forward, loss and backward, written once against `xp`.

Layer l maps its input a[l] to z[l] = a[l] @ w[l] + b[l]; hidden layers apply an activation (ReLU,
the tutorial's, by default; gpunet/activations.py), the output layer is linear and its loss
(gpunet/losses.py) gives the output error. The bias is folded into the matrix product: each layer's parameters are one
(fan_in + 1, fan_out) block whose last row is the bias, and each layer's input carries a feature of
ones. Stacked, the blocks are the flat buffer [w1 | b1 | w2 | b2 | ...].

The workspace is feature-major (each buffer is (features, n), the transpose of the math above), so
that the elementwise passes write whole contiguous rows; the matrix products take transposed views,
which BLAS and cuBLAS read without a copy.
"""

import numpy as np

from gpunet.activations import activation
from gpunet.calls import Calls
from gpunet.fused import calls as fused
from gpunet.fused import whole
from gpunet.errors import ConfigError
from gpunet.losses import output_loss

INITS = ("normal", "he", "glorot")
# Elements of a large hidden layer's dS/dz made at a time where it is written over the layer's output: its
# scratch, 4 MiB of float32. At least fused.WHOLE, so that each block's pass runs in the engine's own small blocks.
GRADIENT_BLOCK = 1 << 20
# at least this many rows a block: on a tall batch (many rows n), blocks of 1-4 rows made the input gradient as
# many thin products, each reading all of g again (2^18 rows, 256 units: 2.5 s a step against 1.2 s whole; with
# 64-row blocks 1.1 s)
MIN_BLOCK_ROWS = 64


class Layout:
    """Where each layer's weights and bias sit in a flat buffer.

    Args:
        sizes: layer widths [d_in, *hidden, d_out].
    """

    def __init__(self, sizes):
        self.sizes = tuple(int(s) for s in sizes)
        self.shapes = [(fan_in + 1, fan_out) for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:])]
        self.offsets = np.cumsum([0] + [r * c for r, c in self.shapes]).tolist()
        self.size = self.offsets[-1]

    def blocks(self, flat):
        """Views of `flat` as one (fan_in + 1, fan_out) block per layer: weight rows, then the bias row."""
        return [flat[o : o + r * c].reshape(r, c) for o, (r, c) in zip(self.offsets, self.shapes)]

    def unpack(self, flat):
        """[(w, b), ...] per layer: w of shape (fan_in, fan_out), b of shape (fan_out,); views of `flat`."""
        return [(blk[:-1], blk[-1]) for blk in self.blocks(flat)]

    def on_weights(self):
        """(size,) float64 host: 1 on the weights, 0 on the biases (which take no weight decay)."""
        mask = np.zeros(self.size)
        for w, _ in self.unpack(mask):
            w[...] = 1.0
        return mask


def rows_with_ones(backend, arrays, dtype):
    """(rows, starts): arrays (n_i, d) (host, on the backend, or sparse: made dense) one after another on the
    backend as one row-major (sum n_i, d + 1) array of `dtype`, each row followed by a 1 (the bias's input, so that
    a batch is gathered as whole rows); starts[i] is the first row of arrays[i]."""
    starts = np.cumsum([0] + [a.shape[0] for a in arrays])
    rows = backend.xp.ones((int(starts[-1]), arrays[0].shape[1] + 1), dtype)
    for a, start in zip(arrays, starts):
        rows[start : start + a.shape[0], :-1] = backend.xp.asarray(a.toarray() if hasattr(a, "tocsr") else a, dtype)
    return rows, starts


def init_params(sizes, rng, init="normal"):
    """Initial flat parameters in float64, drawn from `rng` on the host.

    `normal` is the tutorial's: w ~ N(0, 1), b = 0. `he` scales w by sqrt(2 / fan_in),
    which keeps activations in range for wide or deep networks. `glorot` draws w uniformly within
    +-sqrt(6 / (fan_in + fan_out)), the start for tanh and sigmoid.
    """
    if init not in INITS:
        raise ConfigError(f"unknown --init {init!r}: choose one of {', '.join(INITS)}")
    layout = Layout(sizes)
    flat = np.zeros(layout.size)
    for w, _ in layout.unpack(flat):
        if init == "glorot":
            bound = np.sqrt(6.0 / sum(w.shape))
            w[...] = rng.uniform(-bound, bound, w.shape)
        else:
            w[...] = rng.standard_normal(w.shape) * (1.0 if init == "normal" else np.sqrt(2.0 / w.shape[0]))
    return flat


def keeps_derivative(backend, h, n, act):
    """Whether a hidden layer of h units over n rows keeps act'(z) in a buffer: a small one on the CPU (fused.whole)."""
    return act.derivative is not None and whole(backend, h * n)


def block_rows(backend, h, n, act):
    """The rows per block in which a hidden layer's dS/dz is written over its output a = act(z), which the backward
    pass has read by then: each block's product into a scratch buffer, then times act'(z) read from a, over a; h for
    the identity (the product alone, straight over a). 0 where dS/dz has a buffer of its own: a layer that keeps
    act'(z), or one that fits in one block (its scratch would be as large)."""
    if act.derivative is None:
        return h
    rows = max(-(-GRADIENT_BLOCK // n), MIN_BLOCK_ROWS)
    return rows if rows < h and not keeps_derivative(backend, h, n, act) else 0


def scratch_rows(backend, sizes, n, act):
    """The rows of the scratch buffer of a workspace's blocks of dS/dz (0: none)."""
    if act.derivative is None:  # the identity's products go straight over a
        return 0
    return max((block_rows(backend, h, n, act) for h in sizes[1:-1]), default=0)


def workspace_bytes(backend, sizes, n, dtype, activation_name):
    """The bytes of a Workspace's buffers for batches of n rows (what its bytes() gives once it is made): each
    layer's input with its row of ones, the output layer's z, error and targets, a hidden layer's dS/dz where it
    has a buffer of its own and its act'(z) where it keeps one, and the scratch."""
    act = activation(activation_name)
    own = sum(h * (1 + keeps_derivative(backend, h, n, act)) for h in sizes[1:-1]
              if not block_rows(backend, h, n, act))
    rows = sum(sizes[:-1]) + len(sizes) - 1 + 3 * sizes[-1] + own + scratch_rows(backend, sizes, n, act)
    return np.dtype(dtype).itemsize * n * rows


class Network:
    """The parameters and their gradients, each one flat buffer on the backend.

    Args:
        backend: a gpunet.backend.Backend.
        sizes: layer widths [d_in, *hidden, d_out].
        params: flat initial parameters (host array, any float dtype).
        dtype: the dtype of every buffer.
        activation: the hidden layers' activation (relu, tanh, sigmoid, identity).
        loss: sse, mse or ce (softmax cross-entropy over the d_out outputs).
    """

    def __init__(self, backend, sizes, params, dtype=np.float32, activation="relu", loss="sse"):
        self.backend, self.xp = backend, backend.xp
        self.layout = Layout(sizes)
        self.dtype = np.dtype(dtype)
        self.activation, self.loss = activation, loss
        self.params = backend.asarray(params, self.dtype)
        if self.params is params:  # already of the dtype, on the backend: the network's buffer is its own
            self.params = params.copy()
        self.grads = self.xp.zeros_like(self.params)
        self.blocks = self.layout.blocks(self.params)
        self.grad_blocks = self.layout.blocks(self.grads)
        # w without its bias row: what the input gradient is multiplied by
        self.weights = [blk[:-1] for blk in self.blocks]
        # each layer's weight rows, contiguous in the flat buffer: sum_squared_weights' operands
        self._weight_runs = [self.params[o : o + (r - 1) * c] for o, (r, c) in zip(self.layout.offsets,
                                                                                  self.layout.shapes)]
        self._decay = {}  # c -> the calls of add_decay(c)
        self._decay_tmp = None  # add_decay's scratch buffer

    def workspace(self, n, rows=False):
        """Buffers for batches of n rows (allocate once per batch size and reuse); `rows`: see Workspace."""
        return Workspace(self, n, rows)

    def step(self):
        """params -= grads: one operation over the flat buffer (the learning rate is already in grads)."""
        self.xp.subtract(self.params, self.grads, out=self.params)

    def decay_calls(self, c, penalty=None):
        """The calls of grads += c * w (through a flat buffer of c on the weights and 0 on the biases), made once per c;
        with `penalty` (a 0-d buffer), then c * sum(w^2) into it, from the same product."""
        if penalty is not None:
            return Calls([*self.decay_calls(c), (self._decay_tmp.dot, (self.params, penalty))])
        if c not in self._decay:  # a few coefficients at most: a run's, or one per batch size
            scaled = self.backend.asarray(c * self.layout.on_weights(), self.dtype)
            self._decay_tmp = self.xp.empty_like(self.params) if self._decay_tmp is None else self._decay_tmp
            self._decay[c] = Calls([(self.xp.multiply, (self.params, scaled, self._decay_tmp)),
                                    (self.xp.add, (self.grads, self._decay_tmp, self.grads))])
        return self._decay[c]

    def add_decay(self, c, penalty=False):
        """grads += c * w over the weights (not the biases): the gradient of (c / 2) * sum(w^2).

        With `penalty`, also return c * sum(w^2) (a 0-d value on the backend) from the same product:
        one dot instead of sum_squared_weights' one per layer."""
        self.decay_calls(c)()
        return self._decay_tmp.dot(self.params) if penalty else None

    def sum_squared_weights(self):
        """sum(w^2) over every weight (not the biases), as a 0-d array on the backend: one product per layer."""
        return sum(w.dot(w) for w in self._weight_runs)


class Workspace:
    """The activations, their derivatives and gradients of one batch size, allocated once, for a Network.

    The forward and backward passes live here; they read the network's parameters and write its
    gradient buffer. With `rows`, the inputs are held observation by observation: a[0] is the transpose of
    x_rows (n, d_in + 1), whose last column is the ones, so that a batch is gathered as whole rows of a
    row-major X that carries that column (gpunet/sklearn_loop.py); the products read either layout.
    """

    def __init__(self, net, n, rows=False):
        xp, dt, sizes = net.xp, net.dtype, net.layout.sizes
        self.net, self.backend, self.xp, self.n = net, net.backend, xp, n
        # the output error's scale, remade when it changes: a 0-d array of the dtype (NumPy takes those faster
        # than Python or NumPy scalars)
        self._factor, self._factor_of = xp.zeros((), dt), None
        # Feature-major: row i of a buffer is feature i over the n observations, so elementwise passes
        # write whole contiguous rows. a[l] is layer l's input with a last row of ones (for the bias).
        # A hidden layer's matrix product writes z straight into the next layer's input rows, and the
        # activation is applied there in place; the backward pass reads the activation's derivative from a[l + 1]
        # (gpunet/activations.py), and writes dS/dz over it where block_rows says so: a large hidden layer holds
        # only a[l + 1].
        self.x_rows = xp.ones((n, sizes[0] + 1), dt) if rows else None
        first = xp.ones((sizes[0] + 1, n), dt) if self.x_rows is None else self.x_rows.T
        self.a = [first] + [xp.ones((fan_in + 1, n), dt) for fan_in in sizes[1:-1]]
        self.x = self.a[0][:-1]  # the batch's inputs, (d_in, n)
        self.z = [a[:-1] for a in self.a[1:]] + [xp.empty((sizes[-1], n), dt)]  # z[-1]: the output layer's
        # act'(z) of each small hidden layer on the CPU, filled by the forward pass and read by the backward pass:
        # a call less than reading it from the output (None: read from the output, in one fused pass)
        act = activation(net.activation)
        b, hidden = self.backend, sizes[1:-1]
        self.d = [xp.ones((h, n), dt) if keeps_derivative(b, h, n, act) else None for h in hidden]
        # scaled dLoss/dz[l]: z[l] itself (written over the activation), or a buffer of its own
        self.g = [z if block_rows(b, h, n, act) else xp.empty((h, n), dt) for h, z in zip(hidden, self.z)]
        self.g.append(xp.empty((sizes[-1], n), dt))
        rows = scratch_rows(b, sizes, n, act)
        self.scratch = xp.empty((rows, n), dt) if rows else None
        self.y = xp.empty((sizes[-1], n), dt)
        self.out = output_loss(net.loss, self)
        self._forward, self._backward = self._forward_calls(act), self._backward_calls(act)

    def _forward_calls(self, act):
        """Each layer's matrix product (z = w.T a + b, the bias through the row of ones) and, on a hidden
        layer, its activation in place: the next layer's input. Products are the left operand's bound `dot`
        (out positional): 0.3 us less per call than `xp.dot`, whose dispatch NumPy runs each time."""
        calls, b = Calls(), self.backend
        for blk, a, z, d in zip(self.net.blocks, self.a, self.z, self.d + [False]):
            calls.append((blk.T.dot, (a, z)))
            if d is False or act.derivative is None:  # the output layer, or the identity
                continue
            if d is None:
                calls += fused(b, act.forward_pass, z, z)
            elif act.forward is None:  # ReLU: relu'(z), then z * relu'(z)
                calls += [*fused(b, act.derivative_pass, z, d), (self.xp.multiply, (z, d, z))]
            else:
                calls += [*fused(b, act.forward_pass, z, z), *fused(b, act.derivative_pass, z, d)]
        return calls

    def _backward_calls(self, act):
        """From the output error in g[-1]: scaled by _factor, then per layer from the top dS/dw and dS/db (via
        the row of ones) and, below the top, dS/dz of the layer below (_input_gradient)."""
        calls = Calls([(self.xp.multiply, (self.g[-1], self._factor, self.g[-1]))])
        for layer in reversed(range(len(self.g))):
            calls.append((self.a[layer].dot, (self.g[layer].T, self.net.grad_blocks[layer])))
            if layer > 0:
                calls += self._input_gradient(layer, act)
        return calls

    def _input_gradient(self, layer, act):
        """dS/dz of layer - 1: w g through its activation's derivative, kept in d or taken from its output
        a = z[layer - 1] (act(z), written over z by the forward pass); where dS/dz is a itself, in blocks of rows,
        each made in the scratch buffer and multiplied into a once that block of a is read."""
        w, g, g_below, d = self.net.weights[layer], self.g[layer], self.g[layer - 1], self.d[layer - 1]
        a = self.z[layer - 1]
        if act.derivative is None:  # the identity
            return [(w.dot, (g, g_below))]
        if d is not None:
            return [(w.dot, (g, g_below)), (self.xp.multiply, (g_below, d, g_below))]
        if g_below is not a:
            return [(w.dot, (g, g_below)), *fused(self.backend, act.backward_pass, g_below, a, g_below)]
        calls, rows = [], len(self.scratch)
        for r in range(0, len(a), rows):
            a_rows = a[r : r + rows]
            part = self.scratch[: len(a_rows)]
            calls += [(w[r : r + rows].dot, (g, part)), *fused(self.backend, act.backward_pass, part, a_rows, a_rows)]
        return calls

    def load(self, x, y=None):
        """Copy a batch (x of shape (n, d_in), y of shape (n, d_out); host or device) into the workspace."""
        # cast while copying into place: no temporary copy of the batch in the workspace dtype
        self.x[...] = self.backend.asarray(x).T
        if y is not None:
            self.y[...] = self.backend.asarray(y).T

    def gather(self, x_t, y_t, rows, weights=None):
        """Take columns `rows` of device-resident x_t (d_in, N) and y_t (d_out, N) as the batch; with
        `weights` (0 or 1 per row), rows of weight 0 are padding that adds nothing to the loss or gradient."""
        self.backend.take(x_t, rows, out=self.x)
        self.backend.take(y_t, rows, out=self.y)
        if weights is not None:
            if self.out.weight is None:
                self.out.weight = self.xp.empty(self.n, self.net.dtype)
            self.out.weight[...] = weights

    def bytes(self):
        """Bytes held by this workspace's buffers."""
        own = [*(d for d in self.d if d is not None), *(g for g, z in zip(self.g, self.z) if g is not z)]
        scratch = [] if self.scratch is None else [self.scratch]
        return sum(int(b.nbytes) for b in [*self.a, self.z[-1], *own, self.y, *scratch])

    def forward(self):
        """Fill the activations and their derivatives for the current batch; return z of the output layer (d_out, n)."""
        self._forward()
        return self.z[-1]

    def error(self, loss_out=None):
        """g[-1] = the output error (unscaled); with `loss_out` (a (1, 1) array), also the loss sum S into it."""
        self.out.error(loss_out)

    def correct(self, out):
        """With the ce loss: the number of rows classified right by the last forward pass, into `out` (1, 1)."""
        self.out.correct(out)

    def backward(self, scale):
        """net.grads = scale * dS/dparams, from the output error that error() left in g[-1]. A large hidden layer's
        output then holds its dS/dz (block_rows) until the next forward pass."""
        self._scale(scale)
        self._backward()
        return self.net.grads

    def _scale(self, scale):
        if scale != self._factor_of:
            self._factor[...], self._factor_of = self.out.factor * scale, scale

    def step_calls(self, scale, update):
        """A whole step as one list of calls: forward, the output error (not the loss), backward scaled by
        `scale`, then `update` (calls). For a loop that reads nothing between steps; the list holds the
        loss's calls as they are now (set its `weight` first, if any)."""
        self._scale(scale)
        return Calls([*self._forward, *self.out.calls, *self._backward, *update])

    def gradient_calls(self, scale, loss_out=None):
        """gradient()'s forward, output error (with `loss_out`, the loss S into it too) and backward scaled by
        `scale`, as one list of calls."""
        return Calls([*self._forward, (self.error, (loss_out,)), (self._scale, (scale,)), *self._backward])

    def gradient(self, scale, loss_out=None, decay=0.0):
        """Forward, output error and backward: net.grads = scale * dS/dparams + decay * w on this batch."""
        self.forward()
        self.error(loss_out)
        self.backward(scale)
        if decay:
            self.net.add_decay(decay)

    def loss_and_grad(self, k=1.0, weight_decay=0.0):
        """(loss, dloss/dparams) on the host for loss = k * S + weight_decay / 2 * sum(w^2), at the current parameters."""
        out = self.xp.empty((1, 1), self.net.dtype)
        self.gradient(k, out, weight_decay)
        loss = k * float(self.backend.to_numpy(out)[0, 0])
        if weight_decay:
            loss += weight_decay / 2 * float(self.net.sum_squared_weights())
        return loss, self.backend.to_numpy(self.net.grads).copy()
