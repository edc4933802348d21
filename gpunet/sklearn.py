"""MLPRegressor and MLPClassifier: scikit-learn's estimators, trained by gpunet on the GPU or the CPU.

    from gpunet.sklearn import MLPRegressor, MLPClassifier   # instead of sklearn.neural_network

Same parameters, defaults, fitted attributes and numbers as scikit-learn's (on the CPU in float64 with
the same random_state), plus `backend` ("auto", "cpu", "cuda"), `device` (the CUDA device index) and
`dtype` (default: the input's, float32 or float64). Inputs are NumPy arrays, anything scikit-learn takes
(pandas, lists), or CuPy arrays, which stay on their device (gpunet/sklearn_arrays.py). This module
translates: parameters and arrays in, fitted attributes out; the training loop is gpunet/sklearn_loop.py
on gpunet's engine. It needs the [sklearn] extra (scikit-learn and scipy); `import gpunet` does not.
"""

import warnings
from numbers import Integral
from types import SimpleNamespace

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPRegressor as _SkRegressor
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d
    from sklearn.utils._param_validation import Interval, StrOptions
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"gpunet.sklearn needs scikit-learn>=1.6 and scipy ({e}); install them with "
                      "pip install 'gpunet[sklearn]'") from None

from gpunet.backend import BACKENDS, array_module, on_device, resolve
from gpunet.model import Layout
from gpunet.sklearn_arrays import feature_major, host, like_input, sample_weights, validated, validated_xy
from gpunet.sklearn_loop import SGD, Adam, Engine, History, fit_lbfgs, fit_stochastic, glorot_params, rows_of
from gpunet.sklearn_metrics import accuracy, r2

_CONSTRAINTS = {
    **_SkRegressor._parameter_constraints,
    "backend": [StrOptions(set(BACKENDS))],
    "device": [Interval(Integral, 0, None, closed="left")],
    "dtype": [None, str, type, np.dtype],
}


