"""The data a run trains on: the tutorial's synthetic data or a table, split and standardised on the host,
so that every backend sees the same numbers."""

import numbers
from dataclasses import dataclass, field, replace

import numpy as np

from gpunet.comm import shard_range
from gpunet.errors import ConfigError, DataError
from gpunet.tabular import Scaler, column_indices, count_rows, read_table, split_columns

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
        classes: for classification, the sorted class labels (y holds one-hot rows over them, a row
            of zeros for a validation label not among them); None for regression.
        first, n_train, n_val, sharded: for one rank's share of data-parallel training (sharded), the
            index of x[0] among all ranks' training rows, and the training and validation rows of all
            ranks (by default those of this Dataset).
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
    classes: np.ndarray | None = None
    first: int = 0
    n_train: int | None = None
    n_val: int | None = None
    sharded: bool = False

    def astype(self, dtype):
        """This Dataset with its arrays in `dtype` (the same object when they are already)."""
        arrays = {k: getattr(self, k) for k in ("x", "y", "x_val", "y_val")}
        if all(a is None or a.dtype == np.dtype(dtype) for a in arrays.values()):
            return self
        return replace(self, **{k: None if a is None else a.astype(dtype) for k, a in arrays.items()})

    def __post_init__(self):
        if self.n_train is None:
            self.n_train = len(self.x)
        if self.n_val is None:
            self.n_val = 0 if self.x_val is None else len(self.x_val)


def shard(data, size, rank):
    """Rank `rank` of `size`'s share of `data` (which holds every row): contiguous training and
    validation rows, views of data's arrays."""
    lo, hi = shard_range(data.n_train, size, rank)
    x_val = y_val = None
    if data.n_val:
        v_lo, v_hi = shard_range(data.n_val, size, rank)
        x_val, y_val = data.x_val[v_lo:v_hi], data.y_val[v_lo:v_hi]
    return replace(data, x=data.x[lo:hi], y=data.y[lo:hi], x_val=x_val, y_val=y_val, first=lo, n_train=data.n_train,
                   n_val=data.n_val, sharded=True)


def split_rng(seed):
    """The stream that draws the validation rows: its own, so the tutorial's draws stay as they are."""
    return np.random.default_rng([DEFAULT_SEED if seed is None else seed, 1])


def one_hot_argmax(y):
    """One-hot rows (float64) marking each row's largest value: the synthetic data's class labels."""
    return np.eye(y.shape[1])[np.argmax(y, axis=1)]


def one_hot(labels, classes):
    """(one-hot rows over the sorted `classes`, float64; the number of labels not among them, whose rows are 0)."""
    if classes.dtype.kind in "US" or labels.dtype.kind in "USO":  # text on either side: compare as text
        classes, labels = classes.astype(str), labels.astype(str)
    at = np.minimum(np.searchsorted(classes, labels), len(classes) - 1)
    known = classes[at] == labels
    rows = np.zeros((len(labels), len(classes)))
    rows[np.flatnonzero(known), at[known]] = 1.0
    return rows, int(np.count_nonzero(~known))


def synthetic_dataset(n, d_in, d_out, rng, val_split=0.0, seed=None, classify=False):
    """The tutorial's synthetic data (drawn from `rng`), unscaled, with `val_split` of it held out.

    With `classify`, the targets are the class of each row's largest synthetic target: d_out classes,
    labelled 0 to d_out - 1.
    """
    x, y = synthetic(n, d_in, d_out, rng)
    classes = np.arange(d_out) if classify else None
    if classify:
        y = one_hot_argmax(y)
    return Dataset(*_split(x, y, holdout(n, val_split, seed)), Scaler.identity(d_in), Scaler.identity(d_out),
                   [f"x{i + 1}" for i in range(d_in)], [f"y{j + 1}" for j in range(d_out)], classes=classes)


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


@dataclass
class Part:
    """Where a table's rows sit among all ranks' rows: rows [first, first + rows) of `total`, and the
    communicator over which the training rows' statistics and classes are combined."""

    first: int
    total: int
    comm: object = None

    def split(self, rows, fraction, seed):
        """(local training rows, local validation rows, first local training row's index among all ranks',
        validation rows of all ranks): the split of all `total` rows, as one process draws it."""
        train, val = holdout(self.total, fraction, seed)
        local = [g[(g >= self.first) & (g < self.first + rows)] - self.first for g in (train, val)]
        return (*local, int(np.searchsorted(train, self.first)), len(val))

    def fit(self, values):
        """Standardisation from the training rows of every rank (equal to one process's within rounding)."""
        if self.comm is None or self.comm.size == 1:
            return Scaler.fit(values)
        n = self.comm.sum([len(values)])[0]
        mean = self.comm.sum(values.sum(axis=0)) / n
        deviation = np.sqrt(self.comm.sum(((values - mean) ** 2).sum(axis=0)) / n)
        empty = np.full(values.shape[1], np.inf)  # a rank without training rows takes no part in max and min
        top = self.comm.max(values.max(axis=0) if len(values) else -empty)
        spread = top + self.comm.max(-values.min(axis=0) if len(values) else -empty)
        return Scaler.of(mean, deviation, spread)

    def classes(self, labels):
        """The sorted distinct labels of every rank's training rows."""
        if self.comm is None or self.comm.size == 1:
            return np.unique(labels)
        # each rank's labels as they are: a text dtype's width is each rank's own (cat vs elephant)
        return np.unique(np.concatenate([np.asarray(u) for u in self.comm.allgather(np.unique(labels).tolist())]))

    def count(self, k):
        return k if self.comm is None or self.comm.size == 1 else int(self.comm.sum([k])[0])


