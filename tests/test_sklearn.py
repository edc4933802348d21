"""gpunet.sklearn side by side with scikit-learn itself, on scikit-learn's data sets, and its estimator checks."""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

from sklearn import datasets  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from gpunet import sklearn as gs  # noqa: E402
from gpunet.agree import TOLERANCES  # noqa: E402
from gpunet.backend import resolve  # noqa: E402
from gpunet.errors import BackendUnavailable  # noqa: E402
from gpunet.gradcheck import finite_difference  # noqa: E402
from gpunet.model import Network  # noqa: E402
from tests.conftest import BACKENDS, NO_CUDA  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TOL = 1e-9  # float64, stochastic solvers: the bound; measured differences are ~1e-15
LBFGS_TOL = 1e-6  # scipy's line search amplifies rounding

SOLVERS = {
    "sgd": dict(solver="sgd", momentum=0.0),
    "momentum": dict(solver="sgd", nesterovs_momentum=False),
    "nesterov": dict(solver="sgd"),
    "invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.05),
    "adaptive": dict(solver="sgd", learning_rate="adaptive", tol=0.05, n_iter_no_change=2),
    "adam": dict(solver="adam", learning_rate_init=0.01),
    "adam-noshuffle": dict(solver="adam", shuffle=False),
    "adam-early": dict(solver="adam", early_stopping=True, n_iter_no_change=3),
    "sgd-early-noshuffle": dict(solver="sgd", early_stopping=True, shuffle=False),
    "lbfgs": dict(solver="lbfgs"),
}


def standardised(x):
    return StandardScaler().fit_transform(x)


def regression(name, loss="squared_error"):
    if name == "diabetes":
        x, y = datasets.load_diabetes(return_X_y=True)
    else:
        x, y = datasets.load_linnerud(return_X_y=True)  # 3 targets: scikit-learn's multi-output gradient (#8349)
    if loss == "poisson":  # positive targets of mean 1
        return standardised(x), y / y.mean(axis=0)
    return standardised(x), (y - y.mean(axis=0)) / y.std(axis=0)


def classification(name):
    if name == "iris":
        x, y = datasets.load_iris(return_X_y=True)
    elif name == "digits":
        x, y = datasets.load_digits(return_X_y=True)
        x, y = x[:600], y[:600]
    elif name == "cancer":  # binary: a logistic output
        x, y = datasets.load_breast_cancer(return_X_y=True)
    else:  # multi-label: one logistic output per label
        x, y = datasets.make_multilabel_classification(n_samples=150, n_features=8, n_classes=4, random_state=3)
    return standardised(x), y


