"""The hand-written backward pass against central finite differences, in float64."""

import numpy as np

from gpunet.data import check_random_state, one_hot_argmax, synthetic
from gpunet.losses import loss_factor
from gpunet.model import Layout, Network, init_params

DEFAULT_EPS = 1e-6
DEFAULT_TOL = 1e-6
JITTER = 0.1


def generic_network(backend, sizes, n=8, seed=0, init="he", activation="relu", loss="sse"):
    """A float64 network on synthetic data at a generic point of its parameters: its Workspace.

    The initial parameters get N(0, JITTER^2) noise, biases included, so that no unit sits exactly
    on ReLU's kink (zero biases and a dead unit upstream would put it there, where the derivative
    is one-sided and finite differences disagree with any backward pass). With the `ce` loss the
    targets are the synthetic targets' argmax, one-hot.
    """
    rng = check_random_state(seed)
    x, y = synthetic(n, sizes[0], sizes[-1], rng)
    if loss == "ce":
        y = one_hot_argmax(y)
    params = init_params(sizes, rng, init) + JITTER * rng.standard_normal(Layout(sizes).size)
    ws = Network(backend, sizes, params, np.float64, activation, loss).workspace(n)
    ws.load(x, y)
    return ws


def finite_difference(ws, k=1.0, weight_decay=0.0, eps=DEFAULT_EPS):
    """d(k * S + weight_decay / 2 * sum(w^2))/dparams by central differences, one parameter at a time,
    for workspace `ws`'s batch."""
    net = ws.net
    out = net.xp.empty((1, 1), net.dtype)

    def loss():
        ws.forward()
        ws.error(out)
        penalty = weight_decay / 2 * float(net.sum_squared_weights()) if weight_decay else 0.0
        return k * float(net.backend.to_numpy(out)[0, 0]) + penalty

    grad = np.empty(net.layout.size)
    for i in range(net.layout.size):
        keep = net.params[i].copy()
        net.params[i] = keep + eps
        up = loss()
        net.params[i] = keep - eps
        down = loss()
        net.params[i] = keep
        grad[i] = (up - down) / (2 * eps)
    return grad


def relative_errors(analytic, numeric, layout):
    """Per parameter tensor, max |analytic - numeric| over max |numeric|.

    Returns:
        [(name, error)] with names w1, b1, w2, b2, ...
    """
    rows = []
    for l, ((ga, ba), (gn, bn)) in enumerate(zip(layout.unpack(analytic), layout.unpack(numeric)), 1):
        for name, a, n in ((f"w{l}", ga, gn), (f"b{l}", ba, bn)):
            rows.append((name, float(np.max(np.abs(a - n)) / max(float(np.max(np.abs(n))), np.finfo(float).tiny))))
    return rows


def gradcheck(ws, weight_decay=0.0, eps=DEFAULT_EPS):
    """Compare the backward pass with finite differences at the network's current parameters.

    Args:
        ws: a gpunet.model.Workspace holding a batch, float64 for a meaningful check; its network's
            loss (sse, mse, ce) and activation are the ones checked.
        weight_decay: the L2 penalty's coefficient, checked with the rest.

    Returns:
        [(tensor name, max relative error)], one per weight and bias.
    """
    d_out, n = ws.y.shape
    k = loss_factor(ws.net.loss, n, d_out)
    _, analytic = ws.loss_and_grad(k, weight_decay)
    numeric = finite_difference(ws, k, weight_decay, eps)
    return relative_errors(analytic, numeric, ws.net.layout)
