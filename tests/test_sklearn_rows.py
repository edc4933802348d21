"""The estimator's batches taken as whole rows (Engine.rows, Workspace's `rows`): the same batch, forward pass and
gradient as the feature-major workspace that gathers columns, in float64."""

import numpy as np
import pytest

from gpunet.backend import resolve
from gpunet.model import Layout, Network
from gpunet.sklearn_loop import Adam, Engine, glorot_params

CPU = resolve("cpu")


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_row_workspace_matches_columns(activation):
    """Forward output and gradient of a row-held workspace equal the column-held one's (the products read either)."""
    rng = np.random.default_rng(0)
    sizes, n = [5, 7, 6, 2], 11
    net = Network(CPU, sizes, rng.standard_normal(Layout(sizes).size), np.float64, activation)
    x, y = rng.standard_normal((n, 5)), rng.standard_normal((n, 2))
    by_columns, by_rows = net.workspace(n), net.workspace(n, rows=True)
    assert by_rows.x_rows.shape == (n, 6) and np.shares_memory(by_rows.a[0], by_rows.x_rows)
    outputs, grads = [], []
    for ws in (by_columns, by_rows):
        ws.load(x, y)
        outputs.append(ws.forward().copy())
        ws.error()
        grads.append(ws.backward(1.0).copy())
    assert np.all(by_rows.x_rows[:, -1] == 1)  # the bias's input kept beside the batch
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12, atol=1e-13)


def test_engine_takes_the_rows_of_the_order():
    """Engine.take puts observations `rows` of X (and their targets) in the workspace, ones beside them."""
    rng = np.random.default_rng(1)
    sizes = [4, 3, 2]
    engine = Engine(CPU, sizes, glorot_params(sizes, np.random.RandomState(0), "relu"), np.float64, "relu",
                    "identity", 0.0)
    x_t, y_t = rng.standard_normal((4, 50)), rng.standard_normal((2, 50))
    x_rows = engine.rows(x_t)
    rows = rng.permutation(50)[:9]
    ws = engine.workspace(9)
    engine.take(x_rows, y_t, rows, ws)
    np.testing.assert_array_equal(ws.x, x_t[:, rows])
    np.testing.assert_array_equal(ws.a[0][-1], np.ones(9))
    np.testing.assert_array_equal(ws.y, y_t[:, rows])


def test_epoch_from_rows_matches_gathered_columns():
    """An epoch from rows() gives the parameters of the same epoch on a column-gathering workspace, step by step."""
    rng = np.random.default_rng(2)
    sizes, n, batch = [6, 8, 1], 40, 16
    flat = glorot_params(sizes, np.random.RandomState(0), "relu")
    x_t, y_t = rng.standard_normal((6, n)), rng.standard_normal((1, n))
    order = rng.permutation(n)
    engine = Engine(CPU, sizes, flat, np.float64, "relu", "identity", 1e-3)
    opt = Adam(engine.net.params, 1e-2)
    loss = engine.epoch(engine.rows(x_t), y_t, order, batch, opt)

    reference = Engine(CPU, sizes, flat, np.float64, "relu", "identity", 1e-3)
    ref_opt = Adam(reference.net.params, 1e-2)
    for start in range(0, n, batch):
        rows = order[start : start + batch]
        ws = reference.net.workspace(rows.shape[0])  # columns, gathered as before
        ws.gather(x_t, y_t, rows)
        reference.gradient(ws)
        ref_opt.step(np, reference.net.params, reference.net.grads)
    np.testing.assert_allclose(engine.params_host(), reference.params_host(), rtol=1e-12, atol=1e-14)
    assert loss == pytest.approx(reference.loss(n), rel=1e-12)
