"""A plain NumPy MLP trainer, written from the textbook formulas and independent of gpunet's code: row-major,
fresh arrays every step, separate weights and biases, explicit optimizer state. The reference that the
trainer's many-step trajectories (every loss, activation, optimizer, weight decay) are checked against."""

import numpy as np


def act(name, z):
    """(act(z), act'(z))."""
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(z.dtype)
    if name == "tanh":
        t = np.tanh(z)
        return t, 1 - t**2
    s = 1 / (1 + np.exp(-z))
    return s, s * (1 - s)


def loss_and_output_grad(loss, out, y):
    """(loss, dloss/dout) for a batch: sse, mse or softmax cross-entropy averaged over the rows."""
    n = len(y)
    if loss == "ce":
        p = np.exp(out - out.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return -np.sum(y * np.log(p)) / n, (p - y) / n
    k = 1.0 if loss == "sse" else 1.0 / y.size
    return k * np.sum((out - y) ** 2), 2 * k * (out - y)


def gradients(ws, bs, x, y, loss, activation, weight_decay):
    """(loss with the L2 penalty, [dW], [db]) by backpropagation through the layers."""
    hs, ds = [x], []
    for w, b in zip(ws[:-1], bs[:-1]):
        h, d = act(activation, hs[-1] @ w + b)
        hs.append(h)
        ds.append(d)
    value, g = loss_and_output_grad(loss, hs[-1] @ ws[-1] + bs[-1], y)
    value += weight_decay / 2 * sum(np.sum(w**2) for w in ws)
    gws, gbs = [], []
    for l in range(len(ws) - 1, -1, -1):
        gws.insert(0, hs[l].T @ g + weight_decay * ws[l])
        gbs.insert(0, g.sum(axis=0))
        if l:
            g = (g @ ws[l].T) * ds[l - 1]
    return value, gws, gbs


class Optimizer:
    """sgd, momentum (v = mu v + lr g; p -= v) or textbook Adam with bias-corrected moments."""

    def __init__(self, name, lr, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8):
        self.name, self.lr, self.mu, self.b1, self.b2, self.eps = name, lr, momentum, beta1, beta2, eps
        self.state, self.t = {}, 0

    def update(self, key, p, g):
        if self.name == "sgd":
            return p - self.lr * g
        if self.name == "momentum":
            v = self.mu * self.state.get(key, 0) + self.lr * g
            self.state[key] = v
            return p - v
        m, v = self.state.get(key, (0, 0))
        m, v = self.b1 * m + (1 - self.b1) * g, self.b2 * v + (1 - self.b2) * g * g
        self.state[key] = (m, v)
        m_hat, v_hat = m / (1 - self.b1**self.t), v / (1 - self.b2**self.t)
        return p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def train_plain(x, y, ws, bs, config):
    """Train like gpunet's Trainer (same batches, same order) with `config`; return ([epoch loss], ws, bs)."""
    opt = Optimizer(config.optimizer, config.lr, config.momentum, config.beta1, config.beta2, config.eps)
    n, batch = len(x), config.batch_size or len(x)
    shuffle = np.random.default_rng([config.seed, 2])
    losses = []
    for _ in range(config.epochs):
        order = shuffle.permutation(n) if batch < n else np.arange(n)
        total = 0.0
        for i in range(0, n, batch):
            rows = order[i : i + batch]
            value, gws, gbs = gradients(ws, bs, x[rows], y[rows], config.loss, config.activation, config.weight_decay)
            total += value
            opt.t += 1
            ws = [opt.update(("w", l), w, g) for l, (w, g) in enumerate(zip(ws, gws))]
            bs = [opt.update(("b", l), b, g) for l, (b, g) in enumerate(zip(bs, gbs))]
        losses.append(total)
    return losses, ws, bs
