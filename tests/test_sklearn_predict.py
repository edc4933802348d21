"""The short ways of gpunet.sklearn's predict: a plain NumPy X taken without scikit-learn's validate_data, and the
labels decoded without LabelBinarizer.inverse_transform. Each gives what the long way gives, and every X the short
way does not take still goes the long way (its errors and warnings are scikit-learn's)."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import datasets  # noqa: E402
from sklearn.preprocessing import LabelBinarizer  # noqa: E402
from sklearn.utils.validation import validate_data  # noqa: E402

from gpunet import sklearn as gs  # noqa: E402
from gpunet import sklearn_arrays  # noqa: E402

KINDS = {  # y_type_ -> labels a LabelBinarizer is fitted on
    "binary": np.array(["no", "yes", "no"]),
    "one class": np.array([7, 7, 7]),
    "multiclass": np.array([3, 1, 2, 1, 5]),
    "multilabel-indicator": np.array([[1, 0, 1], [0, 1, 1]]),
}


@pytest.mark.parametrize("kind", KINDS)
def test_labels_are_label_binarizers(kind):
    est = gs.MLPClassifier()
    est._label_binarizer = LabelBinarizer().fit(KINDS[kind])
    est.classes_ = est._label_binarizer.classes_
    est.n_outputs_ = 1 if est._label_binarizer.y_type_ == "binary" else len(est.classes_)
    rng = np.random.default_rng(0)
    p = rng.random((50, est.n_outputs_))
    p[:5] = 0.5  # on the threshold
    if est.n_outputs_ > 1:
        p[5:10, :2] = 0.9  # a tie: the first of the largest
    theirs = est._label_binarizer.inverse_transform(p.ravel() if est.n_outputs_ == 1 else p)
    ours = est._labels(p)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def fitted(**kw):
    x, y = datasets.load_iris(return_X_y=True)
    return gs.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0, **kw).fit(x, y), x


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_plain_array_is_taken_as_validate_data_takes_it():
    est, x = fitted()
    for X in (x, x.astype(np.float32), x[:1], np.asfortranarray(x), x[:, :][::2]):
        assert sklearn_arrays._plain(est, X)
        assert sklearn_arrays.validated(est, X, reset=False) is X
        assert validate_data(est, X, reset=False, dtype=sklearn_arrays.FLOATS) is X  # what the short way skips


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
def test_anything_else_goes_the_long_way():
    est, x = fitted()
    bad = x.copy()
    bad[3, 1] = np.nan
    for X in (x.astype(np.int64), x[:, :3], x[:0], bad, x.tolist(), np.matrix(x), x[:, :, None]):
        assert not sklearn_arrays._plain(est, X)
    with pytest.raises(ValueError, match="NaN"):
        est.predict(bad)
    with pytest.raises(ValueError, match="3 features"):
        est.predict(x[:, :3])
    np.testing.assert_array_equal(est.predict(x.astype(np.int64)), est.predict(x))
    huge = np.full((2, 4), 1e308)  # finite, but its sum is not: validate_data looks closer, and takes it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not sklearn_arrays._plain(est, huge)
    assert sklearn_arrays.validated(est, huge, reset=False) is huge


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fitted_with_feature_names_an_array_still_warns():
    pd = pytest.importorskip("pandas")
    x, y = datasets.load_iris(return_X_y=True, as_frame=True)
    est = gs.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(x, y)
    assert not sklearn_arrays._plain(est, x.to_numpy())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.predict(x.to_numpy())
    assert any("feature names" in str(w.message) for w in caught)
    assert isinstance(x, pd.DataFrame)


def label_cases():
    rng = np.random.default_rng(1)
    ints = rng.integers(0, 3, 40)
    yield ints, rng.integers(0, 3, 40)
    yield ints, (rng.integers(0, 3, 40)).astype(np.uint8)
    yield ints > 0, rng.integers(0, 2, 40)  # bool against int
    yield np.array(["a", "b", "c"])[ints], np.array(["a", "b", "cc"])[rng.integers(0, 3, 40)]
    yield ints[:1], ints[:1]
    yield ints, ints.astype(str)  # numbers against text: accuracy_score refuses
    yield ints, ints.astype(float)
    yield ints.astype(float) + 0.5, ints.astype(float) + 0.5  # continuous: refused
    yield ints[:, None], ints[:, None]
    yield np.stack([ints, ints], 1) % 2, np.stack([ints, 1 - ints], 1) % 2  # multi-label
    yield ints, ints[:-1]  # lengths differ
    yield ints.tolist(), ints
    yield np.array([], int), np.array([], int)


@pytest.mark.parametrize("case", range(13))
@pytest.mark.parametrize("weighted", [False, True])
def test_accuracy_is_accuracy_scores(case, weighted):
    from sklearn.metrics import accuracy_score

    y_true, y_pred = list(label_cases())[case]
    sw = np.linspace(0.5, 2, len(y_true)) if weighted else None
    try:
        theirs = accuracy_score(y_true, y_pred, sample_weight=sw)
    except (ValueError, TypeError) as e:
        with pytest.raises(type(e)):
            gs._accuracy(y_true, y_pred, sample_weight=sw)
        return
    ours = gs._accuracy(y_true, y_pred, sample_weight=sw)
    assert type(ours) is float and (ours == theirs or np.isnan(ours) and np.isnan(theirs))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_score_is_scikit_learns_accuracy(monkeypatch):
    from sklearn.metrics import accuracy_score

    est, x = fitted()
    _, y = datasets.load_iris(return_X_y=True)
    sw = np.linspace(0, 1, len(y))
    for X, labels, weights in ((x, y, None), (x[::7], y[::7], None), (x, y, sw), (x, y.astype(str), None)):
        try:
            expected = accuracy_score(labels, est.predict(X), sample_weight=weights)
        except ValueError:
            with pytest.raises(ValueError, match="Mix"):
                est.score(X, labels, sample_weight=weights)
            continue
        assert est.score(X, labels, sample_weight=weights) == expected
    expected = accuracy_score(y, est.predict(x))
    monkeypatch.setattr(gs, "accuracy_score", None)  # the short way does not call it
    assert est.score(x, y) == expected


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_labels_fitted_sparse_come_back_sparse_as_the_binarizer_gives_them():
    sparse = pytest.importorskip("scipy.sparse")
    x, _ = datasets.load_iris(return_X_y=True)
    y = (np.random.default_rng(0).random((len(x), 3)) > 0.5).astype(int)
    est = gs.MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0, backend="cpu")
    est.fit(x, sparse.csr_matrix(y))
    ours = est.predict(x)
    theirs = est._label_binarizer.inverse_transform(est.predict_proba(x))
    assert sparse.issparse(ours) and sparse.issparse(theirs)
    np.testing.assert_array_equal(ours.toarray(), theirs.toarray())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_regressors_score_is_r2_score():
    from sklearn.metrics import r2_score

    x, y = datasets.load_diabetes(return_X_y=True)
    est = gs.MLPRegressor(hidden_layer_sizes=(5,), max_iter=5, random_state=0, backend="cpu").fit(x, y)
    sw = np.linspace(0.1, 1, len(y))
    assert est.score(x, y) == r2_score(y, est.predict(x))
    assert est.score(x, y, sample_weight=sw) == r2_score(y, est.predict(x), sample_weight=sw)
