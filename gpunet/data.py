"""The data a run trains on: the tutorial's synthetic data or a table, split and standardised on the host,
so that every backend sees the same numbers."""

import numbers
from dataclasses import dataclass, field, replace

import numpy as np

from gpunet.comm import shard_range
from gpunet.errors import ConfigError, DataError
from gpunet.prepare import MISSING_MODES, Preparation, missing_cells
from gpunet.tabular import Scaler, column_indices

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
        notes: lines for the user, each starting "Warning: " or "Note: " (a constant input column left
            unscaled, missing cells filled, ...).
        classes: for classification, the sorted class labels (y holds one-hot rows over them, a row
            of zeros for a validation label not among them); None for regression.
        prep: how a table's columns became x (gpunet.prepare), or None for the synthetic data.
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
    prep: Preparation | None = None

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

    def of_kept(self, kept):
        """The Part of the `kept` rows of this rank's share, among every rank's kept rows."""
        if self.comm is None or self.comm.size == 1:
            return Part(0, kept, self.comm)
        counts = self.comm.allgather(kept)
        return Part(sum(counts[: self.comm.rank]), sum(counts), self.comm)


def table_dataset(table, target=None, val_split=0.2, seed=None, classify=False, part=None, select=None):
    """Split a Table into inputs and targets, hold out validation rows, prepare the inputs (missing cells
    filled, text one-hot; gpunet.prepare) and standardise from the training rows.

    Rows whose target is missing are dropped (a note says how many). With `classify`, the target is one
    column of class labels (numbers or text): the classes are the sorted distinct labels of the training
    rows, and y holds one-hot rows over them. With `part` (a Part), the table is one rank's share of all
    rows, read with gpunet.tabular.read_table(path, rows=...): the validation rows are those one process
    would draw, and the statistics, categories and classes are every rank's. `select` (a Select) picks the
    input columns and says what to do with missing cells.

    Raises:
        DataError: a target column is missing or constant; an input column has no value; for
            classification, more than one target column, or a single class.
    """
    part, select = part or Part(0, table.rows), select or Select()
    t = target_columns(table, target)
    if classify and len(t) != 1:
        raise DataError(f"{table.path}: a classifier takes one target column of class labels; --target names {len(t)}")
    inputs = select.inputs(table, t)
    labelled, notes = _rows_with_targets(table, t, part)
    part = part.of_kept(len(labelled))
    train, val, first, n_val = part.split(len(labelled), val_split, seed)
    if not len(train):
        raise DataError(f"{table.path}: {_share(part)}no training row has a target; " +
                        ("launch fewer ranks" if _ranks(part) else "give --val-split below 1"))
    prep, warnings = Preparation.fit(table, inputs, labelled[train], part.comm, select.missing,
                                     [table.names[i] for i in select.kept(table)])
    x, filled, unseen = prep.transform(table, inputs, labelled)
    notes += warnings + cell_notes(table.path, filled, unseen, part)
    x_scaler = part.fit(x[train])
    x, constant = _standardised_inputs(table, x, x_scaler, prep.features)
    targets = _classes if classify else _values
    y, y_scaler, classes, more = targets(table, t, labelled, (train, val), part)
    data = Dataset(*_split(x, y, (train, val)), x_scaler, y_scaler, prep.names, [table.names[j] for j in t],
                   notes + constant + more, classes, prep=prep)
    if part.comm is None or part.comm.size == 1:
        return data
    return replace(data, first=first, n_train=part.total - n_val, n_val=n_val, sharded=True)


def target_columns(table, target=None):
    """The indices of the `target` columns (names or indices; default: the last column)."""
    return column_indices(table, target, "--target") if target else [len(table.names) - 1]


@dataclass
class Select:
    """Which columns of a table are inputs, and what is done with missing cells.

    Attributes:
        features: the input columns (names or indices; a comma-separated string or a list); None: every
            column but the targets, `drop` and `keep`.
        drop: columns left out.
        keep: columns left out of the inputs and carried into predict's output (an identifier, say).
        missing: "fill" (numbers: the training rows' mean; text: a category of its own) or "error".
    """

    features: object = None
    drop: object = ()
    keep: object = ()
    missing: str = "fill"

    def __post_init__(self):
        if self.missing not in MISSING_MODES:
            raise ConfigError(f"unknown --missing {self.missing!r}: choose one of {', '.join(MISSING_MODES)}")

    def kept(self, table):
        return column_indices(table, self.keep, "--keep") if self.keep else []

    def inputs(self, table, targets):
        """The input columns' indices, in the table's order (or --features' order)."""
        dropped = column_indices(table, self.drop, "--drop") if self.drop else []
        for option, columns in (("--keep", self.kept(table)), ("--drop", dropped)):
            clash = [table.names[i] for i in columns if i in targets]
            if clash:
                raise DataError(f"{table.path}: {option} names {clash[0]!r}, the target; give a column that is not")
        out = set(targets) | set(self.kept(table)) | set(dropped)
        if self.features:
            chosen = column_indices(table, self.features, "--features")
            clash = [table.names[i] for i in chosen if i in out]
            if clash:
                raise DataError(f"{table.path}: --features names {clash[0]!r}, which is a target, dropped or kept")
        else:
            chosen = [i for i in range(len(table.names)) if i not in out]
        if not chosen:
            raise DataError(f"{table.path}: no input column is left; at least one is needed")
        return chosen


