"""The network: flat parameter layout, initialisation, forward, loss and backward, written once against `xp`.

Layer l maps its input a[l] to z[l] = a[l] @ w[l] + b[l]; hidden layers apply ReLU, the output layer
is linear. The bias is folded into the matrix product: each layer's parameters are one
(fan_in + 1, fan_out) block whose last row is the bias, and each layer's input carries a feature of
ones. Stacked, the blocks are the flat buffer [w1 | b1 | w2 | b2 | ...].

The workspace is feature-major (each buffer is (features, n), the transpose of the math above), so
that the elementwise passes write whole contiguous rows; the matrix products take transposed views,
which BLAS and cuBLAS read without a copy.
"""

import numpy as np

from gpunet.errors import ConfigError

LOSSES = ("sse", "mse")
INITS = ("normal", "he")


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


def init_params(sizes, rng, init="normal"):
    """Initial flat parameters in float64, drawn from `rng` on the host.

    `normal` is the tutorial's: w ~ N(0, 1), b = 0. `he` scales w by sqrt(2 / fan_in),
    which keeps activations in range for wide or deep networks.
    """
    if init not in INITS:
        raise ConfigError(f"unknown --init {init!r}: choose one of {', '.join(INITS)}")
    layout = Layout(sizes)
    flat = np.zeros(layout.size)
    for w, _ in layout.unpack(flat):
        scale = 1.0 if init == "normal" else np.sqrt(2.0 / w.shape[0])
        w[...] = rng.standard_normal(w.shape) * scale
    return flat


def loss_factor(loss, n, d_out):
    """k in loss = k * SSE: 1 for `sse`, 1 / (n * d_out) for `mse`."""
    if loss not in LOSSES:
        raise ConfigError(f"unknown --loss {loss!r}: choose one of {', '.join(LOSSES)}")
    return 1.0 if loss == "sse" else 1.0 / (n * d_out)


class Network:
    """The parameters and their gradients, each one flat buffer on the backend.

    Args:
        backend: a gpunet.backend.Backend.
        sizes: layer widths [d_in, *hidden, d_out].
        params: flat initial parameters (host array, any float dtype).
        dtype: the dtype of every buffer.
    """

    def __init__(self, backend, sizes, params, dtype=np.float32):
        self.backend, self.xp = backend, backend.xp
        self.layout = Layout(sizes)
        self.dtype = np.dtype(dtype)
        self.params = backend.asarray(params, self.dtype)
        self.grads = self.xp.zeros_like(self.params)
        self.blocks = self.layout.blocks(self.params)
        self.grad_blocks = self.layout.blocks(self.grads)
        # w without its bias row: what the input gradient is multiplied by
        self.weights = [blk[:-1] for blk in self.blocks]

    def workspace(self, n):
        """Buffers for batches of n rows (allocate once per batch size and reuse)."""
        return Workspace(self, n)

    def step(self):
        """params -= grads: one operation over the flat buffer (the learning rate is already in grads)."""
        self.xp.subtract(self.params, self.grads, out=self.params)


