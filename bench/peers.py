"""The systems a user would pick instead of gpunet, on the same workloads, data and start.

Each peer is a runner for gpunet.bench.measure: `run()` trains once from the same initial parameters
and returns the seconds (device synchronized before each clock read, data already in place);
`final_loss()` is the loss of the last epoch, before its update, as gpunet reports it.
Every peer trains loss = k * SSE, k = 1 (sse) or 1 / (n * d_out) (mse), or the softmax cross-entropy
averaged over the rows (ce), with one ReLU hidden layer. Peers whose library is not installed are skipped
with a note; the tutorial as written has no classifier, so it skips the ce workloads.
"""

import importlib.util
import time

import numpy as np

from gpunet.losses import loss_factor
from gpunet.model import Layout
from gpunet.train import initial_draws
from tests.tutorial_reference import tutorial


def start(config):
    """The host data and initial parameters gpunet draws for `config`, in float32: x, y, w1, b1, w2, b2."""
    if len(config.hidden) != 1:
        raise ValueError("the peers implement the tutorial's single hidden layer")
    data, flat = initial_draws(config)
    (w1, b1), (w2, b2) = Layout(config.sizes).unpack(flat)
    return [np.ascontiguousarray(a, dtype=config.dtype) for a in (data.x, data.y, w1, b1, w2, b2)]


class NumpyTutorial:
    """The tutorial as written, transliterated to NumPy: fresh arrays every step."""

    name = "numpy-tutorial"

    def __init__(self, config, backend):
        self.config, self.backend = config, backend
        self.x, self.y, self.w1, self.b1, self.w2, self.b2 = start(config)
        self.k = loss_factor(config.loss, config.n, config.d_out)

    def run(self):
        t = time.perf_counter()
        losses, _ = tutorial(self.x, self.y, self.w1, self.w2, self.b1, self.b2,
                             learning_rate=self.config.lr, epochs=self.config.epochs, loss_scale=self.k)
        self.loss = losses[-1]
        return time.perf_counter() - t

    def final_loss(self):
        return float(self.loss)


class _Torch:
    def __init__(self, config, backend):
        import torch

        self.torch, self.config, self.backend = torch, config, backend
        self.device = torch.device("cuda" if backend.name == "cuda" else "cpu")
        self.host = start(config)
        self.k = loss_factor(config.loss, config.n, config.d_out)
        self.x, self.y = (torch.tensor(a, device=self.device) for a in self.host[:2])

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def params(self, requires_grad=False):
        return [self.torch.tensor(a, device=self.device, requires_grad=requires_grad) for a in self.host[2:]]

    def final_loss(self):
        return float(self.loss)


class TorchManual(_Torch):
    """PyTorch eager with the tutorial's hand-written gradients (and the softmax's, p - onehot, for ce)."""

    name = "torch-manual"

    def output(self, y_pred, y, k):
        """(loss, dloss/dy_pred)."""
        if self.config.loss != "ce":
            return k * (y_pred - y).pow(2).sum(), 2 * k * (y_pred - y)
        shifted = y_pred - y_pred.max(1, keepdim=True).values
        e = shifted.exp()
        total = e.sum(1, keepdim=True)
        return k * (total.log().sum() - (y * shifted).sum()), k * (e / total - y)

    def run(self):
        x, y, k, lr = self.x, self.y, self.k, self.config.lr
        w1, b1, w2, b2 = self.params()
        self.sync()
        t = time.perf_counter()
        for _ in range(self.config.epochs):
            h = x.mm(w1) + b1
            h_relu = h.clamp(min=0)
            y_pred = h_relu.mm(w2) + b2
            loss, grad_y_pred = self.output(y_pred, y, k)
            grad_w2 = h_relu.t().mm(grad_y_pred)
            grad_h = grad_y_pred.mm(w2.t())
            grad_h[h < 0] = 0
            grad_b2 = grad_y_pred.sum(0)
            grad_w1 = x.t().mm(grad_h)
            grad_b1 = grad_h.sum(0)
            w2 = w2 - lr * grad_w2
            b2 = b2 - lr * grad_b2
            w1 = w1 - lr * grad_w1
            b1 = b1 - lr * grad_b1
        self.sync()
        seconds = time.perf_counter() - t
        self.loss = loss.item()
        return seconds


