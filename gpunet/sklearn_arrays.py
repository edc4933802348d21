"""The arrays gpunet.sklearn's estimators take and give: NumPy (or anything scikit-learn validates, such
as pandas) on the host, or CuPy arrays, which stay on their device.

A SciPy sparse X (CSR or CSC) is kept sparse: each batch's rows are made dense as they are gathered
(SparseRows), so memory holds the sparse matrix and one batch.

A CuPy X is checked where it is (its shape, dtype and finiteness, with scikit-learn's own feature
count and name checks), trains on its own device (unless backend="cpu", which copies it to the host
once) and gets its predictions as CuPy arrays on that device. Targets and sample weights are small
beside X: they are checked on the host by scikit-learn's code, as a NumPy input's are.
"""

import numpy as np
from sklearn.utils.validation import (_check_feature_names, _check_n_features, _check_sample_weight, _check_y,
                                      check_consistent_length, validate_data)

from gpunet.backend import array_module, on_device

FLOATS = (np.float64, np.float32)  # the dtypes kept; any other input is converted to the first
SPARSE = ("csr", "csc")  # the SciPy sparse formats taken (as CSR: its rows are sliced per batch)


def host(a):
    """A CuPy array's copy on the host; anything else as it is."""
    return a.get() if on_device(a) else a


def validated(estimator, X, *, reset):
    """scikit-learn's validate_data(estimator, X) with X of float32 or float64; a CuPy X stays on its device."""
    if on_device(X):
        return _validated_on_device(estimator, X, reset)
    if not reset and _plain(estimator, X):
        return X
    return _csr(validate_data(estimator, X, reset=reset, dtype=FLOATS, accept_sparse=SPARSE))


def _plain(estimator, X):
    """Whether X is a NumPy array that validate_data(estimator, X, reset=False) would give back as it is, without a
    warning: 2-d float32 or float64, with rows, the fitted feature count, finite (its sum: what scikit-learn looks at
    first), for an estimator fitted without feature names. validate_data's own checks of such an X (whether it is a
    data frame, and of what kind) take 0.1 ms, a third of a small predict; any other X goes through them."""
    if not (type(X) is np.ndarray and X.ndim == 2 and X.dtype in FLOATS and X.shape[0] > 0
            and X.shape[1] == getattr(estimator, "n_features_in_", None) and not hasattr(estimator, "feature_names_in_")):
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(X.sum()))


def validated_xy(estimator, X, y, *, reset, y_numeric=False):
    """validated() of X, and scikit-learn's checks of y (on the host, for a CuPy X too): (X, y)."""
    if not on_device(X):
        X, y = validate_data(estimator, X, y, reset=reset, dtype=FLOATS, multi_output=True, y_numeric=y_numeric,
                             accept_sparse=SPARSE)
        return _csr(X), y
    if y is None:
        raise ValueError(f"{type(estimator).__name__} requires y to be passed, but the target y is None.")
    X = _validated_on_device(estimator, X, reset)
    y = _check_y(host(y), multi_output=True, y_numeric=y_numeric, estimator=estimator)
    check_consistent_length(X, y)
    return X, y


def _validated_on_device(estimator, X, reset):
    """validate_data's checks of X, done on X's device: one reduction and one number back to the host."""
    _check_feature_names(estimator, X, reset=reset)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D array, got a {X.ndim}D CuPy array of shape {X.shape} instead: reshape "
                         "it, with X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single sample.")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"Found array with shape {X.shape}: at least 1 sample and 1 feature are required.")
    if X.dtype not in FLOATS:
        X = X.astype(FLOATS[0])
    xp = array_module(X)
    if not np.isfinite(float(X.sum())) and not bool(xp.isfinite(X).all()):  # a sum can overflow: then look closer
        raise ValueError("Input X contains NaN or infinity: remove or impute those values first.")
    _check_n_features(estimator, X, reset=reset)
    return X


def _csr(X):
    """A sparse X as CSR (rows sliced per batch), anything else as it is."""
    return X.tocsr() if hasattr(X, "tocsr") else X


def feature_major(X, backend, dtype):
    """X (rows, features) as the engine reads it, features by rows on the backend: a dense copy of X.T, or
    for a sparse X, SparseRows."""
    return SparseRows(X, backend, dtype) if hasattr(X, "tocsr") else backend.asarray(X.T, dtype)


class SparseRows:
    """A sparse X standing in for the engine's feature-major inputs: its rows stay sparse on the host, and
    each batch (take) or chunk (x_t[:, a:b]) is made dense, transposed, where it is used."""

    sparse_rows = True

    def __init__(self, X, backend, dtype):
        self.X, self.backend, self.dtype = X.tocsr().astype(dtype), backend, dtype
        self.shape = (X.shape[1], X.shape[0])

    def take(self, rows, out):
        """out (features, len(rows)) = the rows at `rows` (on the backend), dense."""
        out[...] = self.backend.asarray(self.X[self.backend.to_numpy(rows)].toarray().T, self.dtype)

    def __getitem__(self, key):
        """x_t[:, a:b]: rows a..b-1, dense, feature-major, on the backend."""
        whole, rows = key
        if whole != slice(None) or not isinstance(rows, slice):
            raise IndexError("SparseRows takes x_t[:, a:b] only")
        return self.backend.asarray(self.X[rows].toarray().T, self.dtype)


def sample_weights(sample_weight, X):
    """scikit-learn's check of sample_weight against X's rows, on the host (for a CuPy X too)."""
    rows = np.empty((X.shape[0], 0), X.dtype) if on_device(X) else X  # it reads only X's length and module
    return _check_sample_weight(host(sample_weight), rows)


def like_input(X, a):
    """Predictions `a` (host) in X's array module: a CuPy copy for a CuPy X where CuPy can hold them (numbers)."""
    if on_device(X) and a.dtype.kind in "biuf":
        return array_module(X).asarray(a)
    return a
