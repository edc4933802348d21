"""gpunet.sklearn.fit_stack: K estimators fitted as one stack end as each fitted alone (and as scikit-learn's)."""

import warnings

import numpy as np
import pytest
from scipy.sparse import csr_matrix

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

from sklearn import neural_network as sk  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from gpunet import sklearn as gs  # noqa: E402
from tests.conftest import BACKENDS  # noqa: E402
from tests.planted import give_model_3_model_2s_alpha  # noqa: E402
from tests.test_sklearn import TOL, assert_same_fit, classification, regression, rel  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ALPHAS, RATES = (1e-4, 1e-2, 0.3), (3e-3, 3e-2)
# model k: alpha ALPHAS[k % 3], learning_rate_init RATES[k // 3]; models 2 and 3 differ in both
GRID = [dict(alpha=a, learning_rate_init=r) for r in RATES for a in ALPHAS]

CASES = {  # estimator, data, settings shared by the stack, what else differs per model
    "classifier-softmax-adam": ("classifier", "digits", dict(activation="relu", solver="adam"), {}),
    "classifier-softmax-nesterov": ("classifier", "digits", dict(activation="relu", solver="sgd"), {}),
    "classifier-softmax-momentum": ("classifier", "iris", dict(activation="tanh", solver="sgd",
                                                               nesterovs_momentum=False), {}),
    "classifier-logistic-adam-betas": ("classifier", "cancer", dict(activation="logistic", solver="adam"),
                                       dict(beta_1=[0.9, 0.8, 0.95], beta_2=[0.999, 0.99, 0.9],
                                            epsilon=[1e-8, 1e-6, 1e-4])),
    "classifier-multilabel-mixed-momentum": ("classifier", "multilabel", dict(activation="identity", solver="sgd"),
                                             dict(momentum=[0.9, 0.5, 0.0], nesterovs_momentum=[True, False, True])),
    "regressor-adam": ("regressor", "diabetes", dict(solver="adam", batch_size=64), {}),
    "regressor-multioutput-nesterov": ("regressor", "linnerud", dict(solver="sgd", batch_size=6), {}),
    "regressor-invscaling": ("regressor", "diabetes", dict(solver="sgd", learning_rate="invscaling", batch_size=64),
                             dict(power_t=[0.5, 0.25, 0.1])),
    "regressor-poisson-adaptive": ("regressor", "poisson", dict(solver="sgd", learning_rate="adaptive",
                                                                batch_size=64, max_iter=60), {}),
}


def case(name):
    """(estimator class, x, y, shared settings, per-model settings of K = 6 models)."""
    kind, data, shared, extra = CASES[name]
    if kind == "classifier":
        cls, (x, y) = gs.MLPClassifier, classification(data)
        shared = {**dict(hidden_layer_sizes=(10,), random_state=2, max_iter=30, tol=1e-2, n_iter_no_change=2), **shared}
    else:
        cls = gs.MLPRegressor
        x, y = regression("diabetes", "poisson") if data == "poisson" else regression(data)
        shared = {**dict(hidden_layer_sizes=(12, 7), random_state=1, max_iter=30, tol=3e-3, n_iter_no_change=3,
                         loss="poisson" if data == "poisson" else "squared_error"), **shared}
    per_model = [{**g, **{k: v[i % len(v)] for k, v in extra.items()}} for i, g in enumerate(GRID)]
    return cls, x, y, shared, per_model


def assert_same_optimizer(ours, theirs):
    """The optimizer state a later partial_fit continues from."""
    a, b = vars(ours._optimizer), vars(theirs._optimizer)
    for name in ("lr", "lr_init", "t", "momentum", "nesterov", "power_t", "beta_1", "beta_2", "epsilon"):
        assert (name in a) == (name in b), name
        if name in b:
            assert a[name] == pytest.approx(b[name], rel=TOL), name
    for name in ("v", "mv"):
        if name in b:
            assert rel(a[name], b[name]) < TOL, name


