"""gpunet.search_cv: scikit-learn's searches and cross-validation with the MLP fits trained as stacks, against
scikit-learn's own GridSearchCV, RandomizedSearchCV, cross_validate and cross_val_score over scikit-learn's MLP."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

import sklearn  # noqa: E402
from scipy.stats import loguniform  # noqa: E402
from sklearn import datasets  # noqa: E402
from sklearn import model_selection as skm  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import KFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from gpunet import search_cv  # noqa: E402
from gpunet import sklearn as gs  # noqa: E402
from tests.test_sklearn import TOL  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.FitFailedWarning")]


def iris():
    return datasets.load_iris(return_X_y=True)


def diabetes():  # a subset, targets scaled: few epochs go somewhere
    x, y = datasets.load_diabetes(return_X_y=True)
    return x[:200], (y[:200] - y.mean()) / y.std()


def cancer():  # unscaled: for the Pipeline's StandardScaler; binary, a logistic output
    x, y = datasets.load_breast_cancer(return_X_y=True)
    return x[::2], y[::2]


def standardised(data):
    x, y = data
    return StandardScaler().fit_transform(x), y


# name: (classifier?, data, MLP settings, grid); a grid's keys are the MLP's (prefixed in a Pipeline)
CASES = {
    "classifier-adam": (True, lambda: standardised(iris()), dict(solver="adam"),
                        dict(alpha=[1e-4, 0.3], learning_rate_init=[1e-3, 3e-2], beta_1=[0.9, 0.8])),
    "classifier-nesterov-constant": (True, lambda: standardised(iris()), dict(solver="sgd", activation="tanh"),
                                     dict(momentum=[0.5, 0.9], learning_rate_init=[1e-2, 0.1])),
    "classifier-momentum-invscaling": (True, lambda: standardised(iris()),
                                       dict(solver="sgd", nesterovs_momentum=False, learning_rate="invscaling",
                                            learning_rate_init=0.1),
                                       dict(power_t=[0.1, 0.5], alpha=[1e-4, 1e-2])),
    "classifier-adaptive-mixed-nesterov-pipeline": (True, cancer,
                                                    dict(solver="sgd", learning_rate="adaptive", tol=0.05,
                                                         n_iter_no_change=2, activation="logistic"),
                                                    dict(nesterovs_momentum=[True, False],
                                                         learning_rate_init=[1e-2, 0.1])),
    "regressor-adam-pipeline": (False, diabetes, dict(solver="adam", batch_size=50),
                                dict(alpha=[1e-4, 1.0], learning_rate_init=[1e-3, 1e-2])),
    "regressor-nesterov-invscaling": (False, lambda: standardised(diabetes()),
                                      dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.01,
                                           batch_size=64),
                                      dict(power_t=[0.25, 0.5], momentum=[0.0, 0.9])),
}
SHARED = dict(hidden_layer_sizes=(6,), max_iter=15, random_state=0)
LBFGS = dict(solver=["lbfgs"], max_iter=[4], alpha=[1e-4, 1e-2])  # candidates that fit_stack refuses


def case(name):
    """(ours: gpunet's estimator, theirs: scikit-learn's, grid, x, y) for one CASES entry."""
    classifier, data, settings, grid = CASES[name]
    x, y = data()
    mlps = (gs.MLPClassifier, sk.MLPClassifier) if classifier else (gs.MLPRegressor, sk.MLPRegressor)
    ours, theirs = gs_mlp, sk_mlp = (mlps[0](backend="cpu", **SHARED, **settings), mlps[1](**SHARED, **settings))
    if name.endswith("pipeline"):
        ours, theirs = make_pipeline(StandardScaler(), gs_mlp), make_pipeline(StandardScaler(), sk_mlp)
        grid = {f"{type(gs_mlp).__name__.lower()}__{k}": v for k, v in grid.items()}
    return ours, theirs, grid, x, y


def assert_same_search(ours, theirs, tol=TOL):
    """Two fitted searches' cv_results_ (every split's scores, their means, stds and ranks, the candidates; not the
    times) and best candidate, scores to `tol`."""
    a, b = ours.cv_results_, theirs.cv_results_
    assert sorted(a) == sorted(b)
    for key in b:
        if key.endswith("_time"):
            continue
        if key.startswith(("split", "mean_", "std_")):
            np.testing.assert_allclose(a[key], b[key], rtol=tol, atol=tol, err_msg=key)
        else:
            assert shown(a[key]) == shown(b[key]), key
    for name in ("best_index_", "best_params_"):
        assert getattr(ours, name, None) == getattr(theirs, name, None), name
    if hasattr(theirs, "best_score_"):
        assert ours.best_score_ == pytest.approx(theirs.best_score_, rel=tol, abs=tol)


def shown(values):
    """A cv_results_ column as a list, a masked entry (a parameter the candidate does not set) as None."""
    return [None if m else v for v, m in zip(np.ma.getdata(values).tolist(), np.ma.getmaskarray(values))]


def searched(ours, theirs, grid, x, y, fit=None, **kw):
    """gpunet.search_cv.GridSearchCV over `ours` and scikit-learn's over `theirs` (settings kw), fitted with the fit
    parameters `fit`."""
    fit = fit or {}
    return (search_cv.GridSearchCV(ours, grid, **kw).fit(x, y, **fit),
            skm.GridSearchCV(theirs, grid, **kw).fit(x, y, **fit))


@pytest.mark.parametrize("name", CASES)
def test_grid_search_matches_scikit_learns_over_its_own_mlp(name):
    ours, theirs, grid, x, y = case(name)
    mine, ref = searched(ours, theirs, grid, x, y, cv=3, return_train_score=True)
    assert_same_search(mine, ref)
    assert mine.stacked_fits_ == len(ref.cv_results_["params"]) * 3  # the stacks' numbers were compared


def test_every_fit_of_a_stackable_search_is_served_by_a_stack():
    """fit_stack takes each estimator's own rows and random_state: the whole grid over every fold and two seeds is
    one stack (before it did, each fold and seed made a stack of its own)."""
    ours, _, grid, x, y = case("classifier-adam")
    search = search_cv.GridSearchCV(ours, {**grid, "random_state": [0, 1]}, cv=3).fit(x, y)
    assert search.stacked_fits_ == 16 * 3
    assert search.stack_sizes_ == [16 * 3]


def test_fit_times_are_each_fits_share_of_its_stacks_time(monkeypatch):
    ours, _, grid, x, y = case("classifier-adam")
    spent, fit_stack = [], search_cv.fit_stack

    def timed(ests, *a, **k):
        start = search_cv.time.perf_counter()
        out = fit_stack(ests, *a, **k)
        spent.append(search_cv.time.perf_counter() - start)
        return out

    monkeypatch.setattr(search_cv, "fit_stack", timed)
    search = search_cv.GridSearchCV(ours, grid, cv=3).fit(x, y)
    fit_time = search.cv_results_["mean_fit_time"] * 3  # each candidate's three fits
    assert (search.cv_results_["mean_fit_time"] > 0.5 * sum(spent) / 24).all()  # 8 candidates x 3 folds
    # the stacks' seconds, plus the moments scikit-learn measured serving each fit (about a millisecond each)
    assert 0.999 * sum(spent) <= fit_time.sum() <= sum(spent) + 24 * 0.01
    cv = search_cv.cross_validate(ours, x, y, cv=3)
    assert 0.999 * spent[-1] <= cv["fit_time"].sum() <= spent[-1] + 3 * 0.01 and (cv["fit_time"] > 0).all()


def test_a_planted_slip_in_the_stack_fails_the_comparison(monkeypatch):
    """The 4th estimator of the stack trained with the 3rd's alpha (its own in its parameters): every score but that
    candidate's still matches, and assert_same_search must see it. The stack holds every fold: its 3rd and 4th fits
    are candidate 0's third fold and candidate 1's first."""
    ours, theirs, _, x, y = case("classifier-adam")
    grid = {"alpha": [1e-4, 0.5]}
    fit_stack = search_cv.fit_stack

    def planted(ests, *args, **kwargs):
        if len(ests) >= 4:
            assert ests[3].alpha != ests[2].alpha
            own, ests[3].alpha = ests[3].alpha, ests[2].alpha
            fitted = fit_stack(ests, *args, **kwargs)
            fitted[3].alpha = own
            return fitted
        return fit_stack(ests, *args, **kwargs)

    monkeypatch.setattr(search_cv, "fit_stack", planted)
    planted_search, reference = searched(ours, theirs, grid, x, y, cv=3, scoring="neg_log_loss")
    assert planted_search.stacked_fits_ == 6
    with pytest.raises(AssertionError, match="split0_test_score"):
        assert_same_search(planted_search, reference)


def test_randomized_search_matches_scikit_learns():
    ours, theirs, _, x, y = case("regressor-nesterov-invscaling")
    dists = dict(alpha=loguniform(1e-5, 1e-1), learning_rate_init=loguniform(1e-3, 3e-2), momentum=[0.5, 0.9])
    kw = dict(n_iter=6, cv=3, random_state=4)
    mine = search_cv.RandomizedSearchCV(ours, dists, **kw).fit(x, y)
    assert_same_search(mine, skm.RandomizedSearchCV(theirs, dists, **kw).fit(x, y))
    assert mine.stacked_fits_ == 6 * 3


def test_successive_halving_matches_scikit_learns():
    """Each round's fits (more rows for fewer candidates) as stacks; the rounds, scores and choice are
    scikit-learn's."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401

    ours, theirs, grid, x, y = case("classifier-adam")
    grid = {**grid, "alpha": [1e-4, 1e-3, 1e-2, 1e-1]}
    kw = dict(cv=3, factor=2, random_state=0)
    mine = gs.HalvingGridSearchCV(ours, grid, **kw).fit(x, y)
    assert_same_search(mine, skm.HalvingGridSearchCV(theirs, grid, **kw).fit(x, y))
    assert mine.n_iterations_ > 1 and mine.stacked_fits_ == len(mine.cv_results_["params"]) * 3
    assert type(mine).__name__ == "HalvingGridSearchCV" and gs.HalvingRandomSearchCV.__module__ == "gpunet.search_cv"


