"""The hand-written backward pass against central finite differences, in float64."""

import numpy as np
import pytest

from gpunet import fused, model
from gpunet.gradcheck import generic_network, gradcheck
from tests.planted import drop_relu_mask

SHAPES = [
    [3, 32, 1],  # the tutorial
    [5, 7, 2],
    [4, 6, 5, 3],
    [2, 9, 4, 6, 1],
    [6, 3, 3, 3, 4],
]


@pytest.mark.parametrize("loss", ["sse", "mse"])
@pytest.mark.parametrize("sizes", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_backward_matches_finite_differences(backend, sizes, loss):
    errors = gradcheck(generic_network(backend, sizes, n=7, loss=loss))
    assert len(errors) == 2 * (len(sizes) - 1)
    assert max(e for _, e in errors) < 1e-6, errors


def test_gradcheck_catches_a_missing_relu_mask(backend, monkeypatch):
    drop_relu_mask(monkeypatch)
    errors = dict(gradcheck(generic_network(backend, [3, 16, 2])))
    assert errors["w1"] > 1e-2 and errors["b1"] > 1e-2


def test_backward_written_over_the_outputs_matches_and_catches_a_missing_mask(backend, monkeypatch):
    """Hidden layers taken as large (the thresholds lowered): dS/dz written over each one's output in blocks of 3
    rows, through the scratch buffer, the lower layer's from the upper one's."""
    monkeypatch.setattr(fused, "WHOLE", 50)
    monkeypatch.setattr(model, "GRADIENT_BLOCK", 60)
    monkeypatch.setattr(model, "MIN_BLOCK_ROWS", 1)
    ws = generic_network(backend, [4, 10, 8, 3], n=20, loss="mse")
    assert ws.g[0] is ws.z[0] and ws.g[1] is ws.z[1]
    errors = gradcheck(ws)
    assert max(e for _, e in errors) < 1e-6, errors
    drop_relu_mask(monkeypatch)
    errors = dict(gradcheck(generic_network(backend, [4, 10, 8, 3], n=20, loss="mse")))
    assert errors["w1"] > 1e-2 and errors["w2"] > 1e-2


def test_update_is_lr_times_gradient(backend):
    """One epoch moves the flat parameters by exactly lr * dSSE/dparams."""
    ws = generic_network(backend, [3, 8, 2])
    before = backend.to_numpy(ws.net.params).copy()
    _, grad = ws.loss_and_grad()
    ws.gradient(1e-3)
    ws.net.step()
    np.testing.assert_allclose(backend.to_numpy(ws.net.params), before - 1e-3 * grad, rtol=1e-12, atol=1e-15)