class _MLP(BaseEstimator):
    """What the two estimators share: fit, partial_fit's body, the engine and the fitted weights."""

    @classmethod
    def _get_param_names(cls):
        """scikit-learn's (the __init__'s parameters), read once per class: scikit-learn reads the signature at every
        get_params, which clone and set_params call, 0.2 ms each; a search calls it several times per fit. The iris
        grid of bench/search_bench.py, 5 alternating runs: stacked 1.70 -> 1.25 s, one by one 3.65 -> 3.21 s."""
        if "_param_names" not in cls.__dict__:
            cls._param_names = super()._get_param_names()
        return cls._param_names

    # -- parameters <-> engine

    def _sizes(self, n_features):
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        return [n_features, *[int(h) for h in hidden], self.n_outputs_]

    def _placed(self, X):
        """X where it is used: a CuPy X stays on its device, except with backend="cpu" (then a host copy)."""
        return host(X) if self.backend.lower() == "cpu" else X

    def _validated(self, X, y, sample_weight, incremental, reset):
        """(X placed, y (n, n_outputs), sample weights or None) as a fit takes them (fit() and fit_stack)."""
        X, y = self._validate_input(X, y, incremental, reset=reset)
        X = self._placed(X)
        sample_weight = None if sample_weight is None else sample_weights(sample_weight, X)
        return X, y.reshape(-1, 1) if y.ndim == 1 else y, sample_weight

    def _backend(self, X=None):
        """The Backend a fit on X runs on: for a CuPy X (placed), X's device; else the chosen one."""
        return resolve("cuda", X.device.id) if on_device(X) else resolve(self.backend, self.device)

    def _engine(self, dtype, X=None):
        """An Engine holding coefs_ and intercepts_ on the chosen backend: for a CuPy X (placed), X's device."""
        backend = self._backend(X)
        sizes = [self.coefs_[0].shape[0], *(w.shape[1] for w in self.coefs_)]
        return Engine(backend, sizes, self._flat(), dtype, self.activation, self.out_activation_, self.alpha)

    def _flat(self):
        """coefs_ and intercepts_ as one new host array in gpunet's layout."""
        return np.concatenate([np.vstack([w, b[None]]).ravel() for w, b in zip(self.coefs_, self.intercepts_)])

    def _set_weights(self, flat, sizes, dtype):
        """coefs_ and intercepts_ (host arrays of `dtype`) from flat parameters in gpunet's layout."""
        layers = Layout(sizes).unpack(np.asarray(flat, dtype))
        self.coefs_ = [w.copy() for w, _ in layers]
        self.intercepts_ = [b.copy() for _, b in layers]

    def _forward(self, X):
        """The output activations (n, n_outputs_) of validated inputs X, on the host, or on its device for a CuPy X
        (unless backend="cpu")."""
        X = self._placed(X)
        engine = self._engine(self.coefs_[0].dtype, X)
        y_pred = engine.predict(feature_major(X, engine.backend, engine.net.dtype))
        return y_pred if on_device(X) else engine.backend.to_numpy(y_pred)

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight, activations, deltas, coef_grads,
                         intercept_grads):
        """scikit-learn's private (loss, gradient) of the whole-batch objective at parameters packed its way
        (every coefs_ raveled, then every intercepts_), on the CPU in float64, for code that reads it (its
        own tests); coef_grads and intercept_grads are filled as it fills them, activations and deltas not."""
        sizes = [self.coefs_[0].shape[0], *(w.shape[1] for w in self.coefs_)]
        flat = _unpacked(np.asarray(packed_coef_inter, np.float64), sizes)
        engine = Engine(resolve("cpu"), sizes, flat, np.float64, self.activation, self.out_activation_, self.alpha)
        y = np.asarray(y, np.float64).reshape(X.shape[0], -1)
        ws = engine.workspace(X.shape[0])
        ws.x[...], ws.y[...] = feature_major(X, engine.backend, np.float64)[:, :], y.T
        sw_t = None if sample_weight is None else np.asarray(sample_weight, np.float64)[None]
        loss, grad = engine.loss_and_grad(flat, ws, sw_t)
        for i, (gw, gb) in enumerate(Layout(sizes).unpack(grad)):
            coef_grads[i], intercept_grads[i] = gw.copy(), gb.copy()
        return loss, np.concatenate([g.ravel() for g in coef_grads + intercept_grads])

    def score(self, X, y, sample_weight=None):
        """scikit-learn's score: R^2 of the regressor's predictions, accuracy of the classifier's (on the host)."""
        return self._metric(host(y), host(self.predict(X)), sample_weight=host(sample_weight))

    # -- fit

    def _initialize(self, y, sizes, dtype, rs):
        self.n_iter_, self.t_, self.n_layers_ = 0, 0, len(sizes)
        self.out_activation_ = self._out_activation()
        self._set_weights(glorot_params(sizes, rs, self.activation), sizes, dtype)
        if self.solver != "lbfgs":
            self._history = History(self.early_stopping)
            if self.early_stopping:  # kept if no validation score is ever better than -inf
                self._history.best_params = self._flat()

    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._validate_params()
        first = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y, sample_weight = self._validated(X, y, sample_weight, incremental, reset=first)
        self.n_outputs_ = y.shape[1]
        sizes = self._sizes(X.shape[1])
        dtype = self._dtype(X)
        rs = check_random_state(self.random_state)
        if first:
            self._initialize(y, sizes, dtype, rs)
        else:
            self._continued()
        engine = self._engine(dtype, X)
        if self.solver == "lbfgs":
            self._fit_lbfgs(engine, X, y, sample_weight)
        else:
            self._fit_stochastic(engine, X, y, sample_weight, rs, incremental)
        self._set_weights(engine.params_host(), sizes, dtype)
        self._check_finite()
        return self

    def _check_finite(self):
        if not all(np.isfinite(a).all() for a in [*self.coefs_, *self.intercepts_]):
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain large "
                             "values and need to be preprocessed.")

    def _dtype(self, X):
        dtype = np.dtype(self.dtype) if self.dtype is not None else X.dtype
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32, float64 or None (the input's), got {self.dtype!r}")
        return dtype

    def _fit_lbfgs(self, engine, X, y, sample_weight):
        dt = engine.net.dtype
        to = engine.backend.asarray
        sw_t = None if sample_weight is None else to(sample_weight[None], dt)
        res = fit_lbfgs(engine, feature_major(X, engine.backend, dt), to(y.T, dt), self.max_iter, self.max_fun,
                        self.tol, sw_t)
        if res.status != 0:
            warnings.warn(f"lbfgs failed to converge after {res.nit} iteration(s) (status={res.status}): "
                          f"{res.message}. Increase the number of iterations or scale the data.",
                          ConvergenceWarning)
        self.n_iter_, self.loss_ = min(res.nit, self.max_iter), float(res.fun)

    def _continued(self):
        """What a fit continues from when coefs_ and intercepts_ were set by hand (scikit-learn's public
        fitted attributes, and its _no_improvement_count): the output activation, layer count and History."""
        if not hasattr(self, "out_activation_"):
            self.out_activation_ = self._out_activation()
        self.n_layers_ = len(self.coefs_) + 1
        if self.solver == "lbfgs" or hasattr(self, "_history"):
            return
        h = self._history = History(self.early_stopping)
        h.n_iter_, h.t_ = getattr(self, "n_iter_", 0), getattr(self, "t_", 0)
        h.loss_curve_ = list(getattr(self, "loss_curve_", None) or [])
        h.no_improvement_count = getattr(self, "_no_improvement_count", 0)
        for name in ("best_loss_", "validation_scores_", "best_validation_score_"):
            if getattr(self, name, None) is not None:
                setattr(h, name, getattr(self, name))
        if self.early_stopping:
            h.best_params = self._flat()

    def _new_optimizer(self, params):
        if self.solver == "sgd":
            return SGD(params, self.learning_rate_init, self.learning_rate, self.momentum, self.nesterovs_momentum,
                       self.power_t)
        return Adam(params, self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)

    def _split_rows(self, y, rs):
        """scikit-learn's early-stopping split of the rows of (encoded) y: (training rows, validation rows)."""
        stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
        train, val = train_test_split(np.arange(y.shape[0]), random_state=rs, test_size=self.validation_fraction,
                                      stratify=stratify)
        if val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                             "your dataset.")
        return train, val

    def _split(self, X, y, sample_weight, rs):
        """scikit-learn's early-stopping split: the training rows (X, y, sample_weight) and the validation rows
        (X, y as the score takes it, sample_weight)."""
        train, val = self._split_rows(y, rs)
        sw_train, sw_val = (None, None) if sample_weight is None else (sample_weight[train], sample_weight[val])
        return (X[train], y[train], sw_train), (X[val], self._score_target(y[val]), sw_val)

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        return int(np.clip(self.batch_size, 1, n))

    def _fit_stochastic(self, engine, X, y, sample_weight, rs, incremental):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._new_optimizer(engine.net.params)
        self._optimizer.moved(engine.backend.asarray)  # kept on the host between calls, as the fitted weights are
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        to, dt = engine.backend.asarray, engine.net.dtype
        score = None
        if self.early_stopping:
            (X, y, sample_weight), (X_val, y_val, sw_val) = self._split(X, y, sample_weight, rs)
            xv_t = feature_major(X_val, engine.backend, dt)
            score = lambda: self._score_outputs(  # noqa: E731
                y_val, engine.backend.to_numpy(engine.predict(xv_t)), sw_val)
        settings = SimpleNamespace(max_iter=self.max_iter, shuffle=self.shuffle, batch_size=self._batch_size(X.shape[0]),
                                   tol=self.tol, n_iter_no_change=self.n_iter_no_change, incremental=incremental,
                                   verbose=self.verbose, score=score,
                                   sample_weight=None if sample_weight is None else to(sample_weight[None], dt))
        hist = self._history
        unconverged = fit_stochastic(engine, self._optimizer, hist, rows_of(engine.backend, X, dt), to(y.T, dt), rs,
                                     settings)
        self._optimizer.moved(engine.backend.to_numpy)
        if self.early_stopping:
            engine.net.params[...] = engine.backend.asarray(hist.best_params)
            hist.best_params = engine.backend.to_numpy(hist.best_params)
        self._record(hist, unconverged)

    def _record(self, hist, unconverged):
        """The fitted attributes of a stochastic fit from its History; scikit-learn's warning if it did not converge."""
        if unconverged:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning)
        for name in ("n_iter_", "t_", "loss_", "loss_curve_", "best_loss_", "validation_scores_",
                     "best_validation_score_"):
            setattr(self, name, getattr(hist, name))
        self._no_improvement_count = hist.no_improvement_count  # scikit-learn's name, read by its own tests

    def _check_solver(self):
        if self.solver == "lbfgs":
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                                 "stochastic.")
        return True

    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and targets y.

        Args:
            X: array-like (n_samples, n_features), the inputs.
            y: array-like (n_samples,) or (n_samples, n_outputs): class labels or real targets.
            sample_weight: array-like (n_samples,), or None for equal weights.

        Returns:
            self, fitted.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _unpacked(packed, sizes):
    """scikit-learn's packing (every layer's weights raveled, then every bias) in gpunet's flat layout."""
    flat, at = np.zeros(Layout(sizes).size), 0
    layers = Layout(sizes).unpack(flat)
    for w, _ in layers:
        w[...] = packed[at : at + w.size].reshape(w.shape)
        at += w.size
    for _, b in layers:
        b[...] = packed[at : at + b.size]
        at += b.size
    return flat