def rel(a, b):
    """max |a - b| / max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def assert_same_fit(ours, theirs, tol):
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert rel(ours.loss_, theirs.loss_) < tol
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype and isinstance(a, np.ndarray)
        assert rel(a, b) < tol
    for name in ("loss_curve_", "validation_scores_"):
        mine, ref = getattr(ours, name, None), getattr(theirs, name, None)
        assert (mine is None) == (ref is None), name
        if ref is not None:
            assert len(mine) == len(ref) and rel(mine, ref) < tol, name
    for name in ("best_loss_", "best_validation_score_", "n_layers_", "n_outputs_", "out_activation_"):
        mine, ref = getattr(ours, name, None), getattr(theirs, name, None)
        assert mine == (ref if ref is None or isinstance(ref, str) else pytest.approx(ref, rel=tol)), name


def side_by_side(ours, theirs, x, y):
    with warnings.catch_warnings(record=True) as caught_ours:
        warnings.simplefilter("always", ConvergenceWarning)
        ours.fit(x, y)
    with warnings.catch_warnings(record=True) as caught_theirs:
        warnings.simplefilter("always", ConvergenceWarning)
        theirs.fit(x, y)
    assert [type(w.message) for w in caught_ours] == [type(w.message) for w in caught_theirs]
    return ours, theirs


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("data", ["diabetes", "linnerud"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_regressor_matches_scikit_learn(solver, data, loss):
    x, y = regression(data, loss)
    kw = dict(loss=loss, hidden_layer_sizes=(12, 7), random_state=1, max_iter=25, batch_size=64, alpha=1e-3,
              **SOLVERS[solver])
    if data == "linnerud":
        kw["batch_size"] = 6  # 20 rows: batches of 6, 6, 6 and 2
    ours, theirs = side_by_side(gs.MLPRegressor(backend="cpu", **kw), sk.MLPRegressor(**kw), x, y)
    tol = LBFGS_TOL if solver == "lbfgs" else TOL
    assert_same_fit(ours, theirs, tol)
    assert rel(ours.predict(x), theirs.predict(x)) < tol
    assert ours.score(x, y) == pytest.approx(theirs.score(x, y), rel=tol)


@pytest.mark.parametrize("data", ["iris", "digits", "cancer", "multilabel"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_classifier_matches_scikit_learn(solver, data):
    x, y = classification(data)
    activation = {"iris": "tanh", "digits": "relu", "cancer": "logistic", "multilabel": "identity"}[data]
    kw = dict(hidden_layer_sizes=(10,), activation=activation, random_state=2, max_iter=15, **SOLVERS[solver])
    ours, theirs = side_by_side(gs.MLPClassifier(backend="cpu", **kw), sk.MLPClassifier(**kw), x, y)
    tol = LBFGS_TOL if solver == "lbfgs" else TOL
    assert_same_fit(ours, theirs, tol)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))
    assert rel(ours.predict_proba(x), theirs.predict_proba(x)) < tol
    assert rel(ours.predict_log_proba(x), theirs.predict_log_proba(x)) < max(tol, 1e-9)


@pytest.mark.parametrize("solver", ["sgd", "adam", "adam-early", "lbfgs"])
def test_sample_weights_match_scikit_learn(solver):
    tol = LBFGS_TOL if solver == "lbfgs" else TOL
    for loss in ("squared_error", "poisson"):
        x, y = regression("linnerud", loss)
        sw = np.random.default_rng(0).uniform(0.1, 3, len(x))
        kw = dict(loss=loss, hidden_layer_sizes=(12, 7), random_state=1, max_iter=25, batch_size=6, alpha=1e-3,
                  **SOLVERS[solver])
        ours = gs.MLPRegressor(backend="cpu", **kw).fit(x, y, sample_weight=sw)
        assert_same_fit(ours, sk.MLPRegressor(**kw).fit(x, y, sample_weight=sw), tol)
    for data in ("iris", "cancer", "multilabel"):
        x, y = classification(data)
        sw = np.random.default_rng(1).uniform(0.1, 3, len(x))
        kw = dict(hidden_layer_sizes=(10,), random_state=2, max_iter=15, **SOLVERS[solver])
        ours = gs.MLPClassifier(backend="cpu", **kw).fit(x, y, sample_weight=sw)
        assert_same_fit(ours, sk.MLPClassifier(**kw).fit(x, y, sample_weight=sw), tol)


def test_default_parameters_match_scikit_learn():
    for ours, theirs in ((gs.MLPRegressor(), sk.MLPRegressor()), (gs.MLPClassifier(), sk.MLPClassifier())):
        extra = {"backend": "auto", "device": 0, "dtype": None}
        assert ours.get_params() == {**theirs.get_params(), **extra}


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_and_warm_start_match_scikit_learn(solver):
    x, y = classification("iris")
    kw = dict(hidden_layer_sizes=(8,), random_state=0, solver=solver, max_iter=5, batch_size=32)
    ours, theirs = gs.MLPClassifier(backend="cpu", **kw), sk.MLPClassifier(**kw)
    for start in (0, 50, 100):
        rows = slice(start, start + 50)
        ours.partial_fit(x[rows], y[rows], classes=[0, 1, 2])
        theirs.partial_fit(x[rows], y[rows], classes=[0, 1, 2])
    assert_same_fit(ours, theirs, TOL)
    xr, yr = regression("diabetes")
    ours, theirs = gs.MLPRegressor(backend="cpu", warm_start=True, **kw), sk.MLPRegressor(warm_start=True, **kw)
    for _ in range(2):
        ours.fit(xr, yr)
        theirs.fit(xr, yr)
    assert_same_fit(ours, theirs, TOL)


def test_float32_stays_float32_and_near_scikit_learn():
    x, y = classification("iris")
    kw = dict(hidden_layer_sizes=(10,), random_state=0, max_iter=20)
    ours = gs.MLPClassifier(backend="cpu", **kw).fit(x.astype(np.float32), y)
    theirs = sk.MLPClassifier(**kw).fit(x.astype(np.float32), y)
    assert all(c.dtype == np.float32 for c in ours.coefs_ + ours.intercepts_)
    assert rel(ours.loss_curve_, theirs.loss_curve_) < 1e-5
    assert gs.MLPClassifier(backend="cpu", dtype="float32", **kw).fit(x, y).coefs_[0].dtype == np.float32


def test_lbfgs_loss_and_gradient_match_finite_differences():
    """The engine's (loss, gradient) that scipy sees, against central differences (single output: #8349 aside)."""
    x, y = regression("diabetes")
    est = gs.MLPRegressor(hidden_layer_sizes=(5,), activation="tanh", alpha=0.1, max_iter=1, backend="cpu",
                          random_state=0, solver="lbfgs").fit(x[:30], y[:30])
    engine = est._engine(np.float64)
    ws = engine.workspace(30)
    ws.x[...], ws.y[...] = x[:30].T, y[None, :30]
    flat = engine.params_host()
    _, grad = engine.loss_and_grad(flat, ws)
    eps, numeric = 1e-6, np.empty_like(flat)
    for i in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (engine.loss_and_grad(up, ws)[0] - engine.loss_and_grad(down, ws)[0]) / (2 * eps)
    assert rel(grad, numeric) < 1e-6


