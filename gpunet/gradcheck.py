"""The hand-written backward pass against central finite differences, in float64."""

import numpy as np

from gpunet.data import check_random_state, synthetic
from gpunet.model import Layout, Network, init_params, loss_factor

DEFAULT_EPS = 1e-6
DEFAULT_TOL = 1e-6
JITTER = 0.1


def generic_network(backend, sizes, n=8, seed=0, init="he"):
    """A float64 network on synthetic data at a generic point of its parameters: its Workspace.

    The initial parameters get N(0, JITTER^2) noise, biases included, so that no unit sits exactly
    on ReLU's kink (zero biases and a dead unit upstream would put it there, where the derivative
    is one-sided and finite differences disagree with any backward pass).
    """
    rng = check_random_state(seed)
    x, y = synthetic(n, sizes[0], sizes[-1], rng)
    params = init_params(sizes, rng, init) + JITTER * rng.standard_normal(Layout(sizes).size)
    ws = Network(backend, sizes, params, dtype=np.float64).workspace(n)
    ws.load(x, y)
    return ws


def finite_difference(ws, k=1.0, eps=DEFAULT_EPS):
    """d(k * SSE)/dparams by central differences, one parameter at a time, for workspace `ws`'s batch."""
    net = ws.net
    out = net.xp.empty((1, 1), net.dtype)

    def loss():
        ws.forward()
        ws.residual(out)
        return k * float(net.backend.to_numpy(out)[0, 0])

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


def gradcheck(ws, loss="sse", eps=DEFAULT_EPS):
    """Compare the backward pass with finite differences at the network's current parameters.

    Args:
        ws: a gpunet.model.Workspace holding a batch, float64 for a meaningful check.
        loss: "sse" or "mse".

    Returns:
        [(tensor name, max relative error)], one per weight and bias.
    """
    d_out, n = ws.y.shape
    k = loss_factor(loss, n, d_out)
    _, analytic = ws.loss_and_grad(k)
    numeric = finite_difference(ws, k, eps)
    return relative_errors(analytic, numeric, ws.net.layout)
