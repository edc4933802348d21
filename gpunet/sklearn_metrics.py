"""scikit-learn's accuracy_score and r2_score, as gpunet.sklearn's estimators score with them (`score`, and early
stopping after every epoch): the same numbers, without their checks where nothing in them could refuse the input.

Those checks (what kind of labels or targets, whether a data frame) cost about 1 ms a call, more than a small
model's predict: a regressor with early stopping spent three quarters of its fit in r2_score. Anything the short
ways do not take (weights, other dtypes or shapes, values that are not finite, fewer than two rows) goes to
scikit-learn's functions, which give its errors and warnings.
"""

import numpy as np
from sklearn.metrics import accuracy_score, r2_score

_LABEL_KINDS = {"i": "number", "u": "number", "b": "number", "U": "text"}  # dtype kinds a label array may compare


def accuracy(y_true, y_pred, sample_weight=None):
    """accuracy_score(y_true, y_pred, sample_weight=sample_weight). Unweighted 1-d NumPy labels of one kind (numbers,
    or text) are the mean of y_true == y_pred, taken as accuracy_score takes it."""
    if (sample_weight is None and type(y_true) is np.ndarray and type(y_pred) is np.ndarray and y_true.ndim == 1
            and y_true.shape == y_pred.shape and y_true.size
            and _LABEL_KINDS.get(y_true.dtype.kind, 0) == _LABEL_KINDS.get(y_pred.dtype.kind)):
        return float(np.average(y_true == y_pred))
    return accuracy_score(y_true, y_pred, sample_weight=sample_weight)


def r2(y_true, y_pred, sample_weight=None):
    """r2_score(y_true, y_pred, sample_weight=sample_weight). Unweighted, finite float64 NumPy targets and predictions
    of one shape, with at least two rows, are computed as r2_score computes them: per output, 1 - the squared
    error's sum over the spread's about the mean (1 for a perfect prediction, 0 for a constant target missed), the
    outputs' scores averaged."""
    if not (sample_weight is None and type(y_true) is np.ndarray and type(y_pred) is np.ndarray
            and y_true.dtype == np.float64 and y_pred.dtype == np.float64 and 1 <= y_true.ndim <= 2
            and 1 <= y_pred.ndim <= 2 and y_true.shape[0] == y_pred.shape[0] >= 2 and y_true.size and y_pred.size):
        return r2_score(y_true, y_pred, sample_weight=sample_weight)
    t, p = y_true.reshape(len(y_true), -1), y_pred.reshape(len(y_pred), -1)
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(t.sum()) and np.isfinite(p.sum())
    if t.shape != p.shape or not finite:
        return r2_score(y_true, y_pred, sample_weight=sample_weight)
    numerator = np.sum((t - p) ** 2, axis=0)
    denominator = np.sum((t - np.average(t, axis=0)) ** 2, axis=0)
    scores = np.ones(t.shape[1])
    valid = (denominator != 0) & (numerator != 0)
    scores[valid] = 1 - numerator[valid] / denominator[valid]
    scores[(numerator != 0) & (denominator == 0)] = 0.0
    return float(np.average(scores))