def test_cross_validate_and_cross_val_score_match_scikit_learns(monkeypatch):
    ours, theirs, grid, x, y = case("classifier-adaptive-mixed-nesterov-pipeline")
    stacked, fit_stack = [], search_cv.fit_stack
    monkeypatch.setattr(search_cv, "fit_stack", lambda ests, *a, **k: stacked.append(len(ests)) or fit_stack(
        ests, *a, **k))
    # a shuffling splitter with a RandomState: the folds are drawn once, as scikit-learn draws them
    kw = dict(cv=KFold(4, shuffle=True, random_state=np.random.RandomState(3)), scoring=["accuracy", "neg_log_loss"],
              return_train_score=True, return_indices=True)
    mine = search_cv.cross_validate(ours, x, y, **kw)
    theirs_ = skm.cross_validate(theirs, x, y, **{**kw, "cv": KFold(4, shuffle=True,
                                                                     random_state=np.random.RandomState(3))})
    assert sorted(mine) == sorted(theirs_)
    for key in ("test_accuracy", "test_neg_log_loss", "train_accuracy", "train_neg_log_loss"):
        np.testing.assert_allclose(mine[key], theirs_[key], rtol=TOL, atol=TOL, err_msg=key)
    for part in ("train", "test"):
        for a, b in zip(mine["indices"][part], theirs_["indices"][part]):
            np.testing.assert_array_equal(a, b)
    assert stacked == [4]
    xr, yr = standardised(diabetes())
    reg = dict(hidden_layer_sizes=(6,), max_iter=15, random_state=1, learning_rate_init=0.01)
    np.testing.assert_allclose(search_cv.cross_val_score(gs.MLPRegressor(backend="cpu", **reg), xr, yr, cv=5),
                               skm.cross_val_score(sk.MLPRegressor(**reg), xr, yr, cv=5), rtol=TOL, atol=TOL)
    assert stacked == [4, 5]