class TorchAutograd(_Torch):
    """PyTorch eager with autograd and a plain gradient-descent update."""

    name = "torch-autograd"

    def run(self):
        torch, x, y, k, lr = self.torch, self.x, self.y, self.k, self.config.lr
        params = self.params(requires_grad=True)
        w1, b1, w2, b2 = params
        self.sync()
        t = time.perf_counter()
        for _ in range(self.config.epochs):
            y_pred = (x.mm(w1) + b1).clamp(min=0).mm(w2) + b2
            if self.config.loss == "ce":
                loss = k * -(y * torch.log_softmax(y_pred, 1)).sum()
            else:
                loss = k * (y_pred - y).pow(2).sum()
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
                    p.grad = None
        self.sync()
        seconds = time.perf_counter() - t
        self.loss = loss.item()
        return seconds


class JaxJit:
    """JAX with the whole training loop compiled (jit over lax.fori_loop); autodiff or hand-written gradients."""

    def __init__(self, config, backend, manual=False):
        import jax
        import jax.numpy as jnp

        self.name = "jax-jit-manual" if manual else "jax-jit"
        self.jax, self.config, self.backend = jax, config, backend
        platform = "gpu" if backend.name == "cuda" else "cpu"
        self.device = jax.devices(platform)[0]
        k, lr, epochs = loss_factor(config.loss, config.n, config.d_out), config.lr, config.epochs
        host = start(config)
        self.x, self.y = (jax.device_put(a, self.device) for a in host[:2])
        self.start = [jax.device_put(a, self.device) for a in host[2:]]

        ce = config.loss == "ce"

        def output(y_pred, y):
            """(loss, dloss/dy_pred) written by hand."""
            if not ce:
                return k * jnp.sum((y_pred - y) ** 2), 2 * k * (y_pred - y)
            shifted = y_pred - jnp.max(y_pred, axis=1, keepdims=True)
            e = jnp.exp(shifted)
            total = jnp.sum(e, axis=1, keepdims=True)
            return k * (jnp.sum(jnp.log(total)) - jnp.sum(y * shifted)), k * (e / total - y)

        def loss_fn(p, x, y):
            w1, b1, w2, b2 = p
            y_pred = jnp.maximum(x @ w1 + b1, 0) @ w2 + b2
            if ce:
                return -k * jnp.sum(y * jax.nn.log_softmax(y_pred, axis=1))
            return k * jnp.sum((y_pred - y) ** 2)

        def manual_grad(p, x, y):
            w1, b1, w2, b2 = p
            h = x @ w1 + b1
            h_relu = jnp.maximum(h, 0)
            loss, g = output(h_relu @ w2 + b2, y)
            grad_h = (g @ w2.T) * (h > 0)
            return loss, (x.T @ grad_h, grad_h.sum(0), h_relu.T @ g, g.sum(0))

        value_and_grad = manual_grad if manual else jax.value_and_grad(loss_fn)

        def train(p, x, y):
            def step(_, carry):
                p, _ = carry
                loss, g = value_and_grad(p, x, y)
                return [a - lr * b for a, b in zip(p, g)], loss

            return jax.lax.fori_loop(0, epochs, step, (list(p), jnp.zeros((), x.dtype)))

        t = time.perf_counter()
        self.compiled = jax.jit(train).lower(self.start, self.x, self.y).compile()
        self.extra = {"compile_s": time.perf_counter() - t}

    def run(self):
        t = time.perf_counter()
        params, loss = self.compiled(self.start, self.x, self.y)
        self.jax.block_until_ready((params, loss))
        seconds = time.perf_counter() - t
        self.loss = loss
        return seconds

    def final_loss(self):
        return float(self.loss)


PEERS = [
    ("numpy-tutorial", "numpy", NumpyTutorial),
    ("torch-manual", "torch", TorchManual),
    ("torch-autograd", "torch", TorchAutograd),
    ("jax-jit", "jax", lambda c, b: JaxJit(c, b)),
    ("jax-jit-manual", "jax", lambda c, b: JaxJit(c, b, manual=True)),
]


def available(backend, config=None):
    """The peers that can run `config` on `backend`, and notes for those that cannot."""
    chosen, notes = [], []
    for name, module, make in PEERS:
        if config is not None and config.loss == "ce" and make is NumpyTutorial:
            continue  # the tutorial is a regression
        if importlib.util.find_spec(module) is None:
            notes.append(f"{name}: skipped, {module} is not installed (make bench installs the peers: gpunet's extra [bench])")
            continue
        if backend.name == "cuda" and module == "numpy":
            continue  # NumPy has no GPU; its CPU row stands for it
        if backend.name == "cuda" and not _has_gpu(module):
            notes.append(f"{name}: skipped on cuda, this {module} build has no CUDA device")
            continue
        chosen.append((name, make))
    return chosen, notes


def _has_gpu(module):
    if module == "torch":
        import torch

        return torch.cuda.is_available()
    import jax

    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False
