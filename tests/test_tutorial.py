"""gpunet against the tutorial: its transliteration as the reference, and its experiment's behaviour."""

import numpy as np
import pytest

from gpunet import Config, train
from gpunet.data import synthetic, true_coefficients
from gpunet.model import Layout
from gpunet.train import initial_draws
from tests.tutorial_reference import tutorial


def tutorial_start(config, dtype):
    """The data and initial parameters gpunet draws for `config`, as the tutorial's variables."""
    data, start = initial_draws(config)
    (w1, b1), (w2, b2) = Layout(config.sizes).unpack(start)
    return [a.astype(dtype) for a in (data.x, data.y, w1, w2, b1, b2)]


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 2e-4)])
def test_matches_the_tutorial_transliteration(backend, dtype, rtol):
    config = Config(dtype=dtype, log_every=1)  # the loss of every epoch
    ref_losses, ref_params = tutorial(*tutorial_start(config, dtype), learning_rate=config.lr, epochs=config.epochs)
    result = train(config, backend=backend)
    assert [e for e, _ in result.losses] == list(range(1, 201))
    np.testing.assert_allclose([l for _, l in result.losses], ref_losses, rtol=rtol)
    assert result.final_loss == result.losses[-1][1]
    (w1, b1), (w2, b2) = result.params
    for got, want in zip((w1, b1, w2, b2), ref_params):
        np.testing.assert_allclose(got, np.reshape(want, got.shape), rtol=rtol, atol=rtol * np.abs(want).max())


def test_log_points_are_the_tutorials(backend):
    every = train(backend=backend, log_every=1)
    result = train(backend=backend)
    assert [e for e, _ in result.losses] == list(range(10, 201, 10))
    assert result.losses == [(e, l) for e, l in every.losses if e % 10 == 0]
    odd = train(backend=backend, epochs=25)  # the final loss is kept even off the log points
    assert [e for e, _ in odd.losses] == [10, 20] and odd.final_loss == every.losses[24][1]


@pytest.mark.parametrize("seed", range(8))
def test_loss_falls_at_every_log_point(backend, seed):
    losses = [l for _, l in train(backend=backend, seed=seed).losses]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 100 < losses[0] < 1000  # from a few hundred to under a hundred, as in the tutorial


def test_same_seed_same_losses_other_seed_other_losses(backend):
    a, b, c = train(backend=backend, seed=7), train(backend=backend, seed=7), train(backend=backend, seed=8)
    assert a.losses == b.losses and a.final_loss == b.final_loss
    assert a.losses != c.losses


def test_synthetic_targets_follow_the_tutorials_rule():
    assert true_coefficients(3, 1).ravel().tolist() == [0.2, -1.3, -0.5]
    x, y = synthetic(20000, 3, 1, np.random.default_rng(0))
    fitted, *_ = np.linalg.lstsq(x, y, rcond=None)
    np.testing.assert_allclose(fitted.ravel(), [0.2, -1.3, -0.5], atol=0.03)  # noise N(0,1): se ~ 0.007
    assert abs(np.std(y - x @ true_coefficients(3, 1)) - 1) < 0.03


def test_mse_is_sse_over_the_count_and_trains_the_same_direction(backend):
    sse = train(backend=backend, dtype="float64", epochs=1)
    mse = train(backend=backend, dtype="float64", epochs=1, loss="mse")
    assert mse.final_loss == pytest.approx(sse.final_loss / 100, rel=1e-12)
    # mse's gradient is sse's over n*d_out: lr * n gives the same step
    a = train(backend=backend, dtype="float64", epochs=5, log_every=1)
    b = train(backend=backend, dtype="float64", epochs=5, loss="mse", lr=1e-4 * 100, log_every=1)
    np.testing.assert_allclose([100 * l for _, l in b.losses], [l for _, l in a.losses], rtol=1e-12)


def test_deeper_and_wider_networks_train(backend):
    result = train(backend=backend, n=256, d_in=8, hidden=(64, 32, 16), d_out=3, init="he", epochs=100, lr=1e-4)
    assert result.losses[-1][1] < 0.5 * result.losses[0][1]
    assert [w.shape for w, _ in result.params] == [(8, 64), (64, 32), (32, 16), (16, 3)]
    assert [b.shape for _, b in result.params] == [(64,), (32,), (16,), (3,)]
