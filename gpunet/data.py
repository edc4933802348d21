"""The data a run trains on: the tutorial's synthetic data or a table, split and standardised on the host,
so that every backend sees the same numbers."""

import numbers
from dataclasses import dataclass, field

import numpy as np

from gpunet.errors import ConfigError, DataError
from gpunet.tabular import Scaler, split_columns

# The tutorial's rule: y = 0.2 * x1 - 1.3 * x2 - 0.5 * x3 + N(0, 1) noise.
TUTORIAL_COEF = (0.2, -1.3, -0.5)
DEFAULT_SEED = 42


def check_random_state(seed):
    """Turn None, an int or a Generator into a numpy Generator (None: the default seed)."""
    if seed is None:
        return np.random.default_rng(DEFAULT_SEED)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, numbers.Integral):
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed must be None, an int or a numpy Generator, not {type(seed).__name__}")


def true_coefficients(d_in, d_out):
    """The linear rule behind the synthetic targets: coef[i, j] = TUTORIAL_COEF[(i + j) % 3].

    For d_in=3, d_out=1 this is the tutorial's column (0.2, -1.3, -0.5); wider inputs repeat
    the pattern and each further output shifts it by one feature.
    """
    i, j = np.indices((d_in, d_out))
    return np.asarray(TUTORIAL_COEF)[(i + j) % len(TUTORIAL_COEF)]


def synthetic(n, d_in, d_out, rng):
    """Draw x ~ N(0, 1) of shape (n, d_in) and y = x @ coef + N(0, 1) noise of shape (n, d_out), in float64."""
    x = rng.standard_normal((n, d_in))
    y = x @ true_coefficients(d_in, d_out) + rng.standard_normal((n, d_out))
    return x, y


@dataclass
class Dataset:
    """What a run trains on, standardised, split into training and validation rows (float64, host).

    Attributes:
        x, y: training inputs (n, d_in) and targets (n, d_out).
        x_val, y_val: validation rows, or None.
        x_scaler, y_scaler: the standardisation applied, fitted on the training rows.
        input_names, target_names: column names.
        notes: one-line remarks for the user (e.g. a constant input column left unscaled).
    """

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_scaler: Scaler
    y_scaler: Scaler
    input_names: list
    target_names: list
    notes: list = field(default_factory=list)


def split_rng(seed):
    """The stream that draws the validation rows: its own, so the tutorial's draws stay as they are."""
    return np.random.default_rng([DEFAULT_SEED if seed is None else seed, 1])


def synthetic_dataset(n, d_in, d_out, rng, val_split=0.0, seed=None):
    """The tutorial's synthetic data (drawn from `rng`), unscaled, with `val_split` of it held out."""
    x, y = synthetic(n, d_in, d_out, rng)
    return Dataset(*_split(x, y, holdout(n, val_split, seed)), Scaler.identity(d_in), Scaler.identity(d_out),
                   [f"x{i + 1}" for i in range(d_in)], [f"y{j + 1}" for j in range(d_out)])


def _split(x, y, rows):
    """(x, y, x_val, y_val) for (training rows, validation rows); without validation rows, x and y
    as they are (no copy) and None."""
    train, val = rows
    if not val.size:
        return x, y, None, None
    return x[train], y[train], x[val], y[val]


def holdout(n, fraction, seed):
    """(training rows, validation rows): round(fraction * n) rows drawn from the seed, the rest in order."""
    k = int(round(fraction * n))
    if k == 0:
        return np.arange(n), np.arange(0)
    if k >= n:
        raise ConfigError(f"--val-split {fraction} leaves no training rows out of {n}")
    val = np.sort(split_rng(seed).permutation(n)[:k])
    return np.setdiff1d(np.arange(n), val), val


def table_dataset(table, target=None, val_split=0.2, seed=None):
    """Split a Table into inputs and targets, hold out validation rows, and standardise from the training rows.

    Raises:
        DataError: a target column is missing or constant.
    """
    x, y, input_names, target_names = split_columns(table, target)
    train, val = holdout(len(x), val_split, seed)
    x_scaler, y_scaler = Scaler.fit(x[train]), Scaler.fit(y[train])
    flat = y_scaler.constant()
    if flat.size:
        raise DataError(f"{table.path}: target column {target_names[flat[0]]!r} is constant on the training rows; "
                        "there is nothing to learn")
    notes = [f"{table.path}: input column {input_names[c]!r} is constant on the training rows; left unscaled"
             for c in x_scaler.keep_constant_unscaled()]
    return Dataset(*_split(x_scaler.transform(x), y_scaler.transform(y), (train, val)),
                   x_scaler, y_scaler, input_names, target_names, notes)