def test_sample_weights_are_sliced_as_scikit_learn_slices_them():
    ours, theirs, grid, x, y = case("regressor-adam-pipeline")
    sw = np.random.default_rng(0).uniform(0.2, 3.0, len(x))
    mine, ref = searched(ours, theirs, grid, x, y, fit=dict(mlpregressor__sample_weight=sw), cv=3)
    assert_same_search(mine, ref)
    assert mine.stacked_fits_ == 4 * 3


def test_a_dataframe_with_metadata_routing():
    pd = pytest.importorskip("pandas")
    x, y = datasets.load_iris(return_X_y=True, as_frame=True)
    assert isinstance(x, pd.DataFrame)
    sw = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    grid = dict(alpha=[1e-4, 0.3], learning_rate_init=[1e-2, 0.1])
    with sklearn.config_context(enable_metadata_routing=True):
        ours, theirs = (cls(**SHARED, **kw).set_fit_request(sample_weight=True).set_score_request(sample_weight=False)
                        for cls, kw in ((gs.MLPClassifier, dict(backend="cpu")), (sk.MLPClassifier, {})))
        mine, ref = searched(ours, theirs, grid, x, y, fit=dict(sample_weight=sw), cv=3)
    assert_same_search(mine, ref)
    assert mine.stacked_fits_ == 4 * 3
    assert list(mine.best_estimator_.feature_names_in_) == list(x.columns)