def _rows_with_targets(table, t, part):
    """(indices of the rows whose targets are all present, notes): rows with a missing target are dropped."""
    missing = missing_targets(table, t)
    dropped, left = part.count(int(np.count_nonzero(missing))), part.count(int(np.count_nonzero(~missing)))
    names = ", ".join(table.names[j] for j in t)
    if not left:
        raise DataError(f"{table.path}: the target ({names}) has no values")
    notes = [f"Note: {table.path}: dropped {dropped} rows whose target ({names}) is missing"] if dropped else []
    return np.flatnonzero(~missing), notes


def missing_targets(table, t):
    """Where any of the target columns `t` has a missing cell (a row to leave out)."""
    missing = np.zeros(table.rows, bool)
    for j in t:
        missing |= missing_cells(table.columns[j])
    return missing


def cell_notes(path, filled, unseen, part=None, how="with the training rows' mean, or for text a category of their "
               "own; --missing error refuses them"):
    """One line for the missing cells filled (`how`), one for the cells made all zeros (counted over the ranks)."""
    notes = []
    for counts, say in ((filled, "Note: {path}: filled {n} missing cells ({each}) " + how),
                        (unseen, "Warning: {path}: {n} cells hold a category not seen in training, or are missing "
                         "where training had none ({each}); they are all zeros")):
        ranks = part is not None and _ranks(part)
        names = sorted({k for share in (part.comm.allgather(list(counts)) if ranks else [list(counts)]) for k in share})
        if not names:
            continue
        n = part.comm.sum([counts.get(k, 0) for k in names]) if ranks else [counts[k] for k in names]
        each = ", ".join(f"{k}: {int(c)}" for k, c in zip(names, n))
        notes.append(say.format(path=path, n=int(sum(n)), each=each))
    return notes


def warn(notes, stacklevel=3):
    """The lines of `notes` that are warnings, as Python warnings (for the Python API; the command line prints them)."""
    import warnings

    for note in notes:
        if note.startswith("Warning: "):
            warnings.warn(note[len("Warning: "):], stacklevel=stacklevel)


def _share(part):
    """'rank r's share: ' with several ranks, else ''."""
    return f"rank {part.comm.rank}'s share of the rows: " if _ranks(part) else ""


def _ranks(part):
    return part.comm is not None and part.comm.size > 1


def _values(table, t, labelled, split, part):
    """(standardised targets, their Scaler, None, notes) for regression on the `labelled` rows."""
    y = target_values(table, t, labelled)
    y_scaler = part.fit(y[split[0]])
    flat = y_scaler.constant()
    if flat.size:
        raise DataError(f"{table.path}: target column {table.names[t[flat[0]]]!r} is constant on the training rows; "
                        "there is nothing to learn")
    return y_scaler.transform(y), y_scaler, None, []


def target_values(table, t, rows):
    """The target columns at `t` for `rows` as float64 (rows, len(t)); a DataError naming a cell that is not a finite number."""
    y = np.empty((len(rows), len(t)))
    for k, j in enumerate(t):
        col = table.columns[j]
        if col.dtype.kind not in "iuf":
            table.numeric([j])  # names the text
        y[:, k] = col[rows]
        bad = ~np.isfinite(y[:, k])
        if bad.any():
            row = rows[int(np.argmax(bad))]
            raise DataError(f"{table._where(row)}, column {j + 1} ({table.names[j]}) is not finite: {col[row]}")
    return y


def _standardised_inputs(table, x, scaler, names):
    """(x standardised by `scaler`, a note on the constant inputs left unscaled)."""
    constant = scaler.keep_constant_unscaled()
    if not constant.size:
        return scaler.transform(x), []
    listed = ", ".join(repr(names[c]) for c in constant[:5]) + (", ..." if len(constant) > 5 else "")
    what = f"input column {listed} is" if len(constant) == 1 else f"{len(constant)} input columns ({listed}) are"
    return scaler.transform(x), [f"Warning: {table.path}: {what} constant on the training rows; left unscaled"]


def class_labels(col):
    """A label column as it is, text as str, whole floats (integers with missing cells) as int64."""
    if col.dtype.kind == "O":
        return col.astype(str)
    if col.dtype.kind == "f" and np.all(col[np.isfinite(col)] == np.round(col[np.isfinite(col)])):
        return col.astype(np.int64)
    return col


def _classes(table, t, labelled, split, part):
    """(one-hot rows, identity Scaler, classes, notes) for the class labels in column t[0] of the `labelled` rows."""
    labels = class_labels(table.columns[t[0]][labelled])
    train, val = split
    classes = part.classes(labels[train])
    if len(classes) < 2:
        raise DataError(f"{table.path}: target column {table.names[t[0]]!r} has one class ({classes[0]}) on the "
                        "training rows; a classifier needs two or more")
    y, _ = one_hot(labels, classes)
    unknown = part.count(len(val) - int(y[val].sum()))
    notes = [f"Warning: {table.path}: {unknown} validation rows have a label not among the training rows' classes; "
             "they count as misclassified"] if unknown else []
    return y, Scaler.identity(len(classes)), classes, notes
