"""GridSearchCV, RandomizedSearchCV, cross_validate and cross_val_score: scikit-learn's, with the gpunet.sklearn
MLP fits of a search trained as stacks (gpunet.sklearn.fit_stack).

    from gpunet.search_cv import GridSearchCV   # instead of sklearn.model_selection's

scikit-learn does all it does (splits, scoring, cv_results_, refit, error_score); just before it evaluates a list of
candidates, the fits it is about to make are made here: each (candidate, split)'s MLP with the exact data its fit
will receive (through the steps of a Pipeline before it), grouped into stacks that fit_stack trains as one, in
joblib workers when n_jobs asks. The fitted ones wait in a cache keyed by content: the MLP's parameters and a hash of
its X, y and sample_weight. While scikit-learn evaluates (in this process), gpunet's MLP fit takes a waiting
estimator's fitted state when its parameters and data are exactly those, and trains as usual otherwise. Fits that
fit_stack refuses (lbfgs, warm_start, ...) and other estimators go through scikit-learn's path unchanged.
The fit times in the results are each stacked fit's share of its stack's time (the stack's seconds over its fits),
added to the moment scikit-learn measured for serving it. A gpunet search inside another's fit (a search in
cross_validate) stacks its own fits when it runs; the outer one plans none for it.
"""

import hashlib
import pickle
import threading
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager
from functools import wraps
from types import SimpleNamespace

import numpy as np
from joblib import effective_n_jobs
from scipy import sparse
from sklearn import model_selection as sk
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.model_selection import check_cv
from sklearn.utils.metadata_routing import _routing_enabled
from sklearn.utils.metaestimators import _safe_split
from sklearn.utils.parallel import Parallel, delayed  # joblib's, carrying scikit-learn's config and warning filters
from sklearn.utils.validation import _check_method_params, indexable

from gpunet.sklearn import STACKED, _MLP, StackFitError, fit_stack
from gpunet.sklearn_stack import refusal

# -- gpunet's MLP fit while a search runs: recording the fits a fit makes, or serving fitted state from caches

_LOCK = threading.Lock()
_HOOK = SimpleNamespace(users=0, original=None, caches=[], local=threading.local())


@wraps(_MLP.fit)
def _hooked_fit(self, X, y, sample_weight=None):
    records = getattr(_HOOK.local, "records", None)
    if records is not None:  # a capture: what this fit would train on, untrained
        records.append((self, X, y, sample_weight))
        return self
    for cache in reversed(_HOOK.caches):
        if cache.serve(self, X, y, sample_weight):
            return self
    return _HOOK.original(self, X, y, sample_weight)


@contextmanager
def _hooked():
    """_MLP.fit replaced by _hooked_fit while any caller is inside, restored after the last."""
    with _LOCK:
        if _HOOK.users == 0:
            _HOOK.original, _MLP.fit = _MLP.fit, _hooked_fit
        _HOOK.users += 1
    try:
        yield
    finally:
        with _LOCK:
            _HOOK.users -= 1
            if _HOOK.users == 0:
                _MLP.fit = _HOOK.original


@contextmanager
def _serving(cache):
    with _hooked():
        _HOOK.caches.append(cache)
        try:
            yield cache
        finally:
            _HOOK.caches.remove(cache)