def test_refit_false_and_several_metrics_with_refit_accuracy():
    ours, theirs, grid, x, y = case("classifier-adam")
    assert_same_search(*searched(ours, theirs, grid, x, y, cv=3, refit=False))
    mine, ref = searched(ours, theirs, grid, x, y, cv=3, refit="accuracy", scoring=["accuracy", "neg_log_loss"])
    assert_same_search(mine, ref)
    np.testing.assert_allclose(mine.predict_proba(x), ref.predict_proba(x), rtol=TOL, atol=TOL)


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
def test_a_failing_candidate_scores_error_score_and_raise_raises():
    ours, theirs, _, x, y = case("classifier-adam")
    grid = {"hidden_layer_sizes": [(6,), (0,)], "alpha": [1e-4, 1e-2]}
    mine, ref = searched(ours, theirs, grid, x, y, cv=3, error_score=np.nan)
    assert_same_search(mine, ref)
    assert np.isnan(mine.cv_results_["mean_test_score"]).sum() == 2 and mine.stacked_fits_ == 2 * 3
    fit = gs._MLP.fit
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        search_cv.GridSearchCV(ours, grid, cv=3, error_score="raise").fit(x, y)
    assert gs._MLP.fit is fit  # the hook is gone after a failed search too


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflows of the diverging fits
def test_a_diverging_candidate_scores_error_score_as_scikit_learns():
    """Non-finite weights end that candidate's fits with a ValueError, in a stack as alone; the other candidates'
    fits are served by the stack."""
    x, y = diabetes()
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", max_iter=10, random_state=0)
    grid = {"learning_rate_init": [1e-3, 1e-2, 5.0]}
    mine, ref = searched(gs.MLPRegressor(backend="cpu", **kw), sk.MLPRegressor(**kw), grid, x * 100, y, cv=3)
    assert_same_search(mine, ref)
    assert np.isnan(ref.cv_results_["mean_test_score"][2])
    assert mine.stacked_fits_ == 2 * 3


def test_n_jobs_2_gives_the_same_results_and_keeps_its_parameter():
    ours, _, grid, x, y = case("classifier-nesterov-constant")
    grid = [grid, LBFGS]  # lbfgs is refused by the stack: fitted alone in the workers
    one = search_cv.GridSearchCV(ours, grid, cv=3).fit(x, y)
    two = search_cv.GridSearchCV(ours, grid, cv=3, n_jobs=2).fit(x, y)
    assert_same_search(two, one, tol=0)
    assert two.get_params()["n_jobs"] == 2 and two.stacked_fits_ == one.stacked_fits_ == 4 * 3


def test_refused_candidates_train_one_by_one_as_scikit_learns_search_trains_them():
    ours, _, grid, x, y = case("classifier-nesterov-constant")
    grid = [grid, LBFGS]
    mine = search_cv.GridSearchCV(ours, grid, cv=3).fit(x, y)
    assert_same_search(mine, skm.GridSearchCV(ours, grid, cv=3).fit(x, y))
    assert mine.stacked_fits_ == 4 * 3  # the sgd ones


def test_other_estimators_go_through_scikit_learns_path_unchanged():
    x, y = standardised(iris())
    grid = {"C": [0.1, 1.0]}
    logistic = LogisticRegression(max_iter=10)  # scipy's lbfgs: a few iterations keep it quick
    mine = search_cv.GridSearchCV(logistic, grid, cv=3).fit(x, y)
    assert_same_search(mine, skm.GridSearchCV(logistic, grid, cv=3).fit(x, y), tol=0)
    assert mine.stacked_fits_ == 0 and mine.stack_sizes_ == []
    np.testing.assert_array_equal(search_cv.cross_val_score(logistic, x, y, cv=3),
                                  skm.cross_val_score(logistic, x, y, cv=3))


