"""gpunet.sklearn with CuPy inputs: X stays on its device, predictions come back there.

Here on a stand-in for CuPy on the CPU (tests/fake_device.py), whose math is NumPy's: the numbers must
equal a NumPy input's exactly, and X must never be copied to the host. Where a GPU is usable, the same
with real CuPy arrays against the CPU.
"""

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

from gpunet import sklearn as gs  # noqa: E402
from gpunet.agree import TOLERANCES  # noqa: E402
from tests import fake_device  # noqa: E402
from tests.conftest import NO_CUDA  # noqa: E402
from tests.test_sklearn import classification, regression, rel  # noqa: E402


def is_device(a):
    return type(a).__module__.split(".")[0] == "cupy"


def x_copied(x):
    """Whether X (or its transpose) came back to the host."""
    return any(shape in fake_device.ndarray.host_copies for shape in (x.shape, x.T.shape))


def assert_same_model(a, b):
    assert a.n_iter_ == b.n_iter_ and a.loss_curve_ == b.loss_curve_
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert type(p) is np.ndarray and np.array_equal(p, q)


def test_a_cupy_regression_trains_and_predicts_on_its_device(monkeypatch):
    fake_device.install(monkeypatch)
    x, y = regression("diabetes")
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, early_stopping=True, n_iter_no_change=2)
    sw = np.linspace(0.5, 1.5, len(y))
    on_host = gs.MLPRegressor(backend="cpu", **kw).fit(x, y, sample_weight=sw)
    xd, yd, swd = (fake_device.to_device(a) for a in (x, y, sw))
    ours = gs.MLPRegressor(**kw).fit(xd, yd, sample_weight=swd)
    assert_same_model(ours, on_host)
    assert ours.validation_scores_ == on_host.validation_scores_
    y_pred = ours.predict(xd)
    assert is_device(y_pred) and np.array_equal(y_pred.get(), on_host.predict(x))
    assert ours.score(xd, yd) == on_host.score(x, y)
    assert not x_copied(x)
    steps = [gs.MLPRegressor(hidden_layer_sizes=(8,), random_state=0, backend=b) for b in ("auto", "cpu")]
    for _ in range(3):
        steps[0].partial_fit(xd, yd)
        steps[1].partial_fit(x, y)
    assert_same_model(*steps)
    assert not x_copied(x)


@pytest.mark.parametrize("name", ["iris", "cancer", "multilabel"])
def test_a_cupy_classification_gives_device_probabilities_and_labels(monkeypatch, name):
    fake_device.install(monkeypatch)
    x, y = classification(name)
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    on_host = gs.MLPClassifier(backend="cpu", **kw).fit(x, y)
    xd = fake_device.to_device(x)
    ours = gs.MLPClassifier(**kw).fit(xd, fake_device.to_device(y))
    assert_same_model(ours, on_host)
    for method in ("predict", "predict_proba", "predict_log_proba"):
        got = getattr(ours, method)(xd)
        assert is_device(got) and np.array_equal(got.get(), getattr(on_host, method)(x)), method
    assert not x_copied(x)


def test_text_labels_come_back_on_the_host(monkeypatch):
    """CuPy holds no strings: the labels of a CuPy input's predictions are then NumPy's."""
    fake_device.install(monkeypatch)
    x, y = classification("iris")
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    ours = gs.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(fake_device.to_device(x), labels)
    got = ours.predict(fake_device.to_device(x))
    assert type(got) is np.ndarray and set(got) <= set(labels)


def test_backend_cpu_copies_a_cupy_input_to_the_host(monkeypatch):
    fake_device.install(monkeypatch)
    x, y = regression("diabetes")
    ours = gs.MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0, backend="cpu")
    ours.fit(fake_device.to_device(x), y)
    assert x_copied(x) and type(ours.predict(fake_device.to_device(x))) is np.ndarray
    xc, yc = classification("iris")
    ours = gs.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0, backend="cpu")
    ours.fit(fake_device.to_device(xc), yc)
    assert all(type(p) is np.ndarray for p in (ours.predict(xc), ours.predict(fake_device.to_device(xc))))


@pytest.mark.parametrize("bad, says", [
    (lambda x: np.where(x > 2, np.nan, x), "contains NaN or infinity"),
    (lambda x: x[:, 0], "Expected a 2D array, got a 1D CuPy array"),
    (lambda x: x[:0], "at least 1 sample"),
])
def test_bad_cupy_inputs_get_scikit_learns_errors(monkeypatch, bad, says):
    fake_device.install(monkeypatch)
    x, y = regression("diabetes")
    with pytest.raises(ValueError, match=says):
        gs.MLPRegressor(max_iter=1).fit(fake_device.to_device(bad(x)), y[: len(bad(x))])


