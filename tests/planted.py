"""Planted bugs that every correctness check must catch: the backward pass forgets the ReLU mask, a fused
pass's derivative is written wrong, or the softmax gradient is wrong."""

from dataclasses import replace

import numpy as np

from gpunet import activations
from gpunet.losses import SoftmaxCrossEntropy
from gpunet.model import Workspace


def drop_relu_mask(monkeypatch, dtype=None):
    """Make the backward pass skip the ReLU (for networks of `dtype` only, when given).

    The forward pass and the loss stay right; only the backward pass's multiplication by relu'(z) is left out
    (of the workspaces made from here on).
    """
    backward_calls = Workspace._backward_calls

    def buggy(self, act):
        if act.name == "relu" and (dtype is None or self.net.dtype == np.dtype(dtype)):
            act = replace(act, derivative=None)  # the backward pass's view of it only: the forward stays ReLU
        return backward_calls(self, act)

    monkeypatch.setattr(Workspace, "_backward_calls", buggy)


def wrong_fused_derivative(monkeypatch, name="tanh"):
    """Write activation `name`'s derivative wrong, as a slip of the pen would: tanh' as 1 - a instead of
    1 - a^2, sigmoid' as a instead of (1 - a) a. Every pass made from it is wrong: the CPU's fused pass over
    large layers, its derivative buffer on small ones, and CUDA's kernel."""
    wrong = {"tanh": "1 - a", "sigmoid": "a"}[name]
    monkeypatch.setitem(activations.ACTIVATIONS, name, replace(activations.ACTIVATIONS[name], derivative=wrong))


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


def give_model_3_model_2s_alpha(monkeypatch):
    """Put model 2's alpha in model 3's slot of the next stack made (gpunet/stack.py): a slip in the per-model
    columns that only a per-model comparison sees."""
    from gpunet.stack import Stack

    init = Stack.__init__
    made = []

    def buggy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if not made:  # the first stack: a smaller one made from it as models stop keeps its alphas
            self.alpha = self.alpha.copy()
            self.alpha[3] = self.alpha[2]
        made.append(self)

    monkeypatch.setattr(Stack, "__init__", buggy)
