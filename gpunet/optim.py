"""Optimizers, each one pass over the flat parameter buffer, written by hand against `xp`.

An optimizer says how the backward pass should scale the gradient (`grad_scale`) and then updates
the parameters from the gradient buffer (`step`). SGD and momentum take the learning rate inside
the gradient, so their update is a subtraction; Adam needs the plain gradient. `calls` is the update
as a list of calls (gpunet/calls.py) where it is the same every step, else None (Adam's bias
corrections change each step).
"""

import math

from gpunet.calls import Calls
from gpunet.errors import ConfigError

OPTIMIZERS = ("sgd", "momentum", "adam")


class SGD:
    """params -= lr * grad."""

    def __init__(self, net, lr):
        self.net, self.grad_scale = net, lr
        # params -= grads: the learning rate is already in the gradient
        self.calls = self.step = Calls([(net.xp.subtract, (net.params, net.grads, net.params))])


class Momentum:
    """Heavy ball: v = mu * v + lr * grad; params -= v."""

    def __init__(self, net, lr, momentum=0.9):
        xp, p = net.xp, net.params
        self.net, self.grad_scale, self.mu = net, lr, xp.full((), momentum, net.dtype)
        self.v = v = xp.zeros_like(p)
        self.calls = self.step = Calls([(xp.multiply, (v, self.mu, v)), (xp.add, (v, net.grads, v)),
                                        (xp.subtract, (p, v, p))])


class Adam:
    """Adam (Kingma and Ba), with the bias corrections folded into the step size and epsilon."""

    def __init__(self, net, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        xp = net.xp
        self.net, self.grad_scale, self.lr = net, 1.0, lr
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m, self.v, self.tmp = (xp.zeros_like(net.params) for _ in range(3))
        self.t = 0
        self.calls = None

    def step(self):
        xp, g, m, v, tmp, dt = self.net.xp, self.net.grads, self.m, self.v, self.tmp, self.net.dtype.type
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        xp.multiply(m, dt(b1), out=m)
        xp.multiply(g, dt(1 - b1), out=tmp)
        xp.add(m, tmp, out=m)
        xp.multiply(v, dt(b2), out=v)
        xp.multiply(g, g, out=tmp)
        xp.multiply(tmp, dt(1 - b2), out=tmp)
        xp.add(v, tmp, out=v)
        # params -= lr_t m / (sqrt(v) + eps_t), lr_t and eps_t carrying the bias corrections
        c2 = math.sqrt(1 - b2**self.t)
        xp.sqrt(v, out=tmp)
        xp.add(tmp, dt(self.eps * c2), out=tmp)
        xp.divide(m, tmp, out=tmp)
        xp.multiply(tmp, dt(self.lr * c2 / (1 - b1**self.t)), out=tmp)
        xp.subtract(self.net.params, tmp, out=self.net.params)


def make_optimizer(name, net, lr, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8):
    """The optimizer `name` over `net`'s flat parameter buffer."""
    if name == "sgd":
        return SGD(net, lr)
    if name == "momentum":
        return Momentum(net, lr, momentum)
    if name == "adam":
        return Adam(net, lr, beta1, beta2, eps)
    raise ConfigError(f"unknown --optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
