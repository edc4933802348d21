"""Each stacked model's validation score after an epoch, for scikit-learn's early stopping (gpunet/stack.py).

With early_stopping=True, scikit-learn holds out validation_fraction of a fit's rows (drawn from its
random_state) and, after every epoch, scores the model on them: accuracy for a classifier, R^2 for a regressor,
with the held-out rows' sample weights. Here every model's held-out rows are gathered once (padded with weight-0
rows to the longest), one stacked forward pass per epoch gives every model's outputs, and the scores are
computed on the host for all models at once, as scikit-learn's accuracy_score and r2_score compute them.
"""

import numpy as np

from gpunet.stack_rows import held_out_rows, selected


class ValidationScores:
    """The validation scores of a stack's models.

    Args:
        backend, dtype: where the held-out rows go.
        sets: per held-out set SimpleNamespace(X (n, d_in), y (n, d_out) encoded targets, sw (n,) or None).
        of: (K,) each model's held-out set.
        classifier: accuracy (True) or R^2 (False).
    """

    def __init__(self, backend, dtype, sets, of, classifier):
        self.backend, self.classifier, self.of = backend, classifier, np.asarray(of)
        self.xr, self.rows, self.valid, self.y = held_out_rows(backend, dtype, [d.X for d in sets],
                                                               [d.y.astype(np.float64) for d in sets], self.of)
        sw = [np.ones(d.X.shape[0]) if d.sw is None else d.sw for d in sets]
        self.w = np.stack([_padded(sw[d], self.valid.shape[1]) for d in self.of]) * self.valid  # 0 past its rows
        if not classifier:  # scikit-learn's R^2 denominator: the weighted spread of each output about its mean
            mean = (self.w[:, :, None] * self.y).sum(axis=1, keepdims=True) / self.w.sum(axis=1)[:, None, None]
            self.spread = (self.w[:, :, None] * (self.y - mean) ** 2).sum(axis=1)  # (K, d_out)

    def select(self, rows):
        """These scores for the models at `rows` only."""
        return selected(self, rows, ("of", "valid", "rows", "y", "w") + (() if self.classifier else ("spread",)))

    def __call__(self, stack):
        """Each model's score (K,) with its current parameters in `stack`."""
        p = self.backend.to_numpy(stack.outputs(self.xr, self.rows)).astype(np.float64).transpose(0, 2, 1)
        return self._accuracy(p, stack.out_activation) if self.classifier else self._r2(p)

    def _accuracy(self, p, kind):
        """scikit-learn's accuracy of the predicted labels: the largest probability for softmax, p > 0.5 for each
        logistic output (a row counts when all its labels are right), weighted."""
        if kind == "softmax":
            right = p.argmax(axis=2) == self.y.argmax(axis=2)
        else:
            right = ((p > 0.5) == (self.y > 0.5)).all(axis=2)
        return (right * self.w).sum(axis=1) / self.w.sum(axis=1)

    def _r2(self, p):
        """scikit-learn's R^2 (averaged over outputs, a constant output scoring 1 if matched, else 0); NaN for a
        model whose outputs are not finite."""
        finite = np.where(self.valid[:, :, None], np.isfinite(p), True).all(axis=(1, 2))
        err = (self.w[:, :, None] * (self.y - np.where(self.valid[:, :, None], p, 0)) ** 2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(self.spread != 0, 1 - err / self.spread, np.where(err == 0, 1.0, 0.0))
        return np.where(finite, score.mean(axis=1), np.nan)


def _padded(a, width):
    """a (n, ...) with zero rows appended up to width."""
    out = np.zeros((width, *a.shape[1:]))
    out[: a.shape[0]] = a
    return out