def assert_stack_matches_alone(cls, x, y, shared, per_model, backend="cpu"):
    """fit_stack's estimators against each fitted alone by fit(): every fitted attribute, the optimizer state and
    the ConvergenceWarnings; returns the stacked ones."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        stacked = gs.fit_stack([cls(backend=backend, **shared, **p) for p in per_model], x, y)
    warned = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    unconverged = 0
    for ours, p in zip(stacked, per_model):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            theirs = cls(backend=backend, **shared, **p).fit(x, y)
        unconverged += len(caught)
        assert_same_fit(ours, theirs, TOL)
        assert_same_optimizer(ours, theirs)
    assert warned == unconverged
    return stacked


@pytest.mark.parametrize("name", CASES)
def test_each_stacked_model_is_as_if_fitted_alone(name):
    cls, x, y, shared, per_model = case(name)
    stacked = assert_stack_matches_alone(cls, x, y, shared, per_model)
    if name != "regressor-multioutput-nesterov":  # 20 rows: every model runs to max_iter
        assert len({est.n_iter_ for est in stacked}) > 1  # models stopped at different epochs, the others went on


def test_stacked_models_match_scikit_learn_and_continue_as_they_would():
    cls, x, y, shared, per_model = case("classifier-softmax-adam")
    stacked = gs.fit_stack([cls(backend="cpu", **shared, **p) for p in per_model], x, y)
    theirs = [sk.MLPClassifier(**shared, **p).fit(x, y) for p in per_model]
    for a, b in zip(stacked, theirs):
        assert_same_fit(a, b, TOL)
        a.partial_fit(x, y)  # from the optimizer state the stack left
        b.partial_fit(x, y)
        assert_same_fit(a, b, TOL)


def test_a_stack_shrinks_to_its_running_models(monkeypatch):
    """When at most half of a stack still trains, the running models go on as a smaller stack, as they were."""
    from gpunet.stack import Stack

    sizes, select = [], Stack.select
    monkeypatch.setattr(Stack, "select", lambda self, rows: sizes.append(len(rows)) or select(self, rows))
    for name in ("classifier-softmax-adam", "classifier-softmax-nesterov"):
        cls, x, y, shared, per_model = case(name)
        stacked = assert_stack_matches_alone(cls, x, y, shared, per_model)
        assert sizes and sizes[-1] == sum(est.n_iter_ == shared["max_iter"] for est in stacked)
        sizes.clear()


@pytest.mark.parametrize("backend", BACKENDS)
def test_stack_on_each_backend(backend):
    cls, x, y, shared, per_model = case("classifier-softmax-nesterov")
    assert_stack_matches_alone(cls, x, y, shared, per_model, backend)


def test_a_planted_alpha_swap_is_caught(monkeypatch):
    cls, x, y, shared, per_model = case("classifier-softmax-adam")
    assert per_model[3]["alpha"] != per_model[2]["alpha"]
    give_model_3_model_2s_alpha(monkeypatch)
    with pytest.raises(AssertionError):
        assert_stack_matches_alone(cls, x, y, shared, per_model)


@pytest.mark.parametrize("change, message", [
    (dict(hidden_layer_sizes=(11,)), "differs from estimator 0 in hidden_layer_sizes"),
    (dict(activation="tanh", batch_size=32), "differs from estimator 0 in activation, batch_size"),
    (dict(solver="lbfgs"), "lbfgs"),
    (dict(warm_start=True), "warm_start"),
    (dict(random_state=None), "random_state must be an int"),
    (dict(random_state=np.random.RandomState(0)), "random_state must be an int"),
])
def test_what_cannot_be_stacked_is_refused(change, message):
    x, y = classification("iris")
    kw = dict(hidden_layer_sizes=(4,), random_state=0, max_iter=2, backend="cpu")
    if "differs" in message:
        estimators = [gs.MLPClassifier(**kw), gs.MLPClassifier(**{**kw, **change})]
    else:
        estimators = [gs.MLPClassifier(**{**kw, **change}), gs.MLPClassifier(**{**kw, **change, "alpha": 1.0})]
    with pytest.raises(ValueError, match=message):
        gs.fit_stack(estimators, x, y)


def test_other_inputs_are_refused():
    x, y = classification("iris")
    kw = dict(hidden_layer_sizes=(4,), random_state=0, max_iter=2, backend="cpu")
    with pytest.raises(ValueError, match="so y must be a list of 2 too, got ndarray"):
        gs.fit_stack([gs.MLPClassifier(**kw), gs.MLPClassifier(**kw)], [x, x], y)
    with pytest.raises(ValueError, match="so y must be a list of 3 too, got 2 entries"):
        gs.fit_stack([gs.MLPClassifier(**kw)] * 3, [x, x, x], [y, y])
    with pytest.raises(ValueError, match=r"estimator 1's data gives layers \[3, 4, 3\]"):
        gs.fit_stack([gs.MLPClassifier(**kw), gs.MLPClassifier(**kw)], [x, x[:, :3]], [y, y])
    labels = np.eye(3, dtype=int)[y]
    labels[::7, 0] = 1  # several labels a row: a logistic output per label, where y's classes take a softmax
    with pytest.raises(ValueError, match="estimator 1's targets take a logistic output, estimator 0's a softmax"):
        gs.fit_stack([gs.MLPClassifier(**kw), gs.MLPClassifier(**kw)], [x, x], [y, labels])
    with pytest.raises(ValueError, match="sparse X only when"):
        gs.fit_stack([gs.MLPClassifier(**kw), gs.MLPClassifier(**kw)], [csr_matrix(x), csr_matrix(x)], [y, y])
    with pytest.raises(ValueError, match="sparse X only when .* without sample weights"):
        gs.fit_stack([gs.MLPClassifier(**kw), gs.MLPClassifier(**kw)], csr_matrix(x), y, sample_weight=np.ones(len(x)))
    with pytest.raises(ValueError, match="of one class"):
        gs.fit_stack([gs.MLPClassifier(**kw), gs.MLPRegressor(**kw)], x, y)
    with pytest.raises(ValueError, match="at least one"):
        gs.fit_stack([], x, y)


def folds(x, y, k, weights=None):
    """Each model's own rows: the training rows of fold i % k of a shuffled KFold (sizes one row apart)."""
    from sklearn.model_selection import KFold

    splits = [train for train, _ in KFold(k, shuffle=True, random_state=0).split(x)]
    pick = lambda a, i: None if a is None else a[splits[i % k]]  # noqa: E731
    return ([pick(x, i) for i in range(len(GRID))], [pick(y, i) for i in range(len(GRID))],
            [pick(weights, i) for i in range(len(GRID))])


