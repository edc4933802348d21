"""The hand-written backward pass against central finite differences, in float64."""

import numpy as np
import pytest

from gpunet.data import synthetic
from gpunet.gradcheck import gradcheck
from gpunet.model import Layout, Network, init_params

SHAPES = [
    [3, 32, 1],  # the tutorial
    [5, 7, 2],
    [4, 6, 5, 3],
    [2, 9, 4, 6, 1],
    [6, 3, 3, 3, 4],
]


def network(backend, sizes, n=7, seed=0, init="he", cls=Network):
    """A float64 network at a generic point: biases drawn too, so no unit sits exactly on ReLU's kink."""
    rng = np.random.default_rng(seed)
    x, y = synthetic(n, sizes[0], sizes[-1], rng)
    params = init_params(sizes, rng, init) + 0.1 * rng.standard_normal(Layout(sizes).size)
    return cls(backend, sizes, params, x, y, dtype=np.float64)


@pytest.mark.parametrize("loss", ["sse", "mse"])
@pytest.mark.parametrize("sizes", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_backward_matches_finite_differences(backend, sizes, loss):
    errors = gradcheck(network(backend, sizes), loss)
    assert len(errors) == 2 * (len(sizes) - 1)
    assert max(e for _, e in errors) < 1e-6, errors


class NoReluMask(Network):
    """A planted bug: the backward pass forgets the ReLU mask (the forward pass is right)."""

    def sse(self, out):
        r = super().sse(out)
        for m in self.mask:
            m[...] = 1
        return r


def test_gradcheck_catches_a_missing_relu_mask(backend):
    errors = dict(gradcheck(network(backend, [3, 16, 2], cls=NoReluMask)))
    assert errors["w1"] > 1e-2 and errors["b1"] > 1e-2


def test_update_is_lr_times_gradient(backend):
    """One epoch moves the flat parameters by exactly lr * dSSE/dparams."""
    net = network(backend, [3, 8, 2])
    before = backend.to_numpy(net.params).copy()
    _, grad = net.loss_and_grad()
    net.epoch(net.xp.empty((1, 1), net.dtype), 1e-3)
    np.testing.assert_allclose(backend.to_numpy(net.params), before - 1e-3 * grad, rtol=1e-12, atol=1e-15)
