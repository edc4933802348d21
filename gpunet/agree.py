"""Compare training results from different backends or dtypes: the losses at the log points, the final
loss and the final parameters."""

from dataclasses import dataclass

import numpy as np

# Max relative difference (per tensor, over its largest magnitude) that still counts as agreement.
# float64: different summation orders leave differences near machine precision.
# float32: rounding differences grow over epochs (up to 7e-4 seen, on small biases); a wrong gradient
# (a dropped ReLU mask) gives 2e-2 and up.
TOLERANCES = {"float64": 1e-9, "float32": 5e-3}


@dataclass
class Row:
    """One compared quantity: `losses`, or a parameter tensor such as `w1`."""

    quantity: str
    max_abs: float
    max_rel: float
    tol: float

    @property
    def ok(self):
        return bool(self.max_rel <= self.tol)


def difference(a, b):
    """(max |a - b|, that over max |b|); a non-finite value counts as an infinite difference."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf"), float("inf")
    d = float(np.max(np.abs(a - b))) if a.size else 0.0
    return d, d / max(float(np.max(np.abs(b))) if b.size else 0.0, np.finfo(float).tiny)


def compare(result, reference, tol=None):
    """Rows comparing `result` with `reference` (two gpunet.train.Result of the same configuration).

    Args:
        tol: max relative difference; default TOLERANCES for the coarser of the two dtypes.
    """
    if tol is None:
        tol = max(TOLERANCES[result.config.dtype], TOLERANCES[reference.config.dtype])
    def losses(r):
        return [loss for _, loss in r.losses] + [r.final_loss]

    rows = [Row("losses", *difference(losses(result), losses(reference)), tol)]
    for l, ((w, b), (w_ref, b_ref)) in enumerate(zip(result.params, reference.params), 1):
        rows.append(Row(f"w{l}", *difference(w, w_ref), tol))
        rows.append(Row(f"b{l}", *difference(b, b_ref), tol))
    return rows