def assert_own_rows_match_alone(cls, xs, ys, sws, shared, per_model):
    """fit_stack with each model's own rows, random_state and weights against each fitted alone on its own."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        stacked = gs.fit_stack([cls(backend="cpu", **shared, **p) for p in per_model], xs, ys, sample_weight=sws)
    warned = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    unconverged = 0
    for ours, p, x, y, sw in zip(stacked, per_model, xs, ys, sws):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            theirs = cls(backend="cpu", **shared, **p).fit(x, y, sample_weight=sw)
        unconverged += len(caught)
        assert_same_fit(ours, theirs, TOL)
        assert_same_optimizer(ours, theirs)
    assert warned == unconverged
    return stacked


OWN_ROWS = {  # case, folds, per-model random_states, weighted
    "folds-adam": ("classifier-softmax-adam", 7, None, False),  # 600 rows: 514 or 515, batches of 200, ragged last
    "folds-seeds-nesterov": ("classifier-softmax-nesterov", 3, [0, 1, 2], False),
    "seeds-one-X-logistic": ("classifier-logistic-adam-betas", 1, [5, 6], False),
    "folds-weights-multilabel": ("classifier-multilabel-mixed-momentum", 4, [0, 3], True),
    "folds-weights-regressor": ("regressor-adam", 5, None, True),  # 442 rows: 353 or 354, batches of 64
    "folds-invscaling": ("regressor-invscaling", 3, [1, 2], False),
    "folds-poisson-adaptive": ("regressor-poisson-adaptive", 2, None, True),
    "early-stopping-one-X": ("classifier-softmax-adam", 1, None, False, dict(early_stopping=True)),
    "early-stopping-folds-seeds": ("classifier-softmax-nesterov", 3, [0, 4], False, dict(early_stopping=True)),
    "early-stopping-binary-weights": ("classifier-logistic-adam-betas", 2, [1, 2, 3], True,
                                      dict(early_stopping=True, validation_fraction=0.2)),
    "early-stopping-multilabel": ("classifier-multilabel-mixed-momentum", 2, None, False, dict(early_stopping=True)),
    "early-stopping-regressor-weights": ("regressor-adam", 3, [0, 1], True, dict(early_stopping=True)),
    "early-stopping-multioutput": ("regressor-multioutput-nesterov", 1, [2, 3], False,
                                   dict(early_stopping=True, validation_fraction=0.3)),
}


@pytest.fixture(params=["cpu", "one stack"])
def stacking(request, monkeypatch):
    """How fit_stack groups models into stacks, both forced: a stack per data set and random_state (the CPU's way but
    for small data sets in whole batches with few models each), or one stack per batch count (a GPU's way: each model
    gathers its own rows)."""
    from gpunet import sklearn_stack

    groups, merge = sklearn_stack._groups, request.param == "one stack"
    monkeypatch.setattr(sklearn_stack, "_groups", lambda _, count, of, stream: groups(merge, count, of, stream))
    return request.param


@pytest.mark.parametrize("name", OWN_ROWS)
def test_models_with_their_own_rows_seeds_and_weights_are_as_if_fitted_alone(name, stacking):
    base, k, seeds, weighted, *more = OWN_ROWS[name]
    cls, x, y, shared, per_model = case(base)
    shared = {**shared, **(more[0] if more else {})}
    weights = np.random.default_rng(1).uniform(0.2, 2.0, len(x)) if weighted else None
    xs, ys, sws = folds(x, y, k, weights) if k > 1 else ([x] * len(GRID), [y] * len(GRID), [weights] * len(GRID))
    if seeds:
        shared = {name: v for name, v in shared.items() if name != "random_state"}
        per_model = [{**p, "random_state": seeds[i % len(seeds)]} for i, p in enumerate(per_model)]
    stacked = assert_own_rows_match_alone(cls, xs, ys, sws, shared, per_model)
    assert len({est.t_ for est in stacked} | {est.n_iter_ for est in stacked}) > 1


def test_folds_with_different_batch_counts_train_as_separate_stacks(monkeypatch):
    """Folds of 400 and 401 rows in batches of 200 take 2 and 3 steps an epoch: two stacks, each model as alone."""
    from gpunet.stack import Stack

    made, init = [], Stack.__init__
    monkeypatch.setattr(Stack, "__init__", lambda self, *a, **kw: made.append(a[2].shape[0]) or init(self, *a, **kw))
    cls, x, y, shared, per_model = case("classifier-softmax-adam")
    (x0, y0), (x1, y1) = (x[:401], y[:401]), (x[:400], y[:400])
    xs, ys = [x1 if i % 2 else x0 for i in range(len(GRID))], [y1 if i % 2 else y0 for i in range(len(GRID))]
    assert_own_rows_match_alone(cls, xs, ys, [None] * len(GRID), {**shared, "batch_size": 200}, per_model)
    assert made.count(3) == 2  # two stacks of three (and smaller ones as models stop)


def test_a_planted_row_swap_is_caught(monkeypatch, stacking):
    """Model 3 trained on model 2's fold: the per-model comparison sees it."""
    from gpunet import sklearn_stack

    cls, x, y, shared, per_model = case("classifier-softmax-adam")
    xs, ys, sws = folds(x, y, 4)
    validated = sklearn_stack._validated_sets

    def buggy(*args):
        sets, of = validated(*args)
        of = of.copy()
        of[3] = of[2]
        return sets, of

    monkeypatch.setattr(sklearn_stack, "_validated_sets", buggy)
    with pytest.raises(AssertionError):
        assert_own_rows_match_alone(cls, xs, ys, sws, shared, per_model)