def test_a_cupy_input_is_checked_against_the_fitted_features(monkeypatch):
    fake_device.install(monkeypatch)
    x, y = regression("diabetes")
    ours = gs.MLPRegressor(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(fake_device.to_device(x), y)
    with pytest.raises(ValueError, match="X has 9 features, but MLPRegressor is expecting 10"):
        ours.predict(fake_device.to_device(x[:, 1:]))
    with pytest.raises(ValueError, match="requires y to be passed"):
        gs.MLPRegressor().fit(fake_device.to_device(x), None)


@pytest.mark.gpu
@pytest.mark.skipif(bool(NO_CUDA), reason=NO_CUDA)
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_real_cupy_inputs_stay_on_the_gpu_and_agree_with_the_cpu(solver):
    import cupy

    x, y = classification("digits")
    kw = dict(hidden_layer_sizes=(32,), random_state=0, max_iter=10, solver=solver)
    reference = gs.MLPClassifier(backend="cpu", **kw).fit(x, y)
    xd = cupy.asarray(x, dtype=cupy.float32)
    ours = gs.MLPClassifier(**kw).fit(xd, cupy.asarray(y))
    proba = ours.predict_proba(xd)
    assert isinstance(proba, cupy.ndarray) and proba.device.id == xd.device.id
    assert rel(cupy.asnumpy(proba), reference.predict_proba(x)) < TOLERANCES["float32"]
    labels = ours.predict(xd)
    assert isinstance(labels, cupy.ndarray) and float((labels == cupy.asarray(y)).mean()) == ours.score(xd, y)


def test_partial_fit_of_a_classifier_takes_cupy_labels(monkeypatch):
    fake_device.install(monkeypatch)
    x, y = classification("iris")
    kw = dict(hidden_layer_sizes=(8,), random_state=0)
    ours, on_host = gs.MLPClassifier(**kw), gs.MLPClassifier(backend="cpu", **kw)
    for _ in range(3):
        ours.partial_fit(fake_device.to_device(x), fake_device.to_device(y), classes=np.unique(y))
        on_host.partial_fit(x, y, classes=np.unique(y))
    assert_same_model(ours, on_host)
    assert not x_copied(x)


@pytest.mark.gpu
@pytest.mark.skipif(bool(NO_CUDA), reason=NO_CUDA)
def test_real_cupy_through_every_path_that_takes_arrays():
    """Weights, early stopping, partial_fit with labels, binary probabilities, score: all with CuPy arguments."""
    import cupy

    x, y = regression("diabetes")
    sw = np.linspace(0.5, 1.5, len(y))
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, early_stopping=True, n_iter_no_change=2)
    reference = gs.MLPRegressor(backend="cpu", **kw).fit(x, y, sample_weight=sw)
    ours = gs.MLPRegressor(**kw).fit(*(cupy.asarray(a) for a in (x, y)), sample_weight=cupy.asarray(sw))
    assert rel(ours.loss_curve_, reference.loss_curve_) < 1e-9  # float64 on both: rounding apart
    y_pred = ours.predict(cupy.asarray(x))
    assert isinstance(y_pred, cupy.ndarray) and rel(cupy.asnumpy(y_pred), reference.predict(x)) < 1e-9
    assert abs(ours.score(cupy.asarray(x), cupy.asarray(y)) - reference.score(x, y)) < 1e-9
    xb, yb = classification("cancer")
    clf = gs.MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    for _ in range(3):
        clf.partial_fit(cupy.asarray(xb), cupy.asarray(yb), classes=np.unique(yb))
    proba = clf.predict_proba(cupy.asarray(xb))
    assert isinstance(proba, cupy.ndarray) and proba.shape == (len(yb), 2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("early_stopping", [False, True])
def test_a_stack_of_folds_on_a_device_is_each_fit_alone(monkeypatch, early_stopping):
    """fit_stack on CuPy arrays takes a GPU's grouping (one stack, each model its own rows, order and weights): each
    model as fitted alone on the host, and its X never comes back."""
    from sklearn.model_selection import KFold

    from gpunet.stack import Stack

    fake_device.install(monkeypatch)
    made, init = [], Stack.__init__
    monkeypatch.setattr(Stack, "__init__", lambda self, *a, **k: made.append(a[2].shape[0]) or init(self, *a, **k))
    x, y = regression("diabetes")
    sw = np.linspace(0.5, 1.5, len(y))
    kw = dict(hidden_layer_sizes=(8,), max_iter=6, batch_size=64, early_stopping=early_stopping, n_iter_no_change=2)
    folds = [train for train, _ in KFold(3, shuffle=True, random_state=0).split(x)]
    grid = [dict(alpha=a, random_state=s) for a in (1e-4, 1e-1) for s in (0, 1)]
    fits = [(g, f) for g in grid for f in folds]
    on_device = [[fake_device.to_device(a[f]) for f in folds] for a in (x, y, sw)]
    stacked = gs.fit_stack([gs.MLPRegressor(**kw, **g) for g, _ in fits], *(
        [d[i % 3] for i in range(len(fits))] for d in on_device))
    for ours, (g, f) in zip(stacked, fits):
        alone = gs.MLPRegressor(backend="cpu", **kw, **g).fit(x[f], y[f], sample_weight=sw[f])
        assert ours.n_iter_ == alone.n_iter_ and rel(ours.loss_curve_, alone.loss_curve_) < 1e-9
        for p, q in zip(ours.coefs_ + ours.intercepts_, alone.coefs_ + alone.intercepts_):
            assert type(p) is np.ndarray and rel(p, q) < 1e-9
    assert not any(x_copied(x[f]) for f in folds)
    assert made[0] == len(fits)  # one stack of all (then smaller ones as models stop)