def test_a_waiting_fit_is_served_only_for_its_parameters_and_rows():
    x, y = standardised(iris())
    kw = dict(hidden_layer_sizes=(4,), max_iter=5, random_state=0, backend="cpu")
    waiting = gs.MLPClassifier(**kw, alpha=0.5).fit(x, y)
    cache = search_cv._Cache()
    key = (search_cv._settings(waiting, waiting.get_params()), search_cv._digest(x), search_cv._digest(y), None)
    cache.put(key, waiting, True)
    changed = x.copy()
    changed[7, 2] += 1e-12
    with search_cv._serving(cache):
        other_rows = gs.MLPClassifier(**kw, alpha=0.5).fit(changed, y)
        other_alpha = gs.MLPClassifier(**kw, alpha=0.4).fit(x, y)
        served = gs.MLPClassifier(**kw, alpha=0.5).fit(x, y)
        again = gs.MLPClassifier(**kw, alpha=0.5).fit(x, y)  # each waiting fit is served once
    assert cache.served_stacked == 1
    assert served.coefs_[0] is waiting.coefs_[0]
    assert all(est.coefs_[0] is not waiting.coefs_[0] for est in (other_rows, other_alpha, again))


def test_gpunet_sklearn_offers_the_searches():
    for name in ("GridSearchCV", "RandomizedSearchCV", "cross_validate", "cross_val_score"):
        assert getattr(gs, name) is getattr(search_cv, name)
    with pytest.raises(AttributeError, match="no attribute 'GridSearch'"):
        gs.GridSearch


def test_a_search_inside_cross_validate_trains_each_fit_once(monkeypatch):
    """cross_validate(GridSearchCV(...)): the inner searches stack their own fits; the outer plans none for them
    (3 outer folds x (4 candidates x 3 inner folds + 1 refit) trainings in all), with scikit-learn's scores."""
    from gpunet import sklearn_loop

    x, y = datasets.load_iris(return_X_y=True)
    kw = dict(hidden_layer_sizes=(5,), max_iter=15, random_state=0, batch_size=32)
    grid = {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2]}
    count = {"stacked": 0, "alone": 0}
    stack, alone = search_cv.fit_stack, sklearn_loop.fit_stochastic
    monkeypatch.setattr(search_cv, "fit_stack", lambda ests, *a, **k: count.update(
        stacked=count["stacked"] + len(ests)) or stack(ests, *a, **k))
    monkeypatch.setattr(gs, "fit_stochastic", lambda *a, **k: count.update(alone=count["alone"] + 1) or alone(*a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = search_cv.cross_validate(search_cv.GridSearchCV(gs.MLPClassifier(backend="cpu", **kw), grid, cv=3),
                                        x, y, cv=3)
        theirs = skm.cross_validate(skm.GridSearchCV(sk.MLPClassifier(**kw), grid, cv=3), x, y, cv=3)
    assert np.abs(ours["test_score"] - theirs["test_score"]).max() < 1e-9
    assert count == {"stacked": 3 * 4 * 3, "alone": 3}


def test_fits_a_stack_refuses_are_timed_where_they_are_trained(monkeypatch):
    """With n_jobs, the fits fit_stack refuses as a group (a sparse X with sample weights) are trained one by one in
    the workers: each keeps its own seconds as its fit_time, not the moment scikit-learn's pass took to serve it (a
    clock that counts a second a reading: a fit timed where it trains takes at least one)."""
    from itertools import count

    from joblib import parallel_config
    from scipy.sparse import csr_matrix

    x, y = iris()
    est = gs.MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0, backend="cpu")
    monkeypatch.setattr(search_cv.time, "perf_counter", count().__next__)
    with warnings.catch_warnings(), parallel_config(backend="threading"):
        warnings.simplefilter("ignore")
        search = gs.GridSearchCV(est, {"alpha": [1e-4, 1e-3]}, cv=3, n_jobs=2)
        search.fit(csr_matrix(x), y, sample_weight=np.linspace(0.5, 1.5, len(y)))
    assert search.stacked_fits_ == 0
    assert (search.cv_results_["mean_fit_time"] >= 1).all()


def test_fits_no_stack_can_take_are_left_to_scikit_learns_pass(monkeypatch):
    """random_state None keeps every fit out of the stacks: none is planned (no data hashed, nothing cached), and
    scikit-learn's pass fits them as it would."""
    x, y = iris()
    est = gs.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=None, backend="cpu")
    planned = []
    monkeypatch.setattr(search_cv, "_digest", lambda a, digest=search_cv._digest: planned.append(1) or digest(a))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = gs.GridSearchCV(est, {"alpha": [1e-4, 1e-3]}, cv=3).fit(x, y)
    assert search.stacked_fits_ == 0 and not planned and len(search.cv_results_["mean_test_score"]) == 2