def _captured(estimator, X, y, fit_params):
    """The MLP fits (mlp, X, y, sample_weight) that estimator.fit(X, y, **fit_params) makes, recorded, not trained;
    [] when that fit fails (scikit-learn's own fit of it will fail the same way, and handle it)."""
    outer = getattr(_HOOK.local, "records", None)  # a capture around this one (a search in a search)
    with _hooked(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's pass makes this fit again, and warns then
        _HOOK.local.records = records = []
        try:
            estimator.fit(X, y, **fit_params)
        except Exception:
            return []
        finally:
            _HOOK.local.records = outer
    return records


class _Nested(Exception):
    """A gpunet search inside a fit being captured (a search in cross_validate): the capture plans nothing for it,
    and the search stacks its own fits when it runs for real."""


def _not_captured():
    if getattr(_HOOK.local, "records", None) is not None:
        raise _Nested()


# -- the cache


def _digest(a):
    """A content hash of one of a fit's inputs: bytes, shape and dtype (a sparse matrix's parts; other objects
    pickled)."""
    if a is None:
        return None
    h = hashlib.blake2b(digest_size=20)
    if isinstance(a, np.ndarray) and not a.dtype.hasobject:
        h.update(repr((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).data)
    elif sparse.issparse(a):
        a = a.tocsr()
        h.update(repr((a.shape, a.dtype.str)).encode())
        for part in (a.indptr, a.indices, a.data):
            h.update(np.ascontiguousarray(part).data)
    else:
        h.update(pickle.dumps(a, protocol=5))
    return h.hexdigest()


def _settings(est, params, leave_out=()):
    """The estimator's class and parameters (its get_params(deep=False)) as one string, a canonical repr, without
    those in `leave_out`."""
    params = sorted((k, v) for k, v in params.items() if k not in leave_out)
    return f"{type(est).__module__}.{type(est).__qualname__}{params!r}"


class _Cache:
    """Fitted estimators waiting for the fit with their parameters and data, each served once."""

    def __init__(self):
        self.waiting = defaultdict(list)
        self.served_stacked = 0  # fits served by an estimator that a stack trained
        self.lock = threading.Lock()

    def put(self, key, fitted, stacked):
        with self.lock:
            self.waiting[key].append((fitted, stacked))

    def serve(self, est, X, y, sample_weight):
        """Give `est` a waiting fitted state for exactly this fit, if there is one; whether it did."""
        if not self.waiting:
            return False
        params = est.get_params(deep=False)
        key = (_settings(est, params), _digest(X), _digest(y), _digest(sample_weight))
        with self.lock:
            if not self.waiting.get(key):
                return False
            fitted, stacked = self.waiting[key].pop()
            self.served_stacked += stacked
        for name, value in vars(fitted).items():
            if name not in params:
                setattr(est, name, value)
        return True


# -- planning and training the fits


def _planned_fits(estimator, candidates, X, y, splits, fit_params):
    """The MLP fits that scikit-learn's _fit_and_score will make for each candidate on each split's training rows:
    one namespace each, with the unfitted MLP, its X, y and sample_weight (one object per content), their digests,
    and `at`, the index of its (candidate, split) in scikit-learn's order of them.
    """
    fits, interned = [], {}
    for c, candidate in enumerate(candidates):
        for split, (train, _) in enumerate(splits):
            est = clone(estimator).set_params(**clone(candidate, safe=False))
            train = np.asarray(train)
            X_train, y_train = _safe_split(est, X, y, train)
            sliced = _check_method_params(X, params=fit_params, indices=train)
            for mlp, *data in _captured(est, X_train, y_train, sliced):
                if refusal(mlp):  # in no stack (random_state None, lbfgs, ...): scikit-learn's pass fits it
                    continue
                digests = tuple(_digest(a) for a in data)
                data = [interned.setdefault(d, a) if a is not None else None for d, a in zip(digests, data)]
                params = mlp.get_params(deep=False)
                shared = (_settings(mlp, params, STACKED), data[2] is None)
                fits.append(SimpleNamespace(est=mlp, X=data[0], y=data[1], sw=data[2], digests=digests,
                                            key=(_settings(mlp, params), *digests), shared=shared,
                                            at=c * len(splits) + split, seconds=0.0))
    return fits


def _stacks(fits, n_jobs):
    """The fits in groups that may stack (alike in every parameter outside STACKED); for n_jobs
    workers, cut into pieces of at most 1 / n_jobs of all fits, a fold's fits together where they fit."""
    groups = defaultdict(list)
    for fit in fits:
        groups[fit.shared].append(fit)
    if n_jobs == 1:
        return list(groups.values())
    size, pieces = -(-len(fits) // n_jobs), []
    for group in groups.values():
        group.sort(key=lambda f: str(f.digests))  # a fold's fits side by side
        pieces += [group[start : start + size] for start in range(0, len(group), size)]
    return pieces


def _stack(ests, X, y, sw):
    """fit_stack(ests, X, y, sample_weight=sw) on fresh clones: (the fitted clones (None for one whose fit failed:
    scikit-learn's pass fits it again, failing as it fails), each one's share of the stack's seconds), or None if it
    refuses them."""
    ests = [clone(est) for est in ests]
    start = time.perf_counter()
    try:
        fitted = fit_stack(ests, X, y, sample_weight=sw)
    except StackFitError as e:
        failed = {i for i, _ in e.failed}
        fitted = [None if i in failed else est for i, est in enumerate(ests)]
    except (ValueError, TypeError):
        return None
    return fitted, (time.perf_counter() - start) / len(ests)


def _fit_group(ests, Xs, ys, sws, digests, singles):
    """One group's fits as one stack (each estimator its own rows); failing that, one stack per shared rows and
    random_state; failing that, with `singles`, each alone. Returns (fitted or None, by a stack, its seconds) per
    estimator and the sizes of the stacks."""
    stacked = _stack(ests, Xs, ys, None if all(sw is None for sw in sws) else sws)
    if stacked is not None:
        fitted, share = stacked
        return [(est, est is not None, share) for est in fitted], [len(ests)]
    parts = defaultdict(list)
    for i, (est, d) in enumerate(zip(ests, digests)):
        parts[(d, est.random_state)].append(i)
    out, sizes = [(None, False, 0.0)] * len(ests), []
    for rows in parts.values():
        stacked = _stack([ests[i] for i in rows], Xs[rows[0]], ys[rows[0]], sws[rows[0]])
        if stacked is not None:
            sizes.append(len(rows))
            for i, est in zip(rows, stacked[0]):
                out[i] = (est, True, stacked[1])
    for i, (est, _, _) in enumerate(out):
        if est is None and singles:
            start = time.perf_counter()
            try:
                out[i] = (clone(ests[i]).fit(Xs[i], ys[i], sample_weight=sws[i]), False, time.perf_counter() - start)
            except Exception:  # scikit-learn's own fit of it will fail the same way, and handle it
                pass
    return out, sizes


def _prefit(fits, cache, n_jobs, pre_dispatch):
    """Train the planned fits in stacks (in joblib workers when n_jobs asks) into `cache`; the stacks' sizes."""
    workers = effective_n_jobs(n_jobs)
    groups = _stacks(fits, workers)
    singles = workers != 1  # else scikit-learn's pass trains the refused ones as fast
    jobs = Parallel(n_jobs=n_jobs, pre_dispatch=pre_dispatch)(
        delayed(_fit_group)([f.est for f in g], [f.X for f in g], [f.y for f in g], [f.sw for f in g],
                            [f.digests for f in g], singles)
        for g in groups)
    sizes = []
    for group, (fitted, stacks) in zip(groups, jobs):
        sizes += stacks
        for fit, (est, stacked, seconds) in zip(group, fitted):
            if est is not None:
                fit.seconds = seconds
                cache.put(fit.key, est, stacked)
    return sizes


def _shares(fits, pairs):
    """Per (candidate, split) of scikit-learn's order, the stacks' seconds of its planned fits."""
    out = np.zeros(pairs)
    for fit in fits:
        out[fit.at] += fit.seconds
    return out


class _Splits:
    """A splitter that yields splits made once, so that the prefit and scikit-learn's pass see the same ones (a
    shuffling splitter without an int random_state gives others at each call)."""

    def __init__(self, splits):
        self.splits = splits

    def split(self, X=None, y=None, groups=None, **params):
        return iter(self.splits)

    def get_n_splits(self, X=None, y=None, groups=None, **params):
        return len(self.splits)


def _has_mlp(obj):
    """Whether obj is a gpunet MLP, an estimator with one among its parameters, or a dict, list or tuple holding
    one."""
    if isinstance(obj, _MLP):
        return True
    if isinstance(obj, BaseEstimator):
        return _has_mlp(list(obj.get_params(deep=False).values()))
    if isinstance(obj, dict):
        return _has_mlp(list(obj.values()))
    return isinstance(obj, (list, tuple)) and any(_has_mlp(v) for v in obj)


# -- the searches


class _StackedSearch:
    """fit and _run_search of a scikit-learn search (a BaseSearchCV) whose MLP fits are trained as stacks first."""

    def fit(self, X, y=None, **params):
        """scikit-learn's fit, its MLP fits trained as stacks; also sets stacked_fits_ (the fits served by a stack)
        and stack_sizes_ (the fits of each fit_stack call)."""
        self._validate_params()  # before n_jobs is set aside: an invalid one is refused as scikit-learn refuses it
        _not_captured()
        n_jobs = self.n_jobs
        stacking = y is not None and _has_mlp([self.estimator, getattr(self, "param_grid", None),
                                                getattr(self, "param_distributions", None)])
        state = SimpleNamespace(X=X, y=y, params=params, n_jobs=n_jobs, cache=_Cache(), sizes=[], shares=[], timed=0)
        self._stacking = state if stacking else None
        try:
            if stacking:
                self.n_jobs = 1  # the cache is in this process: workers would miss it
            with _serving(state.cache):
                super().fit(X, y, **params)
        finally:
            self.n_jobs = n_jobs
            del self._stacking
        self.stacked_fits_, self.stack_sizes_ = state.cache.served_stacked, state.sizes
        return self

    def _format_results(self, candidate_params, n_splits, out, more_results=None):
        """scikit-learn's, each stacked fit's time its share of its stack's (once per fit: `out` grows from call to
        call)."""
        state = getattr(self, "_stacking", None)
        if state is not None:
            for entry, share in zip(out[state.timed :], state.shares[state.timed :]):
                if entry.get("fit_error") is None:
                    entry["fit_time"] += share
            state.timed = len(out)
        return super()._format_results(candidate_params, n_splits, out, more_results)

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        if getattr(self, "_stacking", None) is not None:
            evaluate_candidates = self._prefitting(evaluate_candidates)
        kw = {} if callback_ctx is None else {"callback_ctx": callback_ctx}
        return super()._run_search(evaluate_candidates, **kw)

    def _prefitting(self, evaluate_candidates):
        """evaluate_candidates that first trains the candidates' MLP fits on the same splits into the cache."""
        state = self._stacking

        def evaluate(candidate_params, cv=None, *args, **kwargs):
            candidates = list(candidate_params)
            X, y = indexable(state.X, state.y)
            params = _check_method_params(X, params=state.params)
            routed = self._get_routed_params_for_fit(params)
            cv = cv or getattr(self, "_checked_cv_orig", None) or check_cv(self.cv, y, classifier=is_classifier(
                self.estimator))
            splits = _Splits(list(cv.split(X, y, **routed.splitter.split)))
            fits = _planned_fits(self.estimator, candidates, X, y, splits.splits, routed.estimator.fit)
            state.sizes += _prefit(fits, state.cache, state.n_jobs, self.pre_dispatch)
            state.shares += list(_shares(fits, len(candidates) * len(splits.splits)))
            return evaluate_candidates(candidates, splits, *args, **kwargs)

        return evaluate


def _doc(search):
    return (f"scikit-learn's {search.__name__}, its gpunet.sklearn MLP fits trained as stacks first "
            "(gpunet.sklearn.fit_stack).\n\n    Fitted attributes also: stacked_fits_ (the fits served by a stack) and "
            "stack_sizes_ (the fits of each fit_stack call). scikit-learn's documentation:\n\n    "
            + (search.__doc__ or ""))


class GridSearchCV(_StackedSearch, sk.GridSearchCV):
    __doc__ = _doc(sk.GridSearchCV)


class RandomizedSearchCV(_StackedSearch, sk.RandomizedSearchCV):
    __doc__ = _doc(sk.RandomizedSearchCV)


HALVING = ("HalvingGridSearchCV", "HalvingRandomSearchCV")


def __getattr__(name):
    """HalvingGridSearchCV and HalvingRandomSearchCV: scikit-learn's successive halving (experimental there: asked
    for, it is enabled), each round's fits trained as stacks."""
    if name not in HALVING:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401

    search = getattr(sk, name)
    globals()[name] = cls = type(name, (_StackedSearch, search), {"__doc__": _doc(search), "__module__": __name__})
    return cls


# -- cross-validation


def _cross(evaluate, estimator, X, y, groups, cv, n_jobs, pre_dispatch, params, **kw):
    """scikit-learn's `evaluate` (cross_validate or cross_val_score) with the K fits of the folds trained as one
    stack first; unchanged for other estimators, and while metadata routing is enabled."""
    _not_captured()
    if y is None or _routing_enabled() or not _has_mlp(estimator):
        return evaluate(estimator, X, y, groups=groups, cv=cv, n_jobs=n_jobs, pre_dispatch=pre_dispatch,
                        params=params, **kw)
    Xi, yi = indexable(X, y)
    cv = check_cv(cv, yi, classifier=is_classifier(estimator))
    splits = _Splits(list(cv.split(Xi, yi, groups=groups)))
    cache = _Cache()
    fits = _planned_fits(estimator, [{}], Xi, yi, splits.splits, params or {})
    _prefit(fits, cache, n_jobs, pre_dispatch)
    with _serving(cache):
        result = evaluate(estimator, X, y, groups=groups, cv=splits, n_jobs=1, pre_dispatch=pre_dispatch,
                          params=params, **kw)
    if isinstance(result, dict) and "fit_time" in result:  # cross_validate's: each fold's share of the stack's time
        result["fit_time"] = result["fit_time"] + _shares(fits, len(splits.splits))
    return result


def cross_validate(estimator, X, y=None, *, groups=None, scoring=None, cv=None, n_jobs=None, verbose=0, params=None,
                   pre_dispatch="2*n_jobs", return_train_score=False, return_estimator=False, return_indices=False,
                   error_score=np.nan):
    """scikit-learn's cross_validate (same arguments and result), the folds' gpunet.sklearn MLP fits trained as one
    stack (gpunet.sklearn.fit_stack)."""
    return _cross(sk.cross_validate, estimator, X, y, groups, cv, n_jobs, pre_dispatch, params, scoring=scoring,
                  verbose=verbose, return_train_score=return_train_score, return_estimator=return_estimator,
                  return_indices=return_indices, error_score=error_score)


def cross_val_score(estimator, X, y=None, *, groups=None, scoring=None, cv=None, n_jobs=None, verbose=0, params=None,
                    pre_dispatch="2*n_jobs", error_score=np.nan):
    """scikit-learn's cross_val_score (same arguments and result), the folds' gpunet.sklearn MLP fits trained as one
    stack (gpunet.sklearn.fit_stack)."""
    return _cross(sk.cross_val_score, estimator, X, y, groups, cv, n_jobs, pre_dispatch, params, scoring=scoring,
                  verbose=verbose, error_score=error_score)