@pytest.mark.parametrize("chunk_bytes", [1, 1 << 40])
def test_chunks_of_one_model_or_all_give_the_same_fits(monkeypatch, chunk_bytes):
    """A step runs chunk by chunk of models (gpunet/stack.py): one model a chunk, or all in one, each model ends as
    fitted alone, own rows and shared alike."""
    import gpunet.stack

    monkeypatch.setattr(gpunet.stack, "CHUNK_BYTES", chunk_bytes)
    cls, x, y, shared, per_model = case("regressor-adam")
    assert_stack_matches_alone(cls, x, y, shared, per_model)
    xs, ys, sws = folds(x, y, 3, np.linspace(0.5, 1.5, len(x)))
    assert_own_rows_match_alone(cls, xs, ys, sws, shared, per_model)


def test_x_as_a_list_of_rows_is_one_x_for_all():
    """fit() takes X as a list of rows; so does fit_stack, for all its estimators (whatever their number)."""
    x, y = classification("iris")
    kw = dict(hidden_layer_sizes=(4,), max_iter=3, backend="cpu")
    rows, labels = x[:6].tolist(), y[:6].tolist()
    stacked = gs.fit_stack([gs.MLPClassifier(**kw, random_state=s) for s in range(6)], rows, labels)
    for s, est in enumerate(stacked):
        assert_same_fit(est, gs.MLPClassifier(**kw, random_state=s).fit(rows, labels), TOL)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the diverging model's overflow, as fit() warns it