def table_dataset(table, target=None, val_split=0.2, seed=None, classify=False, part=None):
    """Split a Table into inputs and targets, hold out validation rows, and standardise from the training rows.

    With `classify`, the target is one column of class labels (numbers or text): the classes are the
    sorted distinct labels of the training rows, and y holds one-hot rows over them. With `part` (a
    Part), the table is one rank's share of all rows, read with gpunet.tabular.read_table(path, rows=...):
    the validation rows are those one process would draw, and the statistics and classes are every
    rank's.

    Raises:
        DataError: a target column is missing or constant; for classification, more than one target
            column, a missing label, or a single class.
    """
    part = part or Part(0, table.rows)
    train, val, first, n_val = part.split(table.rows, val_split, seed)
    if classify:
        data = _class_dataset(table, target, train, val, part)
    else:
        data = _value_dataset(table, target, train, val, part)
    if part.comm is None or part.comm.size == 1:
        return data
    return replace(data, first=first, n_train=part.total - n_val, n_val=n_val, sharded=True)


def _value_dataset(table, target, train, val, part):
    """table_dataset for regression targets."""
    x, y, input_names, target_names = split_columns(table, target)
    x_scaler, y_scaler = part.fit(x[train]), part.fit(y[train])
    flat = y_scaler.constant()
    if flat.size:
        raise DataError(f"{table.path}: target column {target_names[flat[0]]!r} is constant on the training rows; "
                        "there is nothing to learn")
    x, notes = _standardised_inputs(table, x, input_names, x_scaler)
    return Dataset(*_split(x, y_scaler.transform(y), (train, val)), x_scaler, y_scaler, input_names, target_names,
                   notes)


def _standardised_inputs(table, x, names, scaler):
    """(x standardised by `scaler`, notes on the constant columns left unscaled)."""
    notes = [f"{table.path}: input column {names[c]!r} is constant on the training rows; left unscaled"
             for c in scaler.keep_constant_unscaled()]
    return scaler.transform(x), notes


def _class_dataset(table, target, train, val, part):
    """table_dataset for class labels."""
    t = column_indices(table, target) if target else [len(table.names) - 1]
    if len(t) != 1:
        raise DataError(f"{table.path}: --loss ce takes one target column of class labels; --target names {len(t)}")
    inputs = [i for i in range(len(table.names)) if i != t[0]]
    if not inputs:
        raise DataError(f"{table.path}: every column is a target; at least one input column is needed")
    labels, x = table.labels(t[0]), table.numeric(inputs)
    if labels.dtype.kind == "O":
        labels = labels.astype(str)
    name, input_names = table.names[t[0]], [table.names[i] for i in inputs]
    classes = part.classes(labels[train])
    if len(classes) < 2:
        raise DataError(f"{table.path}: target column {name!r} has one class ({classes[0]!r}) on the training rows; "
                        "a classifier needs two or more")
    y, _ = one_hot(labels, classes)
    unknown = part.count(len(val) - int(y[val].sum()))
    x_scaler = part.fit(x[train])
    x, notes = _standardised_inputs(table, x, input_names, x_scaler)
    if unknown:
        notes.append(f"{table.path}: {unknown} validation rows have a label not among the training rows' classes; "
                     "they count as misclassified")
    return Dataset(*_split(x, y, (train, val)), x_scaler, Scaler.identity(len(classes)), input_names,
                   [name], notes, classes)


def read_dataset(path, target=None, val_split=0.2, seed=None, classify=False, comm=None):
    """table_dataset of the table at `path`; with several ranks (`comm`), each reads only its share of
    the rows and the statistics are combined over the ranks.

    Raises:
        DataError: as read_table and table_dataset.
    """
    if comm is None or comm.size == 1:
        return table_dataset(read_table(path), target, val_split, seed, classify)
    total = count_rows(path)
    lo, hi = shard_range(total, comm.size, comm.rank)
    return table_dataset(read_table(path, rows=(lo, hi)), target, val_split, seed, classify, Part(lo, total, comm))