@pytest.mark.parametrize("loss", ["bce", "poisson"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_logistic_and_poisson_outputs_match_finite_differences(activation, loss):
    rng = np.random.default_rng(0)
    sizes, n = [4, 6, 3], 9
    net = Network(resolve("cpu"), sizes, 0.5 * rng.standard_normal(4 * 6 + 6 + 6 * 3 + 3), np.float64, activation,
                  loss)
    ws = net.workspace(n)
    y = (rng.random((n, 3)) < 0.5) * (1.0 if loss == "bce" else 2.0)  # poisson: zeros and twos
    ws.load(rng.standard_normal((n, 4)), y)
    _, analytic = ws.loss_and_grad()
    numeric = finite_difference(ws)
    assert rel(analytic, numeric) < 1e-6
    z = ws.forward().copy()
    out = np.empty((1, 1))
    ws.error(out)
    y = y.T
    if loss == "bce":
        p = 1 / (1 + np.exp(-z))
        expected = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))
    else:
        p = np.exp(z)
        expected = np.sum(np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / p), 0) - y + p)
    assert out[0, 0] == pytest.approx(expected, rel=1e-12)


def test_in_a_pipeline_a_grid_search_and_cross_validation():
    x, y = datasets.load_iris(return_X_y=True)
    kw = dict(hidden_layer_sizes=(8,), max_iter=60, learning_rate_init=0.01, random_state=0, backend="cpu")
    pipe = make_pipeline(StandardScaler(), gs.MLPClassifier(**kw)).fit(x, y)
    assert pipe.score(x, y) > 0.9
    grid = GridSearchCV(gs.MLPClassifier(**kw), {"alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 1e-2]}, cv=3)
    grid.fit(standardised(x), y)
    assert grid.best_params_["learning_rate_init"] == 1e-2
    xr, yr = regression("diabetes")
    ours = cross_val_score(gs.MLPRegressor(**kw), xr, yr, cv=3)
    theirs = cross_val_score(sk.MLPRegressor(**{k: v for k, v in kw.items() if k != "backend"}), xr, yr, cv=3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)


# scikit-learn's own suite runs this check with these settings (sklearn/utils/_test_common/instance_generator.py):
# with its defaults, batches of different sizes make repeated rows and integer weights train differently.
EQUIVALENCE_SETTINGS = {gs.MLPClassifier: dict(solver="lbfgs"), gs.MLPRegressor: dict(solver="sgd", tol=1e-2,
                                                                                      random_state=42)}


@parametrize_with_checks([gs.MLPRegressor(max_iter=20, backend="cpu"), gs.MLPClassifier(max_iter=20, backend="cpu")])
def test_scikit_learn_estimator_checks(estimator, check):
    if getattr(check, "func", check).__name__ == "check_sample_weight_equivalence_on_dense_data":
        estimator = clone(estimator).set_params(**EQUIVALENCE_SETTINGS[type(estimator)])
    check(estimator)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_float32_on_each_backend_agrees_with_float64_on_the_cpu(backend, solver):
    """Within `gpunet check`'s float32 tolerance: loss curve, weights and probabilities."""
    x, y = classification("digits")
    kw = dict(hidden_layer_sizes=(32,), random_state=0, max_iter=10, solver=solver)
    reference = gs.MLPClassifier(backend="cpu", **kw).fit(x, y)
    ours = gs.MLPClassifier(backend=backend, dtype="float32", **kw).fit(x, y)
    tol = TOLERANCES["float32"]
    assert rel(getattr(ours, "loss_curve_", ours.loss_), getattr(reference, "loss_curve_", reference.loss_)) < tol
    for a, b in zip(ours.coefs_ + ours.intercepts_, reference.coefs_ + reference.intercepts_):
        assert isinstance(a, np.ndarray) and a.dtype == np.float32 and rel(a, b) < tol
    assert rel(ours.predict_proba(x), reference.predict_proba(x)) < tol
    if solver != "lbfgs":  # the optimizer's state waits on the host between calls: a fitted model pickles anywhere
        ours = pickle.loads(pickle.dumps(ours)).partial_fit(x, y)
        state = [a for v in vars(ours._optimizer).values() for a in (v if isinstance(v, list) else [v])]
        assert all(isinstance(a, np.ndarray) for a in state if hasattr(a, "shape")) and len(state) > 3
        assert all(a.shape == () for a in state if getattr(a, "size", 0) == 1)  # moved back and forth: still 0-d


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is usable here")
def test_cuda_without_a_gpu_fails_cleanly():
    x, y = regression("diabetes")
    with pytest.raises(BackendUnavailable, match="use --backend cpu|CuPy is not installed"):
        gs.MLPRegressor(backend="cuda", max_iter=1).fit(x, y)


def test_import_gpunet_needs_no_scikit_learn():
    code = "import sys, gpunet, gpunet.cli; assert 'sklearn' not in sys.modules and 'scipy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_verbose_prints_scikit_learns_lines(capsys):
    x, y = classification("iris")
    kw = dict(hidden_layer_sizes=(4,), random_state=0, max_iter=30, early_stopping=True, n_iter_no_change=2,
              verbose=True)
    gs.MLPClassifier(backend="cpu", **kw).fit(x, y)
    ours = capsys.readouterr().out
    sk.MLPClassifier(**kw).fit(x, y)
    assert ours == capsys.readouterr().out and "Validation score" in ours and "Stopping." in ours


def test_an_unsupported_dtype_is_refused():
    x, y = regression("diabetes")
    with pytest.raises(ValueError, match="dtype must be float32, float64"):
        gs.MLPRegressor(dtype="float16", backend="cpu", max_iter=1).fit(x, y)


@pytest.mark.parametrize("solver", ["adam-early", "nesterov", "lbfgs"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_matches_scikit_learn(solver, fmt):
    """A sparse X (a third of its cells zero) trains as scikit-learn's does and predicts the same; each batch's
    rows are made dense as they are gathered."""
    scipy_sparse = pytest.importorskip("scipy.sparse")
    x, y = classification("digits")
    x = np.where(np.abs(x) < 0.5, 0.0, x)
    xs = getattr(scipy_sparse, f"{fmt}_matrix")(x)
    kw = dict(hidden_layer_sizes=(16,), random_state=0, max_iter=8, **SOLVERS.get(solver, dict(solver=solver)))
    ours, theirs = side_by_side(gs.MLPClassifier(backend="cpu", **kw), sk.MLPClassifier(**kw), xs, y)
    assert_same_fit(ours, theirs, 1e-10)
    np.testing.assert_allclose(ours.predict_proba(xs), theirs.predict_proba(xs), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(ours.predict_proba(xs), ours.predict_proba(x), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_pickled_estimator_is_small_and_continues_as_one_never_pickled(solver):
    """Only the optimizer's state a later step needs is pickled (Adam's m and v, SGD's velocity): smaller
    than scikit-learn's pickle, and five partial_fit calls after a round trip give what five without it give."""
    x, y = classification("digits")
    kw = dict(hidden_layer_sizes=(64,), random_state=0, max_iter=3, solver=solver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = gs.MLPClassifier(backend="cpu", **kw).fit(x, y), sk.MLPClassifier(**kw).fit(x, y)
    assert len(pickle.dumps(ours)) < len(pickle.dumps(theirs))
    thawed = pickle.loads(pickle.dumps(ours))
    for _ in range(5):
        ours.partial_fit(x, y)
        thawed.partial_fit(x, y)
    for a, b in zip(thawed.coefs_ + thawed.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert thawed.loss_curve_ == ours.loss_curve_ and thawed._optimizer.learning_rate == ours._optimizer.learning_rate


def test_log_loss_clips_probabilities_as_scikit_learn_does(monkeypatch):
    """A large learning rate on digits gives some rows a probability of their label below eps: the loss curve
    (and so the stopping epoch) follows scikit-learn's clipped log loss, one model alone and in a stack."""
    from gpunet import sklearn_loop

    x, y = datasets.load_digits(return_X_y=True)
    x = standardised(x)
    kw = dict(hidden_layer_sizes=(64,), learning_rate_init=0.1, alpha=1e-5, max_iter=5, random_state=0, tol=0,
              batch_size=200)
    theirs = sk.MLPClassifier(**kw).fit(x, y)
    ours = gs.MLPClassifier(backend="cpu", **kw).fit(x, y)
    pair = [gs.MLPClassifier(backend="cpu", **kw), gs.MLPClassifier(backend="cpu", **{**kw, "alpha": 0.1})]
    stacked = gs.fit_stack(pair, x, y)[0]
    for fit in (ours, stacked):
        assert rel(fit.loss_curve_, theirs.loss_curve_) < 1e-12
    monkeypatch.setitem(sklearn_loop.OUTPUTS, "softmax", ("ce", 1.0))  # the loss unclipped: the check can fail
    unclipped = gs.MLPClassifier(backend="cpu", **kw).fit(x, y)
    assert rel(unclipped.loss_curve_, theirs.loss_curve_) > 1e-6


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_weighted_log_loss_of_saturated_probabilities_is_scikit_learns():
    """With sample weights each row's loss is taken from p itself (not from p - y + y, which loses a small p): the
    loss curve equals scikit-learn's where probabilities saturate (learning_rate_init=1.0)."""
    x, y = datasets.make_classification(195, 6, n_informative=4, n_classes=3, random_state=0)
    weights = np.random.default_rng(0).uniform(0, 2, len(x))
    weights[::11] = 0
    kw = dict(hidden_layer_sizes=(4,), solver="sgd", learning_rate="invscaling", max_iter=3, batch_size=17,
              alpha=1e-3, learning_rate_init=1.0, random_state=2, momentum=0.99)
    theirs = sk.MLPClassifier(**kw).fit(x, y, sample_weight=weights)
    for ours in (gs.MLPClassifier(backend="cpu", **kw).fit(x, y, sample_weight=weights),
                 gs.fit_stack([gs.MLPClassifier(backend="cpu", **kw)], x, y, sample_weight=weights)[0]):
        assert rel(ours.loss_curve_, theirs.loss_curve_) < 1e-12