class Workspace:
    """The activations, masks and gradients of one batch size, allocated once, for a Network.

    The forward and backward passes live here; they read the network's parameters and write its
    gradient buffer.
    """

    def __init__(self, net, n):
        xp, dt, sizes = net.xp, net.dtype, net.layout.sizes
        self.net, self.backend, self.xp, self.n = net, net.backend, xp, n
        # scalars as 0-d arrays of the dtype: NumPy takes them faster than Python or NumPy scalars
        self._zero = xp.zeros((), dt)
        self._factor, self._factor_of = xp.zeros((), dt), None  # 2 * scale, remade when scale changes
        # Feature-major: row i of a buffer is feature i over the n observations, so elementwise passes
        # write whole contiguous rows. a[l] is layer l's input with a last row of ones (for the bias).
        # A hidden layer's matrix product writes z straight into the next layer's input rows, and the
        # ReLU is applied there in place: each hidden layer holds only a[l + 1], its mask and its gradient.
        self.a = [xp.ones((fan_in + 1, n), dt) for fan_in in sizes[:-1]]
        self.x = self.a[0][:-1]  # the batch's inputs, (d_in, n)
        self.z = [a[:-1] for a in self.a[1:]] + [xp.empty((sizes[-1], n), dt)]  # z[-1] = y_pred
        # ReLU masks, 1.0 where z[l] > 0: in the dtype itself, as NumPy multiplies float by bool at half speed
        self.mask = [xp.empty((fan_out, n), dt) for fan_out in sizes[1:-1]]
        self.g = [xp.empty((fan_out, n), dt) for fan_out in sizes[1:]]  # scaled dLoss/dz[l]
        self.y = xp.empty((sizes[-1], n), dt)
        # the residual as a row and a column: their product is the sum of squared errors
        self._r_row = self.g[-1].reshape(1, -1)
        self._r_col = self.g[-1].reshape(-1, 1)
        # Each pass's views per layer, made once: a view made per call costs a Python object each time.
        masks = [*self.mask, None]  # the output layer has no ReLU
        self._forward_layers = [(blk.T, a, z, m) for blk, a, z, m in zip(net.blocks, self.a, self.z, masks)]
        below = [(None, None, None)] + [(w, g, m) for w, g, m in zip(net.weights[1:], self.g, self.mask)]
        self._backward_layers = list(zip(self.a, self.g, [g.T for g in self.g], net.grad_blocks, below))[::-1]

    def load(self, x, y=None):
        """Copy a batch (x of shape (n, d_in), y of shape (n, d_out); host or device) into the workspace."""
        # cast while copying into place: no temporary copy of the batch in the workspace dtype
        self.x[...] = self.backend.asarray(x).T
        if y is not None:
            self.y[...] = self.backend.asarray(y).T

    def gather(self, x_t, y_t, rows):
        """Take columns `rows` of device-resident x_t (d_in, N) and y_t (d_out, N) as the batch."""
        self.backend.take(x_t, rows, out=self.x)
        self.backend.take(y_t, rows, out=self.y)

    def bytes(self):
        """Bytes held by this workspace's buffers."""
        return sum(int(b.nbytes) for b in [*self.a, self.z[-1], *self.mask, *self.g, self.y])

    def forward(self):
        """Fill the activations and ReLU masks for the current batch; return y_pred (d_out, n)."""
        mm, greater, multiply, zero = self.backend.matmul, self.xp.greater, self.xp.multiply, self._zero
        for w_t, a, z, mask in self._forward_layers:
            mm(w_t, a, out=z)  # z = w.T a + b, the bias through the row of ones
            if mask is not None:
                greater(z, zero, out=mask)
                multiply(z, mask, out=z)  # relu(z) in place: the next layer's input
        return z

    def residual(self, sse_out=None):
        """g[-1] = y_pred - y; with `sse_out` (a (1, 1) array), also the sum of squared errors into it."""
        r = self.xp.subtract(self.z[-1], self.y, out=self.g[-1])
        if sse_out is not None:
            self.backend.matmul(self._r_row, self._r_col, out=sse_out)
        return r

    def backward(self, scale):
        """net.grads = scale * dSSE/dparams, from the residual that residual() left in g[-1]."""
        mm, multiply = self.backend.matmul, self.xp.multiply
        if scale != self._factor_of:
            self._factor[...], self._factor_of = 2 * scale, scale
        multiply(self.g[-1], self._factor, out=self.g[-1])  # dSSE/dy_pred = 2 * (y_pred - y)
        for a, g, g_t, grad, (w, g_below, mask_below) in self._backward_layers:
            mm(a, g_t, out=grad)  # dL/dw and, via the row of ones, dL/db
            if w is not None:
                mm(w, g, out=g_below)  # dL/d(the layer's input), the activation of the layer below
                multiply(g_below, mask_below, out=g_below)  # through its ReLU: zero where z <= 0
        return self.net.grads

    def gradient(self, scale, sse_out=None):
        """Forward, residual and backward: net.grads = scale * dSSE/dparams on this batch."""
        self.forward()
        self.residual(sse_out)
        self.backward(scale)

    def loss_and_grad(self, k=1.0):
        """(loss, dloss/dparams) on the host for loss = k * SSE, at the current parameters."""
        out = self.xp.empty((1, 1), self.net.dtype)
        self.gradient(k, out)
        return k * float(self.backend.to_numpy(out)[0, 0]), self.backend.to_numpy(self.net.grads).copy()