def test_a_diverging_model_fails_alone_and_the_others_are_fitted():
    """One learning rate too large: fit() would raise for that estimator; fit_stack fits the others and names it."""
    x, y = regression("diabetes")
    kw = dict(solver="sgd", hidden_layer_sizes=(8,), max_iter=20, random_state=0, backend="cpu")
    models = [gs.MLPRegressor(**kw, learning_rate_init=lr) for lr in (1e-4, 1e-3, 3.0)]
    with pytest.raises(ValueError, match="non-finite"):
        gs.MLPRegressor(**kw, learning_rate_init=3.0).fit(x, y)
    with pytest.raises(gs.StackFitError, match="^estimator 2: Solver produced non-finite") as caught:
        gs.fit_stack(models, x, y)
    assert [i for i, _ in caught.value.failed] == [2]
    for est, lr in zip(models[:2], (1e-4, 1e-3)):
        assert_same_fit(est, gs.MLPRegressor(**kw, learning_rate_init=lr).fit(x, y), TOL)


def test_held_out_rows_of_weight_0_fail_as_fit_fails():
    """Early stopping whose held-out rows all weigh 0: fit() fails at its first score, and so does fit_stack."""
    x, y = classification("iris")
    kw = dict(hidden_layer_sizes=(3,), max_iter=5, backend="cpu", early_stopping=True, validation_fraction=0.02,
              random_state=0)
    weights = np.zeros(len(x))
    weights[np.random.default_rng(33).choice(len(x), 100, replace=False)] = 1.0
    with pytest.raises(ValueError, match="at least one non-zero"):
        gs.MLPClassifier(**kw).fit(x, y, sample_weight=weights)
    with pytest.raises(ValueError, match=r"estimators \[0\]: Sample weights must contain at least one non-zero"):
        gs.fit_stack([gs.MLPClassifier(**kw)], x, y, sample_weight=weights)