def _init_params(self, kw):
    for name, value in kw.items():
        setattr(self, name, value)


class MLPRegressor(RegressorMixin, _MLP):
    """scikit-learn's MLPRegressor (squared error with an identity output, or Poisson deviance with an
    exponential one), trained by gpunet.

    Parameters, defaults and fitted attributes are scikit-learn's (`sklearn.neural_network.MLPRegressor`),
    plus backend ("auto": CUDA when usable, else the CPU), device (CUDA index) and dtype (None: the input's).
    As scikit-learn's, with squared_error and several targets the gradient is n_outputs times the
    gradient of the reported loss (the loss averages over the outputs, the gradient of each output is
    p - y; scikit-learn issue #8349). gpunet follows it, so that the numbers stay the same.
    """

    _parameter_constraints = {**_CONSTRAINTS, "loss": [StrOptions({"squared_error", "poisson"})]}
    _metric = staticmethod(r2)
    score = _MLP.score  # not RegressorMixin's: R^2 on the host, for CuPy predictions and targets too

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend="auto",
                 device=0, dtype=None):
        _init_params(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})

    def _out_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validated_xy(self, X, y, reset=reset, y_numeric=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _score_target(self, y):
        return y

    def _score_outputs(self, y_true, y_pred, sample_weight=None):
        if not np.isfinite(y_pred).all():
            return np.nan
        return r2(y_true, y_pred.ravel() if y_pred.shape[1] == 1 else y_pred, sample_weight=sample_weight)

    def predict(self, X):
        """The predicted values, (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        y_pred = self._forward(validated(self, X, reset=False))
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state; returns self."""
        return self._fit(X, y, sample_weight, incremental=True)


class MLPClassifier(ClassifierMixin, _MLP):
    """scikit-learn's MLPClassifier (log loss: softmax for several classes, logistic for binary and
    multi-label), trained by gpunet.

    Parameters, defaults and fitted attributes are scikit-learn's (`sklearn.neural_network.MLPClassifier`),
    plus backend ("auto": CUDA when usable, else the CPU), device (CUDA index) and dtype (None: the input's).
    """

    _parameter_constraints = {k: v for k, v in _CONSTRAINTS.items() if k != "loss"}
    _metric = staticmethod(accuracy)
    score = _MLP.score  # not ClassifierMixin's: its accuracy_score checks plain labels for 1 ms

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend="auto", device=0, dtype=None):
        _init_params(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validated_xy(self, X, y, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and set(classes) != set(self.classes_):
                raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                 f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            if not self.warm_start and len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _score_target(self, y):
        return self._label_binarizer.inverse_transform(y)

    def _labels(self, y_prob):
        """The labels of host output activations (n, n_outputs_), as LabelBinarizer.inverse_transform gives them (the
        class of the largest; a binary or multi-label output thresholded at 0.5), without its 0.07 ms of checks."""
        kind, classes = self._label_binarizer.y_type_, self._label_binarizer.classes_
        if self._label_binarizer.sparse_input_:  # labels fitted sparse: decoded sparse, by the binarizer itself
            return self._label_binarizer.inverse_transform(y_prob.ravel() if self.n_outputs_ == 1 else y_prob)
        if kind == "multiclass":
            return classes[y_prob.argmax(axis=1)]
        above = (y_prob > 0.5).astype(np.asarray(0).dtype)  # the binarizer's integers: the default one
        if kind == "multilabel-indicator":
            return above
        return classes[above.ravel()] if len(classes) > 1 else np.repeat(classes[0], len(above))

    def _score_outputs(self, y_true, y_prob, sample_weight=None):
        return accuracy(y_true, self._labels(y_prob), sample_weight=sample_weight)

    def predict(self, X):
        """The predicted classes, (n_samples,), or (n_samples, n_classes) for multi-label targets."""
        check_is_fitted(self)
        X = self._placed(validated(self, X, reset=False))
        return like_input(X, self._labels(host(self._forward(X))))

    def predict_proba(self, X):
        """The probability of each class, (n_samples, n_classes), in the order of classes_."""
        check_is_fitted(self)
        y_prob = self._forward(validated(self, X, reset=False))
        if self.n_outputs_ == 1:
            y_prob = y_prob.ravel()
            return array_module(y_prob).vstack([1 - y_prob, y_prob]).T
        return y_prob

    def predict_log_proba(self, X):
        """The log of predict_proba."""
        y_prob = self.predict_proba(X)
        return array_module(y_prob).log(y_prob, out=y_prob)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state; returns self.

        Args:
            sample_weight: array-like (n_samples,), or None for equal weights.
            classes: every class label; needed on the first call (not for multi-label targets).
        """
        if _check_partial_fit_first_call(self, classes):
            y_host = host(y)  # scikit-learn's label functions read host arrays only
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y_host if type_of_target(y_host).startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


# fit_stack lives beside the estimators it fits (gpunet/sklearn_stack.py imports this module's names when called)
from gpunet.sklearn_stack import STACKED, StackFitError, fit_stack  # noqa: E402, F401
SEARCHES = ("GridSearchCV", "RandomizedSearchCV", "HalvingGridSearchCV", "HalvingRandomSearchCV", "cross_validate",
            "cross_val_score")


def __getattr__(name):
    """scikit-learn's searches and cross-validation with these estimators' fits trained as stacks
    (gpunet/search_cv.py, which imports this module: loaded when first asked for)."""
    if name in SEARCHES:
        from gpunet import search_cv

        return getattr(search_cv, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
