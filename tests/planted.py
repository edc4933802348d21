"""Planted bugs that every correctness check must catch: the backward pass forgets the ReLU mask, or
takes a wrong softmax gradient."""

import numpy as np

from gpunet.losses import SoftmaxCrossEntropy
from gpunet.model import Workspace


def drop_relu_mask(monkeypatch, dtype=None):
    """Make the backward pass skip the ReLU (for networks of `dtype` only, when given).

    The forward pass and the loss stay right; only the derivatives the backward pass reads are set to 1.
    """
    error = Workspace.error

    def buggy(self, loss_out=None):
        error(self, loss_out)
        if dtype is None or self.net.dtype == np.dtype(dtype):
            for d in self.d:
                d[...] = 1

    monkeypatch.setattr(Workspace, "error", buggy)


def wrong_softmax_gradient(monkeypatch, dtype=None):
    """Make the ce output error p - onehot forget the softmax's normalisation: exp(z - max) - onehot.

    The loss stays right; only the gradient is wrong (for networks of `dtype` only, when given).
    """
    error = SoftmaxCrossEntropy.error

    def buggy(self, out=None):
        error(self, out)
        if dtype is None or self.g.dtype == np.dtype(dtype):
            self.xp.add(self.g, self.y, out=self.g)  # back to p ...
            self.xp.multiply(self.g, self.total, out=self.g)  # ... to exp(z - max), unnormalised
            self.xp.subtract(self.g, self.y, out=self.g)

    monkeypatch.setattr(SoftmaxCrossEntropy, "error", buggy)
