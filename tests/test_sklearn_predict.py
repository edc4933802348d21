"""The short ways of gpunet.sklearn's predict: a plain NumPy X taken without scikit-learn's validate_data, and the
labels decoded without LabelBinarizer.inverse_transform. Each gives what the long way gives, and every X the short
way does not take still goes the long way (its errors and warnings are scikit-learn's)."""

import re
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import datasets  # noqa: E402
from sklearn.preprocessing import LabelBinarizer  # noqa: E402
from sklearn.utils.validation import validate_data  # noqa: E402

from gpunet import sklearn as gs  # noqa: E402
from gpunet import sklearn_arrays, sklearn_metrics  # noqa: E402

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
            sklearn_metrics.accuracy(y_true, y_pred, sample_weight=sw)
        return
    ours = sklearn_metrics.accuracy(y_true, y_pred, sample_weight=sw)
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
    monkeypatch.setattr(sklearn_metrics, "accuracy_score", None)  # the short way does not call it
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


def r2_cases():
    rng = np.random.default_rng(2)
    t = rng.standard_normal(50)
    yield t, t + 0.3 * rng.standard_normal(50)
    yield t, t  # perfect: 1
    yield np.full(50, 2.0), t  # a constant target missed: 0
    yield np.full(50, 2.0), np.full(50, 2.0)  # a constant target matched: 1
    two = rng.standard_normal((50, 2))
    yield two, two + rng.standard_normal((50, 2))
    yield np.column_stack([np.full(50, 1.0), t]), np.column_stack([t, t])  # one constant output of two
    yield t[:, None], t + 1  # (n, 1) against (n,)
    yield t[:2], t[:2] * 3
    yield 1e200 * t, 1e200 * t[::-1]  # finite, but squares overflow: as r2_score does it
    yield t, np.where(t > 1, np.nan, t)  # refused
    yield t[:1], t[:1]  # one row: a warning and nan
    yield t.astype(np.float32), t.astype(np.float32)
    yield (10 * t).astype(int), t
    yield two, t  # shapes differ: refused
    yield t.tolist(), t
    yield np.zeros((50, 0)), np.zeros((50, 0))  # no outputs: refused


@pytest.mark.parametrize("case", range(16))
@pytest.mark.parametrize("weighted", [False, True])
def test_r2_is_r2_scores(case, weighted):
    from sklearn.metrics import r2_score

    y_true, y_pred = list(r2_cases())[case]
    sw = np.linspace(0.5, 2, len(y_true)) if weighted else None
    with warnings.catch_warnings(record=True) as theirs_warned:
        warnings.simplefilter("always")
        try:
            theirs = r2_score(y_true, y_pred, sample_weight=sw)
        except ValueError as e:
            with pytest.raises(ValueError, match=re.escape(str(e))):
                sklearn_metrics.r2(y_true, y_pred, sample_weight=sw)
            return
    with warnings.catch_warnings(record=True) as ours_warned:
        warnings.simplefilter("always")
        ours = sklearn_metrics.r2(y_true, y_pred, sample_weight=sw)
    assert type(ours) is float and (ours == theirs or np.isnan(ours) and np.isnan(theirs))
    assert [type(w.message) for w in ours_warned] == [type(w.message) for w in theirs_warned]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_scores_are_r2_scores(monkeypatch):
    """A regressor's validation scores, taken by r2 after every epoch, are r2_score's: the fit equals its fit with
    r2_score itself doing the scoring."""
    from sklearn.metrics import r2_score

    x, y = datasets.load_diabetes(return_X_y=True)
    kw = dict(hidden_layer_sizes=(8,), max_iter=30, early_stopping=True, random_state=0, backend="cpu")
    ours = gs.MLPRegressor(**kw).fit(x, y)
    monkeypatch.setattr(gs, "r2", r2_score)
    theirs = gs.MLPRegressor(**kw).fit(x, y)
    assert ours.validation_scores_ == theirs.validation_scores_ and ours.n_iter_ == theirs.n_iter_