def test_a_refit_forgets_what_the_earlier_fit_learned_from_a_frame():
    """Estimators fitted on a DataFrame, then stacked on an array: none keeps feature_names_in_, as fit() does."""
    pd = pytest.importorskip("pandas")
    x, y = classification("iris")
    frame = pd.DataFrame(x, columns=list("abcd"))
    kw = dict(hidden_layer_sizes=(3,), max_iter=2, backend="cpu")
    models = [gs.MLPClassifier(**kw, random_state=s).fit(frame, y) for s in range(3)]
    assert all(hasattr(m, "feature_names_in_") for m in models)
    gs.fit_stack(models, x, y)
    assert not any(hasattr(m, "feature_names_in_") for m in models)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [m.predict(x) for m in models]


def test_a_sparse_x_with_early_stopping_is_as_fitted_alone():
    """One sparse X shared by the stack: its batches made dense as gathered, its held-out rows made dense once."""
    cls, x, y, shared, per_model = case("classifier-softmax-adam")
    assert_stack_matches_alone(cls, csr_matrix(x), y, {**shared, "early_stopping": True}, per_model)


@pytest.mark.parametrize("per_fold, batch_size, merged", [(4, "auto", True), (12, "auto", False), (4, 16, False)])
def test_the_cpu_merges_folds_of_small_whole_batches_with_few_models_each(monkeypatch, per_fold, batch_size, merged):
    from sklearn import datasets

    from gpunet import sklearn_stack

    x, y = datasets.load_iris(return_X_y=True)
    xs, ys, _ = folds(x, y, 3)
    seen, groups = [], sklearn_stack._groups
    monkeypatch.setattr(sklearn_stack, "_groups", lambda merge, *a: seen.append(merge) or groups(merge, *a))
    estimators = [gs.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, batch_size=batch_size, random_state=0,
                                   learning_rate_init=1e-3 * (1 + i // 3)) for i in range(3 * per_fold)]
    gs.fit_stack(estimators, [xs[i % 3] for i in range(3 * per_fold)], [ys[i % 3] for i in range(3 * per_fold)])
    assert seen == [merged]


@pytest.fixture
def threads(monkeypatch):
    """Every step's chunks on 3 threads, however small: the parts the threads ran, counted."""
    import gpunet.stack

    ran = []

    def counted(parts):
        ran.append(len(parts))
        return run_parts(parts)

    run_parts = gpunet.stack.run_parts
    monkeypatch.setattr(gpunet.stack, "THREAD_WORK", 0)
    monkeypatch.setattr(gpunet.stack, "blas_threads", lambda: 3)
    monkeypatch.setattr(gpunet.stack, "run_parts", counted)
    return ran


@pytest.mark.parametrize("name", ["classifier-softmax-adam", "regressor-invscaling"])
def test_chunks_on_threads_give_the_same_fits(threads, name):
    """A step's chunks split between threads (each writing its own models' rows): each model ends as fitted alone,
    own rows and shared alike; BLAS is held to one thread meanwhile and given back its threads after."""
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    cls, x, y, shared, per_model = case(name)
    assert_stack_matches_alone(cls, x, y, shared, per_model)
    assert threads and set(threads) == {3}
    xs, ys, sws = folds(x, y, 3, np.linspace(0.5, 1.5, len(x)))
    assert_own_rows_match_alone(cls, xs, ys, sws, shared, per_model)
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == before


def test_a_threads_floating_point_errors_follow_the_callers_errstate(threads):
    """NumPy's errstate is the caller's in the threads too: a diverging model under errstate(all="ignore") warns
    nothing, from any thread."""
    x, y = regression("diabetes")
    kw = dict(solver="sgd", hidden_layer_sizes=(8,), max_iter=20, random_state=0, backend="cpu")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(gs.StackFitError, match="^estimator 5"):
            gs.fit_stack([gs.MLPRegressor(**kw, learning_rate_init=lr) for lr in (1e-4, 1e-3, 1e-2, 1e-4, 1e-3, 3.0)],
                         x, y)
    assert threads


def blas_counts():
    from threadpoolctl import threadpool_info

    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_overlapping_trainings_give_blas_its_threads_back_when_the_last_ends():
    """Two trainings at once (say, in two threads): the first holds BLAS to one thread, the second shares the hold,
    and BLAS gets its threads back only when both have ended, whichever ends first."""
    from threadpoolctl import threadpool_limits

    from gpunet.stack import ThreadSession

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_counts()
        a, b = ThreadSession(), ThreadSession()
        a.__enter__(), b.__enter__()
        a.hold(), b.hold()
        assert set(blas_counts()) == {1}
        a.__exit__(None, None, None)
        assert set(blas_counts()) == {1}  # b still trains on threads
        b.__exit__(None, None, None)
        assert blas_counts() == before


def test_a_stack_whose_chunks_stay_on_one_thread_leaves_blas_alone(monkeypatch):
    """Chunks too small for threads (THREAD_WORK): BLAS keeps its threads while the stack trains."""
    from threadpoolctl import threadpool_limits

    import gpunet.stack

    seen = []
    monkeypatch.setattr(gpunet.stack, "blas_threads", lambda: 2)
    monkeypatch.setattr(gpunet.stack.ThreadSession, "hold", lambda self: seen.append("held"))
    with threadpool_limits(limits=2, user_api="blas"):
        cls, x, y, shared, per_model = case("regressor-adam")
        gs.fit_stack([cls(backend="cpu", **shared, **p) for p in per_model], x, y)
    assert not seen


def test_chunks_on_threads_compute_as_blas_on_one_thread_does(threads):
    """In float32 a product's last bits depend on BLAS's threads: a stack whose chunks go to threads holds BLAS to
    one thread from its first step, so that each model's weights are bit for bit the fit alone's with BLAS on one
    thread."""
    from threadpoolctl import threadpool_limits

    cls, x, y, shared, per_model = case("classifier-softmax-adam")
    x = x.astype(np.float32)
    shared = {**shared, "hidden_layer_sizes": (256,), "max_iter": 3}  # products OpenBLAS splits between threads
    with threadpool_limits(limits=2, user_api="blas"):
        stacked = gs.fit_stack([cls(backend="cpu", **shared, **p) for p in per_model], x, y)
    with threadpool_limits(limits=1, user_api="blas"):
        for ours, p in zip(stacked, per_model):
            theirs = cls(backend="cpu", **shared, **p).fit(x, y)
            assert ours.n_iter_ == theirs.n_iter_  # (the float32 loss sums are taken in another order)
            for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
                np.testing.assert_array_equal(a, b)
    assert threads


def test_stacked_validation_scores_are_python_floats_as_fits_are():
    x, y = classification("iris")
    kw = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0, early_stopping=True, backend="cpu")
    stacked = gs.fit_stack([gs.MLPClassifier(**kw, alpha=a) for a in (1e-4, 1e-3)], x, y)[0]
    alone = gs.MLPClassifier(**kw, alpha=1e-4).fit(x, y)
    for est in (stacked, alone):
        assert {type(v) for v in est.validation_scores_} == {float} and type(est.best_validation_score_) is float


def test_a_refused_stack_leaves_its_estimators_unfitted():
    """fit_stack refuses before anything is fitted: no weights drawn for estimators it then refuses."""
    x, y = classification("iris")
    labels = np.eye(3, dtype=int)[y]
    labels[::7, 0] = 1
    models = [gs.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, backend="cpu") for _ in range(2)]
    with pytest.raises(ValueError, match="targets take a logistic output"):
        gs.fit_stack(models, [x, x], [y, labels])
    assert not any(hasattr(est, "coefs_") for est in models)
